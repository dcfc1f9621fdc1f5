// The mounted filesystem as plain C++: every FUSE operation imgfs answers, returning
// values instead of replying, so it can be tested without a mount. fs/fuse_adapter.cc
// is the only code that speaks FUSE; it decodes a request, calls one method here and
// encodes one reply.
//
// The namespace (DESIGN.md §3):
//
//   /                         name directories: familiar repository paths
//   /ubuntu/16.04/            a tag: the merged root of its image (an image instance)
//   /ubuntu/sha256:<hex>/     a repo digest
//   /.id/<image id>/          by image ID; a unique prefix of 12+ hex digits resolves
//   /.repositories.json       name → image ID, in docker's repositories.json format
//   /.layers/<diff_id hex>/   one layer's own changeset, as an overlay upper directory
//                             shows it (index/changeset.h): whiteouts are 0/0 character
//                             devices, opaque directories have trusted.overlay.opaque=y
//
// A tag shadows a same-named sub-repository. Names come from a Snapshot of the store's
// refs, rebuilt when the store's generation counter moves (checked on every name
// operation: one short LMDB read transaction).
//
// Inode numbers: ino = instance << 32 | node.
//   - instance 0 is the namespace: node 1 the mount root (FUSE_ROOT_ID), 2 `.id`,
//     3 `.repositories.json`, 4 `.layers`, 5+ name directories, numbered by path on first sight and
//     never reused while mounted.
//   - instance k ≥ 1 is one (name path, image ID) pair: the image's merged tree shown
//     under that name, node = the tree's dense node number (root = 1). One merged tree
//     per image ID is shared by all its instances; each name gets its own
//     instance because the kernel cannot have one directory inode under two parents.
//     When a name moves to another image, it gets a new instance: the kernel sees a
//     new inode, while files already open keep reading the old one.
//     A layer view (`.layers/<hex>`) is an instance too, its tree built from the
//     layer's entry table on first lookup (View with layer = true).
//   Every incoming inode is bounds-checked on both parts.
//
// Trees (issue 12): an instance holds its image root's attributes and xattrs (the
// store's root record), so listing name directories, `.id/` and `.repositories.json`,
// and stat of image roots, never build a tree. A tree is built (Store::GetTree) on the
// first lookup or readdir inside an image and kept in an LRU cache bounded by
// Options::tree_cache bytes (`-o tree_cache=`); an evicted tree is rebuilt when needed
// again, with the same node numbers (the build is deterministic), so inode numbers the
// kernel holds stay valid.
//
// Caching: image content never changes, so its entries and attributes get very long
// timeouts, negative lookups are cached, files open with keep_cache and directories
// with cache_readdir. Name directories get short timeouts; so do the dentries of image
// roots (names can move) unless the names are watched (Options::names_watched: the
// adapter checks the generation every 100 ms and invalidates moved and removed names
// in the kernel), then they are cached like content. Name directories' mtime moves with every
// generation (nanoseconds, strictly increasing) so the kernel drops their cached listings. With the
// kernel's no-open/no-opendir support the adapter sends no open at all: Read and ReadDir then get
// fh 0 and resolve everything from the inode.
//
// Thread-safety: every method may be called concurrently. Instances are an append-only
// array read without locks; the snapshot is swapped under a mutex and read through a
// shared_ptr; image trees are immutable; the unpack cache synchronises itself.
#ifndef IMGFS_FS_MOUNT_FS_H_
#define IMGFS_FS_MOUNT_FS_H_

#include <sys/stat.h>
#include <sys/statvfs.h>

#include <atomic>
#include <functional>
#include <list>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "fs/image_view.h"
#include "fs/span_cache.h"
#include "index/store.h"

namespace imgfs {

// The names of a store at one generation. Immutable once built.
struct Snapshot {
  struct Child {
    bool is_image = false;
    Digest image;      // is_image
    std::string path;  // the child's full path in the namespace ("ubuntu/16.04")
  };
  uint64_t generation = 0;
  struct timespec built_at {};  // the name directories' mtime: moves with every generation
  std::map<std::string, std::map<std::string, Child>> dirs;  // dir path ("" = root) → children
  std::vector<Digest> images;                                // every image, for .id/
  std::string repositories_json;

