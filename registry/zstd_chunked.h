// zstd:chunked layers (containers/storage pkg/chunked): what a lazy pull needs.
//
// A zstd:chunked blob is an ordinary multi-frame zstd tar stream in which every regular
// file's content starts its own frame(s), followed by three skippable frames: the
// table of contents (a CRFS-style JSON "manifest", zstd-compressed), the tar-split
// (JSON lines, zstd-compressed: the raw tar header bytes, padding included, between
// file contents) and a footer. The layer descriptor's annotations say where the TOC
// and the tar-split are and give the digest of their compressed bytes:
//
//   io.github.containers.zstd-chunked.manifest-position  "OFFSET:LENGTH:USIZE:1"
//   io.github.containers.zstd-chunked.manifest-checksum  "sha256:…" (compressed bytes)
//   io.github.containers.zstd-chunked.tarsplit-position  "OFFSET:LENGTH:USIZE"
//   io.github.containers.zstd-chunked.tarsplit-checksum  "sha256:…" (optional: newer
//                                                         writers put the digest in
//                                                         the TOC as "tarSplitDigest")
//
// ParseZstdChunkedToc turns the decompressed TOC into a LayerToc (index/layer_toc.h);
// ParseTarSplit reads the decompressed tar-split into segments; ApplyTarSplit gives
// every TOC regular file its offset in the tar stream and yields the tar stream with
// every file's content replaced by zeros (HeaderOnlyTar), which the ordinary tar
// indexer (index/layer_indexer.h) turns into exactly the entry table a full pull
// records (same names, attributes, xattrs and content offsets).
//
// Nothing here trusts its input: sizes are bounded, offsets checked against the blob.
//
// Thread-safety: free functions, reentrant.
#ifndef IMGFS_REGISTRY_ZSTD_CHUNKED_H_
#define IMGFS_REGISTRY_ZSTD_CHUNKED_H_

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "index/layer_entry.h"
#include "index/layer_toc.h"
#include "index/status.h"
#include "index/stream.h"

