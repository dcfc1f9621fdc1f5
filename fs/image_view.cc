#include "fs/image_view.h"

#include <unistd.h>

#include <algorithm>
#include <cstring>

#include "index/changeset.h"

namespace imgfs {

Result<std::shared_ptr<const ImageView>> ImageView::Open(
    const Store& store, const Digest& image_id,
    const std::function<void(const std::vector<LayerRecord>&)>& layers_known) {
  std::shared_ptr<ImageView> v(new ImageView());
  IMGFS_ASSIGN_OR_RETURN(auto img, store.GetImage(image_id));
  if (!img) return Status::NotFound("no such image: " + image_id.str());
  v->image_ = std::move(*img);
  for (const Digest& d : v->image_.diff_ids) {
    IMGFS_ASSIGN_OR_RETURN(auto l, store.GetLayer(d));
    if (!l)
      return Status::Corruption("index: image " + image_id.Short() + " names missing layer " +
                                d.str());
    v->layers_.push_back(std::move(*l));
  }
  if (layers_known) layers_known(v->layers_);
  IMGFS_ASSIGN_OR_RETURN(v->tree_, store.GetTree(image_id));
  for (uint32_t n = MergedTree::kRoot; n < v->tree_.node_count(); n++) {
    const TreeNode& t = v->tree_.node(n);
    if (S_ISREG(t.mode) && t.size > 0 && t.layer >= v->layers_.size()) {
      return Status::Corruption("index: tree of image " + image_id.Short() +
                                " names a layer it does not have");
    }
  }
  return std::shared_ptr<const ImageView>(std::move(v));
}

Result<std::shared_ptr<const ImageView>> ImageView::OpenLayers(const Store& store,
                                                               const std::vector<Digest>& diff_ids,
                                                               bool changeset) {
  if (changeset && diff_ids.size() != 1)
    return Status::InvalidArgument("a changeset view shows one layer");
  std::shared_ptr<ImageView> v(new ImageView());
  v->image_.diff_ids = diff_ids;
  if (!diff_ids.empty()) v->image_.id = diff_ids.back();
  std::vector<std::vector<LayerEntry>> entries;
  for (const Digest& d : diff_ids) {
    IMGFS_ASSIGN_OR_RETURN(auto l, store.GetLayer(d));
    if (!l) return Status::NotFound("no such layer: " + d.str());
    v->image_.size += l->size;
    v->layers_.push_back(std::move(*l));
    IMGFS_ASSIGN_OR_RETURN(auto e, store.GetEntries(d));
    entries.push_back(changeset ? ChangesetEntries(e) : std::move(e));
  }
  std::vector<const std::vector<LayerEntry>*> tables;
  for (const auto& e : entries) tables.push_back(&e);
  IMGFS_ASSIGN_OR_RETURN(v->tree_, MergedTree::Build(tables));
  return std::shared_ptr<const ImageView>(std::move(v));
}

void ImageView::Stat(uint32_t n, struct stat* st) const {
  StatNode(tree_.node(n), n, st);
}

void ImageView::StatNode(const TreeNode& t, uint32_t n, struct stat* st) {
  std::memset(st, 0, sizeof *st);
  st->st_ino = n;
  st->st_mode = t.mode;
  st->st_nlink = t.nlink;
  st->st_uid = t.uid;
  st->st_gid = t.gid;
  st->st_size = static_cast<off_t>(t.size);
  st->st_rdev = t.rdev;
  st->st_blksize = 4096;
  st->st_blocks = static_cast<blkcnt_t>((t.size + 511) / 512);
  st->st_mtim.tv_sec = t.mtime_sec;
  st->st_mtim.tv_nsec = t.mtime_nsec;
  st->st_atim = st->st_mtim;
  st->st_ctim = st->st_mtim;
}

Result<size_t> ImageView::Read(LayerReader& cache, uint32_t n, char* buf, size_t size,
                               uint64_t offset) const {
  if (!tree_.Valid(n)) return Status::InvalidArgument("bad node");
  const TreeNode& t = tree_.node(n);
  if (!S_ISREG(t.mode)) return Status::InvalidArgument("not a regular file");
  if (offset >= t.size) return size_t{0};
  size = static_cast<size_t>(std::min<uint64_t>(size, t.size - offset));
  return cache.Read(layers_[t.layer], buf, size, t.data_offset + offset, t.data_offset + t.size);
}

}  // namespace imgfs
