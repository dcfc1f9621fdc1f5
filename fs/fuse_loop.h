// The mount daemon's session loop (fs/fuse_adapter.cc; `-o spin=US`, 50 by default;
// spin=0 runs libfuse's multithreaded loop instead): one thread reads the FUSE device
// and answers names, attributes, xattrs, listings, forgets and reads of decoded spans
// itself; OPEN, the READs that may wait for a decode or a fetch, and whatever MountFs
// says would wait on that thread (MountFs::NoWait: a tree to build, new names, a layer
// being opened) are handed to a RequestPool (docs/architecture.md, "The session loop").
//
// Why not libfuse's multithreaded loop: there each request wakes whichever of the idle
// threads waited longest, so a run of small requests (a cold `ls -l` of 10,000 image
// roots is 20,000 GETXATTRs of POSIX ACLs) costs two thread wake-ups per request, and
// on a virtual machine whose idle vCPUs halt, a wake-up on another vCPU is an
// inter-processor interrupt through the hypervisor. The loop thread instead reads the
// device without blocking for `spin_us` after each request before it sleeps (yielding
// the CPU to any other runnable thread meanwhile): a request that follows within that
// window costs no wake-up of the daemon.
// docs/benchmarks.md has the measurements; docs/architecture.md the threads.
//
// Also here, the two threads that serve the session beside the loop: EntryInvalidator
// and GenerationWatcher.
#ifndef IMGFS_FS_FUSE_LOOP_H_
#define IMGFS_FS_FUSE_LOOP_H_

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <functional>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "fs/mount_fs.h"

struct fuse_session;

namespace imgfs {

// Threads for requests that may wait. A task gets an idle thread, or a new one while
// fewer than `max_threads` exist (none idle means every thread waits on something: a
// fetch, a decode); past that, tasks queue. Threads stay until the pool is destroyed,
// which first runs every queued task.
class RequestPool {
 public:
  explicit RequestPool(size_t max_threads);
  ~RequestPool();
  RequestPool(const RequestPool&) = delete;
  RequestPool& operator=(const RequestPool&) = delete;
  // Runs `task` on a pool thread; on the caller's thread when no thread can be started.
  void Post(std::function<void()> task);
  size_t threads() const;

 private:
  void Run();
  const size_t max_threads_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> queue_;
  std::vector<std::thread> threads_;
  size_t idle_ = 0;
  bool stop_ = false;
};

// Serves `se` on the calling thread, which must be the process's main thread (signals
// go to it first: SIGTERM ends the loop through libfuse's handler) until the session
// exits (unmount, signal). Returns 0, or minus the errno that ended it. The device is
// left in blocking mode again.
int ServeSession(fuse_session* se, int spin_us);

// Sends the kernel FUSE_NOTIFY_INVAL_ENTRY for the names MountFs reports stale
// (MountFs::set_invalidator), from a thread of its own: a request's handler must not
// send it, for the kernel may hold the directory's lock for that very request. A name
// already waiting is not queued twice, so the queue holds at most one entry per image
// instance (MountFs allows 2^20).
class EntryInvalidator {
 public:
  // trace: where to log each notification sent (-o debug), or null.
  EntryInvalidator(fuse_session* se, FILE* trace)
      : se_(se), trace_(trace), thread_([this] { Run(); }) {
    // Tests only: hold each notification back this long (a notification in flight at
    // shutdown, tests/e2e/inval_shutdown.sh).
    if (const char* e = std::getenv("IMGFS_TEST_NOTIFY_DELAY_MS")) delay_ms_ = std::atoi(e);
  }
  // Notifications sent, and how many of them found a dentry to drop (the log at
  // unmount; tests/e2e/names_race.sh counts them).
  uint64_t sent() const { return sent_.load(); }
  uint64_t dropped() const { return dropped_.load(); }
  ~EntryInvalidator() {
    {
      std::lock_guard<std::mutex> l(mu_);
      stop_ = true;
    }
    cv_.notify_one();
    thread_.join();
  }
  // Takes no more names and returns once no notification is in flight, calling `serve`
  // meanwhile. The kernel handles a notification under the parent directory's lock,
  // which a lookup there holds until the daemon answers it: once the session loop has
  // returned (a signal), `serve` must answer requests, or the notification, the lookup
  // and the daemon's exit all wait forever.
  void Stop(const std::function<void()>& serve) {
    std::unique_lock<std::mutex> l(mu_);
    stop_ = true;
    cv_.notify_one();
    while (sending_) {
      l.unlock();
      serve();
      l.lock();
    }
  }
  void Push(const MountFs::StaleName& n) {
    {
      std::lock_guard<std::mutex> l(mu_);
      if (queue_.size() >= kMaxQueued || !queued_.emplace(n.parent, n.name).second) return;
      queue_.push_back(n);
    }
    cv_.notify_one();
  }

 private:
  static constexpr size_t kMaxQueued = size_t{1} << 20;
  void Run();  // fuse_loop.cc
  fuse_session* se_;
  FILE* trace_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<MountFs::StaleName> queue_;
  std::set<std::pair<uint64_t, std::string>> queued_;  // the names in queue_
  bool stop_ = false;
  bool sending_ = false;  // a notification is in flight
  std::atomic<int> delay_ms_{0};
  std::atomic<uint64_t> sent_{0};
  std::atomic<uint64_t> dropped_{0};
  std::thread thread_;  // last: starts once the members above exist
};

// Reads the store's generation every 100 ms (MountFs::CheckGeneration), so a name that
// moved or went away is invalidated in the kernel (EntryInvalidator) even when no
// request comes. That is what lets image roots' dentries be cached as long as their
// content (MountFs::Options::names_watched): a retag shows within about 0.1 s.
class GenerationWatcher {
 public:
  explicit GenerationWatcher(MountFs* fs) : fs_(fs), thread_([this] { Run(); }) {}
  ~GenerationWatcher() {
    {
      std::lock_guard<std::mutex> l(mu_);
      stop_ = true;
    }
    cv_.notify_one();
    thread_.join();
  }

 private:
  void Run() {
    std::unique_lock<std::mutex> l(mu_);
    while (!cv_.wait_for(l, std::chrono::milliseconds(100), [this] { return stop_; })) {
      l.unlock();
      fs_->CheckGeneration();  // one short LMDB read when nothing changed
      l.lock();
    }
  }
  MountFs* fs_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;
  std::thread thread_;  // last: starts once the members above exist
};

}  // namespace imgfs

#endif  // IMGFS_FS_FUSE_LOOP_H_
