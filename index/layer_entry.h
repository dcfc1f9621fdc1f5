// One tar entry of a layer as recorded at indexing time, and the per-layer entry
// table codec (the value of the LMDB `entries` database).
//
// Paths are bytes (never re-encoded, see tar_headers.h), normalised once, here, and
// are data, never host paths. The rule is docker's (moby pkg/archive: filepath.Clean,
// then refuse what lands outside the root):
//   - the name is cleaned lexically as Go's filepath.Clean does: "//" collapses, "."
//     components vanish, "D/.." cancels D, a trailing "/" is dropped; the image root
//     itself is the empty path "";
//   - a name that starts with "/" is rooted: ".." at the root stays at the root
//     ("/../a" is "a", as Clean makes it); a relative name whose cleaned form still
//     starts with ".." leaves the image and is rejected (the layer fails to index);
//   - a hard-link target is joined to the root (moby: filepath.Join(root, target)), so
//     any ".." that climbs above the root is rejected, with or without a leading "/";
//   - a component longer than 255 bytes, a path longer than 4095 bytes, a NUL byte, or
//     an empty name for a non-directory is rejected.
// Symlink targets are kept verbatim (they are resolved later, inside the image) but
// must fit the kernel's PATH_MAX: at most 4095 bytes.
//
// Thread-safety: values.
#ifndef IMGFS_INDEX_LAYER_ENTRY_H_
#define IMGFS_INDEX_LAYER_ENTRY_H_

#include <sys/types.h>

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "index/status.h"

namespace imgfs {

enum class EntryType : uint8_t {
  kFile = 1,
  kDir = 2,
  kSymlink = 3,
  kHardlink = 4,
  kChar = 5,
  kBlock = 6,
  kFifo = 7,
};

struct Xattr {
  std::string name;
  std::string value;  // binary-safe
  bool operator==(const Xattr&) const = default;
};

struct LayerEntry {
  std::string path;  // normalised, see above
  EntryType type = EntryType::kFile;
  uint32_t mode = 0;  // permission bits, 07777
  uint64_t uid = 0;
  uint64_t gid = 0;
  uint64_t size = 0;  // content bytes for kFile
  int64_t mtime_sec = 0;
  uint32_t mtime_nsec = 0;
  uint32_t dev_major = 0;
  uint32_t dev_minor = 0;
  std::string link;          // symlink target (verbatim) or hard-link target (normalised)
  uint64_t data_offset = 0;  // of the content in the uncompressed layer stream
  std::vector<Xattr> xattrs;
};

constexpr size_t kMaxSymlinkTarget = 4095;

// Normalises a tar path per the rules above. `allow_root` allows the empty result;
// `link_target` applies the hard-link-target rule ("/.." does not clamp).
Result<std::string> NormalizeTarPath(std::string_view raw, bool allow_root,
                                     bool link_target = false);

std::string EncodeEntries(const std::vector<LayerEntry>& entries);
Result<std::vector<LayerEntry>> DecodeEntries(std::string_view data);

// An entry whose strings are views: of an encoded table (EntryTable::Decode, the LMDB
// value inside its read transaction) or of LayerEntry values (EntryTable::Assign).
struct XattrView {
  std::string_view name, value;
};
struct LayerEntryView {
  std::string_view path;
  EntryType type = EntryType::kFile;
  uint32_t mode = 0;
  uint64_t uid = 0;
  uint64_t gid = 0;
  uint64_t size = 0;
  int64_t mtime_sec = 0;
  uint32_t mtime_nsec = 0;
  uint32_t dev_major = 0;
  uint32_t dev_minor = 0;
  std::string_view link;
  uint64_t data_offset = 0;
  uint32_t xattr_begin = 0, xattr_count = 0;  // range in the table's xattrs
};

// A layer's entry table as views, valid while the bytes it views are. Decoding one is a
// pass over the value with no copy of any name (the merged tree's build reads tables
// this way: the first lookup inside an image waits for it). Reusing one EntryTable
// reuses its memory.
class EntryTable {
 public:
  // Views of the encoded table `data` (EncodeEntries); the same checks as DecodeEntries.
  Status Decode(std::string_view data);
  // Views of `entries`.
  void Assign(const std::vector<LayerEntry>& entries);
  size_t size() const { return entries_.size(); }
  const LayerEntryView& operator[](size_t i) const { return entries_[i]; }
  const XattrView* XattrsBegin(const LayerEntryView& e) const {
    return xattrs_.data() + e.xattr_begin;
  }

 private:
  std::vector<LayerEntryView> entries_;
  std::vector<XattrView> xattrs_;
};

}  // namespace imgfs

#endif  // IMGFS_INDEX_LAYER_ENTRY_H_