namespace imgfs {

inline constexpr char kZstdChunkedTocPosition[] =
    "io.github.containers.zstd-chunked.manifest-position";
inline constexpr char kZstdChunkedTocChecksum[] =
    "io.github.containers.zstd-chunked.manifest-checksum";
inline constexpr char kZstdChunkedTarSplitPosition[] =
    "io.github.containers.zstd-chunked.tarsplit-position";
inline constexpr char kZstdChunkedTarSplitChecksum[] =
    "io.github.containers.zstd-chunked.tarsplit-checksum";

// Limits on what a lazy pull accepts (decompressed sizes).
inline constexpr uint64_t kMaxTocBytes = 256ull << 20;
inline constexpr uint64_t kMaxTarSplitBytes = 512ull << 20;
// The largest tar stream a lazy pull indexes: the entry table comes from running the tar
// indexer over the headers with every file's content as zeros, which costs time in
// proportion to the whole stream (the sizes are the TOC's, i.e. the image author's). A
// larger layer is pulled in full (ApplyTarSplit says Unsupported).
inline constexpr uint64_t kMaxLazyTarBytes = 64ull << 30;

struct ZstdChunkedLayout {
  uint64_t toc_offset = 0, toc_length = 0, toc_size = 0;  // size: uncompressed
  Digest toc_digest;
  bool has_tarsplit = false;
  uint64_t tarsplit_offset = 0, tarsplit_length = 0, tarsplit_size = 0;
  std::optional<Digest> tarsplit_digest;  // from the annotation, when there is one
};

// True when the descriptor's annotations name a zstd:chunked TOC.
bool IsZstdChunked(const std::map<std::string, std::string>& annotations);
// The layout from the annotations, each range checked to lie in [0, blob_size).
Result<ZstdChunkedLayout> ParseZstdChunkedLayout(
    const std::map<std::string, std::string>& annotations, uint64_t blob_size);

// Decompresses one zstd range (TOC or tar-split) of at most `max_size` bytes out.
Result<std::string> DecompressZstd(std::string_view compressed, uint64_t max_size);

// The TOC JSON (decompressed). `toc.tarsplit_digest` gets the TOC's "tarSplitDigest"
// when it has one. Regular files get their chunks; tar offsets stay unknown.
struct ParsedZstdToc {
  LayerToc toc;
  std::optional<Digest> tarsplit_digest;
};
// At most `max_entries` entries, chunk entries included (as eStargz's TocLimits): each
// costs a few hundred bytes parsed, whatever its JSON's size.
inline constexpr size_t kMaxZstdTocEntries = 4u << 20;
Result<ParsedZstdToc> ParseZstdChunkedToc(std::string_view json, const Digest& blob,
                                          uint64_t blob_size, const Digest& toc_digest,
                                          size_t max_entries = kMaxZstdTocEntries);

// One tar-split segment: raw tar bytes (headers, padding) or a file's content size.
struct TarSplitSegment {
  bool is_file = false;
  std::string name;   // files: the tar name ("name", or the bytes of "name_raw", which
                      // tar-split writes for a name that is not UTF-8)
  uint64_t size = 0;  // files: content bytes
  std::string raw;    // otherwise: the bytes
};
Result<std::vector<TarSplitSegment>> ParseTarSplit(std::string_view jsonl);

// Without a tar-split (older writers, e.g. Debian 12's skopeo): the blob bytes between
// file contents are whole zstd frames of tar headers and padding. HeaderGaps lists those
// ranges in blob order, sorted and disjoint (a TOC whose files overlap or go back in the
// blob is Corruption; the last gap ends before the TOC's skippable-frame header);
// SegmentsFromGaps interleaves their decompressed bytes with the TOC's files (tar order
// must be blob order) into the segments a tar-split would give. The header bytes are not
// covered by any digest: PrepareLazyLayer cross-checks the entry table they make against
// the (verified) TOC, field by field.
struct BlobRange {
  uint64_t offset = 0, length = 0;
};
Result<std::vector<BlobRange>> HeaderGaps(const LayerToc& toc, uint64_t toc_offset);
Result<std::vector<TarSplitSegment>> SegmentsFromGaps(const LayerToc& toc,
                                                      std::vector<std::string> decoded_gaps);
// Decompresses each of `gaps` (HeaderGaps) out of the fetched `ranges` (sorted, each
// holding whole gaps; `bodies` their bytes): one string per gap, empty for an empty
// gap. All of them together at most `budget` bytes (a zstd bomb in the headers is
// InvalidArgument, not memory).
Result<std::vector<std::string>> DecodeHeaderGaps(const std::vector<BlobRange>& gaps,
                                                  const std::vector<BlobRange>& ranges,
                                                  const std::vector<std::string>& bodies,
                                                  uint64_t budget = kMaxTarSplitBytes);

// Gives each TOC regular file with content its tar offset (matched in order against the
// tar-split's files with content: names and sizes must agree) and sets toc.tar_size.
// Unsupported when the stream is over kMaxLazyTarBytes.
// Returns a source of the tar stream with all file contents zeroed (for indexing).
Result<std::unique_ptr<ByteSource>> ApplyTarSplit(LayerToc& toc,
                                                  std::vector<TarSplitSegment> segments);

// The entry table made from the tar headers (`entries`, the tar indexer's) against the
// verified TOC (tar offsets given): the same entries with the same attributes, for the
// headers themselves carry no digest; names, link targets and xattr names compared in
// the TOC's JSON spelling (AsJsonString). A path the tar names more than once (legal:
// the last one wins) is in the TOC as often, in the same order: the n-th tar entry of a
// path is matched with its n-th TOC entry. A difference is a Corruption naming the
// entry and the field. The root may be missing from the TOC when `headers_verified`
// (they came from a tar-split that matched its digest); otherwise nothing would check
// the root's header until completion, and that is Unsupported (the layer is pulled in
// full).
Status MatchTocToTar(const LayerToc& toc, const std::vector<LayerEntry>& entries,
                     bool headers_verified);

}  // namespace imgfs

#endif  // IMGFS_REGISTRY_ZSTD_CHUNKED_H_
