// The multipart/byteranges parser (registry/multipart_ranges.h) on arbitrary bodies.
// The first bytes choose the asked ranges (sorted, disjoint, in a 64 KiB blob); the
// rest is the body. Properties: no crash; an accepted answer's parts are sorted, do not
// overlap, each lies inside one asked range (or touching asked ranges joined), inside
// the blob, and its bytes are the input's (a view into the body, never made up). The
// whole input is also a Content-Range value: a parsed range is not empty, lies in its
// total, and the blob-size form agrees with the any-total form.
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "registry/multipart_ranges.h"
#include "tests/fuzz/fuzz_check.h"

using namespace imgfs;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  constexpr uint64_t kBlob = 64 << 10;
  std::string_view in(reinterpret_cast<const char*>(data), size);
  if (in.empty()) return 0;
  size_t n = static_cast<uint8_t>(in[0]) % 8;
  in.remove_prefix(1);
  std::vector<BlobRange> asked;
  uint64_t at = 0;
  for (size_t i = 0; i < n && in.size() >= 2; i++) {
    uint64_t gap = static_cast<uint8_t>(in[0]) * 16, len = static_cast<uint8_t>(in[1]) + 1;
    in.remove_prefix(2);
    if (at + gap + len > kBlob) break;
    asked.push_back({at + gap, len});
    at += gap + len;
  }
  std::string_view body = in;
  auto parts = ParseMultipartByteranges("B", body, asked, kBlob);
  (void)MultipartBoundary(body);
  // Content-Range: any total, and the blob's (the same grammar, one more condition).
  uint64_t b = 0, e = 0, total = 0, b2 = 0, e2 = 0;
  bool any = ParseContentRangeAnyTotal(body, &b, &e, &total);
  if (any) {
    FUZZ_CHECK(b < e);
    FUZZ_CHECK(total == kUnknownTotal || e <= total);
  }
  bool ours = ParseContentRange(body, kBlob, &b2, &e2);
  FUZZ_CHECK(ours == (any && total == kBlob));
  if (ours) FUZZ_CHECK(b2 == b && e2 == e && e2 <= kBlob);
  if (!parts.ok()) return 0;
  uint64_t prev_end = 0;
  for (const RangePart& p : *parts) {
    FUZZ_CHECK(!p.bytes.empty());
    FUZZ_CHECK(p.offset >= prev_end);
    prev_end = p.offset + p.bytes.size();
    FUZZ_CHECK(prev_end <= kBlob);
    FUZZ_CHECK(p.bytes.data() >= body.data() &&
               p.bytes.data() + p.bytes.size() <= body.data() + body.size());
    // Inside the asked ranges: every byte in one (touching ones joined).
    uint64_t x = p.offset;
    for (const BlobRange& r : asked) {
      if (x >= r.offset && x < r.offset + r.length) x = r.offset + r.length;
      if (x >= prev_end) break;
    }
    FUZZ_CHECK(x >= prev_end);
  }
  return 0;
}
