// The merged tree of an image: its layers' entry tables combined with OCI/overlay
// semantics, built once per image ID and stored in the LMDB `trees` database.
//
// Merge rules. Layers are applied bottom to top; each layer's entries in tar order, in
// one pass, as docker (moby pkg/archive UnpackLayer) and umoci do; what a layer's paths
// mean follows the kernel's overlayfs, which is what docker's and podman's overlay
// drivers show (each layer is its own directory; no layer's path is resolved through
// another layer's entries). docs/layer-rules.md gives the reasons and the differences
// from tools that apply tars into one directory.
//   1. Whiteouts hide lower content only (OCI layer.md, "Whiteouts": files of the same
//      layer can only be hidden by later layers). `D/.wh.NAME` removes NAME from D;
//      if this layer itself wrote NAME (before or after the whiteout) or wrote
//      something under it, only NAME's lower content goes: a directory keeps what
//      this layer wrote below it. `D/.wh..wh..opq` removes from D everything this
//      layer did not write, recursively through D's directories. In both, a lower
//      directory the layer only passed through is left as an implicit directory of
//      this layer (its lower self is hidden), so the result does not depend on where
//      the markers stand among the layer's entries (hard links aside, below). A
//      whiteout below a non-directory of the same layer is moot (that entry already
//      hides the lower tree). Both act where they stand in the tar: a hard link made
//      earlier in the layer to a file that a later whiteout removes keeps the file's
//      content. Other `.wh..wh.*` names (aufs metadata) and everything below them are
//      ignored (aufs hard-link directories are not resolved). Whiteouts are never
//      visible.
//   2. Other entries, in tar order: a later duplicate wins; a non-directory replaces
//      whatever was at its path (a whole lower directory included); a directory
//      replacing a non-directory starts empty; a directory over a directory takes the
//      new attributes and keeps the children.
//   3. The parent directories of a layer's entry (whiteouts included) are resolved
//      inside the image: symbolic links made by the same layer are followed the way
//      the kernel would in a chroot ("/" and ".." clamp at the image root, at most 40
//      links); a symlink or other non-directory from a LOWER layer is not followed but
//      replaced by a directory (as an overlay mount shows: the upper layer's directory
//      hides the lower entry). A missing parent is created (mode 0755, root-owned,
//      mtime 0); a lower directory keeps its attributes. A parent that is a
//      non-directory of the same layer is an error.
//   4. A hard link names the node of its target as the tree stands at that point of
//      the tar (inside the layer or below, following any symlink); it must exist and
//      not be a directory. Hard links share one node; st_nlink is counted.
//
// The tree is stored flat so that loading it is a bounds-checked copy:
//   nodes[]   : node 0 is unused, node 1 is the root. Numbers are dense, assigned in
//               breadth-first order; they are the inode numbers inside one image view.
//   dirents[] : each directory's children, contiguous and sorted by name (bytewise),
//               so lookup is a binary search and readdir an index walk.
//   xattrs[]  : each node's extended attributes, contiguous.
//   strings   : names, link targets, xattr names and values.
//
// Thread-safety: a built MergedTree is immutable; any number of threads may read it.
#ifndef IMGFS_INDEX_MERGED_TREE_H_
#define IMGFS_INDEX_MERGED_TREE_H_

#include <cstdint>
#include <functional>
#include <list>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "index/layer_entry.h"
#include "index/status.h"

