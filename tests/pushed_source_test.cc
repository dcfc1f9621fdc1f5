// PushedSource (index/pushed_source.h): the push-fed source under the registry
// client's streaming blobs and GzipLayerSource.
#include "index/pushed_source.h"

#include <gtest/gtest.h>

#include <atomic>
#include <string>

namespace imgfs {
namespace {

std::string ReadAll(ByteSource& s, Status* end) {
  std::string out;
  char buf[777];
  for (;;) {
    auto r = s.Read(buf, sizeof buf);
    if (!r.ok()) {
      *end = r.status();
      return out;
    }
    if (*r == 0) return out;
    out.append(buf, *r);
  }
}

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
    Status end;
    EXPECT_EQ(ReadAll(src, &end), want);
    EXPECT_TRUE(end.ok());
  }
  EXPECT_TRUE(finished.ok());

  PushedSource failing(
      [](const PushedSource::Push& push) {
        push("abc");
        return Status::Corruption("broken at 3");
      },
      1 << 20);
  Status end;
  EXPECT_EQ(ReadAll(failing, &end), "abc");
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
