// PushedSource (index/pushed_source.h): the push-fed source under the registry
// client's streaming blobs and GzipLayerSource.
#include "index/pushed_source.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <string>
#include <thread>

#include "tests/read_to_end.h"

namespace imgfs {
namespace {

TEST(PushedSource, DeliversEveryByteInOrderThenTheProducersStatus) {
  std::string want;
  for (int i = 0; i < 5000; i++) want += std::to_string(i) + ",";
  Status finished = Status::Unavailable("not called");
  {
    PushedSource src(
        [&](const PushedSource::Push& push) {
          for (size_t i = 0; i < want.size(); i += 13)
            if (!push(std::string_view(want).substr(i, 13))) return Status::Unavailable("stopped");
          return Status::Ok();
        },
        64, [&](const Status& st) { finished = st; });  // a tiny queue: many waits
    std::string got;
    Status end = test::ReadToEnd(src, &got, 777);
    EXPECT_EQ(got, want);
    EXPECT_TRUE(end.ok()) << end.message();
  }
  EXPECT_TRUE(finished.ok());

  PushedSource failing(
      [](const PushedSource::Push& push) {
        push("abc");
        return Status::Corruption("broken at 3");
      },
      1 << 20);
  std::string got;
  Status end = test::ReadToEnd(failing, &got, 777);
  EXPECT_EQ(got, "abc");
  EXPECT_EQ(end.message(), "broken at 3");
}

TEST(PushedSource, DestroyingItStopsTheProducer) {
  std::atomic<int> refused{0};
  bool finished_called = false;
  {
    PushedSource src(
        [&](const PushedSource::Push& push) {
          std::string chunk(4096, 'x');
          while (push(chunk)) {
          }  // endless until the reader goes away
          refused++;
          return Status::Unavailable("reader stopped");
        },
        16 << 10, [&](const Status&) { finished_called = true; });
    char buf[100];
    ASSERT_TRUE(src.Read(buf, sizeof buf).ok());
  }  // joins: the producer's push returned false
  EXPECT_EQ(refused.load(), 1);
  EXPECT_FALSE(finished_called);  // the reader was gone first
}

// An empty push only asks whether the reader is still there: it neither waits for a
// full queue nor delivers anything (the registry client polls it while a transfer
// sends nothing, to stop a request whose reader went away).
TEST(PushedSource, AnEmptyPushPollsWithoutWaitingOrDelivering) {
  std::atomic<int> polls_true{0};
  std::atomic<bool> stopped_seen{false};
  std::atomic<bool> full{false};
  {
    PushedSource src(
        [&](const PushedSource::Push& push) {
          if (!push(std::string(100, 'a'))) return Status::Unavailable("stopped");
          full = true;  // the queue (100 bytes) is full now: a real push would wait
          for (int i = 0; i < 3; i++)
            if (push(std::string_view())) polls_true++;
          if (!push("b")) return Status::Unavailable("stopped");  // waits for the reader
          while (push(std::string_view())) {
          }
          stopped_seen = true;
          return Status::Ok();
        },
        100);
    // The polls answer while nothing is read (a queue full of unread bytes).
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (polls_true < 3 && std::chrono::steady_clock::now() < deadline)
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    EXPECT_TRUE(full.load());
    EXPECT_EQ(polls_true.load(), 3);
    std::string got;
    char buf[1000];
    while (got.size() < 101) {
      auto n = src.Read(buf, sizeof buf);
      ASSERT_TRUE(n.ok());
      ASSERT_GT(*n, 0u);  // no empty read (end of stream) from the polls
      got.append(buf, *n);
    }
    EXPECT_EQ(got, std::string(100, 'a') + "b");
    EXPECT_EQ(polls_true.load(), 3);
  }  // destroying it makes the poll answer false: the producer ends, the join returns
  EXPECT_TRUE(stopped_seen.load());
}

}  // namespace
}  // namespace imgfs