  // The image a `.id/` name resolves to: a unique prefix of 12 to 64 hex digits; null
  // for none.
  const Digest* ResolveId(std::string_view prefix) const;
  // Whether the name at `path` ("ubuntu/16.04", ".id/<prefix>") shows `image`.
  bool Shows(const std::string& path, const Digest& image) const;

  // Builds the namespace from (canonical reference, image id hex) pairs.
  static std::shared_ptr<const Snapshot> Build(
      const std::vector<std::pair<std::string, std::string>>& refs,
      const std::vector<Digest>& images, uint64_t generation,
      const struct timespec& not_before = {});
};

class MountFs {
 public:
  static constexpr uint64_t kRootIno = 1;  // FUSE_ROOT_ID
  static constexpr uint32_t kIdDirNode = 2;
  static constexpr uint32_t kReposJsonNode = 3;
  static constexpr uint32_t kLayersDirNode = 4;

  struct Options {
    std::string root;  // the store
    // Span cache budget in bytes (0 = 64 MiB) and, for layers read whole, the unpack
    // cache limit (0 = unlimited).
    uint64_t cache_size = 0;
    uint64_t tree_cache = uint64_t{64} << 20;  // bytes of built trees kept (≥ 1 tree)
    double name_timeout = 0.5;
    double content_timeout = 86400.0 * 365;
    // A thread calls CheckGeneration every moment and the invalidator is set (the
    // adapter): the dentries of image roots under names (tags, digests, `.id/`
    // prefixes) then get content_timeout too, since a moved or removed name is
    // invalidated in the kernel as soon as the store changes. Otherwise name_timeout.
    bool names_watched = false;
    bool whole_layers = false;  // ignore seek indexes: unpack compressed layers whole
    bool readahead = true;      // LayerReader::Prefetch and Warm (-o readahead)
    // The kernel enforces images' POSIX ACLs (the adapter asks for FUSE_POSIX_ACL).
    // false (-o acl=off): an absent ACL is ENOTSUP (GetXattr), ACLs present are served.
    bool acl = true;
  };
  struct Entry {
    uint64_t ino = 0;  // 0: negative entry (cache the miss)
    struct stat attr {};
    double entry_timeout = 0;
    double attr_timeout = 0;
    // An image root under a name (a tag, a digest, `.id/<prefix>`, `.layers/<hex>`): the
    // adapter hands it to the kernel with HandOut, which may still shorten entry_timeout.
    bool name_root = false;
    uint64_t generation = 0;  // name_root: the generation of the snapshot it was built from
  };
  struct Attr {
    struct stat attr {};
    double timeout = 0;
  };
  struct DirEntry {
    std::string name;
    Entry entry;  // attr.st_mode and ino always set; full attrs for readdirplus
  };
  struct Opened {
    uint64_t fh = 0;
    bool keep_cache = false;
    bool direct_io = false;
    bool cache_readdir = false;
  };
  // Content for a read: a region of a file (spliced by the adapter) or bytes.
  struct ReadData {
    std::shared_ptr<UniqueFd> fd;
    off_t pos = 0;
    size_t size = 0;
    std::string bytes;  // used when fd is null
  };

  static Result<std::unique_ptr<MountFs>> Create(const Options& options);
  ~MountFs();

  // The thread of the mount's session loop (fs/fuse_loop.h) answers requests one at a
  // time and must never wait: not for a tree to be built, new names to be read, or a
  // layer that another thread is opening (a seek index build or a whole-layer unpack
  // holds the layer for seconds). While a NoWait(true) lives on a thread, an operation
  // there that would wait for any of these returns a WouldBlock status (IsWouldBlock)
  // before it has any effect, and the adapter runs the request again on a pool thread;
  // KernelForget there hands the release of removed layers to the background runner.
  // NoWait(false) lifts it for a scope (a deferred request run on the same thread).
  class NoWait {
   public:
    explicit NoWait(bool on = true);
    ~NoWait();
    NoWait(const NoWait&) = delete;
    NoWait& operator=(const NoWait&) = delete;

