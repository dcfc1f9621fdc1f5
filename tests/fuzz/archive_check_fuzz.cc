// The archive recogniser of `imgfs load` (registry/archive_check.h): it reads tar
// headers from untrusted inflated bytes. The input is the tar stream; its first byte
// seeds how the stream is cut into Feed calls. Properties: no crash; Feed never claims
// more bytes than it was given; the verdict (accepted byte count, error or not, ended)
// does not depend on how the stream is cut; once ended, nothing more is accepted.
#include <cstdint>
#include <string>
#include <string_view>

#include "registry/archive_check.h"
#include "tests/fuzz/fuzz_check.h"

using namespace imgfs;

namespace {

struct Verdict {
  bool ok = true;
  bool ended = false;
  uint64_t accepted = 0;
  std::string error;
};

// Feeds `in` in pieces of the sizes `cut` yields, stopping at the first error.
template <typename Cut>
Verdict Run(std::string_view in, Cut cut) {
  TarStreamCheck check;
  Verdict v;
  size_t at = 0;
  while (at < in.size()) {
    size_t n = std::min(in.size() - at, cut());
    auto r = check.Feed(in.data() + at, n);
    if (!r.ok()) {
      v.ok = false;
      v.error = r.status().message();
      break;
    }
    FUZZ_CHECK(*r <= n);
    v.accepted += *r;
    if (check.ended()) {
      FUZZ_CHECK(*r <= n);
      auto again = check.Feed(in.data(), std::min<size_t>(in.size(), 1024));
      FUZZ_CHECK(again.ok() && *again == 0);
      break;
    }
    FUZZ_CHECK(*r == n);  // short only when the end marker is inside
    at += n;
  }
  v.ended = check.ended();
  return v;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  uint32_t seed = data[0];
  std::string_view in(reinterpret_cast<const char*>(data) + 1, size - 1);
  Verdict whole = Run(in, [] { return size_t{1} << 30; });
  uint32_t x = seed * 2654435761u + 1;
  Verdict pieces = Run(in, [&x] {
    x = x * 1103515245u + 12345u;
    return size_t{1} + (x >> 16) % 700;  // 1..700 bytes: headers split anywhere
  });
  FUZZ_CHECK(whole.ok == pieces.ok);
  FUZZ_CHECK(whole.error == pieces.error);
  FUZZ_CHECK(whole.ended == pieces.ended);
  if (whole.ok) FUZZ_CHECK(whole.accepted == pieces.accepted);
  (void)IsImageArchiveMemberName(in.substr(0, 200), seed & 1);
  return 0;
}
