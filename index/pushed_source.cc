#include "index/pushed_source.h"

#include <algorithm>
#include <cstring>

namespace imgfs {

PushedSource::PushedSource(std::function<Status(const Push&)> produce, size_t max_queued,
                           std::function<void(const Status&)> on_finish)
    : max_queued_(max_queued) {
  thread_ = std::thread([this, produce = std::move(produce), on_finish = std::move(on_finish)] {
    Status st = produce([this](std::string_view d) { return PushBytes(d); });
    std::lock_guard<std::mutex> l(mu_);
    if (on_finish && !stop_) on_finish(st);
    error_ = st;
    done_ = true;
    cv_.notify_all();
  });
}

PushedSource::~PushedSource() {
  {
    std::lock_guard<std::mutex> l(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  thread_.join();
}

Result<size_t> PushedSource::Read(void* buf, size_t n) {
  std::unique_lock<std::mutex> l(mu_);
  cv_.wait(l, [&] { return !queue_.empty() || done_; });
  if (queue_.empty()) {
    if (!error_.ok()) return error_;
    return size_t{0};
  }
  std::string& front = queue_.front();
  size_t k = std::min(n, front.size() - front_pos_);
  std::memcpy(buf, front.data() + front_pos_, k);
  front_pos_ += k;
  queued_ -= k;
  if (front_pos_ == front.size()) {
    queue_.pop_front();
    front_pos_ = 0;
  }
  cv_.notify_all();
  return k;
}

bool PushedSource::PushBytes(std::string_view data) {
  std::unique_lock<std::mutex> l(mu_);
  if (data.empty()) return !stop_;  // a poll: is the reader still there?
  cv_.wait(l, [&] { return stop_ || queued_ < max_queued_; });
  if (stop_) return false;
  // Small pieces (curl hands over a few KiB at a time) join the last queued string.
  // The first join makes room for all of them (up to 1 MiB and one more piece), so
  // that the string is not copied again each time it grows.
  if (!queue_.empty() && queue_.back().size() < (1 << 20) && queue_.size() > 1) {
    std::string& back = queue_.back();
    if (back.capacity() < back.size() + data.size())
      back.reserve(std::max(std::min<size_t>((1 << 20) + (64 << 10), max_queued_ + data.size()),
                            back.size() + data.size()));
    back.append(data);
  } else {
    queue_.emplace_back(data);
  }
  queued_ += data.size();
  cv_.notify_all();
  return true;
}

}  // namespace imgfs
