// On-demand layer unpacking. A regular file's content is (layer, offset, size) in the
// layer's uncompressed tar stream. For an uncompressed layer that stream is the blob
// itself; for a compressed one it is unpacked/<diff_id hex>.tar, made the first time
// any file of the layer is read: the blob is decompressed once into a temp file while
// its SHA-256 is checked against the diff_id, then renamed into place. Every later
// read is a pread on that file.
//
// Size limit: with set_limit(bytes), after each new unpack the least recently used
// unpacked layers that no open file pins are deleted until the total fits. Blobs that
// are read in place (uncompressed layers) are never evicted: they are the store.
//
// Pins: Pin(layer) opens the layer's blob (no reading) and keeps that fd until
// Forget(layer) or the end of the cache. A later unpack or in-place read uses the
// pinned fd, so a file of an image that was looked up before `imgfs rmi` removed its
// blobs still reads correctly. The mount forgets the layers whose pinned blob was
// deleted when it sees the store's generation move, if it knows which files are open
// (-o open=daemon): fds that open files hold are shared, so the space comes back when
// the last of them closes. Otherwise it comes back when the cache (the mount) goes away.
//
// Concurrency: first readers of the same layer in one process wait for one unpack
// (a per-layer mutex); other processes may unpack in parallel and the rename makes
// one copy win, both identical. An unpacked file whose size is not the layer's size
// is discarded and rebuilt (a crash can leave a short file behind).
//
// Prune (another process) never removes a copy in use: every fd this cache holds on an
// unpacked copy or on its temp file carries a shared flock, taken before a byte is
// written to a temp file and before an existing copy is used. Prune takes LOCK_EX |
// LOCK_NB on each file and skips the busy ones. Each side re-checks after locking that
// the name still denotes its file (prune: nothing renamed over it; the cache: prune did
// not remove it between open and lock, else it unpacks anew).
//
// Thread-safety: all methods may be called from any thread.
#ifndef IMGFS_FS_UNPACK_CACHE_H_
#define IMGFS_FS_UNPACK_CACHE_H_

#include <map>
#include <memory>
#include <mutex>
#include <string>

#include "index/file_util.h"
#include "index/store.h"

namespace imgfs {

class UnpackCache {
 public:
  explicit UnpackCache(const Store& store) : store_(store) {}
  // An fd on the layer's uncompressed stream; unpacks on first use.
  Result<std::shared_ptr<UniqueFd>> Get(const LayerRecord& layer);
  // Opens and keeps the layer's blob fd (idempotent, cheap: no data is read). With
  // `fd` (an open fd on the same blob, LayerReader's pin), keeps that one instead: one
  // descriptor per layer (10,000 images ran out of 20,000 with two).
  Status Pin(const LayerRecord& layer, std::shared_ptr<UniqueFd> fd = nullptr);
  // Drops the layer's slot (its pinned blob, and its fd unless an open file holds it).
  // An unpacked copy stays on disk, no longer counted against the limit.
  void Forget(const std::string& diff_id_hex);
  // Number of layers this process unpacked (for tests and logs).
  uint64_t unpack_count() const;
  // Bytes of unpacked copies this process holds; 0 = no limit.
  void set_limit(uint64_t bytes);
  uint64_t unpacked_bytes() const;

  // Removes the unpacked copies (and stale temp files) of `store` that no process has
  // open through an UnpackCache; those in use are counted in `busy` and kept.
  struct PruneResult {
    uint64_t removed = 0, bytes = 0, busy = 0;
  };
  static Result<PruneResult> Prune(const Store& store);

 private:
  struct Slot {
    std::mutex mu;  // held while this layer is being opened or unpacked
    std::shared_ptr<UniqueFd> fd;
    std::shared_ptr<UniqueFd> blob;  // pinned blob, if Pin was called
    // Set for unpacked copies (evictable); guarded by UnpackCache::mu_.
    std::string unpacked_path;
    uint64_t unpacked_size = 0;
    uint64_t last_use = 0;
  };
  void EvictIfNeeded();
  // Called with the slot's mu held; takes no other lock.
  Result<std::shared_ptr<UniqueFd>> OpenOrUnpack(const LayerRecord& layer,
                                                 const std::shared_ptr<UniqueFd>& blob,
                                                 bool* unpacked_now);
  std::shared_ptr<Slot> SlotFor(const LayerRecord& layer);
  const Store& store_;
  // Guards slots_, unpacks_, limit_, clock_ and each slot's unpacked_* and last_use.
  // Lock order: a slot's mu may be try-locked while mu_ is held, never the reverse.
  mutable std::mutex mu_;
  std::map<std::string, std::shared_ptr<Slot>> slots_;
  uint64_t unpacks_ = 0;
  uint64_t limit_ = 0;
  uint64_t clock_ = 0;  // use counter for LRU
};

}  // namespace imgfs

#endif  // IMGFS_FS_UNPACK_CACHE_H_
