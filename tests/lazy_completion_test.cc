// OpenLazyCompletion (registry/lazy_pull.h): the blob of a lazily pulled layer, from
// the ranges lazy/ holds plus the gaps fetched. Random blobs, random local ranges and
// fetchers that answer exactly, in odd pieces, with the rest of the blob (a registry
// ignoring Range), or that fail part way: the stream is the blob byte for byte, only
// the gaps are asked for, and a failed fetch is an error, never wrong bytes.
#include <gtest/gtest.h>

#include <memory>
#include <random>

#include "index/lazy_layer.h"
#include "registry/lazy_pull.h"
#include "tests/read_to_end.h"
#include "tests/store_fixture.h"

namespace imgfs {
namespace {

enum class Answer { kExact, kPieces, kWholeRest, kFailPartWay };

class FakeFetcher : public RangeFetcher {
 public:
  FakeFetcher(const std::string& blob, Answer answer, uint32_t seed)
      : blob_(blob), answer_(answer), rng_(seed) {}
  Status Fetch(uint64_t offset, uint64_t length, const Sink& sink) override {
    asked.emplace_back(offset, offset + length);
    uint64_t end = answer_ == Answer::kWholeRest ? blob_.size() : offset + length;
    if (answer_ == Answer::kFailPartWay) end = offset + length / 2;
    uint64_t pos = offset;
    while (pos < end) {
      uint64_t n = answer_ == Answer::kExact ? end - pos : 1 + rng_() % 5000;
      n = std::min(n, end - pos);
      IMGFS_RETURN_IF_ERROR(sink(pos, blob_.data() + pos, n));
      pos += n;
    }
    if (answer_ == Answer::kFailPartWay) return Status::Unavailable("connection reset");
    return Status::Ok();
  }
  std::string Where() const override { return "fake/repo"; }
  std::vector<std::pair<uint64_t, uint64_t>> asked;

