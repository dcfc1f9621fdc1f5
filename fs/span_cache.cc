#include "fs/span_cache.h"

#include <fcntl.h>
#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

namespace imgfs {

SpanCache::SpanCache(uint64_t capacity)
    : shard_cap_(std::max<uint64_t>(1, (capacity ? capacity : kDefaultBytes) / kShards)) {}

SpanCache::Value SpanCache::Get(uint64_t layer, uint64_t span) {
  Key k{layer, span};
  Shard& s = ShardFor(k);
  std::lock_guard<std::mutex> l(s.mu);
  auto it = s.map.find(k);
  if (it == s.map.end()) {
    misses_++;
    return nullptr;
  }
  s.lru.splice(s.lru.begin(), s.lru, it->second);
  hits_++;
  return it->second->second;
}

void SpanCache::Put(uint64_t layer, uint64_t span, Value v) {
  Key k{layer, span};
  Shard& s = ShardFor(k);
  std::lock_guard<std::mutex> l(s.mu);
  if (s.map.count(k)) return;  // another thread decoded it too
  s.lru.emplace_front(k, v);
  s.map[k] = s.lru.begin();
  s.bytes += v->size();
  // Evict from the cold end; the newest entry stays even when it alone is over budget
  // (its reader holds it anyway).
  while (s.bytes > shard_cap_ && s.lru.size() > 1) {
    auto& victim = s.lru.back();
    s.bytes -= victim.second->size();
    s.map.erase(victim.first);
    s.lru.pop_back();
    evictions_++;
  }
}

void SpanCache::EraseLayer(uint64_t layer) {
  for (Shard& s : shards_) {
    std::lock_guard<std::mutex> l(s.mu);
    for (auto it = s.lru.begin(); it != s.lru.end();) {
      if (it->first.layer != layer) {
        ++it;
        continue;
      }
      s.bytes -= it->second->size();
      s.map.erase(it->first);
      it = s.lru.erase(it);
    }
  }
}

uint64_t SpanCache::bytes() const {
  uint64_t n = 0;
  for (const Shard& s : shards_) {
    std::lock_guard<std::mutex> l(const_cast<std::mutex&>(s.mu));
    n += s.bytes;
  }
  return n;
}

LayerReader::LayerReader(const Store& store, uint64_t cache_bytes, bool use_index)
    : store_(store), unpack_(store), spans_(cache_bytes), use_index_(use_index) {}

std::shared_ptr<LayerReader::Slot> LayerReader::SlotFor(const LayerRecord& layer) {
  std::lock_guard<std::mutex> l(mu_);
  auto& s = slots_[layer.diff_id.hex()];
  if (!s) s = std::make_shared<Slot>();
  return s;
}

Result<std::shared_ptr<UniqueFd>> LayerReader::BlobFd(Slot& slot, const LayerRecord& layer) {
  if (!slot.blob) {
    IMGFS_ASSIGN_OR_RETURN(UniqueFd fd, OpenFile(store_.blobs().BlobPath(layer.blob), O_RDONLY));
    slot.blob = std::make_shared<UniqueFd>(std::move(fd));
  }
  return slot.blob;
}

Status LayerReader::Pin(const LayerRecord& layer) {
  std::shared_ptr<Slot> slot = SlotFor(layer);
  std::lock_guard<std::mutex> l(slot->mu);
  IMGFS_ASSIGN_OR_RETURN(auto fd, BlobFd(*slot, layer));
  return unpack_.Pin(layer, fd);  // the whole-layer fallback reads the same pinned blob
}

std::vector<std::string> LayerReader::UnlinkedPins() {
  std::vector<std::pair<std::string, std::shared_ptr<Slot>>> slots;
  {
    std::lock_guard<std::mutex> l(mu_);
    slots.assign(slots_.begin(), slots_.end());
  }
  std::vector<std::string> out;
  for (auto& [hex, slot] : slots) {
    std::lock_guard<std::mutex> l(slot->mu);
    struct stat st;
    if (slot->blob && slot->blob->get() >= 0 && ::fstat(slot->blob->get(), &st) == 0 &&
        st.st_nlink == 0) {
      out.push_back(hex);
    }
  }
  return out;
}

void LayerReader::Forget(const std::string& diff_id_hex) {
  std::shared_ptr<Slot> slot;
  {
    std::lock_guard<std::mutex> l(mu_);
    auto it = slots_.find(diff_id_hex);
    if (it == slots_.end()) return;
    slot = std::move(it->second);
    slots_.erase(it);
  }
  uint64_t id = 0;
  {
    std::lock_guard<std::mutex> l(slot->mu);
    if (slot->stream) id = slot->stream->id_;
    slot->stream.reset();
    slot->blob.reset();
  }
  if (id) spans_.EraseLayer(id);
  unpack_.Forget(diff_id_hex);
}

Result<std::shared_ptr<const LayerReader::Stream>> LayerReader::Open(const LayerRecord& layer) {
  std::shared_ptr<Slot> slot = SlotFor(layer);
  std::lock_guard<std::mutex> l(slot->mu);
  if (slot->stream) return slot->stream;
  auto s = std::make_shared<Stream>();
  s->owner_ = this;
  s->size_ = layer.size;
  s->name_ = "layer " + layer.diff_id.str();
  {
    std::lock_guard<std::mutex> g(mu_);
    s->id_ = next_id_++;
  }
  if (layer.compression != Compression::kNone && use_index_) {
    IMGFS_ASSIGN_OR_RETURN(s->blob_, BlobFd(*slot, layer));
    std::string path = SeekIndexPath(store_, layer.diff_id);
    Result<std::shared_ptr<const SeekIndex>> idx = Status::NotFound(path);
    if (PathExists(path)) idx = SeekIndex::Open(path, layer);
    if (!idx.ok() && idx.status().code() != Status::Code::kIo) {
      // A layer stored before seek indexes, or a damaged or foreign sidecar: one pass
      // over the blob (diff_id checked) builds it. If it cannot be written (read-only
      // store) it is used from memory.
      auto built_or = BuildSeekIndex(layer, s->blob_->get());
      if (!built_or.ok()) return built_or.status().WithContext(s->name_);
      std::string built = std::move(*built_or);
      built_++;
      if (!built.empty()) {
        if (WriteSeekIndex(store_, layer.diff_id, built).ok()) idx = SeekIndex::Open(path, layer);
        if (!idx.ok()) idx = SeekIndex::FromBytes(std::move(built), layer);
      }
    }
    if (idx.ok()) {
      const SeekIndex& x = **idx;
      // One zstd frame for a large layer: every span miss would inflate it all.
      bool whole = x.format() == Compression::kZstd && x.count() == 1 &&
                   layer.size > 4 * std::max<uint64_t>(x.span(), kDefaultSeekSpan);
      if (!whole) {
        s->index_ = *idx;
        slot->stream = s;
        return std::shared_ptr<const Stream>(s);
      }
    }
  }
  // The whole-layer path. The stream is not kept in the slot: an unpacked copy that no
  // open file holds stays evictable (UnpackCache::set_limit).
  IMGFS_ASSIGN_OR_RETURN(s->fd_, unpack_.Get(layer));
  if (layer.compression == Compression::kNone) slot->stream = s;
  return std::shared_ptr<const Stream>(s);
}

Result<size_t> LayerReader::Stream::Read(char* buf, size_t n, uint64_t off) const {
  if (off >= size_) return size_t{0};
  n = static_cast<size_t>(std::min<uint64_t>(n, size_ - off));
  if (fd_) {
    IMGFS_RETURN_IF_ERROR(PreadAll(fd_->get(), buf, n, static_cast<off_t>(off)));
    return n;
  }
  size_t done = 0;
  while (done < n) {
    uint64_t pos = off + done;
    size_t i = index_->Find(pos);
    SpanCache::Value v = owner_->spans_.Get(id_, i);
    if (!v) {
      auto d = index_->DecodeSpan(blob_->get(), i);
      if (!d.ok()) return d.status().WithContext(name_);
      owner_->decoded_++;
      v = std::make_shared<const std::string>(std::move(*d));
      owner_->spans_.Put(id_, i, v);
    }
    uint64_t in_span = pos - index_->SpanStart(i);
    if (in_span >= v->size()) return Status::Corruption(name_ + ": span shorter than its index");
    size_t k = static_cast<size_t>(std::min<uint64_t>(n - done, v->size() - in_span));
    std::memcpy(buf + done, v->data() + in_span, k);
    done += k;
  }
  return n;
}

Result<size_t> LayerReader::Read(const LayerRecord& layer, char* buf, size_t n, uint64_t off) {
  IMGFS_ASSIGN_OR_RETURN(auto s, Open(layer));
  return s->Read(buf, n, off);
}

}  // namespace imgfs
