// The kernel's mount table (/proc/self/mountinfo), FUSE-free, for mount hygiene:
// `imgfs mount` refuses a directory that already has an imgfs mount, `imgfs umount`
// touches only fuse.imgfs mounts (also as root), and `imgfs umount STORE` finds the
// mount point of a store (imgfs mounts carry the store path as their source).
//
// Thread-safety: free functions, reentrant.
#ifndef IMGFS_FS_MOUNTINFO_H_
#define IMGFS_FS_MOUNTINFO_H_

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "index/status.h"

namespace imgfs {

inline constexpr char kImgfsFsType[] = "fuse.imgfs";

struct MountEntry {
  std::string mount_point;  // unescaped (\040 → space)
  std::string fstype;       // "fuse.imgfs", "tmpfs", …
  std::string source;       // unescaped; an imgfs mount's store directory
};

// Parses mountinfo text; malformed lines are skipped.
std::vector<MountEntry> ParseMountInfo(std::string_view text);
Result<std::vector<MountEntry>> ReadMountInfo();
// The mount on top at exactly `path` (an absolute, resolved path), if any.
std::optional<MountEntry> MountAt(const std::vector<MountEntry>& table, const std::string& path);
// Escapes a value for a libfuse -o option list (backslash before ',' and '\').
std::string EscapeFuseOption(std::string_view v);

}  // namespace imgfs

#endif  // IMGFS_FS_MOUNTINFO_H_