namespace imgfs {

struct TreeNode {
  uint32_t mode = 0;  // full st_mode: S_IFxxx | 07777
  uint32_t nlink = 1;
  uint32_t uid = 0;
  uint32_t gid = 0;
  uint64_t size = 0;
  int64_t mtime_sec = 0;
  uint32_t mtime_nsec = 0;
  uint32_t layer = 0;  // index into the image's layer list, for regular-file content
  uint64_t data_offset = 0;
  uint64_t rdev = 0;
  uint32_t link_off = 0, link_len = 0;        // symlink target in strings
  uint32_t xattr_begin = 0, xattr_count = 0;  // range in xattrs
  uint32_t child_begin = 0, child_count = 0;  // range in dirents (directories)
  uint32_t parent = 0;                        // directories: the parent (root: itself)
  uint32_t pad_ = 0;
};

struct TreeDirent {
  uint32_t name_off = 0, name_len = 0;
  uint32_t node = 0;
};

struct TreeXattr {
  uint32_t name_off = 0, name_len = 0;
  uint32_t value_off = 0, value_len = 0;
};

// An image root's attributes, kept in the image's `trees` row in place of the whole
// tree (store schema 2), so that the mount lists, stats and reads the xattrs of image
// roots (`ls -l` of a repository's tags) without building any tree. Encoded as "IMGR",
// then varints: mode, nlink, uid, gid, size, mtime_sec (signed), mtime_nsec, xattr
// count, then (name, value) byte strings.
struct TreeRoot {
  TreeNode node;  // attributes only: the range and content fields are 0
  std::vector<std::pair<std::string, std::string>> xattrs;
};
std::string EncodeTreeRoot(const TreeRoot& r);
// True when a `trees` value is a root record (false: a whole encoded MergedTree).
bool IsTreeRootRecord(std::string_view data);
Result<TreeRoot> DecodeTreeRoot(std::string_view data);

class TreeBuilder;
class MergedTree;

// The st_mode of a tree node made by an entry of `type` with permission bits `perm`.
uint32_t TreeMode(EntryType type, uint32_t perm);

// The tree of an image whose only layer is `layer`, laid out straight from its entry
// table (index/flat_tree.cc), or nullopt when the layer needs the merge (a whiteout, a
// parent not listed before its entry, a path listed twice, a hard link not to an earlier
// file, …: TreeBuilder). When given, it is the tree TreeBuilder gives, byte for byte.
std::optional<MergedTree> FlatLayerTree(const EntryTable& layer);

class MergedTree {
 public:
  static constexpr uint32_t kRoot = 1;
  // Symlinks followed in one path walk before ELOOP (Linux's limit).
  static constexpr int kMaxSymlinks = 40;

  // Builds the tree from the entry tables of the image's layers, bottom first.
  static Result<MergedTree> Build(const std::vector<const std::vector<LayerEntry>*>& layers);
  // Decodes (and fully bounds-checks) a stored tree.
  static Result<MergedTree> Decode(std::string_view data);
  std::string Encode() const;

  uint32_t node_count() const { return static_cast<uint32_t>(nodes_.size()); }  // incl. node 0
  bool Valid(uint32_t n) const { return n >= kRoot && n < nodes_.size(); }
  const TreeNode& node(uint32_t n) const { return nodes_[n]; }
  std::string_view Name(const TreeDirent& d) const { return Str(d.name_off, d.name_len); }
  std::string_view LinkTarget(uint32_t n) const {
    return Str(nodes_[n].link_off, nodes_[n].link_len);
  }
  const TreeDirent* ChildrenBegin(uint32_t n) const {
    return dirents_.data() + nodes_[n].child_begin;
  }
  uint32_t ChildCount(uint32_t n) const { return nodes_[n].child_count; }
  const TreeXattr* XattrsBegin(uint32_t n) const { return xattrs_.data() + nodes_[n].xattr_begin; }
  std::string_view XattrName(const TreeXattr& x) const { return Str(x.name_off, x.name_len); }
  std::string_view XattrValue(const TreeXattr& x) const { return Str(x.value_off, x.value_len); }
  // Child of directory `dir` named `name`, or 0.
  uint32_t Lookup(uint32_t dir, std::string_view name) const;
  // Resolves a path from the root. Intermediate symlinks are followed inside the image;
  // the last component is followed only when follow_last. Returns 0 when missing.
  Result<uint32_t> Resolve(std::string_view path, bool follow_last) const;
  size_t MemoryBytes() const;
  // The root's attributes and extended attributes (see TreeRoot).
  struct TreeRoot Root() const;