   private:
    bool was_;
  };
  static bool IsWouldBlock(const Status& st) { return st.code() == Status::Code::kWouldBlock; }
  // Where work found on a NoWait thread that no reply waits for goes (the adapter: its
  // pool). Set before the first request; without one it runs in place.
  void set_background(std::function<void(std::function<void()>)> run) {
    background_ = std::move(run);
  }

  Result<Entry> Lookup(uint64_t parent, std::string_view name);
  Result<Attr> GetAttr(uint64_t ino);
  Result<std::string> ReadLink(uint64_t ino);
  Result<Opened> OpenDir(uint64_t ino);
  // Calls emit(entry, next_offset) for entries from `offset` until it returns false.
  Status ReadDir(uint64_t ino, uint64_t fh, uint64_t offset, bool plus,
                 const std::function<bool(const DirEntry&, uint64_t)>& emit);
  void ReleaseDir(uint64_t fh);
  Result<Opened> Open(uint64_t ino, int flags);
  Result<ReadData> Read(uint64_t ino, uint64_t fh, size_t size, uint64_t offset);
  // Read, when it can answer without waiting: generated bytes, or decoded spans already
  // in the cache of a layer already open. nullopt: call Read, where waiting is fine (a
  // decode, a fetch, a layer's first open, a blob file's pages). The mount's loop thread
  // answers most reads of a read-ahead directory this way (fs/fuse_loop.h).
  std::optional<Result<ReadData>> ReadIfReady(uint64_t ino, uint64_t fh, size_t size,
                                              uint64_t offset);
  void Release(uint64_t fh);
  // An xattr's value; NotFound maps to ENODATA in the adapter. An absent
  // security.selinux is Unsupported (ENOTSUP), so `ls -l` stops asking for it.
  Result<std::string> GetXattr(uint64_t ino, std::string_view name);
  Result<std::string> ListXattr(uint64_t ino);  // NUL-separated names
  Result<struct statvfs> StatFs();

  // Whether every reader of a file holds an Open'ed handle (no kernel no-open mode). Then
  // the pins of removed layers are dropped at once (ReleaseRemoved): open files keep
  // their own. Otherwise (open=kernel) a removed layer's pin is dropped once the kernel
  // holds no inode of any instance that uses it (KernelRef/KernelForget).
  void set_opens_tracked(bool tracked) { opens_tracked_.store(tracked); }
  // Names the kernel may still hold an image instance under although the store no
  // longer shows it there: the image was removed or the name moved to another image (a
  // `.layers/<hex>` view: the layer was removed). When the generation moves, the
  // invalidator gets (parent inode, name) for each such name whose instance the kernel
  // holds (KernelRef). The adapter sends FUSE_NOTIFY_INVAL_ENTRY for them from a thread
  // of its own (never from a request: the kernel may hold the directory's lock for
  // it), so the kernel drops those dentries and, for the inodes nothing else holds,
  // sends FORGETs at once: a removed layer's pin is then let go without waiting for
  // memory pressure (ReleaseRemoved), and a moved name shows its new image at once.
  // Called outside every lock of this class; it must not block.
  struct StaleName {
    uint64_t parent = 0;
    std::string name;
  };
  void set_invalidator(std::function<void(const StaleName&)> f) { invalidator_ = std::move(f); }
  // Reads the store's generation and, when it moved, does what a name operation would
  // do: new names, released layers, stale names to the invalidator. For a watcher
  // thread. A reply built from the names before a move that reaches the kernel after
  // the move's check is HandOut's to settle: no name is reported twice for one move.
  void CheckGeneration();
  // The kernel's references to inodes (its nlookup counts), summed per instance: the
  // adapter calls KernelRef for every inode it hands the kernel (a lookup reply, a
  // readdirplus entry other than . and ..) before replying, and KernelForget for
  // FORGET (and for a reply that failed). Namespace inodes (instance 0) are not counted;
  // a count never goes below 0 (a FORGET for more, or for an unknown inode, is ignored
  // beyond that).
  void KernelRef(uint64_t ino);
  void KernelForget(uint64_t ino, uint64_t n);
  // KernelRef for an entry about to be sent to the kernel (a lookup reply, a readdirplus
  // entry), called before it is encoded. For an image root under a name it also marks
  // the instance handed out (StaleNames reports a moved instance once per hand-out)
  // and, when the entry came from a snapshot older than the newest generation the
  // mount has read and the name no longer shows that image, gives it the name timeout:
  // the move's StaleNames may have run before this count existed. Two atomic
  // operations and a load for a name root, nothing more for image content (the
  // ordering argument is in mount_names.cc).
  void HandOut(Entry* e);
  // The kernel's references to the inodes of ino's instance (tests).
  int64_t KernelRefs(uint64_t ino) const;

