// One image as a tree that can be listed and read, with no FUSE involved: the
// merged tree (index/merged_tree.h) plus the image's layer records, and the read
// path for regular-file content through the layer reader (fs/span_cache.h). `imgfs ls`/`imgfs cat`
// use it directly; the FUSE adapter will call the same functions.
//
// Thread-safety: an ImageView is immutable after Open; reads may run concurrently.
#ifndef IMGFS_FS_IMAGE_VIEW_H_
#define IMGFS_FS_IMAGE_VIEW_H_

#include <sys/stat.h>

#include <functional>
#include <memory>
#include <vector>

#include "fs/span_cache.h"
#include "index/merged_tree.h"
#include "index/store.h"

namespace imgfs {

class ImageView {
 public:
  // `layers_known` (if set) gets the image's layer records before its tree is built: a
  // caller about to read warms their read path meanwhile (LayerReader::Warm).
  static Result<std::shared_ptr<const ImageView>> Open(
      const Store& store, const Digest& image_id,
      const std::function<void(const std::vector<LayerRecord>&)>& layers_known = {});
  // A view of stored layers that is not (necessarily) an image: the merge of
  // `diff_ids`, bottom first (none: an empty root), built now from their entry tables.
  // With `changeset` (exactly one layer) the layer's own changeset as an overlay upper
  // directory shows it (index/changeset.h). image().id is the top diff_id (or empty).
  static Result<std::shared_ptr<const ImageView>> OpenLayers(const Store& store,
                                                             const std::vector<Digest>& diff_ids,
                                                             bool changeset);

  const ImageRecord& image() const { return image_; }
  const MergedTree& tree() const { return tree_; }
  const std::vector<LayerRecord>& layers() const { return layers_; }

  // Fills `st` for node n (st_ino = n).
  void Stat(uint32_t n, struct stat* st) const;
  // The same from a node's attributes alone (an image root's, from its root record).
  static void StatNode(const TreeNode& t, uint32_t n, struct stat* st);
  // Reads up to `size` bytes of regular file `n` at `offset`. Returns the count.
  Result<size_t> Read(LayerReader& cache, uint32_t n, char* buf, size_t size,
                      uint64_t offset) const;

 private:
  ImageView() = default;
  ImageRecord image_;
  MergedTree tree_;
  std::vector<LayerRecord> layers_;
};

}  // namespace imgfs

#endif  // IMGFS_FS_IMAGE_VIEW_H_
