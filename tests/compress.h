// Compressors for tests that build blobs themselves: one gzip member from zlib with
// every knob the seek-index tests turn (level, strategy, memLevel, periodic flushes),
// and zstd frames. A compressor error fails the calling test (EXPECT) and gives what
// was produced so far.
#ifndef IMGFS_TESTS_COMPRESS_H_
#define IMGFS_TESTS_COMPRESS_H_

#include <gtest/gtest.h>
#include <zlib.h>
#include <zstd.h>

#include <algorithm>
#include <string>
#include <string_view>
#include <vector>

namespace imgfs::test {

// One gzip member holding `d`, from zlib (windowBits 31). flush > 0: a flush of kind
// (1 sync, 2 full, 3 partial, 4 block) every `every` input bytes.
inline std::string GzipMember(std::string_view d, int level = 6, int strategy = Z_DEFAULT_STRATEGY,
                              int mem = 8, int flush = 0, size_t every = 0) {
  z_stream zs{};
  EXPECT_EQ(deflateInit2(&zs, level, Z_DEFLATED, 31, mem, strategy), Z_OK);
  std::string out;
  std::vector<char> buf(1 << 16);
  size_t pos = 0;
  for (;;) {
    size_t chunk = flush ? every : d.size();
    size_t take = std::min(chunk, d.size() - pos);
    zs.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(d.data() + pos));
    zs.avail_in = static_cast<uInt>(take);
    pos += take;
    bool last = pos == d.size();
    int mode = last         ? Z_FINISH
               : flush == 1 ? Z_SYNC_FLUSH
               : flush == 2 ? Z_FULL_FLUSH
               : flush == 3 ? Z_PARTIAL_FLUSH
                            : Z_BLOCK;
    int ret;
    do {
      zs.next_out = reinterpret_cast<Bytef*>(buf.data());
      zs.avail_out = static_cast<uInt>(buf.size());
      ret = deflate(&zs, mode);
      out.append(buf.data(), buf.size() - zs.avail_out);
    } while (zs.avail_out == 0 || (last && ret != Z_STREAM_END));
    if (last) break;
  }
  deflateEnd(&zs);
  return out;
}

// One zstd frame holding `d`.
inline std::string Zstd(std::string_view d, int level = 3) {
  std::string out(ZSTD_compressBound(d.size()), '\0');
  size_t n = ZSTD_compress(out.data(), out.size(), d.data(), d.size(), level);
  EXPECT_FALSE(ZSTD_isError(n)) << ZSTD_getErrorName(n);
  out.resize(ZSTD_isError(n) ? 0 : n);
  return out;
}

// `d` cut into pieces of `frame` bytes, each its own zstd frame (no frame when d is empty).
inline std::string ZstdFrames(std::string_view d, size_t frame) {
  std::string out;
  for (size_t i = 0; i < d.size(); i += frame) out += Zstd(d.substr(i, frame));
  return out;
}

}  // namespace imgfs::test

#endif  // IMGFS_TESTS_COMPRESS_H_
