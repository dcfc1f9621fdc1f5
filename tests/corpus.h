// Corpus: text-like test data, seeded. It compresses, but not to nothing, so deflate
// makes many blocks (seek index and span read tests).
#ifndef IMGFS_TESTS_CORPUS_H_
#define IMGFS_TESTS_CORPUS_H_

#include <cstddef>
#include <cstdint>
#include <string>

namespace imgfs::test {

inline std::string Corpus(size_t n, uint32_t seed) {
  static const char* words[] = {"layer ", "image ", "gzip ", "seek ",  "window ", "span ",
                                "block ", "tar ",   "blob ", "index ", "\n",      "0x1f "};
  std::string s;
  uint32_t x = seed;
  while (s.size() < n) {
    x = x * 1664525u + 1013904223u;
    if ((x >> 28) == 0) {
      s += std::to_string(x);
    } else {
      s += words[(x >> 16) % 12];
    }
  }
  s.resize(n);
  return s;
}

}  // namespace imgfs::test

#endif  // IMGFS_TESTS_CORPUS_H_