  UnpackCache& unpack_cache() { return cache_->unpack_cache(); }
  LayerReader& layer_reader() { return *cache_; }
  // The store the mount serves (the daemon's background completion writes through it:
  // one LMDB environment per process).
  Store& store() { return *store_; }
  size_t InstanceCount() const { return instance_count_.load(std::memory_order_acquire); }
  // Bytes held by loaded image trees, and how many trees are loaded.
  size_t TreeBytes() const;
  size_t TreeCount() const;

 private:
  struct Instance {
    std::string path;  // the name showing it: "ubuntu/16.04", ".id/<prefix>"
    Digest image;
    TreeRoot root;  // the image root's attributes: no tree needed to stat or list it
    uint64_t parent_ino = kRootIno;
    bool layer = false;  // a `.layers/<hex>` view: `image` is the layer's diff_id
    mutable std::atomic<int64_t> kernel_refs{0};  // see KernelRef
    // Handed to the kernel under its name (HandOut) since StaleNames last reported it.
    mutable std::atomic<bool> handed{false};
  };
  static std::string ViewKey(const Digest& image, bool layer) {
    return (layer ? "layer:" : "") + image.hex();
  }
  struct FileHandle;
  struct DirHandle;
  // A regular file (or .repositories.json) with its layer's stream, for Open and for
  // reads without an open (no-open mode) alike.
  // open=false: a layer's stream only if it is open already (else h.stream is null).
  Result<FileHandle> FileAt(uint64_t ino, bool open = true);
  // Read and ReadIfReady: wait=false answers nullopt where Read would wait.
  std::optional<Result<ReadData>> ReadFrom(uint64_t ino, uint64_t fh, size_t size, uint64_t offset,
                                           bool wait);
  // WouldBlock on a NoWait thread when a layer is not open yet (or being opened).
  Status PrefetchFiles(const ImageView& view, const TreeDirent* d, uint32_t count);

