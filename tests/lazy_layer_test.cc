// Lazy layers (issue 9): the range map (index/lazy_layer.h), the chunk map codec, the
// completion check against the tar, and LazyBlob's read path (fs/lazy_blob.h) with a
// fetcher that counts bytes and can lie. The zstd:chunked TOC parser:
// zstd_chunked_test.cc.
#include "index/lazy_layer.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>
#include <zstd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <future>
#include <latch>
#include <random>
#include <thread>

#include "fs/lazy_blob.h"
#include "fs/span_cache.h"
#include "index/file_util.h"
#include "index/store.h"
#include "registry/zstd_chunked.h"
#include "tests/compress.h"
#include "tests/hold_decode.h"

namespace imgfs {
namespace {

using test::Zstd;

TEST(RangeMapTest, AddMergesTouchingAndOverlappingRanges) {
  RangeMap m;
  m.Add(10, 20);
  m.Add(30, 40);
  EXPECT_EQ(m.size(), 2u);
  m.Add(20, 30);  // touches both: one range
  EXPECT_EQ(m.size(), 1u);
  EXPECT_TRUE(m.Covers(10, 40));
  EXPECT_FALSE(m.Covers(9, 40));
  EXPECT_FALSE(m.Covers(10, 41));
  m.Add(5, 12);
  m.Add(35, 50);
  EXPECT_EQ(m.Total(), 45u);
  EXPECT_TRUE(m.Covers(5, 50));
}

TEST(RangeMapTest, MissingAndRemove) {
  RangeMap m;
  m.Add(100, 200);
  m.Add(300, 400);
  auto miss = m.Missing(50, 450);
  ASSERT_EQ(miss.size(), 3u);
  EXPECT_EQ(miss[0], std::make_pair(uint64_t{50}, uint64_t{100}));
  EXPECT_EQ(miss[1], std::make_pair(uint64_t{200}, uint64_t{300}));
  EXPECT_EQ(miss[2], std::make_pair(uint64_t{400}, uint64_t{450}));
  EXPECT_TRUE(m.Missing(120, 180).empty());
  m.Remove(150, 350);  // cuts both
  EXPECT_TRUE(m.Covers(100, 150));
  EXPECT_FALSE(m.Covers(149, 151));
  EXPECT_TRUE(m.Covers(350, 400));
  EXPECT_EQ(m.Total(), 100u);
}

TEST(RangeMapTest, EncodeDecodeAndRefusals) {
  RangeMap m;
  m.Add(0, 7);
  m.Add(100, 1000);
  auto back = RangeMap::Decode(m.Encode(), 1000);
  ASSERT_TRUE(back.ok()) << back.status().message();
  EXPECT_TRUE(*back == m);
  EXPECT_FALSE(RangeMap::Decode(m.Encode(), 999).ok());  // past the blob
  EXPECT_FALSE(RangeMap::Decode("imgfs-ranges 1\n5 3\n", 100).ok());
  EXPECT_FALSE(RangeMap::Decode("imgfs-ranges 1\n0 5\n4 9\n", 100).ok());  // overlap
  EXPECT_FALSE(RangeMap::Decode("imgfs-ranges 1\n0 5", 100).ok());         // torn
  EXPECT_FALSE(RangeMap::Decode("nope\n", 100).ok());
  EXPECT_TRUE(RangeMap::Decode("imgfs-ranges 1\n", 100).ok());
}

// Bytes that do not compress (so chunks are about as large in the blob as in the tar).
std::string Text(size_t n, char seed) {
  std::string s(n, '\0');
  uint32_t x = static_cast<uint32_t>(seed) * 2654435761u + 1;
  for (size_t i = 0; i < n; i++) {
    x = x * 1664525u + 1013904223u;
    s[i] = static_cast<char>(x >> 24);
  }
  return s;
}

TEST(ChunkMapTest, RoundTripAndBounds) {
  ChunkMap m;
  m.blob_size = 1000;
  m.tar_size = 5000;
  m.chunks.push_back({512, 100, 10, 50, Sha256Of("a"), ChunkCodec::kZstd, 0});
  m.chunks.push_back({612, 40, 0, 0, Sha256Of("b"), ChunkCodec::kZeros, 0});
  auto back = DecodeChunkMap(EncodeChunkMap(m));
  ASSERT_TRUE(back.ok()) << back.status().message();
  ASSERT_EQ(back->chunks.size(), 2u);
  EXPECT_EQ(back->chunks[0].blob_length, 50u);
  EXPECT_EQ(back->chunks[1].codec, ChunkCodec::kZeros);
  ChunkMap bad = m;
  bad.chunks[0].blob_length = 991;  // past the blob
  EXPECT_FALSE(DecodeChunkMap(EncodeChunkMap(bad)).ok());
  bad = m;
  bad.chunks[1].tar_offset = 600;  // overlaps the first
  EXPECT_FALSE(DecodeChunkMap(EncodeChunkMap(bad)).ok());
  std::string enc = EncodeChunkMap(m);
  EXPECT_FALSE(DecodeChunkMap(enc.substr(0, enc.size() - 1)).ok());
}

// A chunk a read would have to hold whole in memory is bounded: a TOC naming a bigger
// one is not pulled lazily (Unsupported: the pull takes the layer in full), and a
// chunk map on disk naming one is refused (a read would otherwise allocate the size
// the map says: a zeros chunk of 1 TiB, a one-chunk file of 2^50 bytes).
TEST(ChunkMapTest, ChunksOverTheDecodeLimitAreRefused) {
  ChunkMap m;
  m.blob_size = 1ull << 40;
  m.tar_size = 1ull << 50;
  m.chunks.push_back({512, kMaxLazyChunk, 10, 50, Sha256Of("a"), ChunkCodec::kZstd, 0});
  ASSERT_TRUE(DecodeChunkMap(EncodeChunkMap(m)).ok());  // at the limit
  for (int what = 0; what < 4; what++) {
    ChunkMap bad = m;
    LazyChunk& c = bad.chunks[0];
    if (what == 0) c.size = kMaxLazyChunk + 1;
    if (what == 1) c.codec = ChunkCodec::kZeros, c.blob_length = 0, c.size = 1ull << 40;
    if (what == 2) c.blob_length = 2 * kMaxLazyChunk + 1;
    if (what == 3) c.codec = ChunkCodec::kGzip, c.skip = 512;  // skip + size over
    auto d = DecodeChunkMap(EncodeChunkMap(bad));
    EXPECT_EQ(d.status().code(), Status::Code::kCorruption) << what;
  }
  LayerToc toc;
  toc.blob_size = 1ull << 40;
  toc.tar_size = 1ull << 50;
  TocEntry e;
  e.path = "big";
  e.size = 1ull << 40;
  e.tar_offset = 512;
  e.chunks.push_back({0, e.size, 0, 1000, Sha256Of("x"), ChunkCodec::kZstd, 0});
  toc.entries.push_back(e);
  auto cm = ChunkMapFromToc(toc);
  EXPECT_EQ(cm.status().code(), Status::Code::kUnsupported) << cm.status().message();
  EXPECT_NE(cm.status().message().find("\"big\""), std::string::npos) << cm.status().message();
  toc.entries[0].size = kMaxLazyChunk;
  toc.entries[0].chunks[0].size = kMaxLazyChunk;
  EXPECT_TRUE(ChunkMapFromToc(toc).ok());
}

// A blob of zstd frames: a header frame, then each chunk its own frame; the chunk map
// places the chunks in the tar. Returns the blob.
struct Fixture {
  std::string tar;   // the uncompressed stream
  std::string blob;  // frames
  ChunkMap map;
};
Fixture MakeFixture() {
  Fixture f;
  std::string header(512, 'h');
  f.tar = header;
  f.blob = Zstd(header);
  for (int i = 0; i < 6; i++) {
    std::string content = Text(100000 + i * 1000, static_cast<char>('a' + i));
    LazyChunk c;
    c.tar_offset = f.tar.size();
    c.size = content.size();
    c.blob_offset = f.blob.size();
    std::string z = Zstd(content);
    c.blob_length = z.size();
    c.digest = Sha256Of(content);
    f.map.chunks.push_back(c);
    f.tar += content;
    f.blob += z;
  }
  f.map.blob_size = f.blob.size();
  f.map.tar_size = f.tar.size();
  return f;
}

TEST(VerifyChunksTest, TheTocMustMatchTheTar) {
  Fixture f = MakeFixture();
  std::string dir = ::testing::TempDir() + "/verify-" + std::to_string(::getpid());
  ASSERT_TRUE(MakeDirs(dir).ok());
  std::string path = dir + "/blob";
  ASSERT_TRUE(WriteFileAtomic(path, f.blob).ok());
  auto fd = OpenFile(path, O_RDONLY);
  ASSERT_TRUE(fd.ok());
  EXPECT_TRUE(VerifyChunksAgainstBlob(fd->get(), f.map).ok());
  ChunkMap wrong = f.map;
  wrong.chunks[3].digest = Sha256Of("something else");
  Status st = VerifyChunksAgainstBlob(fd->get(), wrong);
  EXPECT_EQ(st.code(), Status::Code::kCorruption) << st.message();
  wrong = f.map;
  wrong.chunks[2].tar_offset += 1;  // the right digest at the wrong place
  EXPECT_FALSE(VerifyChunksAgainstBlob(fd->get(), wrong).ok());
  std::filesystem::remove_all(dir);
}

// The check fed as a pull's pass feeds it: the tar in pieces of any size (seeded).
TEST(VerifyChunksTest, FedInPiecesOfAnySize) {
  Fixture f = MakeFixture();
  auto feed = [&](const ChunkMap& map, uint32_t seed, uint64_t upto) {
    std::mt19937 rng(seed);
    ChunkVerifier v(map);
    for (uint64_t at = 0; at < upto;) {
      uint64_t n = std::min<uint64_t>(upto - at, 1 + rng() % 70000);
      v.Feed(f.tar.data() + at, n);
      at += n;
    }
    EXPECT_EQ(v.fed(), upto);
    return v.Finish();
  };
  ChunkMap wrong = f.map;
  wrong.chunks[4].digest = Sha256Of("something else");
  for (uint32_t seed = 1; seed <= 20; seed++) {
    Status ok = feed(f.map, seed, f.tar.size());
    EXPECT_TRUE(ok.ok()) << "seed " << seed << ": " << ok.message();
    Status bad = feed(wrong, seed, f.tar.size());
    EXPECT_EQ(bad.code(), Status::Code::kCorruption) << "seed " << seed;
    EXPECT_NE(bad.message().find("tar offset " + std::to_string(f.map.chunks[4].tar_offset)),
              std::string::npos)
        << bad.message();
    // Cut short: the last chunks were never seen.
    EXPECT_FALSE(feed(f.map, seed, f.tar.size() - 1).ok()) << "seed " << seed;
  }
}

// Serves ranges of a blob from memory; counts; can flip a byte or ignore Range.
class FakeFetcher : public RangeFetcher {
 public:
  FakeFetcher(const std::string* blob, std::atomic<uint64_t>* bytes, std::atomic<int>* requests,
              std::atomic<bool>* flip, bool whole, std::atomic<bool>* hold = nullptr)
      : blob_(blob), bytes_(bytes), requests_(requests), flip_(flip), whole_(whole), hold_(hold) {}
  Status Fetch(uint64_t off, uint64_t len, const Sink& sink) override {
    (*requests_)++;
    while (hold_ && hold_->load()) std::this_thread::sleep_for(std::chrono::milliseconds(5));
    uint64_t start = whole_ ? 0 : off, end = whole_ ? blob_->size() : off + len;
    std::string part = blob_->substr(start, end - start);
    if (flip_->load()) part[part.size() / 2] ^= 0x40;
    *bytes_ += part.size();
    return sink(start, part.data(), part.size());
  }
  std::string Where() const override { return "fake/repo"; }

