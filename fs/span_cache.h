// The read path for layer content, shared by the mount and `imgfs cat`/`ls --sha256`.
//
// A regular file's content is (layer, offset, size) in the layer's uncompressed tar.
// LayerReader::Open gives a Stream for a layer:
//   - uncompressed layer: the blob itself (an fd the mount can splice from);
//   - gzip or multi-frame zstd layer with a seek index (index/seek_index.h): reads find
//     the span(s) holding [off, off+len), decode only those from the blob, check each
//     span's digest and keep decoded spans in a SpanCache (bounded, in memory). The
//     first read of a span by a file that ends inside it decodes whole pieces up to the
//     file's end, checked by their prefix value (SeekIndex::DecodeLength); the cache
//     holds that prefix until a read needs more of the span, which then decodes it
//     whole. When a decode longer than a read needs fails its check, the read decodes
//     only the prefix its own bytes need. A layer
//     stored before seek indexes gets its sidecar built on first open (one pass over
//     the blob, diff_id checked);
//   - a lazily pulled layer (its blob not in blobs/ but in lazy/, index/lazy_layer.h):
//     LazyBlob fetches, verifies and keeps the chunks a read needs;
//   - otherwise (an index whose longest span is over 4 × max(S, 1 MiB), e.g. a
//     single-frame zstd layer over 4 MiB, SeekIndex::WorthUsing; or a store whose seek/
//     cannot be written and read back): the whole-layer unpack of UnpackCache
//     (fs/unpack_cache.h).
// Nothing uncompressed is written to disk for indexed layers.
//
// A span whose decoded bytes do not match the digest recorded at pull time is a
// Corruption error for reads that touch that span; other spans keep working.
//
// SpanCache: an LRU of decoded spans, split into 16 shards by (layer, span), each with
// its own lock and 1/16 of the byte budget, so readers of different spans rarely
// contend.
//
// One decode per span: threads that miss the same span while it is being decoded (the
// kernel sends a file's reads in parallel; parallel readers meet in a span) wait for the
// one decode and get its bytes or its error, instead of each inflating and hashing the
// span again.
//
// Read-ahead by listing (Prefetch): the mount queues the spans of the regular files of a
// directory when the kernel lists it, because `grep -r`, `find -exec`, `tar` and `cp -r`
// read a directory's files right after listing it. Spans are in tar order, the listing
// in name order, so "the next span" guesses badly (branch readahead measured no gain);
// the listing names the spans that will be read. One helper thread decodes them, in
// tar order, through the same single-decode path (a reader that arrives meanwhile waits
// for that decode), with the digest check as always. Bounded: at most a quarter of the
// cache budget is queued, nothing when the budget is under 8 spans, and a full queue
// drops new requests. The same thread opens an image's layers ahead of their first read
// while the image's tree is built (Warm).
//
// Thread-safety: all methods may be called from any thread.
#ifndef IMGFS_FS_SPAN_CACHE_H_
#define IMGFS_FS_SPAN_CACHE_H_

#include <atomic>
#include <condition_variable>
#include <deque>
#include <functional>
#include <list>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "fs/lazy_blob.h"
#include "fs/unpack_cache.h"
#include "index/seek_index.h"

namespace imgfs {

class SpanCache {
 public:
  static constexpr uint64_t kDefaultBytes = 64ull << 20;
  static constexpr size_t kShards = 16;
  explicit SpanCache(uint64_t capacity = kDefaultBytes);
  using Value = std::shared_ptr<const std::string>;
  // The entry, if it holds at least `min_bytes` (a shorter prefix is a miss).
  Value Get(uint64_t layer, uint64_t span, uint64_t min_bytes = 0);
  // Get without touching the LRU order or the hit/miss counters.
  Value Peek(uint64_t layer, uint64_t span);
  void Put(uint64_t layer, uint64_t span, Value v);
  // Drops every decoded span of `layer` (a stream id); readers holding one keep it.
  void EraseLayer(uint64_t layer);
  uint64_t bytes() const;  // held now
  uint64_t evictions() const { return evictions_.load(); }
  uint64_t hits() const { return hits_.load(); }
  uint64_t misses() const { return misses_.load(); }

