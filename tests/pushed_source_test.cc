// PushedSource (index/pushed_source.h): the push-fed source under the registry
// client's streaming blobs and GzipLayerSource.
#include "index/pushed_source.h"

#include <gtest/gtest.h>

#include <atomic>
#include <string>

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

}  // namespace
}  // namespace imgfs