  MountFs() = default;
  // Null only on a NoWait thread, when the store's names moved (the build waits).
  std::shared_ptr<const Snapshot> CurrentSnapshot();
  Result<std::shared_ptr<const Snapshot>> Names();  // CurrentSnapshot, null as WouldBlock
  // Called when the generation moved: finds the layers whose pinned blob was deleted
  // from the store and releases them (DropLayers) unless, without tracked opens, an
  // instance that uses one is still held by the kernel; those wait in pending_ until
  // the last such instance is forgotten (CheckPending).
  void ReleaseRemoved();
  // The names of held instances that `snap` no longer shows (set_invalidator), each
  // once per hand-out (Instance::handed).
  std::vector<StaleName> StaleNames(const Snapshot& snap);
  std::function<void(const StaleName&)> invalidator_;      // set before the first request
  std::function<void(std::function<void()>)> background_;  // set before the first request
  // The newest store generation read (CurrentSnapshot raises it before building that
  // snapshot); HandOut compares entries with it. Accessed seq_cst only (mount_names.cc).
  std::atomic<uint64_t> latest_generation_{0};
  void CheckPending();
  void CheckPendingLocked();  // under release_mu_
  // Forgets the layers and evicts the cached trees that use them (their image is gone).
  // Called under release_mu_.
  void DropLayers(const std::vector<std::string>& hexes);
  // Layers that had no blob when a view was built (lazily pulled, issue 9) and have one
  // now: a plain pull completed them, and an eStargz layer's entry table changed
  // (index/lazy_virtual.h): their trees and streams are dropped (DropLayers).
  void DropCompletedLazy();
  std::map<std::string, Digest> lazy_layers_;  // diff_id hex → blob; guarded by views_mu_
  Result<std::shared_ptr<const ImageView>> View(const Digest& image, bool layer = false);
  // The instance's view with node n checked (BadInode when out of range).
  Result<std::shared_ptr<const ImageView>> NodeView(const Instance* in, uint32_t node);
  Result<uint64_t> InstanceFor(const std::string& path, const Digest& image, uint64_t parent_ino,
                               bool layer = false);
  const Instance* GetInstance(uint32_t index) const;
  uint32_t NameNode(const std::string& path);  // allocates on first sight
  Result<std::string> NamePath(uint32_t node) const;
  struct stat NameDirAttr(uint64_t ino, const Snapshot& snap, const std::string& path) const;
  Result<Entry> NameChildEntry(const Snapshot& snap, const std::string& dir,
                               const std::string& name, const Snapshot::Child& child,
                               uint64_t parent_ino);
  Result<Entry> IdEntry(const Snapshot& snap, std::string_view name);
  // The per-layer views (`.layers/`): one entry, and the listing.
  Result<Entry> LayerDirEntry(std::string_view name);
  // The layer ids (hex, sorted) the store's images use at `snap`'s generation: read
  // once per generation, so a listing of N layers in ~N/25 calls reads the store once.
  Result<std::shared_ptr<const std::vector<std::string>>> LayerHexes(const Snapshot& snap);
  std::mutex layer_hexes_mu_;
  uint64_t layer_hexes_gen_ = 0;
  std::shared_ptr<const std::vector<std::string>> layer_hexes_;  // guarded by layer_hexes_mu_
  // view may be null for the root (node 1).
  Entry ImageEntry(uint32_t inst, const Instance& in, const ImageView* view, uint32_t node) const;

  Options options_;
  std::unique_ptr<Store> store_;
  std::unique_ptr<LayerReader> cache_;
  int64_t mounted_at_ = 0;
  std::atomic<bool> opens_tracked_{false};

  // Directories whose files were queued for read-ahead once: a later listing finds
  // their content in the kernel's page cache (keep_cache), so it queues nothing.
  std::mutex listed_mu_;  // guards listed_
  std::set<uint64_t> listed_;
  static constexpr size_t kListedMax = size_t{1} << 16;
  std::mutex snap_mu_;  // guards snap_; held only to swap or copy the pointer
  std::shared_ptr<const Snapshot> snap_;

  // Built trees, most recently used first in views_lru_; bounded by options_.tree_cache.
  struct CachedView {
    std::shared_ptr<const ImageView> view;
    size_t bytes = 0;
    std::list<std::string>::iterator lru;
  };
  std::mutex views_mu_;  // guards views_, views_lru_, view_bytes_, view_layers_
  std::map<std::string, CachedView> views_;
  std::list<std::string> views_lru_;
  size_t view_bytes_ = 0;
  size_t evictions_ = 0;  // since the last malloc_trim
  // The layers each built view pinned, by view key (ViewKey): which instances use a
  // removed layer, after its image's records are gone.
  std::map<std::string, std::vector<std::string>> view_layers_;

  // Removed layers still pinned (open=kernel): diff_id hex → the instances that use it.
  // Lock order: release_mu_ before views_mu_.
  std::mutex release_mu_;
  std::map<std::string, std::vector<uint32_t>> pending_;
  std::atomic<bool> has_pending_{false};
  static constexpr size_t kTrimEvery = 16;

  // Instances: slots_[0] unused; append under instances_mu_, read without locks.
  static constexpr uint32_t kMaxInstances = 1u << 20;
  std::unique_ptr<std::atomic<Instance*>[]> slots_;
  std::atomic<uint32_t> instance_count_{1};
  std::mutex instances_mu_;  // guards instance_keys_ and appends; lock order: after snap_mu_
  std::map<std::pair<std::string, std::string>, uint32_t> instance_keys_;

  mutable std::mutex names_mu_;  // guards name_nodes_ / name_paths_
  std::map<std::string, uint32_t> name_nodes_;
  std::vector<std::string> name_paths_;
};

}  // namespace imgfs

#endif  // IMGFS_FS_MOUNT_FS_H_
