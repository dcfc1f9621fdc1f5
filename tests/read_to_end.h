// ReadToEnd(src, out, buf_size): reads `src` until its end (a read of 0 bytes) or its
// first error, appending every byte read to `*out` (when not null) through a buffer of
// `buf_size` bytes. Returns the error that stopped it, or OK at the end: what was read
// before an error stays in `*out`, for tests that check how far a failing stream got.
#ifndef IMGFS_TESTS_READ_TO_END_H_
#define IMGFS_TESTS_READ_TO_END_H_

#include <string>
#include <vector>

#include "index/status.h"
#include "index/stream.h"

namespace imgfs::test {

inline Status ReadToEnd(ByteSource& src, std::string* out, size_t buf_size = 1 << 16) {
  std::vector<char> buf(buf_size);
  for (;;) {
    auto n = src.Read(buf.data(), buf.size());
    if (!n.ok()) return n.status();
    if (*n == 0) return Status::Ok();
    if (out) out->append(buf.data(), *n);
  }
}

}  // namespace imgfs::test

#endif  // IMGFS_TESTS_READ_TO_END_H_
