// Seek indexes (index/seek_index.h) and the span read path (fs/span_cache.h): every
// span of gzip (one and several members) and multi-frame zstd decodes to the bytes the
// one-pass decoder produced; a damaged blob fails only the span it hits; the span cache
// stays within budget and serves parallel readers; a store without sidecars builds one
// on first read.
#include "index/seek_index.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>
#include <xxhash.h>
#include <zlib.h>
#include <zstd.h>

#include <atomic>
#include <chrono>
#include <deque>
#include <latch>
#include <thread>

#include "fs/image_view.h"
#include "fs/span_cache.h"
#include "registry/image_loader.h"
#include "tests/compress.h"
#include "tests/hold_decode.h"
#include "tests/read_to_end.h"
#include "tests/store_fixture.h"
#include "tests/tar_builder.h"
#include "tests/wait_for.h"

namespace imgfs {
namespace {

using test::GzipMember;
using test::HoldDecodeUntilWaiting;
using test::TarBuilder;
using test::ZstdFrames;

// Text-like data: compresses, but not to nothing, so deflate makes many blocks.
std::string Corpus(size_t n, uint32_t seed) {
  static const char* words[] = {"layer ", "image ", "gzip ", "seek ",  "window ", "span ",
                                "block ", "tar ",   "blob ", "index ", "\n",      "0x1f "};
  std::string s;
  uint32_t x = seed;
  while (s.size() < n) {
    x = x * 1664525u + 1013904223u;
    if ((x >> 28) == 0) {
      s += std::to_string(x);
    } else {
      s += words[(x >> 16) % 12];
    }
  }
  s.resize(n);
  return s;
}

struct Indexed {
  std::string plain;    // what IndexingSource produced
  std::string sidecar;  // Finish()
  LayerRecord layer;
};

Indexed RunIndexer(const std::string& blob, uint64_t span) {
  Indexed x;
  StringSource src(blob);
  IndexingSource dec(&src, Compression::kAuto, span);
  Status st = test::ReadToEnd(dec, &x.plain, 70000);  // 70000: not a multiple of anything
  EXPECT_TRUE(st.ok()) << st.message();
  auto s = dec.Finish();
  EXPECT_TRUE(s.ok()) << s.status().message();
  x.sidecar = s.ok() ? *s : "";
  x.layer.compression = dec.compression();
  x.layer.size = x.plain.size();
  x.layer.blob_size = blob.size();
  return x;
}

// `sidecar` as version 1 wrote it: the same records with SHA-256 span digests of `data`.
std::string AsVersion1(std::string sidecar, const SeekIndex& idx, const std::string& data) {
  sidecar[8] = 1;
  for (size_t i = 0; i < idx.count(); i++) {
    Sha256 h;
    h.Update(data.data() + idx.SpanStart(i), idx.SpanEnd(i) - idx.SpanStart(i));
    std::string hex = h.Finish().hex();
    for (size_t b = 0; b < 32; b++) {
      sidecar[SeekIndex::kHeaderSize + i * SeekIndex::kRecordSize + 40 + b] =
          static_cast<char>(std::stoi(hex.substr(2 * b, 2), nullptr, 16));
    }
  }
  return sidecar;
}

class SeekIndexTest : public ::testing::Test {
 protected:
  void SetUp() override { dir_ = test::MakeTempDir(); }
  void TearDown() override { test::RemoveTree(dir_); }
  int BlobFd(const std::string& blob) {
    std::string p = dir_ + "/blob" + std::to_string(n_++);
    test::WriteFile(p, blob);
    auto fd = OpenFile(p, O_RDONLY);
    EXPECT_TRUE(fd.ok());
    fds_.push_back(std::move(*fd));
    return fds_.back().get();
  }
  // Every span decodes to its slice of `want`.
  void ExpectAllSpans(const SeekIndex& idx, int fd, const std::string& want) {
    for (size_t i = 0; i < idx.count(); i++) {
      auto d = idx.DecodeSpan(fd, i);
      ASSERT_TRUE(d.ok()) << "span " << i << ": " << d.status().message();
      ASSERT_EQ(*d, want.substr(idx.SpanStart(i), idx.SpanEnd(i) - idx.SpanStart(i)))
          << "span " << i;
    }
  }
  std::string dir_;
  int n_ = 0;
  std::deque<UniqueFd> fds_;
};

TEST_F(SeekIndexTest, GzipSpansDecodeFromTheirCheckpoints) {
  std::string data = Corpus(3 << 20, 1);
  std::string blob = GzipMember(data);
  Indexed x = RunIndexer(blob, 64 << 10);
  ASSERT_EQ(x.plain, data);
  auto idx = SeekIndex::FromBytes(x.sidecar, x.layer);
  ASSERT_TRUE(idx.ok()) << idx.status().message();
  // Checkpoints every >= 64 KiB of output at block boundaries: at least a dozen, and
  // never closer than the span.
  EXPECT_GE((*idx)->count(), 12u);
  for (size_t i = 1; i < (*idx)->count(); i++)
    EXPECT_GE((*idx)->SpanStart(i) - (*idx)->SpanStart(i - 1), 64u << 10);
  size_t with_bits = 0;
  for (size_t i = 0; i < (*idx)->count(); i++) with_bits += (*idx)->point(i).bits != 0;
  EXPECT_GT(with_bits, 0u);  // resuming mid-byte is exercised
  ExpectAllSpans(**idx, BlobFd(blob), data);
  EXPECT_EQ((*idx)->Find(0), 0u);
  EXPECT_EQ((*idx)->Find(data.size() - 1), (*idx)->count() - 1);
}

// A member start at least a span after the previous checkpoint is a checkpoint (fresh:
// no window). Members of one deflate block each, so the member starts are the only
// boundaries.
TEST_F(SeekIndexTest, MultiMemberGzipHasACheckpointAtMemberStartsASpanApart) {
  std::string a = Corpus(20000, 2), b = Corpus(10000, 3), c = Corpus(30000, 4);
  std::string blob = GzipMember(a) + GzipMember(b) + GzipMember(c) + std::string(7, '\0');
  Indexed x = RunIndexer(blob, 8192);
  ASSERT_EQ(x.plain, a + b + c);
  auto idx = SeekIndex::FromBytes(x.sidecar, x.layer);
  ASSERT_TRUE(idx.ok()) << idx.status().message();
  ASSERT_EQ((*idx)->count(), 3u);  // the member starts
  EXPECT_EQ((*idx)->SpanStart(1), a.size());
  EXPECT_EQ((*idx)->SpanStart(2), a.size() + b.size());
  for (size_t i = 0; i < 3; i++) EXPECT_EQ((*idx)->point(i).flags, SeekPoint::kFresh);
  ExpectAllSpans(**idx, BlobFd(blob), a + b + c);
}

// A blob of thousands of tiny members (and zero padding between some) gets checkpoints
// by output, not one per member: the index stays small however the blob is cut, and a
// span crossing member ends decodes with both decoders.
TEST_F(SeekIndexTest, TinyMembersGetCheckpointsBySpanAndSpansCrossMemberEnds) {
  std::string plain, blob;
  uint32_t x = 99;
  for (int i = 0; i < 20000; i++) {
    x = x * 1664525u + 1013904223u;
    // Now and then a member of several blocks, so mid-member checkpoints have spans that
    // run into the tiny members after them.
    std::string part = Corpus(i % 5000 == 7 ? 400000 : 1 + (x >> 8) % 64, x);
    plain += part;
    blob += GzipMember(part);
    if ((x >> 4) % 7 == 0) blob.append(1 + (x >> 12) % 20, '\0');
  }
  Indexed ix = RunIndexer(blob, 65536);
  ASSERT_EQ(ix.plain, plain);
  auto idx = SeekIndex::FromBytes(ix.sidecar, ix.layer);
  ASSERT_TRUE(idx.ok()) << idx.status().message();
  EXPECT_LE((*idx)->count(), plain.size() / 65536 + 2);
  EXPECT_LT(ix.sidecar.size(), blob.size() / 4);
  size_t crossing = 0, mid = 0;
  int fd = BlobFd(blob);
  for (size_t i = 0; i < (*idx)->count(); i++) {
    std::string want =
        plain.substr((*idx)->SpanStart(i), (*idx)->SpanEnd(i) - (*idx)->SpanStart(i));
    // Each decoder alone (the default would hide an ISA-L failure behind zlib).
    auto d = (*idx)->DecodeSpan(fd, i, SeekIndex::Decoder::kIsalOnly);
    ASSERT_TRUE(d.ok()) << "span " << i << " (ISA-L): " << d.status().message();
    ASSERT_TRUE(*d == want) << "span " << i << " (ISA-L)";
    auto z = (*idx)->DecodeSpan(fd, i, SeekIndex::Decoder::kZlibOnly);
    ASSERT_TRUE(z.ok()) << "span " << i << " (zlib): " << z.status().message();
    ASSERT_TRUE(*z == want) << "span " << i << " (zlib)";
    crossing += want.size() > 64;  // more than one tiny member
    mid += !((*idx)->point(i).flags & SeekPoint::kFresh);
  }
  EXPECT_GE(crossing, 10u);
  EXPECT_GE(mid, 2u);  // spans from inside a member ran on across member ends
}

// One deflate block far longer than the span (zlib's memLevel 9 on a run: 32K symbols
// of 258 bytes, ~8 MiB a block): reads would inflate it all, so the index is not used.
TEST_F(SeekIndexTest, ASpanFarLongerThanAskedIsNotWorthUsing) {
  z_stream zs{};
  ASSERT_EQ(deflateInit2(&zs, 9, Z_DEFLATED, 31, 9, Z_DEFAULT_STRATEGY), Z_OK);
  std::string data(24 << 20, 'a'), blob(deflateBound(&zs, data.size()) + 64, '\0');
  zs.next_in = reinterpret_cast<Bytef*>(data.data());
  zs.avail_in = static_cast<uInt>(data.size());
  zs.next_out = reinterpret_cast<Bytef*>(blob.data());
  zs.avail_out = static_cast<uInt>(blob.size());
  ASSERT_EQ(deflate(&zs, Z_FINISH), Z_STREAM_END);
  blob.resize(zs.total_out);
  deflateEnd(&zs);
  Indexed x = RunIndexer(blob, 1 << 20);
  ASSERT_EQ(x.plain, data);
  auto idx = SeekIndex::FromBytes(x.sidecar, x.layer);
  ASSERT_TRUE(idx.ok()) << idx.status().message();
  EXPECT_GT((*idx)->max_span(), 4u << 20);
  EXPECT_FALSE((*idx)->WorthUsing());
  // Ordinary text: spans near the asked size.
  std::string text = Corpus(3 << 20, 17);
  Indexed y = RunIndexer(GzipMember(text), 1 << 20);
  auto idy = SeekIndex::FromBytes(y.sidecar, y.layer);
  ASSERT_TRUE(idy.ok()) << idy.status().message();
  EXPECT_LT((*idy)->max_span(), 2u << 20);
  EXPECT_TRUE((*idy)->WorthUsing());
}

// $IMGFS_SEEK_SPAN below 64 KiB would make indexes larger than what they index (a
// window of up to 32 KiB per checkpoint): raised to 64 KiB; 0 still means no index.
TEST(SeekSpanFromEnv, SmallSpansAreRaisedZeroMeansNone) {
  struct Restore {
    ~Restore() { ::unsetenv("IMGFS_SEEK_SPAN"); }
  } restore;
  ::setenv("IMGFS_SEEK_SPAN", "1", 1);
  EXPECT_EQ(SeekSpanFromEnv(), kMinSeekSpan);
  ::setenv("IMGFS_SEEK_SPAN", "65535", 1);
  EXPECT_EQ(SeekSpanFromEnv(), kMinSeekSpan);
  ::setenv("IMGFS_SEEK_SPAN", "200000", 1);
  EXPECT_EQ(SeekSpanFromEnv(), 200000u);
  ::setenv("IMGFS_SEEK_SPAN", "0", 1);
  EXPECT_EQ(SeekSpanFromEnv(), 0u);
  ::setenv("IMGFS_SEEK_SPAN", "1099511627776", 1);  // 1 TiB: every span decoded whole
  EXPECT_EQ(SeekSpanFromEnv(), kMaxSeekSpan);
  ::setenv("IMGFS_SEEK_SPAN", "1k", 1);
  EXPECT_EQ(SeekSpanFromEnv(), kDefaultSeekSpan);
}

TEST_F(SeekIndexTest, ZstdFramesGiveFrameLevelAccessAndOneFrameGivesOneSpan) {
  std::string data = Corpus(1 << 20, 5);
  std::string blob = ZstdFrames(data, 10000);  // 105 frames
  Indexed x = RunIndexer(blob, 50000);
  ASSERT_EQ(x.plain, data);
  auto idx = SeekIndex::FromBytes(x.sidecar, x.layer);
  ASSERT_TRUE(idx.ok()) << idx.status().message();
  EXPECT_EQ((*idx)->format(), Compression::kZstd);
  EXPECT_GE((*idx)->count(), 15u);
  for (size_t i = 0; i < (*idx)->count(); i++) EXPECT_EQ((*idx)->SpanStart(i) % 10000, 0u);
  ExpectAllSpans(**idx, BlobFd(blob), data);

  Indexed one = RunIndexer(ZstdFrames(data, data.size()), 50000);
  auto idx1 = SeekIndex::FromBytes(one.sidecar, one.layer);
  ASSERT_TRUE(idx1.ok()) << idx1.status().message();
  EXPECT_EQ((*idx1)->count(), 1u);
}

TEST_F(SeekIndexTest, ADamagedBlobFailsOnlyTheSpanItHits) {
  std::string data = Corpus(2 << 20, 6);
  std::string blob = GzipMember(data);
  Indexed x = RunIndexer(blob, 128 << 10);
  auto idx = SeekIndex::FromBytes(x.sidecar, x.layer);
  ASSERT_TRUE(idx.ok());
  size_t k = (*idx)->count() / 2;
  ASSERT_GE((*idx)->count(), 4u);
  // Flip a byte in the middle of span k's compressed bytes.
  uint64_t lo = (*idx)->point(k).in_off, hi = (*idx)->point(k + 1).in_off;
  std::string bad = blob;
  bad[(lo + hi) / 2] ^= 0x55;
  int fd = BlobFd(bad);
  for (size_t i = 0; i < (*idx)->count(); i++) {
    auto d = (*idx)->DecodeSpan(fd, i);
    if (i == k) {
      ASSERT_FALSE(d.ok());
      EXPECT_EQ(d.status().code(), Status::Code::kCorruption) << d.status().message();
    } else {
      ASSERT_TRUE(d.ok()) << "span " << i << ": " << d.status().message();
    }
  }
}

// The span check values as docs/store-format.md defines them: version 2 records
// XXH3-128 (canonical bytes, then 16 zero bytes); a version-1 sidecar (SHA-256 span
// digests, written before) is still read and checked with SHA-256; an unknown version
// is refused. Each value is computed here from the spans' bytes, not by SpanCheck.
TEST_F(SeekIndexTest, SpanChecksAreXxh3InVersion2AndVersion1Sha256IsStillChecked) {
  std::string data = Corpus(1 << 20, 11);
  std::string blob = GzipMember(data);
  Indexed x = RunIndexer(blob, 64 << 10);
  auto idx = SeekIndex::FromBytes(x.sidecar, x.layer);
  ASSERT_TRUE(idx.ok()) << idx.status().message();
  EXPECT_EQ((*idx)->version(), 2u);
  ASSERT_GE((*idx)->count(), 4u);
  int fd = BlobFd(blob);
  std::string v1 = AsVersion1(x.sidecar, **idx, data);
  for (size_t i = 0; i < (*idx)->count(); i++) {
    std::string span = data.substr((*idx)->SpanStart(i), (*idx)->SpanEnd(i) - (*idx)->SpanStart(i));
    XXH128_canonical_t c;
    XXH128_canonicalFromHash(&c, XXH3_128bits(span.data(), span.size()));
    uint8_t want[32] = {};
    std::memcpy(want, c.digest, 16);
    SeekPoint p = (*idx)->point(i);
    ASSERT_EQ(std::memcmp(p.digest, want, 32), 0) << "span " << i;
  }
  // The version-2 values read as version 1 do not check: the version chooses the hash.
  std::string mixed = x.sidecar;
  mixed[8] = 1;
  auto m = SeekIndex::FromBytes(mixed, x.layer);
  ASSERT_TRUE(m.ok()) << m.status().message();
  auto bad = (*m)->DecodeSpan(fd, 0);
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().code(), Status::Code::kCorruption);
  // Version 1 with SHA-256 values: every span reads; a damaged value fails that span.
  auto old = SeekIndex::FromBytes(v1, x.layer);
  ASSERT_TRUE(old.ok()) << old.status().message();
  EXPECT_EQ((*old)->version(), 1u);
  ExpectAllSpans(**old, fd, data);
  size_t k = (*old)->count() / 2;
  v1[SeekIndex::kHeaderSize + k * SeekIndex::kRecordSize + 40 + 31] ^= 1;
  auto damaged = SeekIndex::FromBytes(v1, x.layer);
  ASSERT_TRUE(damaged.ok());
  for (size_t i = 0; i < (*damaged)->count(); i++)
    EXPECT_EQ((*damaged)->DecodeSpan(fd, i).ok(), i != k) << "span " << i;
  std::string v3 = x.sidecar;
  v3[8] = 3;
  auto unknown = SeekIndex::FromBytes(v3, x.layer);
  ASSERT_FALSE(unknown.ok());
  EXPECT_EQ(unknown.status().code(), Status::Code::kUnsupported) << unknown.status().message();
}

// Version 1 stored a window compressed whenever zstd did not fail, so a frame exactly
// as long as its window (short windows near a member start) was read as raw bytes and
// its span always failed its check. Version 2 stores such windows raw; a version-1
// sidecar's window of that shape is read both ways. Made here by padding one window's
// frame with a zstd skippable frame to the window's length.
TEST_F(SeekIndexTest, AVersion1WindowAsLongAsItsFrameIsReadAsTheFrame) {
  std::string data = Corpus(1 << 20, 12);
  std::string blob = GzipMember(data);
  Indexed x = RunIndexer(blob, 64 << 10);
  auto idx = SeekIndex::FromBytes(x.sidecar, x.layer);
  ASSERT_TRUE(idx.ok()) << idx.status().message();
  size_t n = (*idx)->count(), k = n;
  for (size_t i = 1; i < n && k == n; i++) {
    SeekPoint p = (*idx)->point(i);
    if (p.win_len && p.win_clen + 8 <= p.win_len) k = i;
  }
  ASSERT_LT(k, n) << "no compressed window";
  // Rebuild the windows area with window k padded to its length.
  auto get64 = [&](size_t at) {
    uint64_t v = 0;
    for (int b = 7; b >= 0; b--) v = v << 8 | static_cast<uint8_t>(x.sidecar[at + b]);
    return v;
  };
  auto put = [](std::string& s, size_t at, uint64_t v, int bytes) {
    for (int b = 0; b < bytes; b++) s[at + b] = static_cast<char>(v >> (8 * b));
  };
  uint64_t win_base = get64(48);
  std::string padded = x.sidecar.substr(0, win_base), windows;
  for (size_t i = 0; i < n; i++) {
    SeekPoint p = (*idx)->point(i);
    std::string stored = x.sidecar.substr(win_base + p.win_off, p.win_clen);
    if (i == k) {
      std::string skip(8, '\0');
      put(skip, 0, 0x184D2A50, 4);
      put(skip, 4, p.win_len - p.win_clen - 8, 4);
      stored += skip + std::string(p.win_len - p.win_clen - 8, 'x');
      ASSERT_EQ(stored.size(), p.win_len);
    }
    size_t rec = SeekIndex::kHeaderSize + i * SeekIndex::kRecordSize;
    put(padded, rec + 16, windows.size(), 8);
    put(padded, rec + 24, stored.size(), 4);
    windows += stored;
  }
  put(padded, 56, windows.size(), 8);
  padded += windows;
  int fd = BlobFd(blob);
  auto v1 = SeekIndex::FromBytes(AsVersion1(padded, **idx, data), x.layer);
  ASSERT_TRUE(v1.ok()) << v1.status().message();
  ExpectAllSpans(**v1, fd, data);
  for (auto d : {SeekIndex::Decoder::kZlibOnly, SeekIndex::Decoder::kIsalOnly}) {
    auto span = (*v1)->DecodeSpan(fd, k, d);
    ASSERT_TRUE(span.ok()) << span.status().message();
  }
  // Version 2 promises such a window is raw: read raw, span k fails its check.
  auto v2 = SeekIndex::FromBytes(padded, x.layer);
  ASSERT_TRUE(v2.ok()) << v2.status().message();
  for (size_t i = 0; i < n; i++) EXPECT_EQ((*v2)->DecodeSpan(fd, i).ok(), i != k) << "span " << i;
}

TEST_F(SeekIndexTest, ADamagedSidecarIsRejectedNotTrusted) {
  std::string data = Corpus(1 << 20, 7);
  Indexed x = RunIndexer(GzipMember(data), 64 << 10);
  LayerRecord other = x.layer;
  other.size++;
  EXPECT_FALSE(SeekIndex::FromBytes(x.sidecar, other).ok());  // not this layer's
  std::string s = x.sidecar;
  s[SeekIndex::kHeaderSize + SeekIndex::kRecordSize + 8] = '\xff';  // point 1's in_off
  s[SeekIndex::kHeaderSize + SeekIndex::kRecordSize + 15] = '\x7f';
  EXPECT_FALSE(SeekIndex::FromBytes(s, x.layer).ok());
  EXPECT_FALSE(SeekIndex::FromBytes(x.sidecar.substr(0, 100), x.layer).ok());
}

// A sidecar that claims a huge span size and a layer to match (damage, or an old
// index with an absurd $IMGFS_SEEK_SPAN) is not used, and its spans are refused, not
// allocated: the last span here would be 3 GiB.
TEST_F(SeekIndexTest, ASidecarWithHugeSpansIsNotUsedAndItsSpansAreRefused) {
  std::string data = Corpus(1 << 20, 9);
  std::string blob = GzipMember(data);
  Indexed x = RunIndexer(blob, 256 << 10);
  std::string s = x.sidecar;
  auto put64 = [&](size_t at, uint64_t v) {
    for (int b = 0; b < 8; b++) s[at + b] = static_cast<char>(v >> (8 * b));
  };
  uint64_t huge = uint64_t{3} << 30;
  put64(16, uint64_t{1} << 30);  // span
  put64(32, huge);               // tar size
  LayerRecord layer = x.layer;
  layer.size = huge;
  auto idx = SeekIndex::FromBytes(s, layer);
  ASSERT_TRUE(idx.ok()) << idx.status().message();
  EXPECT_FALSE((*idx)->WorthUsing());
  size_t last = (*idx)->count() - 1;
  EXPECT_GT((*idx)->SpanEnd(last) - (*idx)->SpanStart(last), 4 * kMaxSeekSpan);
  auto span = (*idx)->DecodeSpan(BlobFd(blob), last);
  ASSERT_FALSE(span.ok());
  EXPECT_NE(span.status().message().find("more than any index imgfs writes"), std::string::npos)
      << span.status().message();
}

TEST(SpanCacheTest, StaysWithinItsBudgetAndKeepsTheRecentlyUsed) {
  SpanCache c(16 * 1000);  // 16 shards of 1000 bytes
  for (uint64_t i = 0; i < 200; i++)
    c.Put(1, i, std::make_shared<const std::string>(400, static_cast<char>(i)));
  EXPECT_LE(c.bytes(), 16u * 1000);
  EXPECT_GT(c.evictions(), 100u);
  EXPECT_TRUE(c.Get(1, 199) != nullptr);  // the newest of its shard stays
  EXPECT_TRUE(c.Get(1, 0) == nullptr);
}

// Through the store: import, drop the sidecars, read.
class SpanReadTest : public test::StoreFixture {
 protected:
  void SetUp() override {
    StoreFixture::SetUp();
    if (HasFatalFailure()) return;
    ::setenv("IMGFS_SEEK_SPAN", "65536", 1);
    TarBuilder t;
    for (int i = 0; i < 40; i++) t.File("f" + std::to_string(i), Corpus(50000, 100 + i));
    auto r = ImportTar(t.Build("gzip"), "span:1");
    ::unsetenv("IMGFS_SEEK_SPAN");
    ASSERT_TRUE(r.ok()) << r.status().message();
    auto v = ImageView::Open(*store_, r->id);
    ASSERT_TRUE(v.ok());
    view_ = *v;
  }
  void TearDown() override {
    view_.reset();
    StoreFixture::TearDown();
  }
  // Flips a bit of the stored blob in the middle of span k's compressed bytes.
  void DamageSpan(const LayerRecord& l, const SeekIndex& idx, size_t k) {
    uint64_t lo = idx.point(k).in_off, hi = idx.point(k + 1).in_off;
    std::string blob_path = store_->blobs().BlobPath(l.blob);
    ::chmod(blob_path.c_str(), 0644);
    auto fd = OpenFile(blob_path, O_RDWR);
    ASSERT_TRUE(fd.ok());
    char c;
    ASSERT_TRUE(PreadAll(fd->get(), &c, 1, (lo + hi) / 2).ok());
    c ^= 0x20;
    ASSERT_EQ(::pwrite(fd->get(), &c, 1, (lo + hi) / 2), 1);
  }
  std::string Cat(LayerReader& r, int i, Status* st = nullptr) {
    uint32_t n = *view_->tree().Resolve("/f" + std::to_string(i), true);
    std::string out(view_->tree().node(n).size, '\0');
    auto got = view_->Read(r, n, out.data(), out.size(), 0);
    if (st) *st = got.status();
    return got.ok() ? out : "<error>";
  }
  std::shared_ptr<const ImageView> view_;
};

TEST_F(SpanReadTest, ReadsNeedNoUnpackedCopyAndMissingSidecarsAreBuilt) {
  const LayerRecord& l = view_->layers()[0];
  std::string sidecar = SeekIndexPath(*store_, l.diff_id);
  ASSERT_TRUE(PathExists(sidecar));  // written by the import
  {
    LayerReader r(*store_);
    EXPECT_EQ(Cat(r, 17), Corpus(50000, 117));
    EXPECT_EQ(r.indexes_built(), 0u);
    EXPECT_LE(r.spans_decoded(), 2u);  // 50 KB of a 2 MB layer: one or two 64 KiB spans
    EXPECT_EQ(r.unpack_cache().unpack_count(), 0u);
    EXPECT_FALSE(PathExists(store_->UnpackedPath(l.diff_id)));
  }
  ASSERT_EQ(::unlink(sidecar.c_str()), 0);  // a store from before seek indexes
  LayerReader r(*store_);
  EXPECT_EQ(Cat(r, 3), Corpus(50000, 103));
  EXPECT_EQ(r.indexes_built(), 1u);
  EXPECT_TRUE(PathExists(sidecar));
  EXPECT_FALSE(PathExists(store_->UnpackedPath(l.diff_id)));
}

TEST_F(SpanReadTest, ParallelReadersUnderEvictionGetEveryByteRight) {
  LayerReader r(*store_, 16 * 70000);  // about one span per shard: constant eviction
  std::atomic<int> wrong{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; t++) {
    threads.emplace_back([&, t] {
      for (int k = 0; k < 30; k++) {
        int i = (t * 7 + k * 13) % 40;
        if (Cat(r, i) != Corpus(50000, 100 + i)) wrong++;
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(wrong.load(), 0);
  EXPECT_GT(r.span_cache().evictions(), 0u)
      << "decoded " << r.spans_decoded() << " hits " << r.span_cache().hits() << " bytes "
      << r.span_cache().bytes();
  EXPECT_LE(r.span_cache().bytes(), 16u * 70000 + 16u * (256 << 10));
}

TEST_F(SpanReadTest, CorruptionInOneSpanFailsOnlyFilesInIt) {
  const LayerRecord& l = view_->layers()[0];
  auto idx = SeekIndex::Open(SeekIndexPath(*store_, l.diff_id), l);
  ASSERT_TRUE(idx.ok()) << idx.status().message();
  ASSERT_GE((*idx)->count(), 10u);
  size_t k = 10;
  ASSERT_NO_FATAL_FAILURE(DamageSpan(l, **idx, k));
  LayerReader r(*store_);
  int failed = 0;
  for (int i = 0; i < 40; i++) {
    uint32_t n = *view_->tree().Resolve("/f" + std::to_string(i), true);
    uint64_t a = view_->tree().node(n).data_offset, b = a + view_->tree().node(n).size;
    bool in_k = a < (*idx)->SpanEnd(k) && b > (*idx)->SpanStart(k);
    Status st;
    std::string got = Cat(r, i, &st);
    if (in_k) {
      failed++;
      EXPECT_EQ(st.code(), Status::Code::kCorruption) << "f" << i;
    } else {
      EXPECT_EQ(got, Corpus(50000, 100 + i)) << "f" << i << ": " << st.message();
    }
  }
  EXPECT_GE(failed, 1);
}

// Readers that meet in a span being decoded wait for that one decode
// (tests/hold_decode.h holds the decoding thread until the others wait).
TEST_F(SpanReadTest, ReadersOfASpanBeingDecodedWaitForThatOneDecode) {
  LayerReader r(*store_);
  std::atomic<int> calls{0};
  constexpr int kThreads = 8;
  HoldDecodeUntilWaiting(r, kThreads - 1, &calls);
  std::atomic<int> wrong{0};
  std::latch go(kThreads);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; t++) {
    threads.emplace_back([&] {
      go.arrive_and_wait();
      if (Cat(r, 21) != Corpus(50000, 121)) wrong++;
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(wrong.load(), 0);
  // f21 (50,000 bytes) lies in one or two 64 KiB spans: each decoded once, not 8 times.
  EXPECT_LE(r.spans_decoded(), 2u);
  EXPECT_EQ(calls.load(), static_cast<int>(r.spans_decoded()));
  EXPECT_GE(r.decode_waits(), static_cast<uint64_t>(kThreads - 1));
}

TEST_F(SpanReadTest, ReadersWaitingForADamagedSpanAllGetItsError) {
  const LayerRecord& l = view_->layers()[0];
  auto idx = SeekIndex::Open(SeekIndexPath(*store_, l.diff_id), l);
  ASSERT_TRUE(idx.ok()) << idx.status().message();
  // A file that lies inside one span, and a flipped byte in that span's compressed bytes.
  int file = -1;
  size_t k = 0;
  for (int i = 0; i < 40 && file < 0; i++) {
    uint32_t n = *view_->tree().Resolve("/f" + std::to_string(i), true);
    uint64_t a = view_->tree().node(n).data_offset, b = a + view_->tree().node(n).size;
    size_t s = (*idx)->Find(a);
    if ((*idx)->Find(b - 1) == s && s + 1 < (*idx)->count()) file = i, k = s;
  }
  ASSERT_GE(file, 0);
  ASSERT_NO_FATAL_FAILURE(DamageSpan(l, **idx, k));
  LayerReader r(*store_);
  std::atomic<int> calls{0};
  constexpr int kThreads = 6;
  HoldDecodeUntilWaiting(r, kThreads - 1, &calls);
  std::atomic<int> corrupt{0};
  std::latch go(kThreads);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; t++) {
    threads.emplace_back([&] {
      go.arrive_and_wait();
      Status st;
      Cat(r, file, &st);
      if (st.code() == Status::Code::kCorruption &&
          st.message().find("span " + std::to_string(k)) != std::string::npos)
        corrupt++;
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(corrupt.load(), kThreads);
  EXPECT_EQ(calls.load(), 1);  // one decode found the damage; the others got its error
  EXPECT_EQ(r.spans_decoded(), 0u);
  // A failed decode is not remembered: the next read decodes (and fails) again.
  Status st;
  Cat(r, file, &st);
  EXPECT_EQ(st.code(), Status::Code::kCorruption);
  EXPECT_EQ(calls.load(), 2);
}

using test::WaitFor;

TEST_F(SpanReadTest, PrefetchDecodesAheadAndLaterReadsDecodeNothing) {
  LayerReader r(*store_);
  const LayerRecord& l = view_->layers()[0];
  auto s = r.Open(l);
  ASSERT_TRUE(s.ok()) << s.status().message();
  ASSERT_NE((*s)->index(), nullptr);
  auto node = [&](int i) {
    return view_->tree().node(*view_->tree().Resolve("/f" + std::to_string(i), true));
  };
  uint64_t a = node(5).data_offset, b = node(9).data_offset + node(9).size;
  const SeekIndex& x = *(*s)->index();
  uint64_t want = x.Find(b - 1) - x.Find(a) + 1;
  r.Prefetch(*s, a, b - a);
  ASSERT_TRUE(WaitFor([&] { return r.spans_prefetched() >= want; }))
      << "prefetched " << r.spans_prefetched() << " of " << want;
  EXPECT_EQ(r.spans_prefetched(), want);
  uint64_t decoded = r.spans_decoded();
  EXPECT_EQ(decoded, want);
  for (int i = 5; i <= 9; i++) EXPECT_EQ(Cat(r, i), Corpus(50000, 100 + i)) << "f" << i;
  EXPECT_EQ(r.spans_decoded(), decoded);  // every span came from the cache
  r.Prefetch(*s, a, b - a);               // all cached: nothing queued
  EXPECT_EQ(r.prefetch_queued(), 0u);
  EXPECT_TRUE(r.Prefetch(*s, a, 1));  // not full: a caller goes on
  r.set_prefetch(false);
  EXPECT_FALSE(r.Prefetch(*s, 0, l.size));
  EXPECT_EQ(r.prefetch_queued(), 0u);
}

TEST_F(SpanReadTest, PrefetchQueuesAtMostAQuarterOfTheCacheAndNothingWhenItIsSmall) {
  const LayerRecord& l = view_->layers()[0];
  {
    LayerReader r(*store_, 7 * 65536);  // under 8 spans: no read-ahead
    auto s = r.Open(l);
    ASSERT_TRUE(s.ok());
    EXPECT_TRUE(r.Prefetch(*s, 0, l.size));  // nothing to queue, but not full
    EXPECT_EQ(r.prefetch_queued(), 0u);
    EXPECT_EQ(r.spans_decoded(), 0u);
  }
  LayerReader r(*store_, 64 * 65536);  // a quarter: 16 spans of 64 KiB
  std::atomic<bool> release{false};
  std::atomic<int> calls{0};
  r.set_decode_hook([&](size_t) {
    calls++;
    WaitFor([&] { return release.load(); });
  });
  auto s = r.Open(l);
  ASSERT_TRUE(s.ok());
  EXPECT_FALSE(r.Prefetch(*s, 0, l.size));  // the 2 MB layer, 31+ spans: the queue is full
  ASSERT_TRUE(WaitFor([&] { return calls.load() == 1; }));  // the helper holds one span
  // Spans 0..q were queued (0 is with the helper): they fit in a quarter, one more would not.
  size_t q = r.prefetch_queued();
  const SeekIndex& x = *(*s)->index();
  ASSERT_LT(q + 1, x.count());
  EXPECT_LE(x.SpanEnd(q), 64u * 65536 / 4) << q;
  EXPECT_GT(x.SpanEnd(q + 1), 64u * 65536 / 4) << q;
  release = true;
  ASSERT_TRUE(WaitFor([&] { return r.prefetch_queued() == 0 && r.spans_prefetched() == q + 1; }));
  EXPECT_EQ(Cat(r, 0), Corpus(50000, 100));
}

TEST_F(SpanReadTest, ReadAheadUnderEvictionWithParallelReadersGetsEveryByteRight) {
  LayerReader r(*store_, 8 * 65536);  // read-ahead on, about half a span per shard
  auto s = r.Open(view_->layers()[0]);
  ASSERT_TRUE(s.ok());
  std::atomic<int> wrong{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 6; t++) {
    threads.emplace_back([&, t] {
      for (int k = 0; k < 25; k++) {
        int i = (t * 11 + k * 7) % 40;
        uint32_t n = *view_->tree().Resolve("/f" + std::to_string((i + 1) % 40), true);
        r.Prefetch(*s, view_->tree().node(n).data_offset, 3 * 50000);
        if (Cat(r, i) != Corpus(50000, 100 + i)) wrong++;
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(wrong.load(), 0);
  EXPECT_GT(r.span_cache().evictions(), 0u);
  // The helper took up queued spans. Whether it decoded any itself (spans_prefetched)
  // is a race with six readers of the same spans, lost now and then on a loaded machine.
  ASSERT_TRUE(WaitFor([&] { return r.prefetch_queued() == 0; }));
  EXPECT_GT(r.prefetch_fetches(), 0u);
  EXPECT_LE(r.span_cache().bytes(), 8u * 65536 + 16u * (256 << 10));
}

TEST_F(SpanReadTest, ForgettingALayerDropsItsQueuedReadAhead) {
  const LayerRecord& l = view_->layers()[0];
  LayerReader r(*store_);
  std::atomic<bool> release{false};
  std::atomic<int> calls{0};
  r.set_decode_hook([&](size_t) {
    calls++;
    WaitFor([&] { return release.load(); });
  });
  auto s = r.Open(l);
  ASSERT_TRUE(s.ok());
  r.Prefetch(*s, 0, l.size);
  ASSERT_TRUE(WaitFor([&] { return calls.load() == 1; }));  // the helper holds span 0
  EXPECT_GE(r.prefetch_queued(), 5u);
  r.Forget(l.diff_id.hex());
  EXPECT_EQ(r.prefetch_queued(), 0u);
  release = true;
}

}  // namespace
}  // namespace imgfs
