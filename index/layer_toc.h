// A layer's table of contents, format-neutral (issue 9, lazy images).
//
// A seekable compressed layer format (zstd:chunked, eStargz) carries a table of
// contents: every tar entry with its attributes and, for regular files, where the
// file's content lies in the compressed blob, in independently decompressible
// chunks, each with the digest of its uncompressed bytes. A format parser turns its
// TOC into a LayerToc; the lazy read path (fetch ranges, verify, keep) and the entry
// table of a lazily pulled layer are built from a LayerToc only, never from the
// format's own JSON.
//
// Contract for parsers:
//   - the TOC bytes were checked against a digest named by the manifest (the layer
//     descriptor's annotation) before they are parsed; `toc_digest` records it;
//   - paths are normalised with NormalizeTarPath (index/layer_entry.h) — a name that
//     leaves the root is an error, not skipped; hard-link targets likewise;
//   - a regular file's chunks are sorted by `file_offset`, contiguous (each starts
//     where the previous ended), and cover [0, size) exactly; every chunk with
//     bytes to fetch lies within [0, blob_size) of the blob; an empty file has none;
//   - every digest is a validated Digest; a chunk without its own digest in the TOC
//     (a one-chunk file whose TOC gives only the file digest) carries the file's;
//   - nothing from the TOC is trusted beyond that: sizes and offsets are bounds-checked
//     by the parser, and every fetched chunk is checked against its digest before a
//     byte of it is served.
//
// Thread-safety: values.
#ifndef IMGFS_INDEX_LAYER_TOC_H_
#define IMGFS_INDEX_LAYER_TOC_H_

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "index/digest.h"
#include "index/layer_entry.h"

namespace imgfs {

enum class TocFormat : uint8_t {
  kZstdChunked = 1,  // io.github.containers.zstd-chunked.* annotations, zstd frames
  kEstargz = 2,      // containerd.io/snapshot/stargz/toc.digest, gzip members
};

// How a chunk's bytes are stored in the blob.
enum class ChunkCodec : uint8_t {
  kZstd = 1,   // one or more complete zstd frames
  kGzip = 2,   // one or more complete gzip members; decoding yields `size` bytes
               // of tar *content* (eStargz: starting at the chunk's own offset)
  kZeros = 3,  // a hole: `size` zero bytes, nothing in the blob (blob_length 0)
};

struct TocChunk {
  uint64_t file_offset = 0;  // of the chunk's first byte within the file's content
  uint64_t size = 0;         // uncompressed bytes
  uint64_t blob_offset = 0;  // of the compressed bytes in the blob
  uint64_t blob_length = 0;  // compressed bytes ([blob_offset, blob_offset+blob_length))
  Digest digest;             // sha256 of the chunk's uncompressed bytes
  ChunkCodec codec = ChunkCodec::kZstd;
  // eStargz: bytes of decoded output to skip before the chunk's content (the tar
  // header that shares the gzip member); 0 for zstd:chunked.
  uint64_t skip = 0;
};

inline constexpr uint64_t kUnknownOffset = UINT64_MAX;

struct TocEntry {
  std::string path;  // normalised (layer_entry.h); "" is the root
  EntryType type = EntryType::kFile;
  uint32_t mode = 0;  // permission bits, 07777
  uint64_t uid = 0;
  uint64_t gid = 0;
  uint64_t size = 0;  // content bytes of a regular file
  int64_t mtime_sec = 0;
  uint32_t mtime_nsec = 0;
  uint32_t dev_major = 0;
  uint32_t dev_minor = 0;
  std::string link;  // symlink target (verbatim) or hard-link target (normalised)
  std::vector<Xattr> xattrs;
  std::optional<Digest> digest;  // sha256 of the whole content (regular files)
  std::vector<TocChunk> chunks;  // regular files with content (see the contract)
  // Offset of the content in the uncompressed tar stream when the format tells it
  // (zstd:chunked, through its tar-split); kUnknownOffset otherwise.
  uint64_t tar_offset = kUnknownOffset;
};

struct LayerToc {
  TocFormat format = TocFormat::kZstdChunked;
  Digest blob;             // the layer blob's digest (manifest descriptor)
  uint64_t blob_size = 0;  // its size
  Digest toc_digest;       // what the TOC bytes were checked against
  // The uncompressed tar stream's size when known (zstd:chunked: from tar-split);
  // 0 when unknown.
  uint64_t tar_size = 0;
  std::vector<TocEntry> entries;  // in tar order; hard links after their targets
};

}  // namespace imgfs

#endif  // IMGFS_INDEX_LAYER_TOC_H_
