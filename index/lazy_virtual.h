// The entry table of a lazily pulled layer whose format gives no tar offsets (eStargz,
// issue 9): the files' contents are laid out back to back, in TOC order, in a
// "virtual" content stream, and the chunk map places the TOC's chunks in it. Reads of a
// lazy layer go by those synthetic offsets (fs/lazy_blob.h); the tree and every other
// field come from the verified TOC.
//
// When a plain pull completes the layer, the real tar gives the entry table: it must
// equal the lazy one modulo what the TOC cannot hold (SameModuloOffsets): content offsets
// (data_offset), mtime nanoseconds (Go's TOC has RFC 3339 seconds) and the exact bytes
// of names that are not UTF-8 (a TOC is JSON; its writer turns them into U+FFFD,
// compared in that form, AsJsonString). The chunk map is
// then moved to the real offsets (RelocateChunkMap) and checked against the tar, and the
// layer's entry table is replaced by the tar's.
//
// Thread-safety: pure functions.
#ifndef IMGFS_INDEX_LAZY_VIRTUAL_H_
#define IMGFS_INDEX_LAZY_VIRTUAL_H_

#include <string>
#include <string_view>
#include <vector>

#include "index/layer_entry.h"
#include "index/layer_toc.h"
#include "index/lazy_layer.h"
#include "index/status.h"

namespace imgfs {

struct VirtualLayer {
  std::vector<LayerEntry> entries;  // in TOC order; regular files at synthetic offsets
  ChunkMap map;                     // chunks at those offsets
  uint64_t size = 0;                // the virtual stream's size: the sum of file sizes
};

// `toc` must keep layer_toc.h's contract (every file's chunks cover it exactly).
Result<VirtualLayer> VirtualLayerFromToc(const LayerToc& toc);

// What Go's encoding/json makes of a string that is not UTF-8 (every byte of an invalid
// sequence becomes U+FFFD).
std::string AsJsonString(std::string_view s);

// NormalizeTarPath for a name or hard-link target read from a TOC, and the symlink
// target rule (at most kMaxSymlinkTarget bytes, no NUL). A TOC is JSON: each byte of a
// name that is not UTF-8 is there as U+FFFD (3 bytes), so a good tar name may be too
// long in that spelling. One that would pass with a byte per U+FFFD is Unsupported (the
// layer is pulled in full); any other bad name is InvalidArgument.
Result<std::string> NormalizeTocPath(std::string_view name, bool allow_root,
                                     bool link_target = false);
Status CheckTocSymlinkTarget(std::string_view target);

// Xattrs with their names in the TOC's JSON spelling, sorted by name (how a tar entry's
// xattrs compare with a TOC entry's).
std::vector<Xattr> JsonXattrs(std::vector<Xattr> xs);

// The lazy table (from the TOC) against the tar's: same entries in the same order with
// the same fields, except data_offset and mtime_nsec, and names, link targets and xattr names
// compared in their JSON form. A difference is a Corruption naming the entry and the field.
Status SameModuloOffsets(const std::vector<LayerEntry>& lazy, const std::vector<LayerEntry>& tar);

// `virt` (at the offsets of `lazy`) moved to the offsets the tar gives (`tar`, the same
// entries: SameModuloOffsets), with the tar stream's size.
Result<ChunkMap> RelocateChunkMap(const ChunkMap& virt, const std::vector<LayerEntry>& lazy,
                                  const std::vector<LayerEntry>& tar, uint64_t tar_size);

}  // namespace imgfs

#endif  // IMGFS_INDEX_LAZY_VIRTUAL_H_
