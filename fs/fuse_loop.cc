// The session loop and the pool of the mount daemon (see fuse_loop.h).
#include "fs/fuse_loop.h"

#include <fcntl.h>
#include <fuse_lowlevel.h>
#include <poll.h>
#include <sched.h>

#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <system_error>

namespace imgfs {

RequestPool::RequestPool(size_t max_threads) : max_threads_(max_threads ? max_threads : 1) {}

RequestPool::~RequestPool() {
  {
    std::lock_guard<std::mutex> l(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  for (std::thread& t : threads_) t.join();
}

size_t RequestPool::threads() const {
  std::lock_guard<std::mutex> l(mu_);
  return threads_.size();
}

void RequestPool::Post(std::function<void()> task) {
  {
    std::unique_lock<std::mutex> l(mu_);
    queue_.push_back(std::move(task));
    if (idle_ < queue_.size() && threads_.size() < max_threads_) {
      try {
        threads_.emplace_back([this] { Run(); });
      } catch (const std::system_error&) {
        // No thread to be had (a process limit): when none exists at all, the task
        // runs here rather than never.
        if (threads_.empty()) {
          std::function<void()> t = std::move(queue_.back());
          queue_.pop_back();
          l.unlock();
          t();
          return;
        }
      }
    }
  }
  cv_.notify_one();
}

void RequestPool::Run() {
  std::unique_lock<std::mutex> l(mu_);
  for (;;) {
    idle_++;
    cv_.wait(l, [this] { return stop_ || !queue_.empty(); });
    idle_--;
    if (queue_.empty()) return;  // stopping, and nothing left to run
    std::function<void()> task = std::move(queue_.front());
    queue_.pop_front();
    l.unlock();
    task();
    task = nullptr;  // what it holds goes before the lock is taken again
    l.lock();
  }
}

int ServeSession(fuse_session* se, int spin_us) {
  const int fd = fuse_session_fd(se);
  const int flags = ::fcntl(fd, F_GETFL);
  if (flags < 0 || ::fcntl(fd, F_SETFL, flags | O_NONBLOCK) != 0) return -errno;
  const auto spin = std::chrono::microseconds(spin_us > 0 ? spin_us : 0);
  auto until = std::chrono::steady_clock::time_point::min();
  fuse_buf buf{};
  int err = 0;
  while (!fuse_session_exited(se)) {
    int res = fuse_session_receive_buf(se, &buf);
    if (res == -EAGAIN) {
      if (std::chrono::steady_clock::now() < until) {
        // Any other runnable thread on this CPU (a pool thread decoding) goes first.
        ::sched_yield();
        continue;
      }
      // Nothing for a while: sleep until a request comes. A signal interrupts the
      // poll (this is the main thread) and libfuse's handler has marked the session
      // exited; the timeout only bounds the wait should a signal go elsewhere.
      pollfd p{fd, POLLIN, 0};
      if (::poll(&p, 1, 1000) < 0 && errno != EINTR) {
        err = errno;
        break;
      }
      continue;
    }
    if (res == -EINTR) continue;
    if (res <= 0) {  // 0: unmounted (ENODEV) or exited
      if (res < 0) err = -res;
      break;
    }
    fuse_session_process_buf(se, &buf);
    until = std::chrono::steady_clock::now() + spin;
  }
  std::free(buf.mem);
  ::fcntl(fd, F_SETFL, flags);  // ServeOnce, after the loop, waits in poll and reads once
  fuse_session_reset(se);
  return -err;  // as libfuse's loops: never mistaken for a signal's number
}

void EntryInvalidator::Run() {
  std::unique_lock<std::mutex> l(mu_);
  for (;;) {
    cv_.wait(l, [this] { return stop_ || !queue_.empty(); });
    if (stop_) return;
    MountFs::StaleName n = std::move(queue_.front());
    queue_.pop_front();
    queued_.erase({n.parent, n.name});
    sending_ = true;
    l.unlock();
    if (delay_ms_ > 0) std::this_thread::sleep_for(std::chrono::milliseconds(delay_ms_));
    // ENOENT (the kernel has no such dentry any more) is the common, harmless answer.
    int rc = fuse_lowlevel_notify_inval_entry(se_, n.parent, n.name.data(), n.name.size());
    sent_.fetch_add(1);
    if (rc == 0) dropped_.fetch_add(1);
    if (trace_) {
      std::fprintf(trace_, "imgfs: notify inval_entry parent %llu name %s: %s\n",
                   static_cast<unsigned long long>(n.parent), n.name.c_str(),
                   rc == 0 ? "dropped" : std::strerror(-rc));
      std::fflush(trace_);
    }
    l.lock();
    sending_ = false;
  }
}

}  // namespace imgfs