 private:
  struct Key {
    uint64_t layer, span;
    bool operator==(const Key& o) const { return layer == o.layer && span == o.span; }
  };
  struct KeyHash {
    size_t operator()(const Key& k) const {  // splitmix64's finaliser: spreads neighbours
      uint64_t z = k.layer * 0x9E3779B97F4A7C15ull + k.span;
      z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
      z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
      return static_cast<size_t>(z ^ (z >> 31));
    }
  };
  struct Shard {
    std::mutex mu;                         // guards everything below
    std::list<std::pair<Key, Value>> lru;  // front = most recent
    std::unordered_map<Key, std::list<std::pair<Key, Value>>::iterator, KeyHash> map;
    uint64_t bytes = 0;
  };
  Shard& ShardFor(const Key& k) { return shards_[KeyHash()(k) % kShards]; }
  uint64_t shard_cap_;
  Shard shards_[kShards];
  std::atomic<uint64_t> evictions_{0}, hits_{0}, misses_{0};
};

class LayerReader {
 public:
  // cache_bytes: the SpanCache budget (0 = SpanCache::kDefaultBytes). use_index false:
  // every compressed layer takes the whole-layer path (tests, comparisons).
  explicit LayerReader(const Store& store, uint64_t cache_bytes = 0, bool use_index = true);
  ~LayerReader();
  LayerReader(const LayerReader&) = delete;
  LayerReader& operator=(const LayerReader&) = delete;

  class Stream {
   public:
    // The tar stream as an fd (uncompressed layer or whole-layer unpack), else null.
    const std::shared_ptr<UniqueFd>& fd() const { return fd_; }
    // Reads [off, off+n) of the tar (n is cut at its end). Returns the count. `until`:
    // where the file being read ends in the tar (its later reads stop there), so that a
    // span not decoded yet is decoded up to there, not only to this read's end (the
    // kernel reads a file in 128 KiB pieces); 0: this read's end.
    Result<size_t> Read(char* buf, size_t n, uint64_t off, uint64_t until = 0) const;
    // The same read answered only from decoded spans in the cache, never waiting: the
    // count, or nullopt when a span is not (or not far enough) decoded, or the layer is
    // lazy or read from a file (the mount's loop thread, fs/fuse_loop.h).
    std::optional<size_t> ReadCached(char* buf, size_t n, uint64_t off) const;
    const SeekIndex* index() const { return index_.get(); }
    // A lazily pulled layer (fs/lazy_blob.h), else null.
    LazyBlob* lazy() const { return lazy_.get(); }

   private:
    friend class LayerReader;
    std::shared_ptr<UniqueFd> fd_;
    std::shared_ptr<UniqueFd> blob_;
    std::shared_ptr<const SeekIndex> index_;
    std::shared_ptr<LazyBlob> lazy_;
    uint64_t id_ = 0;
    uint64_t size_ = 0;
    std::string name_;
    LayerReader* owner_ = nullptr;
  };

