#include "fs/mount_fs.h"

#include <fcntl.h>
#include <malloc.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <set>

#include "index/file_util.h"
#include "index/names.h"

namespace imgfs {
namespace {

constexpr uint64_t Ino(uint32_t inst, uint32_t node) {
  return (uint64_t{inst} << 32) | node;
}
constexpr uint32_t InstOf(uint64_t ino) {
  return static_cast<uint32_t>(ino >> 32);
}
constexpr uint32_t NodeOf(uint64_t ino) {
  return static_cast<uint32_t>(ino & 0xffffffffu);
}

Status NoEntry() {
  return Status::NotFound("no such file or directory");
}
Status BadInode() {
  return Status::Io("stale inode", ESTALE);
}

// This thread may not wait (MountFs::NoWait).
thread_local bool t_nowait = false;

}  // namespace

MountFs::NoWait::NoWait(bool on) : was_(t_nowait) {
  t_nowait = on;
}
MountFs::NoWait::~NoWait() {
  t_nowait = was_;
}

struct MountFs::FileHandle {
  std::shared_ptr<UniqueFd> fd;  // the layer's uncompressed stream, pinned while open
  std::shared_ptr<const LayerReader::Stream> stream;  // an indexed layer (no fd)
  uint64_t base = 0;                                  // content offset in it
  uint64_t size = 0;
  bool is_bytes = false;
  std::string bytes;  // .repositories.json as it was at open
};

struct MountFs::DirHandle {
  std::shared_ptr<const Snapshot> snap;  // one listing sees one generation
};

Result<std::unique_ptr<MountFs>> MountFs::Create(const Options& options) {
  std::unique_ptr<MountFs> fs(new MountFs());
  fs->options_ = options;
  IMGFS_ASSIGN_OR_RETURN(fs->store_, Store::Open(options.root));
  fs->cache_ =
      std::make_unique<LayerReader>(*fs->store_, options.cache_size, !options.whole_layers);
  fs->cache_->unpack_cache().set_limit(options.cache_size);
  // Read-ahead of a listed directory's files (LayerReader::Prefetch); off for comparisons.
  if (const char* e = std::getenv("IMGFS_READAHEAD"); e && std::string(e) == "0")
    fs->cache_->set_prefetch(false);
  if (!options.readahead) fs->cache_->set_prefetch(false);
  fs->mounted_at_ = ::time(nullptr);
  fs->slots_.reset(new std::atomic<Instance*>[kMaxInstances]);
  for (uint32_t i = 0; i < kMaxInstances; i++)
    fs->slots_[i].store(nullptr, std::memory_order_relaxed);
  fs->name_paths_ = {"", "", ".id", ".repositories.json", ".layers"};  // nodes 0..4
  fs->name_nodes_[""] = 1;
  if (fs->CurrentSnapshot() == nullptr) return Status::Unavailable("cannot read the store's names");
  return fs;
}

MountFs::~MountFs() {
  uint32_t n = instance_count_.load(std::memory_order_acquire);
  for (uint32_t i = 1; i < n; i++) delete slots_[i].load(std::memory_order_acquire);
}

std::shared_ptr<const Snapshot> MountFs::CurrentSnapshot() {
  auto gen = store_->Generation();
  if (gen.ok()) {  // the newest generation seen (HandOut), raised before it is built
    uint64_t seen = latest_generation_.load();
    while (*gen > seen && !latest_generation_.compare_exchange_weak(seen, *gen)) {
    }
  }
  {
    std::lock_guard<std::mutex> l(snap_mu_);
    if (snap_ && (!gen.ok() || snap_->generation == *gen)) return snap_;
  }
  // Reading the names, and what a move releases (layers whose opens may be under way),
  // is for a thread that may wait. latest_generation_ is raised already, as when a
  // build fails: the thread that builds it settles the move (mount_names.cc).
  if (t_nowait) return nullptr;
  auto refs = store_->ListRefs();
  auto images = store_->ListImages(/*layers=*/false);
  if (!refs.ok() || !images.ok()) {
    std::lock_guard<std::mutex> l(snap_mu_);
    return snap_;  // keep serving the last good names
  }
  std::vector<std::pair<std::string, std::string>> pairs;
  for (auto& [name, rec] : *refs) pairs.emplace_back(name, rec.image_id);
  std::vector<Digest> ids;
  for (auto& img : *images) ids.push_back(img.id);
  struct timespec prev {};
  {
    std::lock_guard<std::mutex> l(snap_mu_);
    if (snap_) prev = snap_->built_at;
  }
  auto built = Snapshot::Build(pairs, ids, *gen, prev);
  std::shared_ptr<const Snapshot> out;
  bool moved = false;
  {
    std::lock_guard<std::mutex> l(snap_mu_);
    moved = snap_ && snap_->generation < built->generation;
    if (!snap_ || snap_->generation < built->generation) snap_ = built;
    out = snap_;
  }
  if (moved) {
    ReleaseRemoved();
    DropCompletedLazy();
    if (invalidator_) {
      for (const StaleName& n : StaleNames(*out)) invalidator_(n);
    }
  }
  return out;
}

Result<std::shared_ptr<const Snapshot>> MountFs::Names() {
  auto snap = CurrentSnapshot();
  if (!snap) return Status::WouldBlock("the store's names moved");
  return snap;
}

void MountFs::CheckGeneration() {
  (void)CurrentSnapshot();
}

void MountFs::DropCompletedLazy() {
  std::vector<std::string> done;
  {
    std::lock_guard<std::mutex> l(views_mu_);
    for (auto it = lazy_layers_.begin(); it != lazy_layers_.end();) {
      if (store_->blobs().Has(it->second)) {
        done.push_back(it->first);
        it = lazy_layers_.erase(it);
      } else {
        ++it;
      }
    }
  }
  if (done.empty()) return;
  store_->ForgetLowerTrees();
  std::lock_guard<std::mutex> rl(release_mu_);
  DropLayers(done);
}

void MountFs::ReleaseRemoved() {
  std::vector<std::string> gone = cache_->UnlinkedPins();
  std::lock_guard<std::mutex> rl(release_mu_);
  // Nothing removed and nothing waiting (the common generation move: a load, a tag):
  // no walk over every view's layers under views_mu_.
  if (gone.empty() && pending_.empty()) return;
  // Set before the counts are read: a KernelForget that brings an instance to 0 after
  // its count was read here sees it and checks again (CheckPending).
  has_pending_.store(true);
  std::map<std::string, std::vector<uint32_t>> pending = std::move(pending_);
  for (const std::string& hex : gone) pending[hex];
  if (!opens_tracked_.load()) {
    // Without opens the kernel may read any inode it still holds: every instance whose
    // view pinned a removed layer watches it.
    std::map<std::string, std::vector<std::string>> layers_of;
    {
      std::lock_guard<std::mutex> l(views_mu_);
      for (const auto& [key, layers] : view_layers_) {
        for (const std::string& hex : layers) {
          if (pending.count(hex)) {
            layers_of.emplace(key, layers);
            break;
          }
        }
      }
    }
    for (auto& [hex, watchers] : pending) watchers.clear();
    uint32_t n = instance_count_.load(std::memory_order_acquire);
    for (uint32_t i = 1; i < n && !layers_of.empty(); i++) {
      const Instance* in = slots_[i].load(std::memory_order_acquire);
      auto it = layers_of.find(ViewKey(in->image, in->layer));
      if (it == layers_of.end()) continue;
      for (const std::string& hex : it->second) {
        auto p = pending.find(hex);
        if (p != pending.end()) p->second.push_back(i);
      }
    }
  }
  pending_ = std::move(pending);
  CheckPendingLocked();
}

void MountFs::CheckPending() {
  std::lock_guard<std::mutex> rl(release_mu_);
  CheckPendingLocked();
}

void MountFs::CheckPendingLocked() {
  std::vector<std::string> release;
  for (auto it = pending_.begin(); it != pending_.end();) {
    bool held = false;
    for (uint32_t i : it->second)
      held = held || slots_[i].load(std::memory_order_acquire)->kernel_refs.load() > 0;
    if (held) {
      ++it;
      continue;
    }
    release.push_back(it->first);
    it = pending_.erase(it);
  }
  has_pending_.store(!pending_.empty());
  if (!release.empty()) DropLayers(release);
}

void MountFs::DropLayers(const std::vector<std::string>& gone) {
  std::set<std::string> gone_set(gone.begin(), gone.end());
  // Trees that use a deleted blob belong to removed images: evict them, so nothing new
  // can be opened through them. Views already handed out, and open files (their
  // FileHandle holds the layer's stream and fd), keep working until they are dropped.
  std::vector<std::shared_ptr<const ImageView>> dropped;  // freed outside the lock
  {
    std::lock_guard<std::mutex> l(views_mu_);
    for (auto it = view_layers_.begin(); it != view_layers_.end();) {
      bool uses = false;
      for (const std::string& hex : it->second) uses = uses || gone_set.count(hex) > 0;
      it = uses ? view_layers_.erase(it) : std::next(it);
    }
    for (auto it = views_.begin(); it != views_.end();) {
      bool uses = false;
      for (const LayerRecord& layer : it->second.view->layers())
        uses = uses || gone_set.count(layer.diff_id.hex()) > 0;
      if (!uses) {
        ++it;
        continue;
      }
      view_bytes_ -= it->second.bytes;
      views_lru_.erase(it->second.lru);
      dropped.push_back(std::move(it->second.view));
      it = views_.erase(it);
    }
  }
  for (const std::string& hex : gone) cache_->Forget(hex);
}

void MountFs::KernelRef(uint64_t ino) {
  const Instance* in = GetInstance(InstOf(ino));
  if (in) in->kernel_refs.fetch_add(1);
}

void MountFs::KernelForget(uint64_t ino, uint64_t n) {
  const Instance* in = GetInstance(InstOf(ino));
  if (!in || n == 0) return;
  // Never below 0: a FORGET for more than was counted (a kernel or libfuse that counts
  // differently, an nlookup past INT64_MAX) must not leave a debt that hides the
  // references handed out later (their layer would be released while the kernel holds
  // them: EIO).
  int64_t had = in->kernel_refs.load();  // >= 0 always
  int64_t left;
  do {
    left = n >= static_cast<uint64_t>(had) ? 0 : had - static_cast<int64_t>(n);
  } while (!in->kernel_refs.compare_exchange_weak(had, left));
  // Only the step to 0 can release something (a pending layer's watchers are rechecked).
  // Forgetting a layer waits for an open of it under way: not on a NoWait thread.
  if (had > 0 && left == 0 && has_pending_.load()) {
    if (t_nowait && background_) return background_([this] { CheckPending(); });
    CheckPending();
  }
}

int64_t MountFs::KernelRefs(uint64_t ino) const {
  const Instance* in = GetInstance(InstOf(ino));
  return in ? in->kernel_refs.load() : 0;
}

Result<std::shared_ptr<const ImageView>> MountFs::View(const Digest& image, bool layer) {
  std::string key = ViewKey(image, layer);
  {
    std::lock_guard<std::mutex> l(views_mu_);
    auto it = views_.find(key);
    if (it != views_.end()) {
      views_lru_.splice(views_lru_.begin(), views_lru_, it->second.lru);
      return it->second.view;
    }
  }
  if (t_nowait) return Status::WouldBlock("a tree to build");
  // Built outside the lock (two threads may build the same tree once each; the second
  // is dropped).
  std::shared_ptr<const ImageView> view;
  if (layer) {  // `.layers/<hex>`: one layer's changeset
    IMGFS_ASSIGN_OR_RETURN(view, ImageView::OpenLayers(*store_, {image}, /*changeset=*/true));
  } else {
    // The layers' blobs and sidecars are opened on the read-ahead thread while this
    // thread builds the tree: the first read inside the image finds them open.
    IMGFS_ASSIGN_OR_RETURN(
        view, ImageView::Open(*store_, image, [this](const std::vector<LayerRecord>& layers) {
          cache_->Warm(layers);
        }));
  }
  // Pin the layers' blobs (no reading) before any file of the image can be opened:
  // its files keep reading even if an `imgfs rmi` in another process removes the
  // blobs later.
  // Each distinct layer once: a manifest may list one layer thousands of times.
  std::vector<std::string> pinned;
  std::vector<std::pair<std::string, Digest>> lazy;
  std::set<std::string_view> seen;
  for (const LayerRecord& lr : view->layers()) {
    if (!seen.insert(lr.diff_id.hex()).second) continue;
    (void)cache_->Pin(lr);
    pinned.push_back(lr.diff_id.hex());
    if (!store_->blobs().Has(lr.blob)) lazy.emplace_back(lr.diff_id.hex(), lr.blob);
  }
  std::unique_lock<std::mutex> l(views_mu_);
  for (auto& [hex, blob] : lazy) lazy_layers_.emplace(hex, blob);
  view_layers_.try_emplace(key, std::move(pinned));
  auto [it, inserted] = views_.try_emplace(key);
  if (!inserted) return it->second.view;
  views_lru_.push_front(key);
  it->second = CachedView{view, view->tree().MemoryBytes(), views_lru_.begin()};
  view_bytes_ += it->second.bytes;
  // Evict the least recently used trees beyond the bound (never the one just built).
  // Operations already holding an evicted view keep it until they return.
  size_t evicted = 0;
  while (view_bytes_ > options_.tree_cache && views_lru_.size() > 1) {
    auto victim = views_.find(views_lru_.back());
    view_bytes_ -= victim->second.bytes;
    views_.erase(victim);
    views_lru_.pop_back();
    evicted++;
  }
  // Trees are built on FUSE threads, each in its own malloc arena, which keeps what an
  // evicted tree freed: hand it back now and then, so the bound holds for RSS too.
  bool trim = evicted && (evictions_ += evicted) >= kTrimEvery;
  if (trim) evictions_ = 0;
  l.unlock();
  if (trim) ::malloc_trim(0);
  return view;
}

Result<std::shared_ptr<const ImageView>> MountFs::NodeView(const Instance* in, uint32_t node) {
  if (!in) return BadInode();
  IMGFS_ASSIGN_OR_RETURN(auto view, View(in->image, in->layer));
  if (!view->tree().Valid(node)) return BadInode();
  return view;
}

Result<uint64_t> MountFs::InstanceFor(const std::string& path, const Digest& image,
                                      uint64_t parent_ino, bool layer) {
  auto key = std::make_pair(path, image.hex());
  {
    std::lock_guard<std::mutex> l(instances_mu_);
    auto it = instance_keys_.find(key);
    if (it != instance_keys_.end()) return Ino(it->second, MergedTree::kRoot);
  }
  // The root's attributes only: no tree is built (and no blob pinned, View does that)
  // to list or stat an image root. A layer view has no root record: its (one-layer)
  // tree is built now.
  TreeRoot root;
  if (layer) {
    IMGFS_ASSIGN_OR_RETURN(auto view, View(image, true));
    root = view->tree().Root();
  } else {
    IMGFS_ASSIGN_OR_RETURN(root, store_->GetTreeRoot(image));
  }
  std::lock_guard<std::mutex> l(instances_mu_);
  auto it = instance_keys_.find(key);
  if (it != instance_keys_.end()) return Ino(it->second, MergedTree::kRoot);
  uint32_t idx = instance_count_.load(std::memory_order_relaxed);
  if (idx >= kMaxInstances) return Status::Exhausted("too many image instances in one mount");
  slots_[idx].store(new Instance{path, image, std::move(root), parent_ino, layer},
                    std::memory_order_release);
  instance_count_.store(idx + 1, std::memory_order_release);
  instance_keys_.emplace(key, idx);
  return Ino(idx, MergedTree::kRoot);
}

const MountFs::Instance* MountFs::GetInstance(uint32_t index) const {
  if (index == 0 || index >= instance_count_.load(std::memory_order_acquire)) return nullptr;
  return slots_[index].load(std::memory_order_acquire);
}

uint32_t MountFs::NameNode(const std::string& path) {
  std::lock_guard<std::mutex> l(names_mu_);
  auto [it, inserted] = name_nodes_.try_emplace(path, static_cast<uint32_t>(name_paths_.size()));
  if (inserted) name_paths_.push_back(path);
  return it->second;
}

Result<std::string> MountFs::NamePath(uint32_t node) const {
  std::lock_guard<std::mutex> l(names_mu_);
  if (node == 0 || node >= name_paths_.size() || node == kIdDirNode || node == kReposJsonNode ||
      node == kLayersDirNode) {
    return BadInode();
  }
  return name_paths_[node];
}

struct stat MountFs::NameDirAttr(uint64_t ino, const Snapshot& snap,
                                 const std::string& path) const {
  struct stat st {};
  st.st_ino = ino;
  st.st_mode = S_IFDIR | 0755;
  st.st_uid = ::geteuid();
  st.st_gid = ::getegid();
  st.st_nlink = 2;
  auto it = snap.dirs.find(path);
  if (it != snap.dirs.end()) {
    st.st_nlink += it->second.size();  // every child is a directory
  }
  if (path.empty()) st.st_nlink += 2;  // .id, .layers
  st.st_size = 0;
  st.st_blksize = 4096;
  st.st_mtim = snap.built_at;
  st.st_atim = st.st_ctim = st.st_mtim;
  return st;
}

MountFs::Entry MountFs::ImageEntry(uint32_t inst, const Instance& in, const ImageView* view,
                                   uint32_t node) const {
  Entry e;
  e.ino = Ino(inst, node);
  if (node == MergedTree::kRoot) {
    ImageView::StatNode(in.root.node, node, &e.attr);
  } else {
    view->Stat(node, &e.attr);
  }
  e.attr.st_ino = e.ino;
  e.entry_timeout = options_.content_timeout;
  e.attr_timeout = options_.content_timeout;
  return e;
}

Result<MountFs::Entry> MountFs::NameChildEntry(const Snapshot& snap, const std::string& dir,
                                               const std::string& name,
                                               const Snapshot::Child& child, uint64_t parent_ino) {
  Entry e;
  if (child.is_image) {
    IMGFS_ASSIGN_OR_RETURN(uint64_t ino, InstanceFor(child.path, child.image, parent_ino));
    e = ImageEntry(InstOf(ino), *GetInstance(InstOf(ino)), nullptr, MergedTree::kRoot);
    // The name may move (then it is invalidated, when watched); the tree never changes.
    // An entry from a snapshot older than the newest generation read (a directory handle
    // opened before a move: open=daemon, a slow or rewound listing; a lookup that raced
    // a move) is settled by HandOut once it is counted.
    e.entry_timeout = options_.names_watched ? options_.content_timeout : options_.name_timeout;
    e.name_root = true;
    e.generation = snap.generation;
    return e;
  }
  e.ino = Ino(0, NameNode(child.path));
  e.attr = NameDirAttr(e.ino, snap, child.path);
  e.entry_timeout = e.attr_timeout = options_.name_timeout;
  return e;
}

Result<MountFs::Entry> MountFs::IdEntry(const Snapshot& snap, std::string_view name) {
  const Digest* id = snap.ResolveId(name);
  if (!id) return NoEntry();
  Snapshot::Child c{true, *id, ".id/" + std::string(name)};
  return NameChildEntry(snap, ".id", std::string(name), c, Ino(0, kIdDirNode));
}

Result<MountFs::Entry> MountFs::LayerDirEntry(std::string_view name) {
  if (name.size() != 64 || !IsLowerHex(name)) return NoEntry();
  IMGFS_ASSIGN_OR_RETURN(Digest d, Digest::FromHex(name));
  IMGFS_ASSIGN_OR_RETURN(auto rec, store_->GetLayer(d));
  if (!rec) return NoEntry();
  IMGFS_ASSIGN_OR_RETURN(uint64_t ino, InstanceFor(".layers/" + std::string(name), d,
                                                   Ino(0, kLayersDirNode), /*layer=*/true));
  Entry e = ImageEntry(InstOf(ino), *GetInstance(InstOf(ino)), nullptr, MergedTree::kRoot);
  e.entry_timeout = options_.name_timeout;  // the layer may be removed
  e.name_root = true;                       // reported once per hand-out when removed
  return e;
}

Result<std::shared_ptr<const std::vector<std::string>>> MountFs::LayerHexes(const Snapshot& snap) {
  {
    std::lock_guard<std::mutex> l(layer_hexes_mu_);
    if (layer_hexes_ && layer_hexes_gen_ == snap.generation) return layer_hexes_;
  }
  IMGFS_ASSIGN_OR_RETURN(auto images, store_->ListImages());
  std::set<std::string> hexes;
  for (const ImageRecord& img : images)
    for (const Digest& d : img.diff_ids) hexes.insert(d.hex());
  auto out = std::make_shared<const std::vector<std::string>>(hexes.begin(), hexes.end());
  std::lock_guard<std::mutex> l(layer_hexes_mu_);
  layer_hexes_gen_ = snap.generation;
  layer_hexes_ = out;
  return out;
}

Result<MountFs::Entry> MountFs::Lookup(uint64_t parent, std::string_view name) {
  uint32_t inst = InstOf(parent), node = NodeOf(parent);
  if (inst == 0) {
    IMGFS_ASSIGN_OR_RETURN(auto snap, Names());
    if (node == kIdDirNode) return IdEntry(*snap, name);
    if (node == kLayersDirNode) return LayerDirEntry(name);
    if (node == kReposJsonNode) return Status::Io("not a directory", ENOTDIR);
    IMGFS_ASSIGN_OR_RETURN(std::string path, NamePath(node));
    if (path.empty() && name == ".id") {
      Entry e;
      e.ino = Ino(0, kIdDirNode);
      e.attr = NameDirAttr(e.ino, *snap, ".id");
      e.entry_timeout = e.attr_timeout = options_.name_timeout;
      return e;
    }
    if (path.empty() && name == ".layers") {
      Entry e;
      e.ino = Ino(0, kLayersDirNode);
      e.attr = NameDirAttr(e.ino, *snap, ".layers");
      e.entry_timeout = e.attr_timeout = options_.name_timeout;
      return e;
    }
    if (path.empty() && name == ".repositories.json") {
      IMGFS_ASSIGN_OR_RETURN(Attr a, GetAttr(Ino(0, kReposJsonNode)));
      Entry e;
      e.ino = Ino(0, kReposJsonNode);
      e.attr = a.attr;
      e.entry_timeout = e.attr_timeout = options_.name_timeout;
      return e;
    }
    auto dir = snap->dirs.find(path);
    if (dir == snap->dirs.end()) return NoEntry();
    auto child = dir->second.find(std::string(name));
    if (child == dir->second.end()) return NoEntry();
    return NameChildEntry(*snap, path, std::string(name), child->second, parent);
  }
  const Instance* in = GetInstance(inst);
  IMGFS_ASSIGN_OR_RETURN(auto view, NodeView(in, node));
  if (!S_ISDIR(view->tree().node(node).mode)) return Status::Io("not a directory", ENOTDIR);
  uint32_t child = view->tree().Lookup(node, name);
  if (child == 0) {
    Entry neg;  // ino 0: the kernel caches the miss; image content never changes
    neg.entry_timeout = options_.content_timeout;
    return neg;
  }
  return ImageEntry(inst, *in, view.get(), child);
}

Result<MountFs::Attr> MountFs::GetAttr(uint64_t ino) {
  uint32_t inst = InstOf(ino), node = NodeOf(ino);
  Attr a;
  if (inst == 0) {
    IMGFS_ASSIGN_OR_RETURN(auto snap, Names());
    a.timeout = options_.name_timeout;
    if (node == kIdDirNode || node == kLayersDirNode) {
      a.attr = NameDirAttr(ino, *snap, node == kIdDirNode ? ".id" : ".layers");
      return a;
    }
    if (node == kReposJsonNode) {
      a.attr.st_ino = ino;
      a.attr.st_mode = S_IFREG | 0444;
      a.attr.st_nlink = 1;
      a.attr.st_uid = ::geteuid();
      a.attr.st_gid = ::getegid();
      a.attr.st_size = static_cast<off_t>(snap->repositories_json.size());
      a.attr.st_blocks = (a.attr.st_size + 511) / 512;
      a.attr.st_mtim = snap->built_at;
      a.attr.st_atim = a.attr.st_ctim = a.attr.st_mtim;
      return a;
    }
    IMGFS_ASSIGN_OR_RETURN(std::string path, NamePath(node));
    a.attr = NameDirAttr(ino, *snap, path);
    return a;
  }
  const Instance* in = GetInstance(inst);
  if (in && node == MergedTree::kRoot) {
    ImageView::StatNode(in->root.node, node, &a.attr);
  } else {
    IMGFS_ASSIGN_OR_RETURN(auto view, NodeView(in, node));
    view->Stat(node, &a.attr);
  }
  a.attr.st_ino = ino;
  a.timeout = options_.content_timeout;
  return a;
}

Result<std::string> MountFs::ReadLink(uint64_t ino) {
  IMGFS_ASSIGN_OR_RETURN(auto view, NodeView(GetInstance(InstOf(ino)), NodeOf(ino)));
  if (!S_ISLNK(view->tree().node(NodeOf(ino)).mode))
    return Status::InvalidArgument("not a symbolic link");
  return std::string(view->tree().LinkTarget(NodeOf(ino)));
}

Result<MountFs::Opened> MountFs::OpenDir(uint64_t ino) {
  Opened o;
  if (InstOf(ino) == 0) {
    if (NodeOf(ino) == kReposJsonNode) return Status::Io("not a directory", ENOTDIR);
    IMGFS_ASSIGN_OR_RETURN(auto snap, Names());
    o.fh = reinterpret_cast<uint64_t>(new DirHandle{std::move(snap)});
    return o;
  }
  const Instance* in = GetInstance(InstOf(ino));
  if (!in || NodeOf(ino) != MergedTree::kRoot) {  // an image root is a directory
    IMGFS_ASSIGN_OR_RETURN(auto view, NodeView(in, NodeOf(ino)));
    if (!S_ISDIR(view->tree().node(NodeOf(ino)).mode))
      return Status::Io("not a directory", ENOTDIR);
  }
  o.cache_readdir = true;
  o.keep_cache = true;
  return o;
}

void MountFs::ReleaseDir(uint64_t fh) {
  delete reinterpret_cast<DirHandle*>(fh);
}

Status MountFs::ReadDir(uint64_t ino, uint64_t fh, uint64_t offset, bool plus,
                        const std::function<bool(const DirEntry&, uint64_t)>& emit) {
  uint32_t inst = InstOf(ino), node = NodeOf(ino);
  auto dot = [&](const char* name, uint64_t target, uint32_t mode) {
    DirEntry d;
    d.name = name;
    d.entry.ino = target;
    d.entry.attr.st_ino = target;
    d.entry.attr.st_mode = mode;
    return d;
  };
  if (inst == 0) {
    std::shared_ptr<const Snapshot> snap;
    if (fh) {
      snap = reinterpret_cast<DirHandle*>(fh)->snap;
    } else {
      IMGFS_ASSIGN_OR_RETURN(snap, Names());
    }
    // Entries are made from `offset` on and only until the reply is full: a listing of
    // N names takes about N/25 calls, and no call may cost N (10,000 tags: ~400 calls).
    std::vector<DirEntry> head;  // ".", "..", and at the root .id, .layers, .repositories.json
    head.push_back(dot(".", ino, S_IFDIR));
    head.push_back(dot("..", kRootIno, S_IFDIR));
    std::string path;
    if (node != kIdDirNode && node != kLayersDirNode) {
      IMGFS_ASSIGN_OR_RETURN(path, NamePath(node));
      if (path.empty()) {
        IMGFS_ASSIGN_OR_RETURN(Entry id, Lookup(kRootIno, ".id"));
        head.push_back(DirEntry{".id", id});
        IMGFS_ASSIGN_OR_RETURN(Entry layers, Lookup(kRootIno, ".layers"));
        head.push_back(DirEntry{".layers", layers});
        IMGFS_ASSIGN_OR_RETURN(Entry js, Lookup(kRootIno, ".repositories.json"));
        head.push_back(DirEntry{".repositories.json", js});
      }
    }
    for (uint64_t i = offset; i < head.size(); i++) {
      if (!emit(head[i], i + 1)) return Status::Ok();
    }
    // Child k is entry head.size() + k, emitted with the offset of the one after it.
    const uint64_t first = offset > head.size() ? offset - head.size() : 0;
    const uint64_t base = head.size() + 1;
    if (node == kIdDirNode) {
      for (uint64_t k = first; k < snap->images.size(); k++) {
        std::string hex = snap->images[k].hex();
        IMGFS_ASSIGN_OR_RETURN(Entry e, IdEntry(*snap, hex));
        if (!emit(DirEntry{std::move(hex), e}, base + k)) break;
      }
    } else if (node == kLayersDirNode) {
      IMGFS_ASSIGN_OR_RETURN(auto hexes, LayerHexes(*snap));
      for (uint64_t k = first; k < hexes->size(); k++) {
        auto e = LayerDirEntry((*hexes)[k]);
        if (!e.ok() && IsWouldBlock(e.status())) return e.status();
        if (!e.ok()) continue;  // a layer removed meanwhile is left out
        if (!emit(DirEntry{(*hexes)[k], *e}, base + k)) break;
      }
    } else if (auto dir = snap->dirs.find(path); dir != snap->dirs.end()) {
      const auto& children = dir->second;
      if (first < children.size()) {
        auto it = std::next(children.begin(), static_cast<std::ptrdiff_t>(first));
        for (uint64_t k = first; it != children.end(); ++it, ++k) {
          IMGFS_ASSIGN_OR_RETURN(Entry e, NameChildEntry(*snap, path, it->first, it->second, ino));
          if (!emit(DirEntry{it->first, e}, base + k)) break;
        }
      }
    }
    return Status::Ok();
  }
  const Instance* in = GetInstance(inst);
  IMGFS_ASSIGN_OR_RETURN(auto view, NodeView(in, node));
  const MergedTree& t = view->tree();
  if (!S_ISDIR(t.node(node).mode)) return Status::Io("not a directory", ENOTDIR);
  const TreeDirent* d = t.ChildrenBegin(node);
  if (offset == 0) {  // before any entry: a WouldBlock here has had no effect
    bool first;
    {
      std::lock_guard<std::mutex> l(listed_mu_);
      // Bounded (~3 MiB): when full it starts over, so a directory listed again after
      // kListedMax others may queue its files once more (spans cached are skipped).
      if (listed_.size() >= kListedMax) listed_.clear();
      first = listed_.insert(ino).second;
    }
    if (first) {
      Status st = PrefetchFiles(*view, d, t.ChildCount(node));
      if (IsWouldBlock(st)) {
        std::lock_guard<std::mutex> l(listed_mu_);
        listed_.erase(ino);
        return st;
      }
    }
  }
  if (offset == 0 && !emit(dot(".", ino, S_IFDIR), 1)) return Status::Ok();
  if (offset <= 1) {
    uint64_t parent = node == MergedTree::kRoot ? in->parent_ino : Ino(inst, t.node(node).parent);
    if (!emit(dot("..", parent, S_IFDIR), 2)) return Status::Ok();
  }
  for (uint64_t i = offset > 2 ? offset - 2 : 0; i < t.ChildCount(node); i++) {
    DirEntry e;
    e.name = std::string(t.Name(d[i]));
    if (plus) {
      e.entry = ImageEntry(inst, *in, view.get(), d[i].node);
    } else {
      e.entry.ino = Ino(inst, d[i].node);
      e.entry.attr.st_ino = e.entry.ino;
      e.entry.attr.st_mode = t.node(d[i].node).mode;
    }
    if (!emit(e, i + 3)) break;
  }
  return Status::Ok();
}

// A directory is being listed: its files are likely read next (grep -r, find, tar).
// Queue their spans for read-ahead, in tar order (LayerReader::Prefetch). Only layers
// read through a seek index are read ahead, and none is opened the long way here (a
// sidecar built, a layer unpacked), nor waited for while another thread does that:
// that is the first read's (LayerReader::StreamForPrefetch).
Status MountFs::PrefetchFiles(const ImageView& view, const TreeDirent* d, uint32_t count) {
  if (!cache_->prefetch_on()) return Status::Ok();
  const MergedTree& t = view.tree();
  std::vector<const TreeNode*> files;
  for (uint32_t i = 0; i < count; i++) {
    const TreeNode& n = t.node(d[i].node);
    if (S_ISREG(n.mode) && n.size > 0 && n.layer < view.layers().size()) files.push_back(&n);
  }
  if (files.empty()) return Status::Ok();
  std::sort(files.begin(), files.end(), [](const TreeNode* a, const TreeNode* b) {
    return a->layer != b->layer ? a->layer < b->layer : a->data_offset < b->data_offset;
  });
  // The streams first: on a NoWait thread a layer not open yet is a WouldBlock before
  // anything is queued.
  std::vector<std::shared_ptr<const LayerReader::Stream>> streams;
  for (size_t k = 0; k < files.size(); k++) {
    if (k > 0 && files[k]->layer == files[k - 1]->layer) continue;
    bool busy = false;
    streams.push_back(
        cache_->StreamForPrefetch(view.layers()[files[k]->layer], /*wait=*/!t_nowait, &busy));
    if (busy) return Status::WouldBlock("a layer to open for read-ahead, or being opened");
  }
  size_t at = 0;
  for (size_t k = 0; k < files.size(); k++) {
    if (k > 0 && files[k]->layer != files[k - 1]->layer) at++;
    const std::shared_ptr<const LayerReader::Stream>& s = streams[at];
    if (s && !cache_->Prefetch(s, files[k]->data_offset, files[k]->size)) break;  // full or off
  }
  return Status::Ok();
}

Result<MountFs::FileHandle> MountFs::FileAt(uint64_t ino, bool open) {
  FileHandle h;
  if (InstOf(ino) == 0) {
    if (NodeOf(ino) != kReposJsonNode) return Status::Io("is a directory", EISDIR);
    h.is_bytes = true;
    IMGFS_ASSIGN_OR_RETURN(auto snap, Names());
    h.bytes = snap->repositories_json;
    return h;
  }
  IMGFS_ASSIGN_OR_RETURN(auto view, NodeView(GetInstance(InstOf(ino)), NodeOf(ino)));
  const TreeNode& n = view->tree().node(NodeOf(ino));
  if (S_ISDIR(n.mode)) return Status::Io("is a directory", EISDIR);
  if (!S_ISREG(n.mode)) return Status::Io("not a regular file", ENXIO);
  h.base = n.data_offset;
  h.size = n.size;
  if (n.size > 0) {
    if (open) {
      IMGFS_ASSIGN_OR_RETURN(h.stream, cache_->Open(view->layers()[n.layer]));
    } else {
      h.stream = cache_->OpenedStream(view->layers()[n.layer]);  // null: not open yet
    }
    if (h.stream) h.fd = h.stream->fd();
  }
  return h;
}

Result<MountFs::Opened> MountFs::Open(uint64_t ino, int flags) {
  if ((flags & O_ACCMODE) != O_RDONLY || (flags & O_TRUNC)) {
    return Status::Io("read-only file system", EROFS);
  }
  // The layer's stream is pinned while the file is open: it keeps reading even if its
  // image is removed.
  IMGFS_ASSIGN_OR_RETURN(FileHandle h, FileAt(ino));
  Opened o;
  o.direct_io = h.is_bytes;  // .repositories.json changes with the names
  o.keep_cache = !h.is_bytes;
  o.fh = reinterpret_cast<uint64_t>(new FileHandle(std::move(h)));
  return o;
}

Result<MountFs::ReadData> MountFs::Read(uint64_t ino, uint64_t fh, size_t size, uint64_t offset) {
  return *ReadFrom(ino, fh, size, offset, /*wait=*/true);
}

std::optional<Result<MountFs::ReadData>> MountFs::ReadIfReady(uint64_t ino, uint64_t fh,
                                                              size_t size, uint64_t offset) {
  return ReadFrom(ino, fh, size, offset, /*wait=*/false);
}

std::optional<Result<MountFs::ReadData>> MountFs::ReadFrom(uint64_t ino, uint64_t fh, size_t size,
                                                           uint64_t offset, bool wait) {
  const FileHandle* h = reinterpret_cast<const FileHandle*>(fh);
  FileHandle resolved;
  if (!h) {
    // No open was sent (the kernel's no-open mode): resolve from the inode.
    Result<FileHandle> r = FileAt(ino, /*open=*/wait);
    if (!r.ok() && !wait && IsWouldBlock(r.status())) return std::nullopt;
    if (!r.ok()) return Result<ReadData>(r.status());
    resolved = std::move(*r);
    h = &resolved;
  }
  ReadData r;
  if (h->is_bytes) {
    if (offset < h->bytes.size()) r.bytes = h->bytes.substr(offset, size);
    return Result<ReadData>(std::move(r));
  }
  if (offset >= h->size) return Result<ReadData>(std::move(r));
  if (!h->stream && !wait) return std::nullopt;  // not open yet (FileAt without open)
  if (h->stream && !h->fd) {
    // An indexed layer: the decoded span(s), copied out of the span cache.
    r.bytes.resize(static_cast<size_t>(std::min<uint64_t>(size, h->size - offset)));
    size_t got;
    if (wait) {
      Result<size_t> n =
          h->stream->Read(r.bytes.data(), r.bytes.size(), h->base + offset, h->base + h->size);
      if (!n.ok()) return Result<ReadData>(n.status());
      got = *n;
    } else {
      std::optional<size_t> n =
          h->stream->ReadCached(r.bytes.data(), r.bytes.size(), h->base + offset);
      if (!n) return std::nullopt;
      got = *n;
    }
    r.bytes.resize(got);
    return Result<ReadData>(std::move(r));
  }
  if (!wait) return std::nullopt;  // a file's pages: the splice may wait on the disk
  r.fd = h->fd;
  r.pos = static_cast<off_t>(h->base + offset);
  r.size = static_cast<size_t>(std::min<uint64_t>(size, h->size - offset));
  return Result<ReadData>(std::move(r));
}

void MountFs::Release(uint64_t fh) {
  delete reinterpret_cast<FileHandle*>(fh);
}

namespace {

// What a file without the xattr `name` answers. An absent SELinux label is "not
// supported" (ENOTSUP), not "no such attribute" (ENODATA): the daemon is only asked
// for it when no security module keeps labels in the kernel, and `ls -l` (coreutils'
// getfilecon_cache) then stops asking for the rest of the mount, where ENODATA made it
// ask once for every file it lists, a request the kernel never caches (issue 12).
// A label an image does carry is still served. The same for an absent POSIX ACL when
// the kernel does not enforce ACLs (Options::acl false, `-o acl=off`): ls then stops
// asking for ACLs too, where it asked the daemon once or twice for every file (the
// kernel caches an absent ACL only when it enforces ACLs, and it learns of the absence
// only by asking: 20,000 requests for a cold `ls -l` of 10,000 image roots).
Status NoAttribute(std::string_view name, bool acl) {
  if (name == "security.selinux") return Status::Unsupported("no SELinux label");
  if (!acl && (name == "system.posix_acl_access" || name == "system.posix_acl_default"))
    return Status::Unsupported("no POSIX ACL");
  return Status::NotFound("no such attribute");
}

}  // namespace

Result<std::string> MountFs::GetXattr(uint64_t ino, std::string_view name) {
  if (InstOf(ino) == 0) return NoAttribute(name, options_.acl);
  const Instance* in = GetInstance(InstOf(ino));
  if (in && NodeOf(ino) == MergedTree::kRoot) {  // from the root record: no tree
    for (const auto& [n, v] : in->root.xattrs)
      if (n == name) return v;
    return NoAttribute(name, options_.acl);
  }
  IMGFS_ASSIGN_OR_RETURN(auto view, NodeView(in, NodeOf(ino)));
  const MergedTree& t = view->tree();
  const TreeNode& n = t.node(NodeOf(ino));
  for (uint32_t i = 0; i < n.xattr_count; i++) {
    const TreeXattr& x = t.XattrsBegin(NodeOf(ino))[i];
    if (t.XattrName(x) == name) return std::string(t.XattrValue(x));
  }
  return NoAttribute(name, options_.acl);
}

Result<std::string> MountFs::ListXattr(uint64_t ino) {
  if (InstOf(ino) == 0) return std::string();
  const Instance* in = GetInstance(InstOf(ino));
  std::string out;
  if (in && NodeOf(ino) == MergedTree::kRoot) {  // from the root record: no tree
    for (const auto& [n, v] : in->root.xattrs) {
      out.append(n);
      out.push_back('\0');
    }
    return out;
  }
  IMGFS_ASSIGN_OR_RETURN(auto view, NodeView(in, NodeOf(ino)));
  const MergedTree& t = view->tree();
  const TreeNode& n = t.node(NodeOf(ino));
  for (uint32_t i = 0; i < n.xattr_count; i++) {
    out.append(t.XattrName(t.XattrsBegin(NodeOf(ino))[i]));
    out.push_back('\0');
  }
  return out;
}

Result<struct statvfs> MountFs::StatFs() {
  struct statvfs s {};
  if (::statvfs(options_.root.c_str(), &s) != 0)
    return Status::FromErrno("statvfs " + options_.root);
  s.f_bfree = s.f_bavail = 0;  // read-only: nothing is free for writing
  s.f_ffree = s.f_favail = 0;
  s.f_namemax = 255;
  s.f_flag |= ST_RDONLY;
  return s;
}

size_t MountFs::TreeBytes() const {
  std::lock_guard<std::mutex> l(const_cast<std::mutex&>(views_mu_));
  return view_bytes_;
}

size_t MountFs::TreeCount() const {
  std::lock_guard<std::mutex> l(const_cast<std::mutex&>(views_mu_));
  return views_.size();
}

}  // namespace imgfs
