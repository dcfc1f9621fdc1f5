// One layer's own changeset, shown the way an overlayfs upper directory shows it: the
// per-layer views of the mount (`/.layers/<diff_id hex>/`) are built from this.
//
//   - a whiteout `D/.wh.NAME` becomes a character device 0/0 named `D/NAME` (mode 0,
//     the whiteout entry's owner and mtime), as overlayfs stores a whiteout;
//   - an opaque marker `D/.wh..wh..opq` becomes the xattr `trusted.overlay.opaque=y`
//     on D: on every entry of D in the layer, or, when the layer has no entry for D, on
//     a directory entry made at the marker's place with the marker's owner, permission
//     bits and mtime;
//   - other `.wh..wh.*` names (aufs metadata) and everything below them are dropped;
//   - every other entry is kept as it is, in tar order.
// The result is an ordinary entry list: MergedTree::Build of it alone is the view.
//
// Thread-safety: a pure function.
#ifndef IMGFS_INDEX_CHANGESET_H_
#define IMGFS_INDEX_CHANGESET_H_

#include <vector>

#include "index/layer_entry.h"

namespace imgfs {

inline constexpr char kOverlayOpaqueXattr[] = "trusted.overlay.opaque";

std::vector<LayerEntry> ChangesetEntries(const std::vector<LayerEntry>& layer);

}  // namespace imgfs

#endif  // IMGFS_INDEX_CHANGESET_H_