  Result<std::shared_ptr<const Stream>> Open(const LayerRecord& layer);
  // The layer's stream if it is open already, else null; never waits (not for another
  // thread's open either).
  std::shared_ptr<const Stream> OpenedStream(const LayerRecord& layer);
  Result<size_t> Read(const LayerRecord& layer, char* buf, size_t n, uint64_t off,
                      uint64_t until = 0);
  // Queues a background decode of the spans holding [off, off+len) of an indexed
  // stream; spans cached, queued or being decoded are skipped. No-op for fd streams,
  // when off (set_prefetch(false)), or when the queue is full (see the top comment).
  // Returns false when the queue is full or read-ahead is off: a caller with more
  // ranges to queue (a listing of many files) stops.
  bool Prefetch(const std::shared_ptr<const Stream>& s, uint64_t off, uint64_t len);
  void set_prefetch(bool on) { prefetch_on_.store(on); }
  bool prefetch_on() const { return prefetch_on_.load(); }
  // For read-ahead: the layer's stream, opened now when that is quick (a seek index
  // mapped in, an uncompressed blob), never when it is work of its own (a sidecar to
  // build, a whole-layer unpack, a lazy layer): null, remembered until Forget. wait
  // false (the mount's loop thread): the stream only if open already; *busy when it
  // would have to open it or the layer is held by another thread's open. wait true:
  // waits for another thread's quick open, not for a long one (null then).
  std::shared_ptr<const Stream> StreamForPrefetch(const LayerRecord& layer, bool wait, bool* busy);
  // Spans decoded by the helper thread (also counted in spans_decoded()).
  uint64_t spans_prefetched() const { return prefetched_.load(); }
  // Queued spans the helper thread took up, decoded by it or found decoded (or being
  // decoded) by a reader that got there first.
  uint64_t prefetch_fetches() const { return prefetch_fetches_.load(); }
  // Spans waiting in the read-ahead queue now.
  size_t prefetch_queued();
  // Opens the read path of `layers` ahead of their first read, on the read-ahead thread
  // (before any queued span): the blob, and for an indexed layer its sidecar, mapped and
  // checked (its header and checkpoint records read in). The mount and `imgfs cat` call
  // it before they build an image's tree, so the first read's cold disk reads for the
  // open (directory entries, inodes, the sidecar's first pages) overlap the build, which
  // is CPU work. A layer whose open is work of its own (a sidecar to build, a
  // whole-layer unpack, a lazy layer) is left to its first read. Off with read-ahead
  // (set_prefetch(false)); at most kWarmQueue layers wait, more are dropped.
  void Warm(const std::vector<LayerRecord>& layers);
  static constexpr size_t kWarmQueue = 64;
  // Streams Warm opened (a read found them open).
  uint64_t layers_warmed() const { return warmed_.load(); }
  // Opens and keeps the layer's blob fd (no reading): see UnpackCache::Pin.
  Status Pin(const LayerRecord& layer);
  // diff_id hexes of the pinned layers whose blob has been deleted from the store
  // (the pinned fd's st_nlink is 0).
  std::vector<std::string> UnlinkedPins();
  // Forgets a layer: its pinned blob, its stream, its decoded spans and its unpack
  // cache slot. Streams and fds already handed out (open files) keep working and
  // hold the blob until they are dropped; a later Open starts from the store again.
  void Forget(const std::string& diff_id_hex);

  UnpackCache& unpack_cache() { return unpack_; }
  SpanCache& span_cache() { return spans_; }
  uint64_t spans_decoded() const { return decoded_.load(); }
  uint64_t indexes_built() const { return built_.load(); }
  // Reads that found their span being decoded by another thread and waited for it.
  uint64_t decode_waits() const { return waits_.load(); }
  // Tests: called (with the span number) by the thread that decodes, before it decodes.
  // Set it before any read.
  void set_decode_hook(std::function<void(size_t)> f) { decode_hook_ = std::move(f); }
  // Tests: called by Open while it holds the layer (as a long open would). Set it first.
  void set_open_hook(std::function<void()> f) { open_hook_ = std::move(f); }

