// HTTP multi-range requests (RFC 9110 §14.2, §14.6): many byte ranges of a blob in one
// request ("Range: bytes=a-b,c-d,…"), answered 206 with a multipart/byteranges body.
// Used by `pull --lazy` to fetch the tar-header ranges of a zstd:chunked layer without
// a tar-split (registry/lazy_pull.cc, registry/lazy_fetch.h).
//
// The parser is strict and bounded: the boundary comes from the Content-Type; every part
// has exactly one "Content-Range: bytes FIRST-LAST/TOTAL" with TOTAL the blob's size and
// is followed by the next delimiter; a part must lie inside one of the ranges asked for
// (a server may coalesce overlapping or touching asked ranges into one part, and may
// reorder parts; it may not send bytes that were not asked for); parts may not overlap.
// The bytes it returns are views into the body (nothing is verified here: callers check
// them against the TOC and the chunk digests as any fetched bytes).
#ifndef IMGFS_REGISTRY_MULTIPART_RANGES_H_
#define IMGFS_REGISTRY_MULTIPART_RANGES_H_

#include <string>
#include <string_view>
#include <vector>

#include "index/status.h"
#include "registry/zstd_chunked.h"

namespace imgfs {

// Request-side bounds: a batch is at most this many ranges and this long a header value.
inline constexpr size_t kMaxRangesPerRequest = 400;
inline constexpr size_t kMaxRangeHeaderBytes = 8 << 10;

// Splits `ranges` (sorted, disjoint, not empty each) into batches for one request each,
// in order, bounded as above.
std::vector<std::vector<BlobRange>> BatchRanges(const std::vector<BlobRange>& ranges);
// "bytes=a-b,c-d" (without the "Range: ").
std::string RangeHeaderValue(const std::vector<BlobRange>& ranges);

// The boundary of a "multipart/byteranges; boundary=…" Content-Type; empty when it is
// not one (or the boundary is not 1..70 characters).
std::string MultipartBoundary(std::string_view content_type);

struct RangePart {
  uint64_t offset = 0;
  std::string_view bytes;
};
// Parses a multipart/byteranges body (see above). `asked`: sorted, disjoint.
Result<std::vector<RangePart>> ParseMultipartByteranges(std::string_view boundary,
                                                        std::string_view body,
                                                        const std::vector<BlobRange>& asked,
                                                        uint64_t blob_size);

// A Content-Range value (RFC 9110 §14.4), the one parser of its grammar in imgfs (the
// parts above, single-range 206 answers here and in registry/registry_transport.cc):
// "bytes FIRST-LAST/TOTAL" or "bytes FIRST-LAST/*" → [first, last+1) and TOTAL
// (kUnknownTotal for "*"); false unless FIRST <= LAST and, TOTAL known, LAST < TOTAL.
// Numbers are 1..19 decimal digits, so no arithmetic overflows and no TOTAL is
// kUnknownTotal.
inline constexpr uint64_t kUnknownTotal = UINT64_MAX;
bool ParseContentRangeAnyTotal(std::string_view value, uint64_t* begin, uint64_t* end,
                               uint64_t* total);
// As above, and TOTAL must be `blob_size` (not "*"): the range lies in that blob.
bool ParseContentRange(std::string_view value, uint64_t blob_size, uint64_t* begin, uint64_t* end);

}  // namespace imgfs

#endif  // IMGFS_REGISTRY_MULTIPART_RANGES_H_
