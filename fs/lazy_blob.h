// Reads of a lazily pulled layer (index/lazy_layer.h): a read of tar bytes [off, off+n)
// finds the chunks holding them; chunks whose compressed bytes are not in the partial
// blob are fetched first (missing ranges widened to >= 256 KiB, doubling up to 4 MiB for
// a reader going on through the blob, merged; pieces less than 256 KiB of local bytes
// apart in one request, the local bytes not written again; up to 4 Range requests at
// once), written to `data`, synced, then named in the range map. Each
// chunk is decoded and checked against its TOC digest before a byte of it is served;
// a chunk that fails is dropped from the range map (nothing kept) and fetched once
// more (its bytes may have come with an earlier bad response); failing again, the read
// fails with Corruption. Decoded chunks are kept in the reader's SpanCache.
//
// Background completion (the mount daemon, -o complete=on): Complete fetches what the
// blob still lacks in pieces (the gaps inside a window of kPiece bytes, at most
// kPieceRanges of them, in one multi-range request) through a fetcher of its own, not
// under fetch_mu_, so an on-demand read never queues behind it; before each piece it
// asks `pace` (which waits while on-demand fetches run anywhere in the process:
// OnDemandQuiet) whether to go on. Pieces are written to `data` and, every kSyncBytes
// or second and when it returns, synced and named in the range map as a read's fetch
// is: a stop leaves lazy/ as it was plus what arrived, a crash plus what was synced.
// Reads see the pieces once named (the same range map).
//
// Thread-safety: Read may be called from any thread; on-demand fetches are serialised
// per layer; Complete may run beside them (one Complete per layer at a time).
#ifndef IMGFS_FS_LAZY_BLOB_H_
#define IMGFS_FS_LAZY_BLOB_H_

#include <atomic>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "index/file_util.h"
#include "index/lazy_layer.h"
#include "index/store.h"

namespace imgfs {

class SpanCache;

class LazyBlob {
 public:
  static constexpr uint64_t kMinFetch = 256 << 10;
  // A reader going on through the blob (each miss where the last fetch ended) doubles
  // the least a fetch asks for, up to this.
  static constexpr uint64_t kMaxWindow = 4 << 20;
  static constexpr int kParallel = 4;
  static Result<std::shared_ptr<LazyBlob>> Open(const std::string& root, const LayerRecord& layer);
  // Reads [off, off+n) of the layer's tar stream; only file contents can be read.
  // A chunk not in `cache` is decoded (and checked) by a Decoder; `once`, when given,
  // runs it so that readers missing the same chunk at the same time share one decode,
  // and puts the chunk in the cache (LayerReader's single decode, fs/span_cache.h);
  // without it every reader decodes for itself.
  using Decoder = std::function<Result<std::shared_ptr<const std::string>>()>;
  using Once = std::function<Result<std::shared_ptr<const std::string>>(size_t chunk,
                                                                        const Decoder& decode)>;
  Result<size_t> Read(char* buf, size_t n, uint64_t off, SpanCache& cache, uint64_t cache_id,
                      const Once& once = nullptr);
  uint64_t local_bytes();
  uint64_t fetched_bytes() const { return fetched_.load(); }

  static constexpr uint64_t kPiece = 1 << 20;
  static constexpr size_t kPieceRanges = 256;      // gaps asked in one request at most
  static constexpr uint64_t kSyncBytes = 8 << 20;  // synced and named at least this often
  static constexpr int kCompleteParallel = 4;
  // Makes the whole blob local (see the header comment). `pace` is called before each
  // piece and may block; false stops (Unavailable "stopped"). `stopping`, asked as
  // bytes arrive, true aborts the piece under way (what arrived is kept). `fetcher`
  // fetches this layer's blob. `fetched` (optional) gets the bytes received. `piece`:
  // the most one request spans; `parallel`: requests at once (each after `pace`), which
  // hides a link's per-request latency.
  Status Complete(RangeFetcher& fetcher, const std::function<bool()>& pace,
                  const std::function<bool()>& stopping, uint64_t* fetched = nullptr,
                  uint64_t piece = kPiece, int parallel = kCompleteParallel);
  // On-demand fetches (reads' Ensure) under way in this process, and the steady-clock
  // time in ns the last one ended (0: none yet).
  static int OnDemandFetches();
  static int64_t LastOnDemandEndNs();
  // Whether none runs now and none ended in the last `quiet_ns` nanoseconds
  // (background completion's pace).
  static bool OnDemandQuiet(int64_t quiet_ns);

 private:
  LazyBlob() = default;
  // Makes [start, end) of the blob local.
  Status Ensure(uint64_t start, uint64_t end);
  Result<std::shared_ptr<const std::string>> Decode(size_t i);
  // Writes ranges_ to the range map file.
  Status SaveRanges();
  // Fetches `want` (offset, length) with `f` (FetchRanges): bytes to `data`, their
  // ranges to `got` (FlushPending names them). `keep` is asked as bytes arrive;
  // false aborts the transfer (what arrived is kept).
  Status FetchInto(RangeFetcher& f, const std::vector<std::pair<uint64_t, uint64_t>>& want,
                   const std::function<bool()>& keep, uint64_t* fetched, RangeMap* got);
  // Syncs `data`, then names `pending` in the range map (memory and file) and clears it.
  Status FlushPending(RangeMap* pending);
  LazyDir dir_;
  std::string name_;  // "layer sha256:…"
  Digest blob_;
  ChunkMap map_;
  LazySource source_;
  UniqueFd data_;
  std::mutex fetch_mu_;  // held while fetching; guards fetcher_, last_fetch_, window_
  std::unique_ptr<RangeFetcher> fetcher_;
  std::pair<uint64_t, uint64_t> last_fetch_{0, 0};  // the span the last fetch asked for
  uint64_t window_ = kMinFetch;                     // the least the next fetch asks for
  std::mutex save_mu_;  // held while writing the range map file; taken before mu_
  std::mutex mu_;       // guards ranges_
  RangeMap ranges_;
  std::atomic<uint64_t> fetched_{0};
};

}  // namespace imgfs

#endif  // IMGFS_FS_LAZY_BLOB_H_