 private:
  struct Slot {
    std::mutex mu;                       // held while the layer is opened (and its index built)
    std::atomic<bool> long_open{false};  // mu is held for a sidecar build or an unpack
    bool no_prefetch = false;            // guarded by mu: no stream to read ahead in
    std::shared_ptr<UniqueFd> blob;
    std::shared_ptr<const Stream> stream;
  };
  // A decode under way: the waiters' rendezvous.
  struct Pending {
    std::mutex mu;
    std::condition_variable cv;
    bool done = false;  // guarded by mu
    Status status;      // guarded by mu
    SpanCache::Value value;
    uint64_t length = 0;  // of the span the owner decodes (set before it is shared)
  };
  // Span i of stream s: from the cache, from a decode under way, or decoded here.
  // *decoded (if given) tells whether this call decoded it. `decode` (if given) decodes
  // instead of the seek index: a lazy layer's chunk i (fs/lazy_blob.h).
  // asked: the bytes from the span's start the caller reads; want: those a miss decodes
  // (the end of the file being read; at least `asked`). Less than the span lets an
  // indexed span decode only a prefix (SeekIndex::DecodeLength), which the cache holds
  // until a read needs more and the whole span replaces it. When a longer decode fails
  // its check (damage past `asked`), the prefix `asked` needs is decoded instead.
  Result<SpanCache::Value> Fetch(const Stream& s, size_t i, bool* decoded = nullptr,
                                 const std::function<Result<SpanCache::Value>()>* decode = nullptr,
                                 uint64_t asked = UINT64_MAX, uint64_t want = 0);
  Result<std::shared_ptr<UniqueFd>> BlobFd(Slot& slot, const LayerRecord& layer);
  Status PinLocked(Slot& slot, const LayerRecord& layer);  // Pin's work, slot.mu held
  // Open's work, slot.mu held. warm (Warm): null instead of building a sidecar,
  // unpacking, or opening a lazy layer, and null when the stream is open already.
  Result<std::shared_ptr<const Stream>> OpenLocked(Slot& slot, const LayerRecord& layer, bool warm);
  std::shared_ptr<Slot> SlotFor(const LayerRecord& layer);
  // A lazy stream whose layer completed since it was opened (the record moved: its
  // tar's size and offsets, index/lazy_virtual.h): OpenLocked replaces it.
  static bool Stale(const Stream& s, const LayerRecord& layer) {
    return s.lazy_ && s.size_ != layer.size;
  }
  const Store& store_;
  UnpackCache unpack_;
  SpanCache spans_;
  bool use_index_;
  std::mutex mu_;  // guards slots_ and next_id_
  std::map<std::string, std::shared_ptr<Slot>> slots_;
  uint64_t next_id_ = 1;
  // Decodes under way, by (stream id, span). Lock order: fly_mu_, then a cache shard.
  std::mutex fly_mu_;
  std::map<std::pair<uint64_t, uint64_t>, std::shared_ptr<Pending>> fly_;
  std::atomic<uint64_t> decoded_{0}, built_{0}, waits_{0};
  std::function<void(size_t)> decode_hook_;
  std::function<void()> open_hook_;
  // Read-ahead: the queues and their helper thread (started on the first Prefetch or
  // Warm, both of which the mount calls only from requests, so after a daemon's fork;
  // joined by the destructor).
  void PrefetchLoop();
  bool StartHelperLocked();  // pf_mu_ held; false: no thread (read-ahead is then off)
  std::mutex pf_mu_;         // guards everything below
  std::condition_variable pf_cv_;
  std::deque<LayerRecord> warm_queue_;  // Warm's layers, taken before pf_queue_
  std::deque<std::pair<std::shared_ptr<const Stream>, size_t>> pf_queue_;
  std::set<std::pair<uint64_t, uint64_t>> pf_queued_;  // (stream id, span) in pf_queue_
  uint64_t pf_bytes_ = 0;                              // span bytes in pf_queue_
  bool pf_stop_ = false;
  std::thread pf_thread_;
  std::atomic<bool> prefetch_on_{true};
  std::atomic<uint64_t> prefetched_{0};
  std::atomic<uint64_t> prefetch_fetches_{0};
  std::atomic<uint64_t> warmed_{0};
  uint64_t cache_bytes_;
};

}  // namespace imgfs

#endif  // IMGFS_FS_SPAN_CACHE_H_
