#include "registry/puller.h"

#include <fcntl.h>
#include <sys/file.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <future>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <thread>

#include "index/file_util.h"
#include "registry/image_loader.h"
#include "registry/lazy_fetch.h"
#include "registry/lazy_pull.h"
#include "registry/stage.h"

namespace imgfs {
namespace {

// Reports progress as bytes flow.
class ProgressSource : public ByteSource {
 public:
  ProgressSource(ByteSource* in, std::function<void(uint64_t)> report,
                 const std::function<bool()>* stopping = nullptr)
      : in_(in), report_(std::move(report)), stopping_(stopping) {}
  Result<size_t> Read(void* buf, size_t n) override {
    if (stopping_ && *stopping_ && (*stopping_)()) return Status::Unavailable("stopped");
    IMGFS_ASSIGN_OR_RETURN(size_t k, in_->Read(buf, n));
    total_ += k;
    auto now = std::chrono::steady_clock::now();
    if (k == 0 || now - last_ > std::chrono::milliseconds(100)) {
      last_ = now;
      report_(total_);
    }
    return k;
  }

 private:
  ByteSource* in_;
  std::function<void(uint64_t)> report_;
  const std::function<bool()>* stopping_;
  uint64_t total_ = 0;
  std::chrono::steady_clock::time_point last_{};
};

// The bytes of `first`, then those of `second` (a partial file, then the rest of the
// blob from the registry).
class ConcatSource : public ByteSource {
 public:
  ConcatSource(ByteSource* first, ByteSource* second) : first_(first), second_(second) {}
  Result<size_t> Read(void* buf, size_t n) override {
    if (first_) {
      IMGFS_ASSIGN_OR_RETURN(size_t k, first_->Read(buf, n));
      if (k > 0) return k;
      first_ = nullptr;
    }
    return second_ ? second_->Read(buf, n) : Result<size_t>(size_t{0});
  }

