#include "fs/lazy_blob.h"

#include <fcntl.h>
#include <unistd.h>
#include <zstd.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <thread>
#include <vector>

#include "fs/span_cache.h"
#include "index/gzip_chunk.h"

namespace imgfs {
namespace {

// On-demand fetches under way in the process, and when the last one ended: background
// completion waits for them (LazyBlob::Complete's `pace`).
std::atomic<int> g_on_demand{0};
std::atomic<int64_t> g_last_on_demand_end{0};

int64_t NowNs() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

// Counts one on-demand fetch for as long as it lives.
class OnDemandFetch {
 public:
  OnDemandFetch() { g_on_demand.fetch_add(1); }
  ~OnDemandFetch() {
    g_last_on_demand_end.store(NowNs());
    g_on_demand.fetch_sub(1);
  }
  OnDemandFetch(const OnDemandFetch&) = delete;
  OnDemandFetch& operator=(const OnDemandFetch&) = delete;
};

}  // namespace

int LazyBlob::OnDemandFetches() {
  return g_on_demand.load();
}
int64_t LazyBlob::LastOnDemandEndNs() {
  return g_last_on_demand_end.load();
}
bool LazyBlob::OnDemandQuiet(int64_t quiet_ns) {
  if (g_on_demand.load() != 0) return false;
  int64_t last = g_last_on_demand_end.load();
  return last == 0 || NowNs() - last >= quiet_ns;
}

Result<std::shared_ptr<LazyBlob>> LazyBlob::Open(const std::string& root,
                                                 const LayerRecord& layer) {
  std::shared_ptr<LazyBlob> b(new LazyBlob());
  b->dir_ = LazyDir::For(root, layer.blob);
  b->blob_ = layer.blob;
  b->name_ = "layer " + layer.diff_id.str();
  std::string why = b->dir_.BrokenReason();
  if (!why.empty()) return Status::Corruption(b->name_ + ": " + why);
  // Errors name the layer and the file (a damaged store file, not the network).
  auto in = [&](const std::string& path) { return b->name_ + ": " + path; };
  auto cm = ReadFileToString(b->dir_.chunks(), 1ull << 30);
  if (!cm.ok()) return cm.status().WithContext(b->name_);
  auto map = DecodeChunkMap(*cm);
  if (!map.ok()) return map.status().WithContext(in(b->dir_.chunks()));
  b->map_ = std::move(*map);
  if (b->map_.blob_size != layer.blob_size || b->map_.tar_size != layer.size)
    return Status::Corruption(b->name_ + ": lazy chunk map does not match the layer record");
  auto src = ReadFileToString(b->dir_.source(), 64 << 10);
  if (!src.ok()) return src.status().WithContext(b->name_);
  auto source = DecodeLazySource(*src);
  if (!source.ok()) return source.status().WithContext(in(b->dir_.source()));
  b->source_ = std::move(*source);
  auto ranges = b->dir_.LoadRanges(layer.blob_size);
  if (!ranges.ok()) return ranges.status().WithContext(in(b->dir_.ranges()));
  b->ranges_ = std::move(*ranges);
  // Read-write when the store allows it (a read-only store still serves local bytes).
  auto fd = OpenFile(b->dir_.data(), O_RDWR);
  if (!fd.ok()) fd = OpenFile(b->dir_.data(), O_RDONLY);
  if (!fd.ok()) return fd.status().WithContext(b->name_);
  b->data_ = std::move(*fd);
  return b;
}

uint64_t LazyBlob::local_bytes() {
  std::lock_guard<std::mutex> l(mu_);
  return ranges_.Total();
}

Status LazyBlob::SaveRanges() {
  // The file is replaced (temp, fsync, rename) outside mu_, which reads of local bytes
  // take; encoded and written under save_mu_, so the last file written is the newest map.
  std::lock_guard<std::mutex> sl(save_mu_);
  std::string encoded;
  {
    std::lock_guard<std::mutex> l(mu_);
    encoded = ranges_.Encode();
  }
  return WriteFileAtomic(dir_.ranges(), encoded, 0600);
}

Status LazyBlob::Ensure(uint64_t start, uint64_t end) {
  {
    // Local already: no wait behind another read's fetch (fetch_mu_ is held across
    // network round trips).
    std::lock_guard<std::mutex> l(mu_);
    if (ranges_.Covers(start, end)) return Status::Ok();
  }
  std::lock_guard<std::mutex> fl(fetch_mu_);
  std::vector<std::pair<uint64_t, uint64_t>> want;
  RangeMap local;  // what was local when the requests were planned: not written again
  {
    std::lock_guard<std::mutex> l(mu_);
    auto missing = ranges_.Missing(start, end);
    if (missing.empty()) return Status::Ok();  // fetched by another read meanwhile
    // A miss where the last fetch ended (within kMinFetch): a reader going through the
    // blob; each such miss doubles the window, up to kMaxWindow.
    uint64_t at = missing.front().first;
    bool onward =
        last_fetch_.second != 0 && at >= last_fetch_.first && at <= last_fetch_.second + kMinFetch;
    window_ = onward ? std::min(window_ * 2, kMaxWindow) : kMinFetch;
    for (auto [s, e] : missing) {
      // At least `window_` per request: widen forwards (then backwards at the blob's end).
      if (e - s < window_) {
        e = std::min(map_.blob_size, s + window_);
        if (e - s < window_) s = e > window_ ? e - window_ : 0;
      }
      if (!want.empty() && s <= want.back().second) {
        want.back().second = std::max(want.back().second, e);
      } else {
        want.emplace_back(s, e);
      }
    }
    // Widening may cover local bytes again: fetch what is still missing, merged. Missing
    // pieces less than kMinFetch apart go in one request (a lazy pull leaves a small
    // local island per tar header; a request per piece would cost a round trip each):
    // the bytes between come along, and those that were local are not written again.
    std::vector<std::pair<uint64_t, uint64_t>> rest;
    for (auto [s, e] : want) {
      for (auto m : ranges_.Missing(s, e)) {
        if (!rest.empty() && m.first - rest.back().second < kMinFetch) {
          rest.back().second = m.second;
        } else {
          rest.push_back(m);
        }
      }
    }
    want.swap(rest);
    if (!want.empty()) local = ranges_;
  }
  if (want.empty()) return Status::Ok();
  last_fetch_ = {want.front().first, want.back().second};
  OnDemandFetch counted;  // background completion pauses meanwhile
  if (!fetcher_) {
    auto f = MakeRangeFetcher(source_, blob_, map_.blob_size);
    if (!f.ok())
      return f.status().WithContext(name_ + ": fetching from " + source_.host + "/" + source_.repo);
    fetcher_ = std::move(*f);
  }
  // Each request's bytes go to `data` as they come; a range is named in the map only
  // after all of it is on disk and synced.
  std::vector<Status> results(want.size());
  std::vector<RangeMap> got(want.size());
  std::atomic<size_t> next{0};
  auto worker = [&] {
    for (;;) {
      size_t i = next.fetch_add(1);
      if (i >= want.size()) return;
      auto [s, e] = want[i];
      results[i] = fetcher_->Fetch(s, e - s, [&](uint64_t pos, const char* p, size_t n) {
        fetched_ += n;
        // Bytes local already may be read meanwhile: only the others are written.
        for (auto [a, b] : local.Missing(pos, pos + n)) {
          ssize_t k = static_cast<ssize_t>(b - a);
          if (::pwrite(data_.get(), p + (a - pos), b - a, static_cast<off_t>(a)) != k)
            return Status::FromErrno("write " + dir_.data());
          got[i].Add(a, b);
        }
        return Status::Ok();
      });
    }
  };
  std::vector<std::thread> threads;
  int nt = std::min<int>(kParallel, static_cast<int>(want.size()));
  for (int t = 1; t < nt; t++) threads.emplace_back(worker);
  worker();
  for (auto& t : threads) t.join();
  Status first_error;
  for (size_t i = 0; i < want.size(); i++) {
    if (!results[i].ok() && first_error.ok()) first_error = results[i];
  }
  if (::fdatasync(data_.get()) != 0) return Status::FromErrno("fdatasync " + dir_.data());
  {
    std::lock_guard<std::mutex> l(mu_);
    for (size_t i = 0; i < want.size(); i++) {
      // A failed request's bytes are kept up to what arrived (they are checked on decode).
      for (auto& [s, e] : got[i].ranges()) ranges_.Add(s, e);
    }
  }
  Status st = SaveRanges();
  if (!st.ok() && first_error.ok()) first_error = st;
  if (!first_error.ok()) {
    return first_error.WithContext(name_ + ": fetching blob " + blob_.str() + " from " +
                                   fetcher_->Where());
  }
  return Status::Ok();
}

Status LazyBlob::FetchInto(RangeFetcher& f, const std::vector<std::pair<uint64_t, uint64_t>>& want,
                           const std::function<bool()>& keep, uint64_t* fetched, RangeMap* got) {
  // Bytes are written as they come (a stop keeps what arrived: checked on decode and by
  // the blob digest at completion); a stop is reported after they are written.
  return f.FetchRanges(want, [&](uint64_t pos, const char* p, size_t n) {
    if (::pwrite(data_.get(), p, n, static_cast<off_t>(pos)) != static_cast<ssize_t>(n))
      return Status::FromErrno("write " + dir_.data());
    fetched_ += n;
    *fetched += n;
    got->Add(pos, pos + n);
    if (keep && !keep()) return Status::Unavailable("stopped");
    return Status::Ok();
  });
}

Status LazyBlob::FlushPending(RangeMap* pending) {
  if (pending->size() == 0) return Status::Ok();
  if (::fdatasync(data_.get()) != 0) return Status::FromErrno("fdatasync " + dir_.data());
  {
    std::lock_guard<std::mutex> l(mu_);
    for (auto& [s, e] : pending->ranges()) ranges_.Add(s, e);
  }
  *pending = RangeMap();
  return SaveRanges();
}

Status LazyBlob::Complete(RangeFetcher& fetcher, const std::function<bool()>& pace,
                          const std::function<bool()>& stopping, uint64_t* fetched, uint64_t piece,
                          int parallel) {
  piece = std::max<uint64_t>(piece, 1);
  parallel = std::max(parallel, 1);
  std::mutex cm;     // guards everything below; taken before mu_
  RangeMap claimed;  // asked by a worker: in flight, or arrived and not yet named
  RangeMap pending;  // arrived, not yet synced and named (FlushPending): a sync and a
                     // range map write per piece cost more than the piece on a fast link
  uint64_t unsynced = 0, total = 0;
  auto flushed_at = std::chrono::steady_clock::now();
  Status first_error;
  // The missing ranges (neither local nor claimed) of the window of `piece` bytes from
  // the first such byte, at most kPieceRanges of them: one request. A lazy pull leaves
  // thousands of small local ranges (tar headers); a request per gap would be
  // thousands of round trips. Called under cm.
  auto next_window = [&] {
    std::vector<std::pair<uint64_t, uint64_t>> want;
    std::lock_guard<std::mutex> l(mu_);
    uint64_t at = 0;
    bool found = false;
    for (auto [a, b] : ranges_.Missing(0, map_.blob_size)) {
      auto m = claimed.Missing(a, b);
      if (!m.empty()) {
        at = m[0].first;
        found = true;
        break;
      }
    }
    if (!found) return want;
    uint64_t end = std::min(map_.blob_size, at + piece);
    for (auto [a, b] : ranges_.Missing(at, end)) {
      for (auto [c, d] : claimed.Missing(a, b)) {
        if (want.size() < kPieceRanges) want.emplace_back(c, d - c);
      }
    }
    for (auto [off, len] : want) claimed.Add(off, off + len);
    return want;
  };
  std::function<bool()> keep;
  if (stopping) keep = [&stopping] { return !stopping(); };
  auto worker = [&] {
    for (;;) {
      std::vector<std::pair<uint64_t, uint64_t>> want;
      {
        std::lock_guard<std::mutex> l(cm);
        if (!first_error.ok()) return;
        want = next_window();
      }
      if (want.empty()) return;
      Status st = (pace && !pace()) ? Status::Unavailable("stopped") : Status::Ok();
      RangeMap got;
      uint64_t n = 0;
      if (st.ok()) st = FetchInto(fetcher, want, keep, &n, &got);
      std::lock_guard<std::mutex> l(cm);
      total += n;
      for (auto& [s, e] : got.ranges()) pending.Add(s, e);
      unsynced += got.Total();
      if (st.ok() && (unsynced >= kSyncBytes ||
                      std::chrono::steady_clock::now() - flushed_at >= std::chrono::seconds(1))) {
        st = FlushPending(&pending);
        unsynced = 0;
        flushed_at = std::chrono::steady_clock::now();
      }
      if (!st.ok()) {
        if (first_error.ok()) first_error = st;
        return;
      }
    }
  };
  std::vector<std::thread> threads;
  for (int t = 1; t < parallel; t++) threads.emplace_back(worker);
  worker();
  for (auto& t : threads) t.join();
  if (fetched) *fetched += total;
  Status st = FlushPending(&pending);
  if (first_error.ok()) first_error = st;
  if (first_error.ok()) {
    // Every missing byte was asked for once: what is still missing, a registry did not
    // send (or a read found it damaged meanwhile). The caller tries again later.
    std::lock_guard<std::mutex> l(mu_);
    if (!ranges_.Missing(0, map_.blob_size).empty())
      first_error = Status::Unavailable(fetcher.Where() + " sent less than asked for");
  }
  if (!first_error.ok()) {
    return first_error.WithContext(name_ + ": completing blob " + blob_.str() + " from " +
                                   fetcher.Where());
  }
  return Status::Ok();
}

Result<std::shared_ptr<const std::string>> LazyBlob::Decode(size_t i) {
  const LazyChunk& c = map_.chunks[i];
  std::string what = name_ + ": chunk at tar offset " + std::to_string(c.tar_offset);
  auto out = std::make_shared<std::string>();
  if (c.codec == ChunkCodec::kZeros) {
    out->assign(c.size, '\0');
  } else {
    std::string comp(c.blob_length, '\0');
    IMGFS_RETURN_IF_ERROR(
        PreadAll(data_.get(), comp.data(), comp.size(), static_cast<off_t>(c.blob_offset)));
    bool bad = true;
    if (c.codec == ChunkCodec::kGzip) {
      // eStargz: gzip members; `skip` bytes of tar header first; checked against the
      // chunk digest inside (index/gzip_chunk.h).
      auto g = DecodeGzipChunk(comp, c.skip, c.size, c.digest);
      if (g.ok()) {
        *out = std::move(*g);
        return std::shared_ptr<const std::string>(out);
      }
      if (g.status().code() != Status::Code::kCorruption) return g.status().WithContext(what);
    } else if (c.codec == ChunkCodec::kZstd) {
      out->resize(c.size);
      std::unique_ptr<ZSTD_DCtx, size_t (*)(ZSTD_DCtx*)> d(ZSTD_createDCtx(), ZSTD_freeDCtx);
      ZSTD_inBuffer in{comp.data(), comp.size(), 0};
      ZSTD_outBuffer ob{out->data(), out->size(), 0};
      size_t r = 1;
      while (in.pos < in.size) {
        size_t before_in = in.pos, before_out = ob.pos;
        r = ZSTD_decompressStream(d.get(), &ob, &in);
        if (ZSTD_isError(r)) break;
        if (in.pos == before_in && ob.pos == before_out) break;  // output full
      }
      bad = ZSTD_isError(r) || ob.pos != c.size || in.pos != in.size;
      if (!bad && Sha256Of(*out) == c.digest) return std::shared_ptr<const std::string>(out);
    } else {
      return Status::Unsupported(what + ": unknown chunk codec");
    }
    // Nothing kept: the bytes go from the range map, so the next read fetches them.
    {
      std::lock_guard<std::mutex> l(mu_);
      ranges_.Remove(c.blob_offset, c.blob_offset + c.blob_length);
    }
    (void)SaveRanges();
    return Status::Corruption(what + " (blob bytes " + std::to_string(c.blob_offset) + "-" +
                              std::to_string(c.blob_offset + c.blob_length) +
                              "): content does not match the digest in the table of contents");
  }
  if (Sha256Of(*out) != c.digest) return Status::Corruption(what + ": zero chunk digest mismatch");
  return std::shared_ptr<const std::string>(out);
}

Result<size_t> LazyBlob::Read(char* buf, size_t n, uint64_t off, SpanCache& cache,
                              uint64_t cache_id, const Once& once) {
  if (off >= map_.tar_size) return size_t{0};
  n = static_cast<size_t>(std::min<uint64_t>(n, map_.tar_size - off));
  // The chunks [first, last) holding the read.
  auto it = std::upper_bound(map_.chunks.begin(), map_.chunks.end(), off,
                             [](uint64_t o, const LazyChunk& c) { return o < c.tar_offset; });
  if (it == map_.chunks.begin())
    return Status::InvalidArgument(name_ + ": read outside file content");
  size_t first = static_cast<size_t>(it - map_.chunks.begin()) - 1;
  size_t last = first;
  while (last < map_.chunks.size() && map_.chunks[last].tar_offset < off + n) last++;
  // Fetch what the chunks not in the cache need, in one go.
  uint64_t lo = UINT64_MAX, hi = 0;
  for (size_t i = first; i < last; i++) {
    const LazyChunk& c = map_.chunks[i];
    if (c.codec == ChunkCodec::kZeros || cache.Get(cache_id, i)) continue;
    lo = std::min(lo, c.blob_offset);
    hi = std::max(hi, c.blob_offset + c.blob_length);
  }
  if (lo < hi) IMGFS_RETURN_IF_ERROR(Ensure(lo, hi));
  size_t done = 0;
  for (size_t i = first; i < last && done < n; i++) {
    const LazyChunk& c = map_.chunks[i];
    uint64_t pos = off + done;
    if (pos < c.tar_offset) return Status::InvalidArgument(name_ + ": read outside file content");
    if (pos >= c.tar_offset + c.size) continue;
    SpanCache::Value v = cache.Get(cache_id, i);
    if (!v) {
      Decoder decode = [&]() -> Result<SpanCache::Value> {
        auto d = Decode(i);
        if (!d.ok() && d.status().code() == Status::Code::kCorruption &&
            c.codec != ChunkCodec::kZeros) {
          // The bytes on disk may be from an earlier bad response (fetched with another
          // chunk and never checked): they are out of the map now; fetch them once more.
          IMGFS_RETURN_IF_ERROR(Ensure(c.blob_offset, c.blob_offset + c.blob_length));
          d = Decode(i);
        }
        return d;
      };
      auto d = once ? once(i, decode) : decode();
      if (!d.ok()) return d.status();
      v = *d;
      if (!once) cache.Put(cache_id, i, v);
    }
    uint64_t in = pos - c.tar_offset;
    size_t k = static_cast<size_t>(std::min<uint64_t>(n - done, c.size - in));
    std::memcpy(buf + done, v->data() + in, k);
    done += k;
  }
  if (done < n && done == 0) return Status::InvalidArgument(name_ + ": read outside file content");
  return done;
}

}  // namespace imgfs