 private:
  friend class TreeBuilder;
  friend std::optional<MergedTree> FlatLayerTree(const EntryTable& layer);
  std::string_view Str(uint32_t off, uint32_t len) const {
    return std::string_view(strings_).substr(off, len);
  }
  // The layout both builders write (TreeBuilder::Finish, FlatLayerTree), one place so
  // that they write the same bytes: strings appended in the order asked for.
  uint32_t Intern(std::string_view s);
  void AddXattr(std::string_view name, std::string_view value);
  void AddDirent(std::string_view name, uint32_t node);
  // Once every dirent is in: each non-directory's nlink is its number of names; node 0
  // is cleared.
  void CountNames();
  std::vector<TreeNode> nodes_;
  std::vector<TreeDirent> dirents_;
  std::vector<TreeXattr> xattrs_;
  std::string strings_;
};

// A merge in progress (the rules above), copyable, so that images sharing lower layers
// share that work: MergedTree::Build(layers) is TreeBuilder, AddLayer per layer,
// Finish; Clone after the shared layers gives the same result as applying them again.
class TreeBuilder {
 public:
  TreeBuilder();
  ~TreeBuilder();
  TreeBuilder(TreeBuilder&&) noexcept;
  // A copy of the merge state, O(1): it shares the nodes (copy on write). Both go on
  // independently.
  std::unique_ptr<TreeBuilder> Clone() const;
  // Freezes the state before it is shared by clones: records each directory's checks
  // so that FinishRoot of a clone walks only what the clone changed.
  void Seal();
  // Applies the next layer (its index is the number of layers added before).
  Status AddLayer(const EntryTable& entries);
  Status AddLayer(const std::vector<LayerEntry>& entries);
  uint32_t layer_count() const;
  Result<MergedTree> Finish() const;
  // The root record of the tree Finish would give, with the same checks, without
  // flattening the tree (a load keeps root records only).
  Result<TreeRoot> FinishRoot() const;
  // Tests: off makes every builder resolve each entry's parent from the root (no
  // reuse of the last walk), the reference the fast path is compared with.
  static void SetWalkReuseForTest(bool on);
  // Tests: off makes builders keep every node a later entry replaces or a whiteout
  // erases (no Builder::Drop), the reference the reclaiming build is compared with.
  static void SetReclaimForTest(bool on);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// Builder states after lower layers, keyed by the chain of their layer ids (diff_id
// hex), so that building the trees of many images on one base costs their own layers
// only. Keeps the `capacity` most recently used states. Thread-safe.
class LowerTreeCache {
 public:
  explicit LowerTreeCache(size_t capacity = 8) : capacity_(capacity) {}
  // The tree of layers layer_ids[0..n) (bottom first); table(i) gives layer i's entry
  // table and is called only for the layers not covered by a cached state, in order;
  // the table is used only until the next call (one buffer may serve them all), and the
  // tree keeps no view of it. Records the state after all layers but the top one.
  using TableFn = std::function<Result<const EntryTable*>(size_t)>;
  Result<MergedTree> Build(const std::vector<std::string>& layer_ids, const TableFn& table);
  // The same, giving the root record only (TreeBuilder::FinishRoot).
  Result<TreeRoot> BuildRoot(const std::vector<std::string>& layer_ids, const TableFn& table);
  // Forgets every state (a layer's entry table changed: a completed lazy eStargz layer).
  void Clear() {
    std::lock_guard<std::mutex> l(mu_);
    states_.clear();
  }

 private:
  Result<std::unique_ptr<TreeBuilder>> Apply(const std::vector<std::string>& layer_ids,
                                             const TableFn& table);
  size_t capacity_;
  std::mutex mu_;
  std::list<std::pair<std::string, std::shared_ptr<const TreeBuilder>>> states_;  // MRU first
};

}  // namespace imgfs

#endif  // IMGFS_INDEX_MERGED_TREE_H_