 private:
  ByteSource* first_;
  ByteSource* second_;
};

// An exclusive flock on ingest/locks/<hex> (released when the fd closes). Lock files
// stay (they are empty); `prune` does not sweep ingest/locks/. Errors are not fatal:
// without the lock, two processes just both download.
UniqueFd LockBlob(const Store& store, const Digest& d) {
  std::string dir = store.blobs().IngestDir() + "/locks";
  if (!MakeDirs(dir, 0700).ok()) return UniqueFd();
  auto fd = OpenFile(dir + "/" + d.hex(), O_RDWR | O_CREAT, 0600);
  if (!fd.ok()) return UniqueFd();
  while (::flock(fd->get(), LOCK_EX) != 0 && errno == EINTR) {
  }
  return std::move(*fd);
}

// Whether no process holds the blob's lock now, creating nothing (a pull whose config
// then fails leaves the store as it was): true when there is no lock file (whoever
// downloads creates it first), or when it can be taken at once (then `*held` keeps it).
bool BlobLockFree(const Store& store, const Digest& d, UniqueFd* held) {
  std::string path = store.blobs().IngestDir() + "/locks/" + d.hex();
  auto fd = OpenFile(path, O_RDWR);
  if (!fd.ok()) return !PathExists(path);
  for (;;) {
    if (::flock(fd->get(), LOCK_EX | LOCK_NB) == 0) break;
    if (errno != EINTR) return false;
  }
  *held = std::move(*fd);
  return true;
}

// A layer request sent before the config arrived (see Pull), under its blob's lock.
struct EarlyBlob {
  UniqueFd lock;
  std::unique_ptr<ByteSource> src;
};

}  // namespace

Result<Platform> ParsePlatform(const std::string& s) {
  Platform p;
  size_t a = s.find('/');
  if (a == std::string::npos || a == 0)
    return Status::InvalidArgument("platform \"" + s + "\": want os/arch[/variant]");
  p.os = s.substr(0, a);
  size_t b = s.find('/', a + 1);
  p.architecture = s.substr(a + 1, b == std::string::npos ? std::string::npos : b - a - 1);
  if (b != std::string::npos) p.variant = s.substr(b + 1);
  if (p.architecture.empty())
    return Status::InvalidArgument("platform \"" + s + "\": want os/arch[/variant]");
  return p;
}

Result<PullResult> Pull(Store& store, const Reference& in_ref, const PullOptions& opt) {
  PullResult result;
  result.ref = in_ref.Normalized();
  const Reference& ref = result.ref;
  std::mutex event_mu;
  auto emit = [&](const std::string& id, const std::string& status, uint64_t cur = 0,
                  uint64_t total = 0) {
    if (!opt.on_event) return;
    std::lock_guard<std::mutex> l(event_mu);
    opt.on_event(PullEvent{id, status, cur, total});
  };
  std::string what = ref.digest.empty() ? ref.tag : ref.digest;
  // The source: the first of opt.sources (mirrors, then the origin) that serves the
  // manifest; everything else comes from the same one.
  std::vector<PullSource> sources = opt.sources;
  if (sources.empty()) sources.push_back(PullSource{ref.domain, ref.path, false, false});
  std::unique_ptr<RegistryClient> client_holder;
  std::string src_path;
  bool src_insecure = false;
  ManifestResponse top;
  std::string skipped;  // "host: why; " of each source that failed
  for (size_t i = 0; i < sources.size(); i++) {
    RegistryOptions ro = opt.registry;
    // Bearer tokens outlive this process (until they expire): the next pull of this
    // registry and repository starts without a token round trip.
    if (ro.token_cache_dir.empty()) ro.token_cache_dir = store.root() + "/tokens";
    // registries.conf's insecure (and an http:// docker mirror): plain HTTP allowed and
    // the certificate not checked, as containers/image does.
    if (sources[i].insecure) {
      ro.insecure_registries.push_back(sources[i].host);
      ro.tls_verify = false;
    }
    auto c = std::make_unique<RegistryClient>(sources[i].host, ro);
    auto got = c->GetManifest(sources[i].path, what);
    Status st = got.status();
    if (got.ok() && !ref.digest.empty() && got->digest.str() != ref.digest) {
      st =
          Status::Corruption("manifest " + ref.digest + ": content hashes to " + got->digest.str());
    }
    if (st.ok()) {
      top = std::move(*got);
      client_holder = std::move(c);
      src_path = sources[i].path;
      src_insecure = sources[i].insecure;
      break;
    }
    if (i + 1 == sources.size()) {
      return skipped.empty() ? st : st.WithContext("after " + skipped + "then the origin");
    }
    skipped += (sources[i].mirror ? "mirror " : "") + sources[i].host + " (" + st.message() + "), ";
  }
  RegistryClient& client = *client_holder;
  result.repo_digest = top.digest.str();
  ManifestResponse chosen = top;
  DocKind kind = DetectDocKind(top.bytes, top.content_type);
  if (kind == DocKind::kSchema1)
    return Status::Unsupported("Docker schema 1 manifests are not supported");
  if (kind == DocKind::kIndex) {
    IMGFS_ASSIGN_OR_RETURN(ImageIndexDoc idx, ParseIndex(top.bytes));
    Platform want = opt.platform ? *opt.platform : HostPlatform();
    std::string offered;
    const Descriptor* pick = PickPlatform(idx.manifests, want, &offered);
    if (!pick) {
      return Status::NotFound("no image for platform " + want.String() + " in " +
                              ref.FamiliarString() +
                              " (it offers: " + (offered.empty() ? "nothing" : offered) + ")");
    }
    IMGFS_ASSIGN_OR_RETURN(chosen, client.GetManifest(src_path, pick->digest.str()));
    if (!(chosen.digest == pick->digest)) {
      return Status::Corruption("manifest " + pick->digest.str() + ": content hashes to " +
                                chosen.digest.str());
    }
    if (DetectDocKind(chosen.bytes, chosen.content_type) != DocKind::kManifest) {
      return Status::Unsupported("index entry " + pick->digest.str() + " is not an image manifest");
    }
  } else if (kind != DocKind::kManifest) {
    return Status::Unsupported("unknown manifest type \"" + top.content_type + "\"");
  }
  IMGFS_ASSIGN_OR_RETURN(Manifest m, ParseManifest(chosen.bytes));
  result.image_id = m.config.digest;
  ReportStageMark("manifest");
  std::vector<std::string> names = {ref.String(), ref.Name() + "@" + result.repo_digest};
  if (!ref.digest.empty()) names = {ref.Name() + "@" + result.repo_digest};
  if (opt.complete_only) names.clear();

  // The GC lock (shared; prune and rmi take it exclusive) is held only while the store
  // is read and changed, never across a network wait: a stalled registry must not
  // block prune. What a pull committed early stays unreferenced until its image is
  // recorded, so prune may remove it meanwhile; the commit below, under the lock,
  // checks that every layer blob is still there and fetches again what is not.
  std::optional<GcLock> lock;
  {
    IMGFS_ASSIGN_OR_RETURN(GcLock l, GcLock::Acquire(store, false));
    lock.emplace(std::move(l));
  }
  IMGFS_ASSIGN_OR_RETURN(auto existing, store.GetImage(result.image_id));
  if (opt.complete_only && !existing)
    return Status::NotFound(ref.FamiliarString() + ": not in the store (nothing to complete)");
  // Layers a lazy pull left partial: a plain pull completes them (and then checks them
  // against what the lazy pull recorded, below).
  std::map<std::string, std::string> lazy_entries;  // diff_id hex → encoded entry table
  std::map<std::string, Digest> lazy_blobs;         // diff_id hex → the blob lazy/ holds
  if (existing && !opt.lazy) {
    for (const Digest& d : existing->diff_ids) {
      IMGFS_ASSIGN_OR_RETURN(auto layer, store.GetLayer(d));
      if (!layer || !IsLazyLayer(store, *layer)) continue;
      IMGFS_ASSIGN_OR_RETURN(auto entries, store.GetEntries(d));
      lazy_entries[d.hex()] = EncodeEntries(entries);
      lazy_blobs[d.hex()] = layer->blob;
    }
  }
  if (existing && lazy_entries.empty()) {
    result.up_to_date = true;
    for (const std::string& n : names) {
      IMGFS_ASSIGN_OR_RETURN(auto have, store.GetRef(n));
      if (have && have->image_id == result.image_id.hex()) continue;
      RefRecord r{result.image_id.hex(),
                  n.find('@') != std::string::npos ? result.repo_digest : ""};
      IMGFS_RETURN_IF_ERROR(store.SetRef(n, r));
      result.up_to_date = false;  // a name moved: docker says "Downloaded newer image"
    }
    return result;
  }
  lock.reset();

  // The config stops at its declared size (capped: configs are a few KB, 16 MiB is
  // far beyond any real one).
  size_t config_cap = static_cast<size_t>(std::min<uint64_t>(m.config.size, 16 << 20));
  // A config blob already stored (left by an image removed since, not yet pruned) is
  // read from disk, checked again, and not fetched.
  std::string config;
  if (store.blobs().Has(m.config.digest)) {
    auto held = store.blobs().Read(m.config.digest, config_cap);
    if (held.ok() && Sha256Of(*held) == m.config.digest) config = std::move(*held);
  }
  // A config to fetch is fetched while the first layers' requests go out (one round
  // trip fewer). Those layers are only read once the config is verified: until then
  // their bytes wait in memory (each source's bounded queue), nothing is written, and
  // a bad config fails the pull with the store as it was. A layer is sent early only
  // when its blob and a partial file of it are absent and no process holds its blob
  // lock (BlobLockFree; so a second pull of an image being pulled still waits and
  // fetches nothing twice). Its download takes the lock as usual, and drops the early
  // request if the blob or a partial file appeared meanwhile.
  std::map<size_t, EarlyBlob> early;  // layer index → its request, already sent
  // Lazy: each layer's TOC and tar headers are fetched (FetchLazyLayer: verified, nothing
  // written) while the config is on its way, all layers at once up to
  // max_concurrent_downloads. Once the config is verified, the pull waits for them all;
  // a failed one fails the pull with its error (the others are cancelled at once), before
  // anything is written. Then each layer's job stores what was fetched (StoreLazyLayer).
  // Whenever the pull returns, fetches still running are cancelled and waited for
  // (LazyEarlyJoin).
  std::vector<size_t> lazy_todo;                       // layer indices fetched early
  std::vector<Result<LazyLayerFetched>> lazy_fetched;  // by lazy_todo's order
  std::atomic<size_t> lazy_next{0};
  std::atomic<bool> lazy_stop{false};
  std::mutex lazy_mu;
  Status lazy_error;  // the first early fetch that failed (not cancelled, not Unsupported)
  size_t lazy_error_layer = 0;  // its layer index
  std::vector<std::thread> lazy_threads;
  struct LazyEarlyJoin {
    std::atomic<bool>& stop;
    std::vector<std::thread>& threads;
    void Join() {
      for (auto& t : threads) t.join();
      threads.clear();
    }
    ~LazyEarlyJoin() {
      stop = true;
      Join();
    }
  } lazy_join{lazy_stop, lazy_threads};
  if (config.empty() && opt.lazy) {
    // At most as many layers as downloads run at once: their fetched bytes (TOC,
    // tar-split or header ranges, up to hundreds of MB for a hostile TOC) are held until
    // the config is verified; the other layers are fetched by their jobs, one job's
    // bytes at a time, as before.
    size_t early_max = static_cast<size_t>(std::max(1, opt.max_concurrent_downloads));
    std::set<Digest> asked;
    for (size_t i = 0; i < m.layers.size() && lazy_todo.size() < early_max; i++) {
      const Descriptor& d = m.layers[i];
      if (!asked.insert(d.digest).second || !LayerCompression(d.media_type).ok() ||
          store.blobs().Has(d.digest) || LazyDir::For(store.root(), d.digest).Exists())
        continue;
      lazy_todo.push_back(i);
    }
    lazy_fetched.assign(lazy_todo.size(), Status::Unavailable("not fetched"));
    auto fetcher = [&] {
      std::function<bool()> cancelled = [&lazy_stop] { return lazy_stop.load(); };
      for (size_t k; (k = lazy_next.fetch_add(1)) < lazy_todo.size();) {
        auto f = FetchLazyLayer(client, src_path, src_insecure, m.layers[lazy_todo[k]], cancelled);
        if (!f.ok() && f.status().code() != Status::Code::kUnsupported &&
            !lazy_stop.exchange(true)) {
          std::lock_guard<std::mutex> l(lazy_mu);
          lazy_error = f.status();
          lazy_error_layer = lazy_todo[k];
        }
        lazy_fetched[k] = std::move(f);
      }
    };
    int n = std::min<int>(std::max(1, opt.max_concurrent_downloads),
                          static_cast<int>(lazy_todo.size()));
    for (int t = 0; t < n; t++) lazy_threads.emplace_back(fetcher);
  }
  std::future<Result<std::string>> config_fetch;
  if (config.empty()) {
    config_fetch = std::async(std::launch::async, [&client, &src_path, &m, config_cap] {
      return client.GetBlob(src_path, m.config.digest, config_cap);
    });
    size_t want = static_cast<size_t>(std::max(1, opt.max_concurrent_downloads));
    std::set<Digest> asked;  // the same blob twice: asked once
    for (size_t i = 0; i < m.layers.size() && early.size() < want && !opt.lazy; i++) {
      const Descriptor& d = m.layers[i];
      bool dup = !asked.insert(d.digest).second;
      // (A layer lazy/ holds part of is completed from it: OpenLazyCompletion below.)
      if (dup || !LayerCompression(d.media_type).ok() || store.blobs().Has(d.digest) ||
          LazyDir::For(store.root(), d.digest).Exists())
        continue;
      UniqueFd lk;
      if (!BlobLockFree(store, d.digest, &lk) || PathExists(store.blobs().PartialPath(d.digest)) ||
          store.blobs().Has(d.digest))
        continue;
      auto b = client.OpenBlob(src_path, d.digest, d.urls, d.size, 0);
      if (!b.ok()) continue;  // asked again (and reported) by the layer's own download
      early[i] = EarlyBlob{std::move(lk), std::move(*b)};
    }
    auto got = config_fetch.get();
    if (!got.ok()) return got.status();
    config = std::move(*got);
  }
  ReportStageMark("config");
  IMGFS_ASSIGN_OR_RETURN(ImageRecord rec, RecordFromConfig(config, m.config.digest));
  if (rec.diff_ids.size() != m.layers.size()) {
    return Status::InvalidArgument("manifest has " + std::to_string(m.layers.size()) +
                                   " layers but the config has " +
                                   std::to_string(rec.diff_ids.size()) + " diff_ids");
  }
  rec.manifest_digest = chosen.digest.str();
  rec.manifest_media_type = m.media_type.empty() ? chosen.content_type : m.media_type;

  ImageStage stage(store, nullptr, /*commit_layers_early=*/true);
  // Both verified: written and fsynced while the layers download, renamed at the end.
  stage.Prewrite(config, m.config.digest);
  stage.Prewrite(chosen.bytes, chosen.digest);
  // Every early lazy fetch has ended (see above). A failed one fails the pull, unless its
  // content comes from elsewhere: its layer is held already under its diff_id, or another
  // layer of the manifest has the same diff_id (docker takes a layer's content from any
  // blob of it). Then it is pulled last, if at all (`order`: its diff_id's job goes to the
  // other layer), and the layers its failure cancelled are fetched by their jobs.
  lazy_join.Join();
  std::vector<size_t> order(m.layers.size());  // the layers, in the order jobs are chosen
  for (size_t i = 0; i < order.size(); i++) order[i] = i;
  {
    std::lock_guard<std::mutex> l(lazy_mu);
    if (!lazy_error.ok()) {
      const Digest& diff = rec.diff_ids[lazy_error_layer];
      size_t same = std::count(rec.diff_ids.begin(), rec.diff_ids.end(), diff);
      if (!stage.HaveLayer(diff) && same < 2) return lazy_error.WithContext(ref.FamiliarString());
      order.erase(order.begin() + static_cast<std::ptrdiff_t>(lazy_error_layer));
      order.push_back(lazy_error_layer);
    }
  }
  // Completing: of the layers with a lazy layer's diff_id, the one whose blob lazy/
  // holds goes first (its job reads what is local; another blob of that diff_id would
  // be downloaded in full).
  if (!lazy_blobs.empty()) {
    std::stable_partition(order.begin(), order.end(), [&](size_t i) {
      auto it = lazy_blobs.find(rec.diff_ids[i].hex());
      return it == lazy_blobs.end() || m.layers[i].digest == it->second;
    });
  }
  std::map<size_t, Result<LazyLayerFetched>> lazy_early;  // layer index → its early fetch
  for (size_t k = 0; k < lazy_todo.size(); k++)
    lazy_early.emplace(lazy_todo[k], std::move(lazy_fetched[k]));

  std::mutex early_mu;  // guards `early` and `chunk_checks` while the downloads run
  // Layers that were lazy, their chunks checked in their pull's pass: diff_id hex →
  // the tar bytes the check saw, and its verdict.
  std::map<std::string, std::pair<uint64_t, Status>> chunk_checks;
  bool warned = false;
  auto warn = [&](const std::string& msg) {
    std::lock_guard<std::mutex> l(event_mu);
    if (warned || !opt.on_warning) return;
    warned = true;  // once per pull
    opt.on_warning(msg);
  };
  constexpr int kRounds = 3;
  for (int round = 0; round < kRounds; round++) {
    std::vector<size_t> jobs;
    for (size_t i : order) {
      std::string id = m.layers[i].digest.Short();
      if (stage.HaveLayer(rec.diff_ids[i])) {
        if (round == 0) emit(id, "Already exists");
      } else if (std::find(jobs.begin(), jobs.end(), i) == jobs.end()) {
        bool dup = false;  // the same layer twice in one image: fetch it once
        for (size_t j : jobs) dup = dup || rec.diff_ids[j] == rec.diff_ids[i];
        if (!dup) {
          jobs.push_back(i);
          emit(id, "Waiting");
        }
      }
    }
    // Early requests of layers that need no download (held under their diff_id) stop.
    {
      std::lock_guard<std::mutex> l(early_mu);
      for (auto it = early.begin(); it != early.end();) {
        bool job = std::find(jobs.begin(), jobs.end(), it->first) != jobs.end();
        it = job ? std::next(it) : early.erase(it);
      }
    }
    std::atomic<size_t> next{0};
    std::mutex err_mu;
    Status first_error;
    std::atomic<bool> failed{false};
    auto worker = [&] {
      for (;;) {
        size_t j = next.fetch_add(1);
        if (j >= jobs.size() || failed.load()) return;
        size_t i = jobs[j];
        const Descriptor& d = m.layers[i];
        std::string id = d.digest.Short();
        Status st;
        auto comp = LayerCompression(d.media_type);
        bool done_lazily = false;
        if (comp.ok() && opt.lazy) {
          // Fetched early (above): stored now; else (or when that fetch came to nothing)
          // fetched and stored here. Unsupported comes back either way.
          std::optional<Result<LazyLayerFetched>> fetched;
          {
            std::lock_guard<std::mutex> l(early_mu);
            auto e = lazy_early.find(i);
            if (e != lazy_early.end()) {
              fetched.emplace(std::move(e->second));
              lazy_early.erase(e);
            }
          }
          auto info = [&]() -> Result<LazyLayerInfo> {
            if (fetched && fetched->ok()) return StoreLazyLayer(store, d, std::move(**fetched));
            if (fetched && fetched->status().code() == Status::Code::kUnsupported)
              return fetched->status();
            return PrepareLazyLayer(store, client, src_path, src_insecure, d);
          }();
          if (info.ok()) {
            st = stage.AddLazyLayer(rec.diff_ids[i], d, std::move(info->entries), info->tar_size);
            done_lazily = true;
          } else if (info.status().code() == Status::Code::kUnsupported) {
            warn(info.status().message() + ": pulled in full");
          } else {
            st = info.status();
            done_lazily = true;
          }
        }
        if (done_lazily) {
        } else if (!comp.ok()) {
          st = comp.status();
        } else {
          std::unique_ptr<FdSource> local;
          UniqueFd local_fd;
          ByteSource* src = nullptr;
          // One download of a blob at a time across processes: a second pull of the same
          // image waits here, then finds the blob verified and indexes it from disk. A
          // request sent early may come with its lock.
          std::unique_ptr<ByteSource> sent;
          UniqueFd blob_lock;
          {
            std::lock_guard<std::mutex> l(early_mu);
            auto e = early.find(i);
            if (e != early.end()) {
              blob_lock = std::move(e->second.lock);
              sent = std::move(e->second.src);
              early.erase(e);
            }
          }
          if (blob_lock.get() < 0) blob_lock = LockBlob(store, d.digest);
          if (store.blobs().HasWhole(d.digest, d.size)) {
            sent.reset();
            // Verified by an earlier, interrupted pull: index it from disk.
            auto fd = OpenFile(store.blobs().BlobPath(d.digest), O_RDONLY);
            if (fd.ok()) {
              local_fd = std::move(*fd);
              local = std::make_unique<FdSource>(local_fd.get());
              src = local.get();
            }
          }
          // A layer that was lazy: its chunks are checked against the tar in the same
          // pass (CheckCompletedLayer then need not inflate the blob again). Not for
          // eStargz: its chunk offsets are moved to the tar's after the pass.
          std::shared_ptr<ChunkVerifier> check;
          ImageStage::TarBytes tar_bytes;
          auto new_check = [&] {
            check.reset();
            tar_bytes = nullptr;
            auto lb = lazy_blobs.find(rec.diff_ids[i].hex());
            if (lb == lazy_blobs.end()) return;
            auto cm = ReadFileToString(LazyDir::For(store.root(), lb->second).chunks(), 1ull << 30);
            auto map = cm.ok() ? DecodeChunkMap(*cm) : Result<ChunkMap>(cm.status());
            if (!map.ok() ||
                std::any_of(map->chunks.begin(), map->chunks.end(),
                            [](const LazyChunk& c) { return c.codec == ChunkCodec::kGzip; }))
              return;
            check = std::make_shared<ChunkVerifier>(std::move(*map));
            tar_bytes = [check](const char* p, size_t n) { check->Feed(p, n); };
          };
          // Not stored yet: resume the blob's partial file (kept by an earlier pull that
          // failed or was killed) and fetch only the rest, with a Range request. Only
          // under the blob lock: without it, two writers could share the file.
          for (int attempt = 0; !src && attempt < 2; attempt++) {
            std::unique_ptr<BlobStore::Writer> writer;
            if (blob_lock.get() >= 0) {
              auto w = store.blobs().OpenPartial(d.digest, d.size);
              if (w.ok()) writer = std::move(*w);
            }
            uint64_t have = writer ? writer->resumed() : 0;
            UniqueFd part_fd;
            std::unique_ptr<FdSource> part;
            if (have > 0) {
              auto fd = OpenFile(writer->path(), O_RDONLY);
              if (fd.ok()) {
                part_fd = std::move(*fd);
                part = std::make_unique<FdSource>(part_fd.get(), 0, have);
              } else {
                writer->Discard();
                writer.reset();
                have = 0;
              }
            }
            std::unique_ptr<ByteSource> rest;
            // A layer pulled lazily before: what lazy/ holds is read from disk and only
            // the gaps are fetched (the blob digest checks it all; any failure fetches
            // the blob the usual way on the next attempt). After a resumed partial file
            // (a completion stopped or killed halfway), from its end on.
            bool from_lazy = false;
            if (attempt == 0 && have < d.size) {
              auto c = OpenLazyCompletion(
                  store, d,
                  std::make_shared<RegistryRangeFetcher>(
                      std::shared_ptr<RegistryClient>(&client, [](RegistryClient*) {}), src_path,
                      d.digest, d.size),
                  nullptr, have);
              if (c.ok()) {
                sent.reset();
                rest = std::move(*c);
                from_lazy = true;
              }
            }
            if (from_lazy) {
            } else if (have == 0 && sent) {
              rest = std::move(sent);
            } else if (have < d.size) {
              sent.reset();
              auto b = client.OpenBlob(src_path, d.digest, d.urls, d.size, have);
              if (!b.ok()) {
                st = b.status();
                break;
              }
              rest = std::move(*b);
            }
            ConcatSource both(part.get(), rest.get());
            ProgressSource prog(
                &both,
                [&](uint64_t n) {
                  emit(id, n >= d.size ? "Verifying Checksum" : "Downloading", n, d.size);
                },
                &opt.stopping);
            new_check();
            st = stage.AddLayer(&prog, rec.diff_ids[i], &d, *comp, std::move(writer), tar_bytes)
                     .status();
            if (st.ok()) break;
            if (opt.stopping && opt.stopping()) break;
            // A completion from lazy/ that failed in any way (a damaged local byte, a
            // server that refuses a gap's Range) is fetched the usual way, once.
            if (from_lazy && !failed.load()) continue;
            // A resumed layer that fails verification may owe it to its old bytes (a
            // torn write before a power loss): the partial file is gone, start over once.
            if (have == 0 || st.code() == Status::Code::kUnavailable) break;
          }
          if (src) {
            ProgressSource prog(src, [&](uint64_t n) {
              emit(id, n >= d.size ? "Verifying Checksum" : "Downloading", n, d.size);
            });
            new_check();
            st = stage.AddLayer(&prog, rec.diff_ids[i], &d, *comp, nullptr, tar_bytes).status();
          }
          if (st.ok() && check) {
            std::lock_guard<std::mutex> l(early_mu);
            chunk_checks[rec.diff_ids[i].hex()] = {check->fed(), check->Finish()};
          }
        }
        if (!st.ok()) {
          failed = true;
          std::lock_guard<std::mutex> l(err_mu);
          if (first_error.ok()) first_error = st;
          emit(id, "Failed");
        } else {
          emit(id, "Pull complete");
        }
      }
    };
    std::vector<std::thread> threads;
    int n = std::max(1, std::min<int>(opt.max_concurrent_downloads, static_cast<int>(jobs.size())));
    for (int t = 0; t < n; t++) threads.emplace_back(worker);
    for (auto& t : threads) t.join();
    ReportStageMark("layers");
    if (!first_error.ok()) return first_error.WithContext(ref.FamiliarString());
    {
      IMGFS_ASSIGN_OR_RETURN(GcLock l, GcLock::Acquire(store, false));
      lock.emplace(std::move(l));
    }
    // Under the lock: a layer blob removed by a prune since it was verified (or a layer
    // another image held, removed by rmi) is fetched again; nothing can go now.
    stage.ForgetMissingBlobs();
    bool complete = true;
    for (const Digest& d : rec.diff_ids) complete = complete && stage.HaveLayer(d);
    if (!complete) {
      lock.reset();
      continue;
    }

    StagedImage img;
    img.record = std::move(rec);
    img.config = std::move(config);
    img.manifest = std::move(chosen.bytes);
    img.names = names;
    img.repo_digest = result.repo_digest;  // name@digest records what the tag resolved to
    Status st = stage.AddImage(std::move(img));
    if (!st.ok()) return st.WithContext(ref.FamiliarString());
    ReportStageMark("tree");
    auto committed = stage.Commit();
    ReportStageMark("commit");
    if (!committed.ok()) return committed.status().WithContext(ref.FamiliarString());
    // Layers that were lazy are complete now: check them against their lazy record.
    for (const auto& [hex, encoded] : lazy_entries) {
      IMGFS_ASSIGN_OR_RETURN(Digest d, Digest::FromHex(hex));
      IMGFS_ASSIGN_OR_RETURN(auto layer, store.GetLayer(d));
      if (!layer) continue;
      auto seen = chunk_checks.find(hex);
      const Status* checked = seen != chunk_checks.end() && seen->second.first == layer->size
                                  ? &seen->second.second
                                  : nullptr;
      Status st = CheckCompletedLayer(store, *layer, lazy_blobs.at(hex), encoded,
                                      stage.StagedEntries(d), checked);
      if (!st.ok()) return st.WithContext(ref.FamiliarString() + " is broken");
    }
    return result;
  }
  return Status::Unavailable(
      ref.FamiliarString() +
      ": layers this pull verified were removed (by prune or rmi) before the "
      "image was recorded, " +
      std::to_string(kRounds) + " times; try again");
}

}  // namespace imgfs
