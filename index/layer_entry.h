// One tar entry of a layer as recorded at indexing time, and the per-layer entry
// table codec (the value of the LMDB `entries` database).
//
// Paths are normalised once, here, and are data, never host paths:
//   - leading "/" and "./" are dropped, "//" collapses, "." components vanish, a
//     trailing "/" is dropped; the image root itself is the empty path "";
//   - a ".." component anywhere is rejected (the layer fails to index): it could only
//     mean "outside the image", which a layer may not say;
//   - a component longer than 255 bytes, a path longer than 4095 bytes, or an empty
//     name for a non-directory is rejected.
// Hard-link targets follow the same rules. Symlink targets are kept verbatim.
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

// Normalises a tar path per the rules above. `is_dir` allows the empty result.
Result<std::string> NormalizeTarPath(std::string_view raw, bool allow_root);

std::string EncodeEntries(const std::vector<LayerEntry>& entries);
Result<std::vector<LayerEntry>> DecodeEntries(std::string_view data);

}  // namespace imgfs

#endif  // IMGFS_INDEX_LAYER_ENTRY_H_
