// RequestPool (fs/fuse_loop.h), the threads the mount daemon's READ and OPEN requests
// wait on: tasks that wait on each other each get a thread (a read waiting on a fetch
// never holds up another read), never more than the limit, and destruction runs what is
// queued (every request queued at unmount still gets its answer). The session loop
// itself is exercised through real mounts (tests/e2e: mount.sh, lazy.sh's stalled
// registry, every suite that mounts).
#include "fs/fuse_loop.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>

namespace imgfs {
namespace {

// Waits until `n` tasks have arrived, or 10 s (then the test fails, rather than hangs).
class Rendezvous {
 public:
  explicit Rendezvous(int n) : n_(n) {}
  bool Arrive() {
    std::unique_lock<std::mutex> l(mu_);
    if (++arrived_ == n_) cv_.notify_all();
    return cv_.wait_for(l, std::chrono::seconds(10), [this] { return arrived_ >= n_; });
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  int n_;
  int arrived_ = 0;
};

TEST(RequestPool, TasksThatWaitOnEachOtherEachGetAThread) {
  constexpr int kTasks = 6;
  Rendezvous all(kTasks);
  std::atomic<int> met{0};
  {
    RequestPool pool(32);
    for (int i = 0; i < kTasks; i++) {
      pool.Post([&] {
        if (all.Arrive()) met++;
      });
    }
  }  // joins
  EXPECT_EQ(met.load(), kTasks) << "tasks ran one after another, not side by side";
}

TEST(RequestPool, NeverMoreThreadsThanItsLimitAndDestructionRunsTheQueue) {
  std::atomic<int> running{0}, most{0}, done{0};
  std::mutex gate_mu;
  std::condition_variable gate_cv;
  bool open = false;
  size_t threads = 0;
  {
    RequestPool pool(2);
    for (int i = 0; i < 20; i++) {
      pool.Post([&] {
        int now = ++running;
        int m = most.load();
        while (now > m && !most.compare_exchange_weak(m, now)) {
        }
        {
          std::unique_lock<std::mutex> l(gate_mu);
          gate_cv.wait_for(l, std::chrono::seconds(10), [&] { return open; });
        }
        running--;
        done++;
      });
    }
    threads = pool.threads();
    {
      std::lock_guard<std::mutex> l(gate_mu);
      open = true;
    }
    gate_cv.notify_all();
  }  // the destructor runs what is still queued, then joins
  EXPECT_EQ(done.load(), 20);
  EXPECT_LE(most.load(), 2);
  EXPECT_EQ(threads, 2u);
}

}  // namespace
}  // namespace imgfs
