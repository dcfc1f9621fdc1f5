#include "fs/unpack_cache.h"

#include <fcntl.h>
#include <sys/stat.h>

#include <random>

namespace imgfs {

uint64_t UnpackCache::unpack_count() const {
  std::lock_guard<std::mutex> l(mu_);
  return unpacks_;
}

void UnpackCache::set_limit(uint64_t bytes) {
  std::lock_guard<std::mutex> l(mu_);
  limit_ = bytes;
}

uint64_t UnpackCache::unpacked_bytes() const {
  std::lock_guard<std::mutex> l(mu_);
  uint64_t n = 0;
  for (auto& [k, s] : slots_) n += s->unpacked_size;
  return n;
}

std::shared_ptr<UnpackCache::Slot> UnpackCache::SlotFor(const LayerRecord& layer) {
  std::lock_guard<std::mutex> l(mu_);
  auto& s = slots_[layer.diff_id.hex()];
  if (!s) s = std::make_shared<Slot>();
  s->last_use = ++clock_;
  return s;
}

Status UnpackCache::Pin(const LayerRecord& layer) {
  std::shared_ptr<Slot> slot = SlotFor(layer);
  std::lock_guard<std::mutex> l(slot->mu);
  if (slot->blob) return Status::Ok();
  IMGFS_ASSIGN_OR_RETURN(UniqueFd fd, OpenFile(store_.blobs().BlobPath(layer.blob), O_RDONLY));
  slot->blob = std::make_shared<UniqueFd>(std::move(fd));
  return Status::Ok();
}

Result<std::shared_ptr<UniqueFd>> UnpackCache::Get(const LayerRecord& layer) {
  std::shared_ptr<Slot> slot = SlotFor(layer);
  std::shared_ptr<UniqueFd> out;
  bool unpacked_now = false;
  {
    std::lock_guard<std::mutex> l(slot->mu);
    if (slot->fd) return slot->fd;
    auto fd = OpenOrUnpack(layer, slot->blob, &unpacked_now);
    if (!fd.ok()) return fd.status().WithContext("layer " + layer.diff_id.str());
    slot->fd = *fd;
    out = slot->fd;
  }
  // Lock order: mu_ is never taken while a slot's mu is held (eviction holds mu_ and
  // only try-locks slots), so the bookkeeping happens after the slot is released.
  if (layer.compression != Compression::kNone || unpacked_now) {
    std::lock_guard<std::mutex> l(mu_);
    if (layer.compression != Compression::kNone) {
      slot->unpacked_path = store_.UnpackedPath(layer.diff_id);
      slot->unpacked_size = layer.size;
    }
    if (unpacked_now) unpacks_++;
  }
  EvictIfNeeded();
  return out;
}

void UnpackCache::EvictIfNeeded() {
  std::lock_guard<std::mutex> l(mu_);
  if (limit_ == 0) return;
  uint64_t total = 0;
  for (auto& [k, s] : slots_) total += s->unpacked_size;
  while (total > limit_) {
    // The least recently used copy that no open file pins and nobody is unpacking.
    // Slots are only try-locked here (see Get for the lock order); the victim's lock
    // is kept from the scan to the removal.
    Slot* victim = nullptr;
    std::unique_lock<std::mutex> victim_lock;
    for (auto& [k, s] : slots_) {
      if (!s->unpacked_size || (victim && s->last_use >= victim->last_use)) continue;
      std::unique_lock<std::mutex> busy(s->mu, std::try_to_lock);
      // Pinned by an open file (the cache's own reference is one), or being unpacked.
      if (!busy.owns_lock() || (s->fd && s->fd.use_count() > 1)) continue;
      victim = s.get();
      victim_lock = std::move(busy);
    }
    if (!victim) return;  // everything left is in use
    ::unlink(victim->unpacked_path.c_str());
    victim->fd.reset();
    total -= victim->unpacked_size;
    victim->unpacked_size = 0;
  }
}

Result<std::shared_ptr<UniqueFd>> UnpackCache::OpenOrUnpack(const LayerRecord& layer,
                                                            const std::shared_ptr<UniqueFd>& pinned,
                                                            bool* unpacked_now) {
  auto open_checked = [&layer](const std::string& path) -> Result<std::shared_ptr<UniqueFd>> {
    IMGFS_ASSIGN_OR_RETURN(UniqueFd fd, OpenFile(path, O_RDONLY));
    struct stat st;
    if (::fstat(fd.get(), &st) != 0) return Status::FromErrno("stat " + path);
    if (static_cast<uint64_t>(st.st_size) != layer.size) {
      return Status::Corruption(path + ": size " + std::to_string(st.st_size) + ", expected " +
                                std::to_string(layer.size));
    }
    return std::make_shared<UniqueFd>(std::move(fd));
  };
  if (layer.compression == Compression::kNone)
    return open_checked(store_.blobs().BlobPath(layer.blob));
  std::string path = store_.UnpackedPath(layer.diff_id);
  auto existing = open_checked(path);
  if (existing.ok()) return existing;
  if (existing.status().code() == Status::Code::kCorruption) ::unlink(path.c_str());
  // Unpack: blob → temp file (diff_id verified) → rename.
  UniqueFd opened;
  int blob_fd = pinned ? pinned->get() : -1;
  if (blob_fd < 0) {
    IMGFS_ASSIGN_OR_RETURN(opened, OpenFile(store_.blobs().BlobPath(layer.blob), O_RDONLY));
    blob_fd = opened.get();
  }
  std::string tmp =
      path + ".tmp-" + std::to_string(::getpid()) + "-" + std::to_string(std::random_device{}());
  IMGFS_ASSIGN_OR_RETURN(UniqueFd out, OpenFile(tmp, O_RDWR | O_CREAT | O_EXCL, 0600));
  FdSource src(blob_fd);  // pread from 0: a pinned fd is shared safely
  Status st = DecompressToFd(&src, layer.compression, out.get(), layer.diff_id);
  if (st.ok() && ::rename(tmp.c_str(), path.c_str()) != 0) st = Status::FromErrno("rename " + tmp);
  if (!st.ok()) {
    ::unlink(tmp.c_str());
    return st;
  }
  *unpacked_now = true;
  return std::make_shared<UniqueFd>(std::move(out));
}

}  // namespace imgfs
