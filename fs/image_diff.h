// `imgfs diff`: what changed between two image trees, as `docker diff` reports it.
//
// Rules (moby pkg/archive changes.go, the naive driver's comparison):
//   - A: a path only in the new tree; everything below an added directory is A too;
//   - D: a path only in the old tree (only the topmost: nothing below it is listed;
//     a directory replaced by a non-directory is C and its children are D);
//   - C: a path in both whose type, permission bits, owner, device number, symlink
//     target or xattrs differ, or, for a non-directory, whose size or mtime differs
//     (a directory's size and mtime are not compared); a regular file whose metadata
//     is all equal but whose content comes from another place (another layer) is
//     compared byte by byte, so content is read only where metadata cannot decide;
//   - a directory (not the root) with any A/C/D below it is C itself.
// Output is sorted by path, bytewise; paths are absolute ("/etc/passwd").
//
// Thread-safety: a pure function of two immutable views; reads content through the
// unpack cache (which synchronises itself).
#ifndef IMGFS_FS_IMAGE_DIFF_H_
#define IMGFS_FS_IMAGE_DIFF_H_

#include <string>
#include <vector>

#include "fs/image_view.h"
#include "fs/span_cache.h"

namespace imgfs {

struct PathChange {
  char kind = 'C';  // 'A', 'C' or 'D'
  std::string path;
};

Result<std::vector<PathChange>> DiffViews(const ImageView& old_view, const ImageView& new_view,
                                          LayerReader& cache);

}  // namespace imgfs

#endif  // IMGFS_FS_IMAGE_DIFF_H_
