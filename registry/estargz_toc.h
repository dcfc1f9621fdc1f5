// eStargz: the table of contents of a seekable gzip layer (issue 9).
//
// An eStargz blob (containerd/stargz-snapshotter docs/estargz.md) is a gzip layer made of
// many gzip members: each regular file's content, and each chunk of a large file, starts
// a member of its own, so it can be inflated alone. Near the end, a member holds a tar
// entry `stargz.index.json`: the TOC, a JSON document listing every tar entry and, for
// file data, the compressed offset of its member, its place in the file (chunkOffset,
// chunkSize) and its digest (chunkDigest). The blob ends with a 51-byte footer, an
// empty gzip member whose Extra field ('S''G', 22 bytes, "%016xSTARGZ") gives the TOC
// member's offset. The manifest's layer annotation
// `containerd.io/snapshot/stargz/toc.digest` is the sha256 of the TOC JSON.
//
// Nothing here is trusted before it is checked: ReadEstargzToc reads the footer, bounds
// and inflates the TOC member, checks the JSON's digest against the annotation, and only
// then parses it; every name goes through NormalizeTarPath; chunk offsets are in the
// payload (before the TOC) and strictly increasing in blob order; a file's chunks
// cover it exactly, each with a chunkDigest; counts and sizes are bounded (TocLimits).
// Hostile input gives an InvalidArgument/Corruption/Unsupported naming the cause.
//
// Thread-safety: free functions, reentrant.
#ifndef IMGFS_REGISTRY_ESTARGZ_TOC_H_
#define IMGFS_REGISTRY_ESTARGZ_TOC_H_

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "index/digest.h"
#include "index/layer_entry.h"
#include "index/layer_toc.h"
#include "index/status.h"

namespace imgfs::estargz {

inline constexpr size_t kFooterSize = 51;
inline constexpr char kTocName[] = "stargz.index.json";
inline constexpr char kTocDigestAnnotation[] = "containerd.io/snapshot/stargz/toc.digest";
inline constexpr char kUncompressedSizeAnnotation[] = "io.containers.estargz.uncompressed-size";
inline constexpr char kPrefetchLandmark[] = ".prefetch.landmark";
inline constexpr char kNoPrefetchLandmark[] = ".no.prefetch.landmark";

struct TocLimits {
  uint64_t max_toc_member = 64ull << 20;  // compressed TOC member (footer excluded)
  uint64_t max_toc_json = 256ull << 20;   // inflated TOC tar
  size_t max_entries = 4u << 20;          // TOC entries, chunks included
  uint64_t max_file_size = 1ull << 44;    // 16 TiB
  size_t max_xattrs = 256;                // per entry
  size_t max_xattr_bytes = 64u << 10;     // per value (the kernel's XATTR_SIZE_MAX)
};

// The TOC member's offset, from the last kFooterSize bytes of a blob of `blob_size`
// bytes. The footer must be a valid, empty gzip member (every gzip reader inflates it).
Result<uint64_t> ParseFooter(std::string_view footer, uint64_t blob_size);

// The TOC member's content: the JSON and the tar entry that holds it (stargz.index.json:
// its attributes from the tar header, digest and chunks left empty).
struct TocFile {
  std::string json;
  TocEntry entry;
};
Result<TocFile> ExtractToc(std::string_view toc_member, const TocLimits& limits = {});

// The TOC JSON inside the TOC member (one gzip member holding a tar whose first entry
// is stargz.index.json), inflated under the limits.
Result<std::string> ExtractTocJson(std::string_view toc_member, const TocLimits& limits = {});

// Parses and checks a TOC JSON (its digest is the caller's business: ReadEstargzToc)
// into a LayerToc (index/layer_toc.h: format kEstargz, entries in TOC order, which is
// blob and tar order; blob, blob_size and toc_digest left for the caller).
// `toc_offset` (the TOC member's offset) bounds every data offset. A chunk is the gzip
// member at its `offset` up to the next member with data (or the TOC): codec kGzip,
// `skip` = innerOffset; `digest` = chunkDigest (required for every chunk). A file's
// `digest` is required when it has content. A hard link may name a file this TOC does
// not have before it (a lower layer's: the merge resolves it, as for a tar).
Result<LayerToc> ParseTocJson(std::string_view json, uint64_t toc_offset,
                              const TocLimits& limits = {});

// Reads `len` bytes at `offset` of the blob (from a file, or with a Range request).
using BlobReader = std::function<Result<std::string>(uint64_t offset, uint64_t len)>;

// Footer, TOC member, digest check against `expected` (the toc.digest annotation),
// parse: the whole path from a blob (its descriptor's digest and size) to a trusted
// LayerToc. Two reads. The TOC does not list the tar entry that holds it; the LayerToc
// ends with it (path "stargz.index.json", attributes from its tar header, one kGzip
// chunk: the TOC member, skip 512, digest = toc_digest), so that a tree built from the
// LayerToc equals the untarred layer, as a non-lazy pull shows it.
Result<LayerToc> ReadEstargzToc(const Digest& blob, uint64_t blob_size, const BlobReader& read,
                                const Digest& expected, const TocLimits& limits = {});

}  // namespace imgfs::estargz

#endif  // IMGFS_REGISTRY_ESTARGZ_TOC_H_
