#include "cli/lazy_complete.h"

#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <memory>
#include <optional>
#include <set>
#include <vector>

#include "fs/lazy_blob.h"
#include "fs/mount_fs.h"
#include "fs/span_cache.h"
#include "fs/stop_signal.h"
#include "index/file_util.h"
#include "index/lazy_layer.h"
#include "registry/lazy_fetch.h"
#include "registry/lazy_pull.h"
#include "registry/puller.h"

namespace imgfs {
namespace {

// After the last on-demand fetch ended: a reader's next read (decode, reply, the
// kernel's next request) comes well within it, also on a loaded machine.
constexpr int64_t kQuietNs = 500'000'000;

// Nice 19 and the idle I/O class for this thread (and the threads it starts): the
// daemon's requests and every other process go first. Best effort.
void LowerPriority() {
  pid_t tid = static_cast<pid_t>(::syscall(SYS_gettid));
  (void)::setpriority(PRIO_PROCESS, static_cast<id_t>(tid), 19);
#ifdef SYS_ioprio_set
  constexpr int kWhoProcess = 1, kClassIdle = 3, kClassShift = 13;
  (void)::syscall(SYS_ioprio_set, kWhoProcess, tid, kClassIdle << kClassShift);
#endif
}

class Completer {
 public:
  Completer(std::string root, RegistryOptions registry, MountFs& fs, StopSignal& stop,
            const std::function<void(const std::string&)>& log)
      : root_(std::move(root)), registry_(std::move(registry)), fs_(fs), stop_(stop), log_(log) {}

  void Run() {
    LowerPriority();
    uint64_t seen = 0;
    bool first = true;
    using Clock = std::chrono::steady_clock;
    std::optional<Clock::time_point> retry_at;
    int64_t backoff_ms = 5000;
    while (!stop_.stopped()) {
      auto gen = fs_.store().Generation();
      bool due = retry_at && Clock::now() >= *retry_at;
      if (!first && gen.ok() && *gen == seen && !due) {
        if (!stop_.SleepFor(1000)) return;
        continue;
      }
      first = false;
      if (gen.ok()) seen = *gen;
      retry_at.reset();
      bool failed = false;
      // Most stores have no lazy layer: a generation move (any pull or tag) then costs
      // one readdir, not a read of every image and layer record.
      if (!LazyDir::AnyIn(root_)) continue;
      auto images = fs_.store().ListImages(/*layers=*/false);
      if (!images.ok()) {
        Note("cannot list the images: " + images.status().message());
        failed = true;
      } else {
        for (const ImageRecord& img : *images) {
          if (stop_.stopped()) return;
          Status st = CompleteImage(img.id);
          if (!st.ok() && !stop_.stopped()) {
            Note(st.message());
            failed = st.code() != Status::Code::kCorruption || failed;  // broken: no retry
          }
        }
      }
      if (failed) {
        retry_at = Clock::now() + std::chrono::milliseconds(backoff_ms);
        backoff_ms = std::min<int64_t>(backoff_ms * 2, 300'000);
      } else {
        backoff_ms = 5000;
      }
    }
  }

 private:
  void Note(const std::string& why) { log_("background completion: " + why); }

  RegistryOptions OptionsFor(const LazySource& src) const {
    RegistryOptions o = registry_;
    if (src.insecure) {
      o.insecure_registries.push_back(src.host);
      o.tls_verify = false;
    }
    if (o.token_cache_dir.empty()) o.token_cache_dir = root_ + "/tokens";
    o.user_agent = "imgfs-background-completion";
    // Bounded waits: a stop must not wait long behind a stalled registry.
    o.connect_timeout = std::min<long>(o.connect_timeout, 10);
    o.low_speed_seconds = std::min<long>(o.low_speed_seconds, 15);
    return o;
  }

  // Waits while on-demand fetches run (and kQuietNs after); false when stopping.
  bool Pace() {
    for (;;) {
      if (stop_.stopped()) return false;
      if (LazyBlob::OnDemandQuiet(kQuietNs)) return true;
      if (!stop_.SleepFor(20)) return false;
    }
  }

  Status CompleteImage(const Digest& id) {
    Store& store = fs_.store();
    IMGFS_ASSIGN_OR_RETURN(auto rec, store.GetImage(id));
    if (!rec) return Status::Ok();  // removed meanwhile
    std::vector<LayerRecord> lazy;
    std::set<std::string> seen;
    for (const Digest& d : rec->diff_ids) {
      if (!seen.insert(d.hex()).second) continue;
      IMGFS_ASSIGN_OR_RETURN(auto layer, store.GetLayer(d));
      if (!layer || !IsLazyLayer(store, *layer)) continue;
      // Broken (completion found the TOC lying): `imgfs images` says why; nothing to do.
      if (!LazyDir::For(root_, layer->blob).BrokenReason().empty()) continue;
      lazy.push_back(*layer);
    }
    if (lazy.empty()) return Status::Ok();
    std::string what = "image " + id.Short();
    if (rec->manifest_digest.empty())
      return Status::Unsupported(what + ": no manifest digest recorded to complete it from");
    auto text = ReadFileToString(LazyDir::For(root_, lazy[0].blob).source(), 64 << 10);
    if (!text.ok()) return text.status().WithContext(what);
    IMGFS_ASSIGN_OR_RETURN(LazySource src, DecodeLazySource(*text));
    RegistryOptions ro = OptionsFor(src);
    auto client = std::make_shared<RegistryClient>(src.host, ro);
    auto pace = [this] { return Pace(); };
    auto stopping = [this] { return stop_.stopped(); };
    uint64_t fetched = 0;
    // 1. fill lazy/ through the mount's own reader of each layer
    for (const LayerRecord& layer : lazy) {
      auto stream = fs_.layer_reader().Open(layer);
      if (!stream.ok()) return stream.status().WithContext(what);
      LazyBlob* blob = (*stream)->lazy();
      if (!blob) continue;  // completed meanwhile
      RegistryRangeFetcher fetcher(client, src.repo, layer.blob, layer.blob_size);
      Status st = blob->Complete(fetcher, pace, stopping, &fetched);
      if (!st.ok()) return st.WithContext(what);
    }
    if (stop_.stopped()) return Status::Unavailable("stopped");
    // 2. the plain pull's completion, in process: everything is local now
    Reference ref;
    ref.domain = src.host;
    ref.path = src.repo;
    ref.digest = rec->manifest_digest;
    PullOptions opt;
    opt.registry = ro;
    opt.sources = {PullSource{src.host, src.repo, src.insecure, false}};
    opt.complete_only = true;
    opt.max_concurrent_downloads = 1;
    opt.stopping = stopping;
    auto pulled = Pull(store, ref, opt);
    if (!pulled.ok()) return pulled.status().WithContext(what);
    log_("background completion: " + what + " (" + ref.Name() + ") complete; fetched " +
         std::to_string(fetched) + " bytes");
    return Status::Ok();
  }

  std::string root_;
  RegistryOptions registry_;
  MountFs& fs_;
  StopSignal& stop_;
  const std::function<void(const std::string&)>& log_;
};

}  // namespace

BackgroundTask LazyCompletionTask(const std::string& root, const RegistryOptions& registry) {
  return [root, registry](MountFs& fs, StopSignal& stop,
                          const std::function<void(const std::string&)>& log) {
    Completer(root, registry, fs, stop, log).Run();
  };
}

}  // namespace imgfs
