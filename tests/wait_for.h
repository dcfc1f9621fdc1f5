// WaitFor(pred): polls `pred` every 2 ms until it holds, for up to 60 s (generous: the
// tests run on loaded machines and under sanitizers); false on timeout. For tests that
// wait on another thread's progress (read-ahead, a held decode).
#ifndef IMGFS_TESTS_WAIT_FOR_H_
#define IMGFS_TESTS_WAIT_FOR_H_

#include <chrono>
#include <thread>

namespace imgfs::test {

template <typename F>
bool WaitFor(F pred) {
  auto until = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (!pred()) {
    if (std::chrono::steady_clock::now() > until) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  return true;
}

}  // namespace imgfs::test

#endif  // IMGFS_TESTS_WAIT_FOR_H_
