#include "fs/span_cache.h"

#include <fcntl.h>
#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

namespace imgfs {
namespace {

// Marks a layer's slot as held for long work (Slot::long_open) for a scope.
class LongOpen {
 public:
  explicit LongOpen(std::atomic<bool>& flag) : flag_(flag) { flag_.store(true); }
  ~LongOpen() { flag_.store(false); }
  LongOpen(const LongOpen&) = delete;
  LongOpen& operator=(const LongOpen&) = delete;

 private:
  std::atomic<bool>& flag_;
};

}  // namespace

SpanCache::SpanCache(uint64_t capacity)
    : shard_cap_(std::max<uint64_t>(1, (capacity ? capacity : kDefaultBytes) / kShards)) {}

SpanCache::Value SpanCache::Get(uint64_t layer, uint64_t span, uint64_t min_bytes) {
  Key k{layer, span};
  Shard& s = ShardFor(k);
  std::lock_guard<std::mutex> l(s.mu);
  auto it = s.map.find(k);
  if (it == s.map.end() || it->second->second->size() < min_bytes) {
    misses_++;
    return nullptr;
  }
  s.lru.splice(s.lru.begin(), s.lru, it->second);
  hits_++;
  return it->second->second;
}

SpanCache::Value SpanCache::Peek(uint64_t layer, uint64_t span) {
  Key k{layer, span};
  Shard& s = ShardFor(k);
  std::lock_guard<std::mutex> l(s.mu);
  auto it = s.map.find(k);
  return it == s.map.end() ? nullptr : it->second->second;
}

void SpanCache::Put(uint64_t layer, uint64_t span, Value v) {
  Key k{layer, span};
  Shard& s = ShardFor(k);
  std::lock_guard<std::mutex> l(s.mu);
  if (auto it = s.map.find(k); it != s.map.end()) {
    // Another thread decoded it too; or held is a prefix, which the whole span replaces.
    Value& held = it->second->second;
    if (held->size() >= v->size()) return;
    s.bytes += v->size() - held->size();
    held = std::move(v);
    s.lru.splice(s.lru.begin(), s.lru, it->second);
  } else {
    s.lru.emplace_front(k, v);
    s.map[k] = s.lru.begin();
    s.bytes += v->size();
  }
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
    : store_(store),
      unpack_(store),
      spans_(cache_bytes),
      use_index_(use_index),
      cache_bytes_(cache_bytes ? cache_bytes : SpanCache::kDefaultBytes) {}

LayerReader::~LayerReader() {
  {
    std::lock_guard<std::mutex> l(pf_mu_);
    pf_stop_ = true;
  }
  pf_cv_.notify_all();
  if (pf_thread_.joinable()) pf_thread_.join();
}

bool LayerReader::Prefetch(const std::shared_ptr<const Stream>& s, uint64_t off, uint64_t len) {
  if (!prefetch_on_.load()) return false;
  if (!s || !s->index_ || len == 0 || off >= s->size_) return true;
  const SeekIndex& x = *s->index_;
  uint64_t span = std::max<uint64_t>(x.span(), 1);
  if (cache_bytes_ < 8 * span) return true;  // read-ahead would push out what is being read
  uint64_t end = std::min(s->size_, off + len);
  std::unique_lock<std::mutex> l(pf_mu_);
  if (pf_stop_) return false;
  bool added = false, full = false;
  for (size_t i = x.Find(off); i < x.count() && x.SpanStart(i) < end; i++) {
    uint64_t bytes = x.SpanEnd(i) - x.SpanStart(i);
    if (pf_bytes_ + bytes > cache_bytes_ / 4) {  // full: drop the rest
      full = true;
      break;
    }
    SpanCache::Value held = spans_.Peek(s->id_, i);
    if (pf_queued_.count({s->id_, i}) || (held && held->size() >= bytes)) continue;
    pf_queue_.emplace_back(s, i);
    pf_queued_.insert({s->id_, i});
    pf_bytes_ += bytes;
    added = true;
  }
  if (!added) return !full;
  if (!StartHelperLocked()) return false;
  l.unlock();
  pf_cv_.notify_one();
  return !full;
}

bool LayerReader::StartHelperLocked() {
  if (pf_thread_.joinable()) return true;
  try {
    pf_thread_ = std::thread([this] { PrefetchLoop(); });
  } catch (...) {  // no thread: no read-ahead
    prefetch_on_.store(false);
    pf_queue_.clear();
    pf_queued_.clear();
    pf_bytes_ = 0;
    warm_queue_.clear();
    return false;
  }
  return true;
}

void LayerReader::Warm(const std::vector<LayerRecord>& layers) {
  if (!prefetch_on_.load() || layers.empty()) return;
  std::unique_lock<std::mutex> l(pf_mu_);
  if (pf_stop_) return;
  for (const LayerRecord& layer : layers) {
    if (warm_queue_.size() >= kWarmQueue) break;
    // A manifest may list one layer many times: each distinct layer once.
    if (std::none_of(warm_queue_.begin(), warm_queue_.end(),
                     [&](const LayerRecord& w) { return w.diff_id == layer.diff_id; }))
      warm_queue_.push_back(layer);
  }
  if (!StartHelperLocked()) return;
  l.unlock();
  pf_cv_.notify_one();
}

size_t LayerReader::prefetch_queued() {
  std::lock_guard<std::mutex> l(pf_mu_);
  return pf_queue_.size();
}

void LayerReader::PrefetchLoop() {
  std::unique_lock<std::mutex> l(pf_mu_);
  for (;;) {
    pf_cv_.wait(l, [&] { return pf_stop_ || !pf_queue_.empty() || !warm_queue_.empty(); });
    if (pf_stop_) return;
    if (!warm_queue_.empty()) {
      LayerRecord layer = std::move(warm_queue_.front());
      warm_queue_.pop_front();
      l.unlock();
      // A failure is not kept: the first read opens the layer again and reports it.
      std::shared_ptr<Slot> slot = SlotFor(layer);
      {
        std::lock_guard<std::mutex> g(slot->mu);
        auto s = OpenLocked(*slot, layer, /*warm=*/true);
        if (s.ok() && *s) warmed_++;
      }
      l.lock();
      continue;
    }
    auto [s, i] = std::move(pf_queue_.front());
    pf_queue_.pop_front();
    pf_queued_.erase({s->id_, i});
    pf_bytes_ -= s->index_->SpanEnd(i) - s->index_->SpanStart(i);
    l.unlock();
    // Errors (a damaged span) are not kept: a reader of that span decodes it and gets them.
    bool mine = false;
    (void)Fetch(*s, i, &mine);
    if (mine) prefetched_++;
    prefetch_fetches_++;
    s.reset();
    l.lock();
  }
}

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
  // A lazy layer has no blob to pin (its partial blob is not collected by prune).
  if (!store_.blobs().Has(layer.blob) && LazyDir::For(store_.root(), layer.blob).Exists())
    return Status::Ok();
  std::shared_ptr<Slot> slot = SlotFor(layer);
  std::lock_guard<std::mutex> l(slot->mu);
  return PinLocked(*slot, layer);
}

Status LayerReader::PinLocked(Slot& slot, const LayerRecord& layer) {
  IMGFS_ASSIGN_OR_RETURN(auto fd, BlobFd(slot, layer));
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
  {
    std::lock_guard<std::mutex> l(pf_mu_);  // a queued Warm of it: dropped
    std::erase_if(warm_queue_,
                  [&](const LayerRecord& w) { return w.diff_id.hex() == diff_id_hex; });
  }
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
  if (id) {
    std::lock_guard<std::mutex> l(pf_mu_);  // queued read-ahead of a forgotten layer: dropped
    for (auto it = pf_queue_.begin(); it != pf_queue_.end();) {
      if (it->first->id_ != id) {
        ++it;
        continue;
      }
      pf_queued_.erase({id, it->second});
      pf_bytes_ -=
          it->first->index_->SpanEnd(it->second) - it->first->index_->SpanStart(it->second);
      it = pf_queue_.erase(it);
    }
  }
  if (id) spans_.EraseLayer(id);
  unpack_.Forget(diff_id_hex);
}

Result<std::shared_ptr<const LayerReader::Stream>> LayerReader::Open(const LayerRecord& layer) {
  std::shared_ptr<Slot> slot = SlotFor(layer);
  std::lock_guard<std::mutex> l(slot->mu);
  if (open_hook_) open_hook_();
  return OpenLocked(*slot, layer, /*warm=*/false);
}

std::shared_ptr<const LayerReader::Stream> LayerReader::OpenedStream(const LayerRecord& layer) {
  std::shared_ptr<Slot> slot = SlotFor(layer);
  std::unique_lock<std::mutex> l(slot->mu, std::try_to_lock);
  if (!l.owns_lock() || !slot->stream) return nullptr;  // being opened, or not yet
  // OpenLocked replaces a lazy stream whose layer completed since (its record moved).
  if (Stale(*slot->stream, layer)) return nullptr;
  return slot->stream;
}

std::shared_ptr<const LayerReader::Stream> LayerReader::StreamForPrefetch(const LayerRecord& layer,
                                                                          bool wait, bool* busy) {
  *busy = false;
  std::shared_ptr<Slot> slot = SlotFor(layer);
  std::unique_lock<std::mutex> l(slot->mu, std::try_to_lock);
  if (!l.owns_lock()) {
    if (!wait) {
      *busy = true;
      return nullptr;
    }
    if (slot->long_open.load()) return nullptr;  // read-ahead does not wait seconds
    l.lock();
  }
  auto usable = [&]() -> std::shared_ptr<const Stream> {
    if (!slot->stream || Stale(*slot->stream, layer)) return nullptr;
    return slot->stream;
  };
  if (auto s = usable()) return s;
  if (slot->no_prefetch) return nullptr;
  if (!wait) {  // an open reads files: not on this thread
    *busy = true;
    return nullptr;
  }
  auto s = OpenLocked(*slot, layer, /*warm=*/true);  // null when not quick
  if (s.ok() && *s) return *s;
  if (auto open = usable()) return open;
  if (s.ok()) slot->no_prefetch = true;  // whole-layer, lazy: nothing to read ahead
  return nullptr;
}

Result<std::shared_ptr<const LayerReader::Stream>> LayerReader::OpenLocked(Slot& slot,
                                                                           const LayerRecord& layer,
                                                                           bool warm) {
  if (warm && slot.stream) return std::shared_ptr<const Stream>();  // open already
  // A lazy eStargz layer completed since: the new record (the tar's size and offsets,
  // index/lazy_virtual.h) is read from the blob; a tree still built from the old record
  // keeps the lazy stream it pairs with (its offsets).
  if (slot.stream && Stale(*slot.stream, layer)) slot.stream.reset();
  if (slot.stream) return slot.stream;
  LazyDir lazy = LazyDir::For(store_.root(), layer.blob);
  bool lazy_dir = lazy.Exists();
  // A warm leaves a lazy layer and the whole-layer path (it unpacks) to the first read.
  if (warm && (lazy_dir || (!use_index_ && layer.compression != Compression::kNone)))
    return std::shared_ptr<const Stream>();
  auto s = std::make_shared<Stream>();
  s->owner_ = this;
  s->size_ = layer.size;
  s->name_ = "layer " + layer.diff_id.str();
  {
    std::lock_guard<std::mutex> g(mu_);
    s->id_ = next_id_++;
  }
  if (lazy_dir) {
    // Completion found the layer's TOC and tar disagree: nothing of it is served.
    std::string why = lazy.BrokenReason();
    if (!why.empty()) return Status::Corruption(s->name_ + ": " + why);
  }
  if (lazy_dir && !slot.blob && !store_.blobs().Has(layer.blob)) {
    IMGFS_ASSIGN_OR_RETURN(s->lazy_, LazyBlob::Open(store_.root(), layer));
    slot.stream = s;
    return std::shared_ptr<const Stream>(s);
  }
  if (layer.compression != Compression::kNone && use_index_) {
    IMGFS_ASSIGN_OR_RETURN(s->blob_, BlobFd(slot, layer));
    std::string path = SeekIndexPath(store_, layer.diff_id);
    Result<std::shared_ptr<const SeekIndex>> idx = Status::NotFound(path);
    if (PathExists(path)) idx = SeekIndex::Open(path, layer);
    if (warm && (!idx.ok() || !(*idx)->WorthUsing())) return std::shared_ptr<const Stream>();
    if (!idx.ok() && idx.status().code() != Status::Code::kIo) {
      // A layer stored before seek indexes, or a damaged or foreign sidecar: one pass
      // over the blob (diff_id checked) builds it. If it cannot be written (read-only
      // store) it is used from memory.
      LongOpen mark(slot.long_open);
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
      // A span far longer than asked for (one zstd frame for a large layer, one huge
      // deflate block): every miss in it would inflate it all; the whole-layer path.
      if ((*idx)->WorthUsing()) {
        s->index_ = *idx;
        slot.stream = s;
        return std::shared_ptr<const Stream>(s);
      }
    }
  }
  // An uncompressed layer is read in place through the fd the slot pins, one fd per
  // layer: a warm comes before the mount's Pin, and must not open a second one.
  if (layer.compression == Compression::kNone) IMGFS_RETURN_IF_ERROR(PinLocked(slot, layer));
  // The whole-layer path. The stream is not kept in the slot: an unpacked copy that no
  // open file holds stays evictable (UnpackCache::set_limit).
  {
    LongOpen mark(slot.long_open);
    IMGFS_ASSIGN_OR_RETURN(s->fd_, unpack_.Get(layer));
  }
  if (layer.compression == Compression::kNone) slot.stream = s;
  return std::shared_ptr<const Stream>(s);
}

Result<size_t> LayerReader::Stream::Read(char* buf, size_t n, uint64_t off, uint64_t until) const {
  if (off >= size_) return size_t{0};
  n = static_cast<size_t>(std::min<uint64_t>(n, size_ - off));
  if (lazy_) {
    return lazy_->Read(buf, n, off, owner_->spans_, id_,
                       [this](size_t i, const LazyBlob::Decoder& d) {
                         return owner_->Fetch(*this, i, nullptr, &d);
                       });
  }
  if (fd_) {
    IMGFS_RETURN_IF_ERROR(PreadAll(fd_->get(), buf, n, static_cast<off_t>(off)));
    return n;
  }
  size_t done = 0;
  while (done < n) {
    uint64_t pos = off + done;
    size_t i = index_->Find(pos);
    uint64_t in_span = pos - index_->SpanStart(i);
    // What this read needs of the span, and what a miss decodes: up to the end of the
    // file being read, whose next reads follow (a small file: only the pieces up to its
    // end, SeekIndex::DecodeLength).
    uint64_t asked = in_span + (n - done);
    uint64_t want = until > pos ? until - index_->SpanStart(i) : 0;
    IMGFS_ASSIGN_OR_RETURN(SpanCache::Value v,
                           owner_->Fetch(*this, i, nullptr, nullptr, asked, want));
    if (in_span >= v->size()) return Status::Corruption(name_ + ": span shorter than its index");
    size_t k = static_cast<size_t>(std::min<uint64_t>(n - done, v->size() - in_span));
    std::memcpy(buf + done, v->data() + in_span, k);
    done += k;
  }
  return n;
}

std::optional<size_t> LayerReader::Stream::ReadCached(char* buf, size_t n, uint64_t off) const {
  if (lazy_ || fd_ || !index_) return std::nullopt;
  if (off >= size_) return size_t{0};
  n = static_cast<size_t>(std::min<uint64_t>(n, size_ - off));
  size_t done = 0;
  while (done < n) {
    uint64_t pos = off + done;
    size_t i = index_->Find(pos);
    uint64_t in_span = pos - index_->SpanStart(i);
    uint64_t asked =
        std::min<uint64_t>(in_span + (n - done), index_->SpanEnd(i) - index_->SpanStart(i));
    SpanCache::Value v = owner_->spans_.Get(id_, i, asked);
    if (!v || in_span >= v->size()) return std::nullopt;  // Read decodes, or says why not
    size_t k = static_cast<size_t>(std::min<uint64_t>(n - done, v->size() - in_span));
    std::memcpy(buf + done, v->data() + in_span, k);
    done += k;
  }
  return n;
}

Result<SpanCache::Value> LayerReader::Fetch(const Stream& s, size_t i, bool* decoded,
                                            const std::function<Result<SpanCache::Value>()>* decode,
                                            uint64_t asked, uint64_t want) {
  // Enough: the whole span, or a prefix holding the first `asked` bytes (a lazy chunk,
  // `decode`, is always whole). A miss decodes `want` (≥ asked; the file's end), or the
  // whole span when a shorter prefix is held.
  const SeekIndex* x = decode ? nullptr : s.index_.get();
  const uint64_t min_bytes = x ? std::min(asked, x->SpanEnd(i) - x->SpanStart(i)) : 0;
  auto enough = [&](const SpanCache::Value& v) { return v->size() >= min_bytes; };
  want = std::max(want, asked);
  // After a longer decode failed its check: only the prefix this read needs.
  bool own_prefix = false;
  std::pair<uint64_t, uint64_t> key{s.id_, i};
  for (;;) {
    if (SpanCache::Value v = spans_.Get(s.id_, i, min_bytes)) return v;
    uint64_t need = own_prefix ? asked : want;
    if (x && !own_prefix && spans_.Peek(s.id_, i)) need = UINT64_MAX;
    std::shared_ptr<Pending> p;
    bool mine = false;
    {
      std::lock_guard<std::mutex> l(fly_mu_);
      auto it = fly_.find(key);
      if (it != fly_.end()) {
        p = it->second;
      } else {
        // The decoder Puts before it leaves fly_: a decode that ended since the Get
        // above is in the cache now (unless already evicted: then decode again).
        if (SpanCache::Value v = spans_.Peek(s.id_, i); v && enough(v)) return v;
        p = std::make_shared<Pending>();
        p->length = x ? x->DecodeLength(i, need) : UINT64_MAX;
        fly_.emplace(key, p);
        mine = true;
      }
    }
    if (!mine) {
      waits_++;
      std::unique_lock<std::mutex> l(p->mu);
      p->cv.wait(l, [&] { return p->done; });
      if (p->status.ok()) {
        if (enough(p->value)) return p->value;
        continue;  // a shorter prefix was decoded: again, for more
      }
      // A longer decode than this read needs failed its check: the damage may lie past
      // what this read needs, so decode that (the same answer as when reading alone).
      if (x && p->status.code() == Status::Code::kCorruption &&
          x->DecodeLength(i, asked) < p->length) {
        own_prefix = true;
        continue;
      }
      return p->status;
    }
    Status st;
    SpanCache::Value v;
    if (decode_hook_) decode_hook_(i);
    auto index_span = [&]() -> Result<SpanCache::Value> {
      auto r = x->DecodeSpan(s.blob_->get(), i, SeekIndex::Decoder::kIsalThenZlib, need);
      // Damage past what this read needs fails the longer decode, not the prefix it
      // needs: the same answer as when no prefix was held and the file ended sooner.
      if (!r.ok() && r.status().code() == Status::Code::kCorruption &&
          x->DecodeLength(i, need) > x->DecodeLength(i, asked))
        r = x->DecodeSpan(s.blob_->get(), i, SeekIndex::Decoder::kIsalThenZlib, asked);
      if (!r.ok()) return r.status().WithContext(s.name_);
      return SpanCache::Value(std::make_shared<const std::string>(std::move(*r)));
    };
    Result<SpanCache::Value> d = decode ? (*decode)() : index_span();
    if (d.ok()) {
      decoded_++;
      if (decoded) *decoded = true;
      v = *d;
      spans_.Put(s.id_, i, v);
    } else {
      st = d.status();
    }
    {
      std::lock_guard<std::mutex> l(fly_mu_);
      fly_.erase(key);
    }
    {
      std::lock_guard<std::mutex> l(p->mu);
      p->done = true;
      p->status = st;
      p->value = v;
    }
    p->cv.notify_all();
    if (!st.ok()) return st;
    return v;
  }
}

Result<size_t> LayerReader::Read(const LayerRecord& layer, char* buf, size_t n, uint64_t off,
                                 uint64_t until) {
  IMGFS_ASSIGN_OR_RETURN(auto s, Open(layer));
  return s->Read(buf, n, off, until);
}

}  // namespace imgfs
