// On-demand layer unpacking. A regular file's content is (layer, offset, size) in the
// layer's uncompressed tar stream. For an uncompressed layer that stream is the blob
// itself; for a compressed one it is unpacked/<diff_id hex>.tar, made the first time
// any file of the layer is read: the blob is decompressed once into a temp file while
// its SHA-256 is checked against the diff_id, then renamed into place. Every later
// read is a pread on that file.
//
// Concurrency: first readers of the same layer in one process wait for one unpack
// (a per-layer mutex); other processes may unpack in parallel and the rename makes
// one copy win, both identical. An unpacked file whose size is not the layer's size
// is discarded and rebuilt (a crash can leave a short file behind).
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
  // Number of layers this process unpacked (for tests and logs).
  uint64_t unpack_count() const;

 private:
  struct Slot {
    std::mutex mu;  // held while this layer is being opened or unpacked
    std::shared_ptr<UniqueFd> fd;
  };
  Result<std::shared_ptr<UniqueFd>> OpenOrUnpack(const LayerRecord& layer);
  const Store& store_;
  mutable std::mutex mu_;  // guards slots_ and unpacks_; never held while unpacking
  std::map<std::string, std::shared_ptr<Slot>> slots_;
  uint64_t unpacks_ = 0;
};

}  // namespace imgfs

#endif  // IMGFS_FS_UNPACK_CACHE_H_
