#include "fs/unpack_cache.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>

#include <cerrno>

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

Status UnpackCache::Pin(const LayerRecord& layer, std::shared_ptr<UniqueFd> pinned) {
  std::shared_ptr<Slot> slot = SlotFor(layer);
  std::lock_guard<std::mutex> l(slot->mu);
  if (slot->blob) return Status::Ok();
  if (pinned) {
    slot->blob = std::move(pinned);
    return Status::Ok();
  }
  IMGFS_ASSIGN_OR_RETURN(UniqueFd fd, OpenFile(store_.blobs().BlobPath(layer.blob), O_RDONLY));
  slot->blob = std::make_shared<UniqueFd>(std::move(fd));
  return Status::Ok();
}

void UnpackCache::Forget(const std::string& diff_id_hex) {
  std::shared_ptr<Slot> slot;
  {
    std::lock_guard<std::mutex> l(mu_);
    auto it = slots_.find(diff_id_hex);
    if (it == slots_.end()) return;
    slot = std::move(it->second);
    slots_.erase(it);
  }
  // A Get in progress on this slot finishes on it (its bookkeeping then touches an
  // orphan slot); the next Get starts a new one.
  std::lock_guard<std::mutex> l(slot->mu);
  slot->blob.reset();
  slot->fd.reset();
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

namespace {

// Takes a shared flock on an unpacked copy (or its temp file) for as long as the fd is
// open: prune takes LOCK_EX | LOCK_NB and skips whatever is locked, so it never
// removes a copy being written or read (UnpackCache::Prune).
Status LockShared(int fd, const std::string& path) {
  while (::flock(fd, LOCK_SH) != 0) {
    if (errno != EINTR) return Status::FromErrno("lock " + path);
  }
  return Status::Ok();
}

// True when `path` still names the file open as `fd` (prune may have removed it
// between our open and our lock).
bool StillNamed(int fd, const std::string& path) {
  struct stat a, b;
  return ::fstat(fd, &a) == 0 && a.st_nlink > 0 && ::lstat(path.c_str(), &b) == 0 &&
         a.st_dev == b.st_dev && a.st_ino == b.st_ino;
}

}  // namespace

Result<std::shared_ptr<UniqueFd>> UnpackCache::OpenOrUnpack(const LayerRecord& layer,
                                                            const std::shared_ptr<UniqueFd>& pinned,
                                                            bool* unpacked_now) {
  // The tar (a blob read in place, or an unpacked copy) must be the layer's size.
  auto size_checked = [&layer](int fd, const std::string& path) -> Status {
    struct stat st;
    if (::fstat(fd, &st) != 0) return Status::FromErrno("stat " + path);
    if (static_cast<uint64_t>(st.st_size) != layer.size) {
      return Status::Corruption(path + ": size " + std::to_string(st.st_size) + ", expected " +
                                std::to_string(layer.size));
    }
    return Status::Ok();
  };
  auto open_checked = [&](const std::string& path, bool lock) -> Result<std::shared_ptr<UniqueFd>> {
    IMGFS_ASSIGN_OR_RETURN(UniqueFd fd, OpenFile(path, O_RDONLY));
    if (lock) {
      IMGFS_RETURN_IF_ERROR(LockShared(fd.get(), path));
      if (!StillNamed(fd.get(), path)) return Status::NotFound(path + ": removed by prune");
    }
    IMGFS_RETURN_IF_ERROR(size_checked(fd.get(), path));
    return std::make_shared<UniqueFd>(std::move(fd));
  };
  if (layer.compression == Compression::kNone) {
    // Read in place: the pinned fd is the blob (one fd per layer, not two: a mount of
    // 10,000 images would otherwise run out of descriptors).
    std::string path = store_.blobs().BlobPath(layer.blob);
    if (!pinned || pinned->get() < 0) return open_checked(path, false);
    IMGFS_RETURN_IF_ERROR(size_checked(pinned->get(), path));
    return pinned;
  }
  std::string path = store_.UnpackedPath(layer.diff_id);
  auto existing = open_checked(path, true);
  if (existing.ok()) return existing;
  if (existing.status().code() == Status::Code::kCorruption) ::unlink(path.c_str());
  // Unpack: blob → temp file (diff_id verified) → rename.
  UniqueFd opened;
  int blob_fd = pinned ? pinned->get() : -1;
  if (blob_fd < 0) {
    IMGFS_ASSIGN_OR_RETURN(opened, OpenFile(store_.blobs().BlobPath(layer.blob), O_RDONLY));
    blob_fd = opened.get();
  }
  // The temp file is locked before anything is written; a prune that removed it between
  // our create and our lock is seen (StillNamed) and we start again with a new name.
  std::string tmp;
  UniqueFd out;
  for (int attempt = 0;; attempt++) {
    tmp =
        path + ".tmp-" + std::to_string(::getpid()) + "-" + std::to_string(std::random_device{}());
    IMGFS_ASSIGN_OR_RETURN(out, OpenFile(tmp, O_RDWR | O_CREAT | O_EXCL, 0600));
    IMGFS_RETURN_IF_ERROR(LockShared(out.get(), tmp));
    if (StillNamed(out.get(), tmp)) break;
    if (attempt == 100) return Status::Unavailable(tmp + ": removed repeatedly while created");
  }
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

Result<UnpackCache::PruneResult> UnpackCache::Prune(const Store& store) {
  PruneResult r;
  std::string dir = store.root() + "/unpacked";
  DIR* d = ::opendir(dir.c_str());
  if (!d) {
    if (errno == ENOENT) return r;
    return Status::FromErrno("opendir " + dir);
  }
  while (struct dirent* e = ::readdir(d)) {
    std::string name = e->d_name;
    if (name == "." || name == "..") continue;
    std::string p = dir + "/" + name;
    // O_NONBLOCK | O_NOFOLLOW: nothing in unpacked/ may make prune hang or leave it.
    int fd = ::open(p.c_str(), O_RDONLY | O_NONBLOCK | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) continue;
    UniqueFd owner(fd);
    struct stat st;
    if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) continue;
    if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
      if (errno == EWOULDBLOCK) r.busy++;
      continue;
    }
    // Unlink only what we locked: the name may have moved on since our open.
    if (!StillNamed(fd, p)) continue;
    if (::unlink(p.c_str()) == 0) {
      r.removed++;
      r.bytes += static_cast<uint64_t>(st.st_size);
    }
  }
  ::closedir(d);
  return r;
}

}  // namespace imgfs
