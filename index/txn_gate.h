#ifndef IMGFS_INDEX_TXN_GATE_H_
#define IMGFS_INDEX_TXN_GATE_H_

#include <condition_variable>
#include <mutex>

namespace imgfs {

// Keeps an LMDB environment's map from being resized under an open transaction.
// mdb_env_set_mapsize may run only while no transaction of this process is open;
// LMDB does not check, and a resize under a reader unmaps the pages it is reading.
// Every transaction is Enter()ed for its whole life; a resize runs in Exclusive(),
// which stops new transactions, waits for the open ones to end, and then runs alone.
//
// A pending resize blocks new transactions (it is not starved by a stream of short
// readers), except on a thread that already has one open: that thread goes on, as
// waiting would deadlock it against its own transaction. Exclusive() on such a
// thread returns false without running (it would wait for itself).
class TxnGate {
 public:
  void Enter() {
    std::unique_lock<std::mutex> l(mu_);
    if (held_on_this_thread_ == 0) cv_.wait(l, [&] { return !resizing_; });
    active_++;
    held_on_this_thread_++;
  }
  void Leave() {
    std::lock_guard<std::mutex> l(mu_);
    held_on_this_thread_--;
    if (--active_ == 0) cv_.notify_all();
  }
  // Runs fn() with no transaction open in this process. False (fn not run) when the
  // calling thread holds one.
  template <typename Fn>
  bool Exclusive(Fn fn) {
    std::unique_lock<std::mutex> l(mu_);
    if (held_on_this_thread_ != 0) return false;
    cv_.wait(l, [&] { return !resizing_; });
    resizing_ = true;
    cv_.wait(l, [&] { return active_ == 0; });
    fn();
    resizing_ = false;
    cv_.notify_all();
    return true;
  }
  bool ResizePendingForTest() {
    std::lock_guard<std::mutex> l(mu_);
    return resizing_;
  }
  int ActiveForTest() {
    std::lock_guard<std::mutex> l(mu_);
    return active_;
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  int active_ = 0;
  bool resizing_ = false;
  // Counted over every gate (a thread_local cannot be per object): a thread with a
  // transaction of another store open is let through a pending resize too, and cannot
  // resize. Neither breaks the resize rule; imgfs opens one store per process.
  static inline thread_local int held_on_this_thread_ = 0;
};

}  // namespace imgfs

#endif  // IMGFS_INDEX_TXN_GATE_H_
