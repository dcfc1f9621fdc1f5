// HoldDecodeUntilWaiting(r, waiting, calls): sets `r`'s decode hook so that the thread
// that decodes counts itself in `*calls` and then holds until `waiting` other readers
// are waiting for its decode (or 60 s pass: without the single decode each reader
// decodes for itself and nobody ever waits, which the test's decode_waits() check then
// reports). For tests that readers meeting in a span or chunk share one decode.
#ifndef IMGFS_TESTS_HOLD_DECODE_H_
#define IMGFS_TESTS_HOLD_DECODE_H_

#include <atomic>
#include <cstdint>

#include "fs/span_cache.h"
#include "tests/wait_for.h"

namespace imgfs::test {

inline void HoldDecodeUntilWaiting(LayerReader& r, uint64_t waiting, std::atomic<int>* calls) {
  r.set_decode_hook([&r, waiting, calls](size_t) {
    (*calls)++;
    WaitFor([&] { return r.decode_waits() >= waiting; });
  });
}

}  // namespace imgfs::test

#endif  // IMGFS_TESTS_HOLD_DECODE_H_