 private:
  const std::string& blob_;
  Answer answer_;
  std::mt19937 rng_;
};

class LazyCompletionTest : public test::StoreFixture {};

TEST_F(LazyCompletionTest, StreamsTheBlobFromLocalRangesAndFetchedGapsOnly) {
  for (uint32_t seed = 1; seed <= 60; seed++) {
    std::mt19937 rng(seed);
    std::string blob(1 + rng() % 300000, '\0');
    for (char& c : blob) c = static_cast<char>(rng());
    Descriptor d;
    d.digest = Sha256Of(blob);
    d.size = blob.size();
    // Random local pieces (they may touch or overlap: the range map merges them).
    std::vector<std::pair<uint64_t, std::string>> local;
    RangeMap want_local;
    if (seed % 3 == 0) {
      // Many short pieces with gaps of 1 to 3 bytes (and a piece at the very end).
      for (uint64_t at = rng() % 3; at < blob.size();) {
        uint64_t len = std::min<uint64_t>(1 + rng() % 2000, blob.size() - at);
        local.emplace_back(at, blob.substr(at, len));
        want_local.Add(at, at + len);
        at += len + 1 + rng() % 3;
      }
    } else {
      for (int i = 0, n = 1 + rng() % 6; i < n; i++) {
        uint64_t at = rng() % blob.size();
        uint64_t len = 1 + rng() % std::max<uint64_t>(1, (blob.size() - at) / 2);
        local.emplace_back(at, blob.substr(at, len));
        want_local.Add(at, at + len);
      }
    }
    ChunkMap map;
    map.blob_size = blob.size();
    ASSERT_TRUE(LazyDir::Create(root_, d.digest, LazySource{"h", "r", false}, map, local).ok());
    auto answer = static_cast<Answer>(seed % 4);
    auto fetcher = std::make_shared<FakeFetcher>(blob, answer, seed);
    auto got_local = std::make_shared<uint64_t>(0);
    LazyCompletionOptions every;  // every local range reused, any number of gaps
    every.min_reused = 1;
    every.max_gaps = SIZE_MAX;
    auto src = OpenLazyCompletion(*store_, d, fetcher, got_local, 0, every);
    ASSERT_TRUE(src.ok()) << src.status().message();
    std::string out;
    Status st = test::ReadToEnd(**src, &out, 1 + rng() % 70000);
    RangeMap asked;
    for (const auto& [s, e] : fetcher->asked) {
      EXPECT_FALSE(want_local.Covers(s, s + 1))
          << "seed " << seed << ": asked for local byte " << s;
      EXPECT_TRUE(want_local.Missing(s, e) == (std::vector<std::pair<uint64_t, uint64_t>>{{s, e}}))
          << "seed " << seed << ": asked for [" << s << ", " << e << ") which is partly local";
      asked.Add(s, e);
    }
    if (answer == Answer::kFailPartWay && want_local.Total() < blob.size()) {
      EXPECT_FALSE(st.ok()) << "seed " << seed << ": a failed fetch must fail the stream";
      EXPECT_EQ(blob.compare(0, out.size(), out), 0)
          << "seed " << seed << ": wrong bytes before the error";
    } else {
      ASSERT_TRUE(st.ok()) << "seed " << seed << ": " << st.message();
      EXPECT_TRUE(out == blob) << "seed " << seed << " (" << static_cast<int>(answer) << ")";
      if (answer == Answer::kWholeRest) {
        // An answer that carries the rest of the blob serves a whole batch of small
        // gaps (at most 256): one request a batch, not one a gap.
        size_t gaps = want_local.Missing(0, blob.size()).size();
        EXPECT_LE(fetcher->asked.size(), (gaps + 255) / 256) << "seed " << seed;
      } else {
        EXPECT_EQ(*got_local, want_local.Total()) << "seed " << seed;
        EXPECT_EQ(asked.Total() + want_local.Total(), blob.size()) << "seed " << seed;
      }
    }
    ASSERT_TRUE(LazyDir::For(root_, d.digest).Remove().ok());
  }
}

// By default short local ranges are not worth a request each: they are fetched with
// their neighbours, and what is too scattered is not reused at all.
TEST_F(LazyCompletionTest, ShortOrScatteredLocalRangesAreFetchedAgain) {
  std::string blob(4 << 20, '\0');
  for (size_t i = 0; i < blob.size(); i++) blob[i] = static_cast<char>(i * 7 + i / 4096);
  Descriptor d;
  d.digest = Sha256Of(blob);
  d.size = blob.size();
  ChunkMap map;
  map.blob_size = blob.size();
  // One long range (1 MiB at 1 MiB) and short ones (4 KiB every 64 KiB after 2 MiB).
  std::vector<std::pair<uint64_t, std::string>> local = {{1 << 20, blob.substr(1 << 20, 1 << 20)}};
  for (uint64_t at = 2 << 20; at + 4096 <= blob.size(); at += 64 << 10)
    local.emplace_back(at + 1024, blob.substr(at + 1024, 4096));
  ASSERT_TRUE(LazyDir::Create(root_, d.digest, LazySource{"h", "r", false}, map, local).ok());
  auto fetcher = std::make_shared<FakeFetcher>(blob, Answer::kExact, 1);
  auto got_local = std::make_shared<uint64_t>(0);
  auto src = OpenLazyCompletion(*store_, d, fetcher, got_local);
  ASSERT_TRUE(src.ok()) << src.status().message();
  std::string out;
  ASSERT_TRUE(test::ReadToEnd(**src, &out).ok());
  EXPECT_TRUE(out == blob);
  EXPECT_EQ(*got_local, uint64_t{1} << 20);  // only the long range came from disk
  EXPECT_EQ(fetcher->asked,
            (std::vector<std::pair<uint64_t, uint64_t>>{{0, 1 << 20}, {2 << 20, 4 << 20}}));
  LazyCompletionOptions few;
  few.min_reused = 1;
  few.max_gaps = 8;  // the short ranges make 33 gaps
  EXPECT_EQ(OpenLazyCompletion(*store_, d, fetcher, nullptr, 0, few).status().code(),
            Status::Code::kNotFound);
}

TEST_F(LazyCompletionTest, NothingLocalOrBrokenIsNotFound) {
  std::string blob(1000, 'x');
  Descriptor d;
  d.digest = Sha256Of(blob);
  d.size = blob.size();
  auto fetcher = std::make_shared<FakeFetcher>(blob, Answer::kExact, 1);
  EXPECT_EQ(OpenLazyCompletion(*store_, d, fetcher).status().code(), Status::Code::kNotFound);
  ChunkMap map;
  map.blob_size = blob.size();
  ASSERT_TRUE(LazyDir::Create(root_, d.digest, LazySource{"h", "r", false}, map, {}).ok());
  EXPECT_EQ(OpenLazyCompletion(*store_, d, fetcher).status().code(), Status::Code::kNotFound);
  ASSERT_TRUE(LazyDir::For(root_, d.digest).Remove().ok());
  ASSERT_TRUE(LazyDir::Create(root_, d.digest, LazySource{"h", "r", false}, map, {{0, "xx"}}).ok());
  EXPECT_EQ(OpenLazyCompletion(*store_, d, fetcher).status().code(),
            Status::Code::kNotFound);  // 2 bytes: not worth a request
  LazyCompletionOptions any;
  any.min_reused = 1;
  EXPECT_TRUE(OpenLazyCompletion(*store_, d, fetcher, nullptr, 0, any).ok());
  ASSERT_TRUE(LazyDir::For(root_, d.digest).MarkBroken("test").ok());
  EXPECT_EQ(OpenLazyCompletion(*store_, d, fetcher, nullptr, 0, any).status().code(),
            Status::Code::kNotFound);
}

}  // namespace
}  // namespace imgfs
