// A ByteSource fed from a thread of its own: a producer function pushes bytes as it
// makes them (a download's write callback, a tar writer's sink), the reader takes them
// through a bounded queue. Used by the registry client's streaming blobs
// (registry_client.cc) and by GzipLayerSource (index/layer_writer.cc).
//
// Thread-safety: Read belongs to one consumer thread; the producer runs on the
// source's own thread, started by the constructor and joined by the destructor.
#ifndef IMGFS_INDEX_PUSHED_SOURCE_H_
#define IMGFS_INDEX_PUSHED_SOURCE_H_

#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>

#include "index/status.h"
#include "index/stream.h"

namespace imgfs {

class PushedSource : public ByteSource {
 public:
  // Hands bytes to the reader, waiting while `max_queued` bytes are waiting already;
  // false once the source is being destroyed (the producer should stop). Empty data
  // only asks that, without waiting.
  using Push = std::function<bool(std::string_view)>;
  // `produce` runs on the source's thread; its Status is what Read returns after the
  // last byte. `on_finish` (optional) gets that Status too, on the producer's thread,
  // unless the reader was destroyed before the producer finished.
  PushedSource(std::function<Status(const Push&)> produce, size_t max_queued,
               std::function<void(const Status&)> on_finish = {});
  // Stops the producer (its next push returns false) and joins its thread.
  ~PushedSource() override;
  Result<size_t> Read(void* buf, size_t n) override;

 private:
  bool PushBytes(std::string_view data);
  size_t max_queued_;
  std::mutex mu_;  // guards everything below
  std::condition_variable cv_;
  std::deque<std::string> queue_;
  size_t front_pos_ = 0;
  size_t queued_ = 0;
  bool stop_ = false;
  bool done_ = false;
  Status error_;
  std::thread thread_;  // last: started after the members it uses
};

}  // namespace imgfs

#endif  // IMGFS_INDEX_PUSHED_SOURCE_H_
