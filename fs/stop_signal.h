// A stop request for a background thread of the mount daemon (fs/fuse_adapter.h,
// MountOptions::background): the thread sleeps in SleepFor, which returns at once when
// Stop is called, and checks stopped() between steps.
//
// Thread-safety: all methods may be called from any thread.
#ifndef IMGFS_FS_STOP_SIGNAL_H_
#define IMGFS_FS_STOP_SIGNAL_H_

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>

namespace imgfs {

class StopSignal {
 public:
  void Stop() {
    {
      std::lock_guard<std::mutex> l(mu_);
      stopped_.store(true);
    }
    cv_.notify_all();
  }
  bool stopped() const { return stopped_.load(); }
  // Sleeps up to `ms` milliseconds; false when stopped (then at once).
  bool SleepFor(int64_t ms) {
    std::unique_lock<std::mutex> l(mu_);
    return !cv_.wait_for(l, std::chrono::milliseconds(ms), [this] { return stopped_.load(); });
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::atomic<bool> stopped_{false};
};

}  // namespace imgfs

#endif  // IMGFS_FS_STOP_SIGNAL_H_