 private:
  const std::string* blob_;
  std::atomic<uint64_t>* bytes_;
  std::atomic<int>* requests_;
  std::atomic<bool>* flip_;
  bool whole_;
  std::atomic<bool>* hold_;  // while true, a fetch does not answer (a slow registry)
};

class LazyBlobTest : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = ::testing::TempDir() + "/lazyblob-" + std::to_string(::getpid()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name();
    std::filesystem::remove_all(root_);
    ASSERT_TRUE(MakeDirs(root_).ok());
    f_ = MakeFixture();
    blob_digest_ = Sha256Of(f_.blob);
    layer_.diff_id = Sha256Of(f_.tar);
    layer_.blob = blob_digest_;
    layer_.blob_size = f_.blob.size();
    layer_.size = f_.tar.size();
    layer_.compression = Compression::kZstd;
    ASSERT_TRUE(LazyDir::Create(root_, blob_digest_, LazySource{"h", "r", false}, f_.map, {}).ok());
    SetRangeFetcherFactory([this](const LazySource&, const Digest&,
                                  uint64_t) -> Result<std::unique_ptr<RangeFetcher>> {
      return std::unique_ptr<RangeFetcher>(new FakeFetcher(served_ ? served_ : &f_.blob, &bytes_,
                                                           &requests_, &flip_, whole_, &hold_));
    });
  }
  // The layer's lazy/ directory anew, holding `local` (blob offset, bytes).
  void Recreate(const std::vector<std::pair<uint64_t, std::string>>& local = {}) {
    std::filesystem::remove_all(LazyDir::For(root_, blob_digest_).dir);
    ASSERT_TRUE(
        LazyDir::Create(root_, blob_digest_, LazySource{"h", "r", false}, f_.map, local).ok());
  }
  void TearDown() override {
    SetRangeFetcherFactory(nullptr);
    std::filesystem::remove_all(root_);
  }
  std::string root_;
  Fixture f_;
  Digest blob_digest_;
  LayerRecord layer_;
  std::atomic<uint64_t> bytes_{0};
  std::atomic<int> requests_{0};
  std::atomic<bool> flip_{false};
  std::atomic<bool> hold_{false};
  bool whole_ = false;
  const std::string* served_ = nullptr;  // what the registry serves (default: the blob)
};

TEST_F(LazyBlobTest, ReadsFetchOnlyWhatTheyNeedAndKeepIt) {
  auto b = LazyBlob::Open(root_, layer_);
  ASSERT_TRUE(b.ok()) << b.status().message();
  SpanCache cache(1 << 20);
  const LazyChunk& c = f_.map.chunks[4];
  std::string buf(1000, '\0');
  auto n = (*b)->Read(buf.data(), buf.size(), c.tar_offset + 50, cache, 1);
  ASSERT_TRUE(n.ok()) << n.status().message();
  EXPECT_EQ(*n, 1000u);
  EXPECT_EQ(buf, f_.tar.substr(c.tar_offset + 50, 1000));
  // One request of at least 256 KiB, not the whole blob.
  ASSERT_GT(f_.blob.size(), 2 * LazyBlob::kMinFetch);
  EXPECT_EQ(requests_.load(), 1);
  EXPECT_GE(bytes_.load(), LazyBlob::kMinFetch);
  EXPECT_LE(bytes_.load(), std::max<uint64_t>(LazyBlob::kMinFetch, c.blob_length));
  // A read across two chunks, then everything: right bytes, the map on disk grows.
  uint64_t start = f_.map.chunks[1].tar_offset - 10;
  std::string all(f_.tar.size() - start, '\0');
  size_t got = 0;
  while (got < all.size()) {
    auto k = (*b)->Read(all.data() + got, all.size() - got, start + got, cache, 1);
    ASSERT_TRUE(k.ok() || got == 0) << k.status().message();
    if (!k.ok()) {  // the 10 header bytes are no file's content
      start += 10;
      all.resize(all.size() - 10);
      continue;
    }
    got += *k;
  }
  EXPECT_EQ(all, f_.tar.substr(start));
  auto ranges = LazyDir::For(root_, blob_digest_).LoadRanges(f_.blob.size());
  ASSERT_TRUE(ranges.ok());
  EXPECT_GE(ranges->Total(), f_.blob.size() - f_.map.chunks[0].blob_offset);
  // A new reader (a restarted mount) needs no network for what is local.
  uint64_t before = bytes_.load();
  auto b2 = LazyBlob::Open(root_, layer_);
  ASSERT_TRUE(b2.ok());
  SpanCache cache2(1 << 20);
  auto k = (*b2)->Read(buf.data(), buf.size(), c.tar_offset, cache2, 2);
  ASSERT_TRUE(k.ok());
  EXPECT_EQ(bytes_.load(), before);
}

// A lazy pull leaves small local islands (tar headers) all over the blob: a read's
// fetch takes them along in one request and does not write over them (the registry
// here serves garbage in their place: written, they would fail the chunk's check).
TEST_F(LazyBlobTest, LocalIslandsAreTakenAlongNotWrittenOver) {
  std::vector<std::pair<uint64_t, std::string>> islands;
  std::string served = f_.blob;
  for (uint64_t at = 4096; at + 512 <= f_.blob.size(); at += 16384) {
    islands.emplace_back(at, f_.blob.substr(at, 512));
    std::fill(served.begin() + static_cast<std::ptrdiff_t>(at),
              served.begin() + static_cast<std::ptrdiff_t>(at + 512), 'X');
  }
  ASSERT_GT(islands.size(), 20u);
  Recreate(islands);
  served_ = &served;
  auto b = LazyBlob::Open(root_, layer_);
  ASSERT_TRUE(b.ok()) << b.status().message();
  SpanCache cache(1 << 20);
  const LazyChunk& c = f_.map.chunks[3];
  std::string buf(1000, '\0');
  auto n = (*b)->Read(buf.data(), buf.size(), c.tar_offset + 10, cache, 1);
  ASSERT_TRUE(n.ok()) << n.status().message();
  EXPECT_EQ(buf, f_.tar.substr(c.tar_offset + 10, 1000));
  EXPECT_EQ(requests_.load(), 1);  // not one per piece between islands
  auto ranges = LazyDir::For(root_, blob_digest_).LoadRanges(f_.blob.size());
  ASSERT_TRUE(ranges.ok());
  EXPECT_TRUE(ranges->Covers(c.blob_offset, c.blob_offset + c.blob_length));
  // Every chunk reads right: no island was overwritten by the registry's bytes.
  for (const LazyChunk& k : f_.map.chunks) {
    auto r = (*b)->Read(buf.data(), 100, k.tar_offset, cache, 1);
    ASSERT_TRUE(r.ok()) << r.status().message();
    EXPECT_EQ(buf.substr(0, 100), f_.tar.substr(k.tar_offset, 100));
  }
}

// A reader going on through the blob gets fetches that double (fewer round trips); a
// reader that jumps gets the least again.
TEST_F(LazyBlobTest, AReaderGoingOnGetsGrowingFetches) {
  ASSERT_GT(f_.blob.size(), 2 * LazyBlob::kMinFetch);
  ASSERT_LT(f_.blob.size(), 3 * LazyBlob::kMinFetch);
  auto b = LazyBlob::Open(root_, layer_);
  ASSERT_TRUE(b.ok());
  SpanCache cache(1 << 20);
  std::string buf(4096, '\0');
  std::vector<uint64_t> sizes;  // bytes of each request
  for (const LazyChunk& c : f_.map.chunks) {
    for (uint64_t at = c.tar_offset; at < c.tar_offset + c.size; at += buf.size()) {
      uint64_t before = bytes_.load();
      int reqs = requests_.load();
      auto n = (*b)->Read(buf.data(), buf.size(), at, cache, 1);
      ASSERT_TRUE(n.ok()) << n.status().message();
      ASSERT_EQ(buf.substr(0, *n), f_.tar.substr(at, *n));
      if (requests_.load() != reqs) sizes.push_back(bytes_.load() - before);
    }
  }
  // 256 KiB, then (going on) 512 KiB, which reaches the end: 2 requests, not 3.
  ASSERT_EQ(sizes.size(), 2u);
  EXPECT_EQ(sizes[0], LazyBlob::kMinFetch);
  EXPECT_EQ(sizes[1], f_.blob.size() - LazyBlob::kMinFetch - f_.map.chunks[0].blob_offset);
  // A fresh reader that jumps: the last chunk, then the first: the least each time.
  Recreate();
  auto b2 = LazyBlob::Open(root_, layer_);
  ASSERT_TRUE(b2.ok());
  SpanCache cache2(1 << 20);
  for (size_t i : {f_.map.chunks.size() - 1, size_t{0}}) {
    uint64_t before = bytes_.load();
    auto n = (*b2)->Read(buf.data(), 100, f_.map.chunks[i].tar_offset, cache2, 2);
    ASSERT_TRUE(n.ok()) << n.status().message();
    EXPECT_EQ(bytes_.load() - before, LazyBlob::kMinFetch) << "chunk " << i;
  }
}

TEST_F(LazyBlobTest, AFlippedByteFailsTheChunkAndIsNotKept) {
  auto b = LazyBlob::Open(root_, layer_);
  ASSERT_TRUE(b.ok());
  SpanCache cache(1 << 20);
  flip_ = true;
  // The fetch covers every chunk (the blob is small): the flipped byte is in one.
  std::vector<int> failed;
  std::string buf(10, '\0');
  for (size_t i = 0; i < f_.map.chunks.size(); i++) {
    auto n = (*b)->Read(buf.data(), buf.size(), f_.map.chunks[i].tar_offset, cache, 1);
    if (!n.ok()) {
      EXPECT_EQ(n.status().code(), Status::Code::kCorruption);
      failed.push_back(static_cast<int>(i));
    }
  }
  ASSERT_FALSE(failed.empty());
  flip_ = false;
  const LazyChunk& bad = f_.map.chunks[failed[0]];
  auto ranges = LazyDir::For(root_, blob_digest_).LoadRanges(f_.blob.size());
  ASSERT_TRUE(ranges.ok());
  EXPECT_FALSE(ranges->Covers(bad.blob_offset, bad.blob_offset + bad.blob_length));
  auto n = (*b)->Read(buf.data(), buf.size(), bad.tar_offset, cache, 1);
  ASSERT_TRUE(n.ok()) << n.status().message();
  EXPECT_EQ(buf, f_.tar.substr(bad.tar_offset, 10));
}

TEST_F(LazyBlobTest, ARegistryThatIgnoresRangeStillServesRightBytes) {
  whole_ = true;
  auto b = LazyBlob::Open(root_, layer_);
  ASSERT_TRUE(b.ok());
  SpanCache cache(1 << 20);
  std::string buf(100, '\0');
  const LazyChunk& c = f_.map.chunks[5];
  auto n = (*b)->Read(buf.data(), buf.size(), c.tar_offset + 7, cache, 1);
  ASSERT_TRUE(n.ok()) << n.status().message();
  EXPECT_EQ(buf, f_.tar.substr(c.tar_offset + 7, 100));
  EXPECT_EQ((*b)->local_bytes(), f_.blob.size());  // what came is kept
}

// A read whose bytes are local does not wait for another read's fetch (a slow
// registry): only reads that need the network queue behind it.
TEST_F(LazyBlobTest, LocalBytesDoNotWaitForAFetchUnderWay) {
  auto b = LazyBlob::Open(root_, layer_);
  ASSERT_TRUE(b.ok());
  SpanCache cache(1 << 20);
  std::string buf(100, '\0');
  // Chunk 0's read makes >= 256 KiB local: chunk 1 too (not decoded, not in the cache).
  const LazyChunk& c1 = f_.map.chunks[1];
  ASSERT_LE(c1.blob_offset + c1.blob_length, f_.map.chunks[0].blob_offset + LazyBlob::kMinFetch);
  ASSERT_TRUE((*b)->Read(buf.data(), buf.size(), f_.map.chunks[0].tar_offset, cache, 1).ok());
  int before = requests_.load();
  hold_ = true;
  auto slow = std::async(std::launch::async, [&] {
    std::string out(100, '\0');
    return (*b)->Read(out.data(), out.size(), f_.map.chunks[5].tar_offset, cache, 1);
  });
  while (requests_.load() == before) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  auto local = std::async(std::launch::async, [&] {
    return (*b)->Read(buf.data(), buf.size(), c1.tar_offset, cache, 1);
  });
  bool done = local.wait_for(std::chrono::seconds(20)) == std::future_status::ready;
  hold_ = false;
  EXPECT_TRUE(done) << "a read of local bytes waited for the fetch of another";
  auto n = local.get();
  ASSERT_TRUE(n.ok()) << n.status().message();
  EXPECT_EQ(buf, f_.tar.substr(c1.tar_offset, 100));
  ASSERT_TRUE(slow.get().ok());
  EXPECT_EQ(requests_.load(), before + 1);
}

// Through the mount's reader (LayerReader): readers that miss the same chunk at the
// same time share one decode, as for indexed spans (each used to inflate and hash the
// whole chunk for itself). The hook (tests/hold_decode.h) holds the decoding thread
// until the others wait (or 60 s pass: without the single decode nobody ever waits).
TEST_F(LazyBlobTest, ReadersOfAChunkBeingDecodedWaitForThatOneDecode) {
  auto store = Store::Open(root_);
  ASSERT_TRUE(store.ok()) << store.status().message();
  LayerReader r(**store);
  constexpr int kThreads = 6;
  std::atomic<int> calls{0};
  test::HoldDecodeUntilWaiting(r, kThreads - 1, &calls);
  const LazyChunk& c = f_.map.chunks[3];
  std::atomic<int> wrong{0};
  std::latch go(kThreads);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; t++) {
    threads.emplace_back([&] {
      go.arrive_and_wait();
      std::string out(100, '\0');
      auto n = r.Read(layer_, out.data(), out.size(), c.tar_offset + 10);
      if (!n.ok() || out != f_.tar.substr(c.tar_offset + 10, 100)) wrong++;
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(wrong.load(), 0);
  EXPECT_EQ(calls.load(), 1);
  EXPECT_GE(r.decode_waits(), static_cast<uint64_t>(kThreads - 1));
}

// A damaged store file (the range map or the chunk map) fails the layer's reads with
// an error naming the layer and the file, not a bare "range map: bad line 2".
TEST_F(LazyBlobTest, ADamagedMapFileIsNamed) {
  LazyDir dir = LazyDir::For(root_, blob_digest_);
  std::string chunks = *ReadFileToString(dir.chunks());
  for (const std::string& file : {dir.ranges(), dir.chunks()}) {
    ASSERT_TRUE(WriteFileAtomic(file, "imgfs-ranges 1\n5 3\n", 0600).ok());
    auto b = LazyBlob::Open(root_, layer_);
    ASSERT_FALSE(b.ok());
    EXPECT_EQ(b.status().code(), Status::Code::kCorruption);
    EXPECT_NE(b.status().message().find(file), std::string::npos) << b.status().message();
    EXPECT_NE(b.status().message().find(layer_.diff_id.str()), std::string::npos)
        << b.status().message();
    ASSERT_TRUE(WriteFileAtomic(dir.ranges(), "imgfs-ranges 1\n", 0600).ok());
    ASSERT_TRUE(WriteFileAtomic(dir.chunks(), chunks, 0600).ok());
  }
  EXPECT_TRUE(LazyBlob::Open(root_, layer_).ok());
}

TEST_F(LazyBlobTest, NoFetcherMeansUnavailable) {
  SetRangeFetcherFactory(nullptr);
  auto b = LazyBlob::Open(root_, layer_);
  ASSERT_TRUE(b.ok());
  SpanCache cache(1 << 20);
  std::string buf(10, '\0');
  auto n = (*b)->Read(buf.data(), buf.size(), f_.map.chunks[0].tar_offset, cache, 1);
  ASSERT_FALSE(n.ok());
  EXPECT_EQ(n.status().code(), Status::Code::kUnavailable);
}

// Records what background completion asks for.
class PieceFetcher : public RangeFetcher {
 public:
  explicit PieceFetcher(const std::string* blob) : blob_(blob) {}
  Status Fetch(uint64_t off, uint64_t len, const Sink& sink) override {
    {
      std::lock_guard<std::mutex> l(mu);
      asked.emplace_back(off, len);
    }
    std::string part = blob_->substr(off, len);
    // In two halves: a stop between them keeps the first.
    size_t half = part.size() / 2;
    IMGFS_RETURN_IF_ERROR(sink(off, part.data(), half));
    return sink(off + half, part.data() + half, part.size() - half);
  }
  Status FetchRanges(const std::vector<std::pair<uint64_t, uint64_t>>& ranges,
                     const Sink& sink) override {
    {
      std::lock_guard<std::mutex> l(mu);
      windows.push_back(ranges);
    }
    return RangeFetcher::FetchRanges(ranges, sink);
  }
  std::string Where() const override { return "fake/bg"; }
  std::vector<std::pair<uint64_t, uint64_t>> asked;
  std::vector<std::vector<std::pair<uint64_t, uint64_t>>> windows;  // one a request
  std::mutex mu;                                                    // guards asked, windows

 private:
  const std::string* blob_;
};

TEST_F(LazyBlobTest, CompleteFetchesOnlyTheGapsInPiecesAndKeepsThem) {
  auto b = LazyBlob::Open(root_, layer_);
  ASSERT_TRUE(b.ok());
  SpanCache cache(1 << 20);
  std::string buf(100, '\0');
  ASSERT_TRUE((*b)->Read(buf.data(), buf.size(), f_.map.chunks[2].tar_offset, cache, 1).ok());
  uint64_t local = (*b)->local_bytes();
  ASSERT_GT(local, 0u);
  ASSERT_LT(local, f_.blob.size());
  PieceFetcher bg(&f_.blob);
  int paced = 0;
  uint64_t fetched = 0;
  constexpr uint64_t kPiece = 16 << 10;
  Status st = (*b)->Complete(
      bg, [&] { return ++paced > 0; }, [] { return false; }, &fetched, kPiece, 1);
  ASSERT_TRUE(st.ok()) << st.message();
  EXPECT_EQ(fetched, f_.blob.size() - local);             // nothing local asked again
  EXPECT_EQ(paced, static_cast<int>(bg.windows.size()));  // asked before every piece
  for (const auto& w : bg.windows) {
    ASSERT_FALSE(w.empty());
    EXPECT_LE(w.back().first + w.back().second - w.front().first, kPiece);
    EXPECT_LE(w.size(), LazyBlob::kPieceRanges);
  }
  // On disk: the whole blob, named in the range map (a restarted mount sees it).
  auto data = ReadFileToString(LazyDir::For(root_, blob_digest_).data(), 1 << 30);
  ASSERT_TRUE(data.ok());
  EXPECT_EQ(*data, f_.blob);
  auto ranges = LazyDir::For(root_, blob_digest_).LoadRanges(f_.blob.size());
  ASSERT_TRUE(ranges.ok());
  EXPECT_EQ(ranges->Total(), f_.blob.size());
  // Reads now need no request.
  int before = requests_.load();
  ASSERT_TRUE((*b)->Read(buf.data(), buf.size(), f_.map.chunks[5].tar_offset, cache, 1).ok());
  EXPECT_EQ(requests_.load(), before);
}

TEST_F(LazyBlobTest, CompleteInParallelAsksEveryMissingByteOnce) {
  auto b = LazyBlob::Open(root_, layer_);
  ASSERT_TRUE(b.ok());
  SpanCache cache(1 << 20);
  std::string buf(100, '\0');
  ASSERT_TRUE((*b)->Read(buf.data(), buf.size(), f_.map.chunks[3].tar_offset, cache, 1).ok());
  uint64_t local = (*b)->local_bytes();
  PieceFetcher bg(&f_.blob);
  uint64_t fetched = 0;
  Status st = (*b)->Complete(
      bg, [] { return true; }, nullptr, &fetched, 8 << 10, 4);
  ASSERT_TRUE(st.ok()) << st.message();
  EXPECT_EQ(fetched, f_.blob.size() - local);
  RangeMap asked;
  uint64_t sum = 0;
  for (auto [off, len] : bg.asked) {
    EXPECT_FALSE(asked.Covers(off, off + 1)) << "asked twice: " << off;
    asked.Add(off, off + len);
    sum += len;
  }
  EXPECT_EQ(sum, f_.blob.size() - local);
  auto data = ReadFileToString(LazyDir::For(root_, blob_digest_).data(), 1 << 30);
  ASSERT_TRUE(data.ok());
  EXPECT_EQ(*data, f_.blob);
}

TEST_F(LazyBlobTest, CompleteStopsWhenAskedAndKeepsWhatArrived) {
  auto b = LazyBlob::Open(root_, layer_);
  ASSERT_TRUE(b.ok());
  PieceFetcher bg(&f_.blob);
  // pace says stop before the third piece
  int pieces = 0;
  Status st = (*b)->Complete(
      bg, [&] { return ++pieces <= 2; }, [] { return false; }, nullptr, 16 << 10, 1);
  EXPECT_EQ(st.code(), Status::Code::kUnavailable);
  EXPECT_EQ(bg.asked.size(), 2u);
  auto ranges = LazyDir::For(root_, blob_digest_).LoadRanges(f_.blob.size());
  ASSERT_TRUE(ranges.ok());
  EXPECT_EQ(ranges->Total(), 32u << 10);
  // `stopping` mid-piece: what arrived is kept, nothing more is asked.
  bool stop = false;
  PieceFetcher bg2(&f_.blob);
  st = (*b)->Complete(
      bg2, [] { return true; },
      [&] {
        bool s = stop;
        stop = true;  // after the first half arrived
        return s;
      },
      nullptr, 16 << 10, 1);
  EXPECT_FALSE(st.ok());
  EXPECT_EQ(bg2.asked.size(), 1u);
  ranges = LazyDir::For(root_, blob_digest_).LoadRanges(f_.blob.size());
  ASSERT_TRUE(ranges.ok());
  EXPECT_EQ(ranges->Total(), (32u << 10) + (16u << 10));
}

TEST_F(LazyBlobTest, OnDemandFetchesAreCountedAndNeverWaitForCompletion) {
  auto b = LazyBlob::Open(root_, layer_);
  ASSERT_TRUE(b.ok());
  EXPECT_EQ(LazyBlob::OnDemandFetches(), 0);
  int64_t ended_before = LazyBlob::LastOnDemandEndNs();
  hold_ = true;  // the on-demand fetch waits until released
  SpanCache cache(1 << 20);
  auto reader = std::async(std::launch::async, [&] {
    std::string buf(100, '\0');
    return (*b)->Read(buf.data(), buf.size(), f_.map.chunks[3].tar_offset, cache, 1).ok();
  });
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (LazyBlob::OnDemandFetches() == 0 && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  EXPECT_EQ(LazyBlob::OnDemandFetches(), 1);
  // Completion runs beside the held fetch (it takes no lock that fetch holds).
  PieceFetcher bg(&f_.blob);
  Status st = (*b)->Complete(bg, nullptr, nullptr, nullptr, 64 << 10);
  EXPECT_TRUE(st.ok()) << st.message();
  EXPECT_EQ((*b)->local_bytes(), f_.blob.size());
  hold_ = false;
  EXPECT_TRUE(reader.get());
  EXPECT_EQ(LazyBlob::OnDemandFetches(), 0);
  EXPECT_GT(LazyBlob::LastOnDemandEndNs(), ended_before);
}

}  // namespace
}  // namespace imgfs
