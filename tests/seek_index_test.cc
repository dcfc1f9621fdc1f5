// Seek indexes (index/seek_index.h): every span of gzip (one and several members) and
// multi-frame zstd decodes to the bytes the one-pass decoder produced; a damaged blob
// fails only the span it hits; damaged and foreign sidecars are refused. The read path
// through a store is in span_read_test.cc.
#include "index/seek_index.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>
#include <xxhash.h>
#include <zlib.h>
#include <zstd.h>

#include <deque>
#include <random>

#include "tests/compress.h"
#include "tests/corpus.h"
#include "tests/read_to_end.h"
#include "tests/tar_builder.h"

namespace imgfs {
namespace {

using test::Corpus;
using test::GzipMember;
using test::ZstdFrames;

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

// The little-endian u64 at byte `at` of sidecar bytes.
uint64_t Get64(const std::string& s, size_t at) {
  uint64_t v = 0;
  for (int b = 7; b >= 0; b--) v = v << 8 | static_cast<uint8_t>(s[at + b]);
  return v;
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
  // fn(data, blob, x, idx) for 1 MiB of Corpus(seed) as one gzip member and as zstd
  // frames of 20,000 bytes, indexed with 64 KiB spans (4 KiB pieces).
  template <typename Fn>
  void ForGzipAndZstd(int seed, Fn fn) {
    std::string data = Corpus(1 << 20, seed);
    for (bool zstd : {false, true}) {
      SCOPED_TRACE(zstd ? "zstd" : "gzip");
      std::string blob = zstd ? ZstdFrames(data, 20000) : GzipMember(data);
      Indexed x = RunIndexer(blob, 64 << 10);
      auto idx = SeekIndex::FromBytes(x.sidecar, x.layer);
      ASSERT_TRUE(idx.ok()) << idx.status().message();
      fn(data, blob, x, idx);
    }
  }
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
  for (size_t i = 0; i < 3; i++)
    EXPECT_EQ((*idx)->point(i).flags, SeekPoint::kFresh | SeekPoint::kPrefixes);
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
  auto get64 = [&](size_t at) { return Get64(x.sidecar, at); };
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
  padded += windows + x.sidecar.substr(win_base + get64(56));  // and the prefix values
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

// Prefix values (docs/store-format.md): every span keeps, for each multiple k·Q of the
// piece size Q = span/16 inside it, the low 64 bits of XXH3-128 of its first k·Q bytes,
// at prefix_at in the area after the windows. A read of a span's first `need` bytes
// decodes whole pieces up to the one holding byte need-1 and checks that prefix's value;
// a damaged value fails only that prefix; a damaged blob never yields wrong bytes.
// Each value is computed here from the data, not by SpanCheck.
TEST_F(SeekIndexTest, PrefixReadsDecodeWholePiecesAndAreCheckedByTheirOwnValues) {
  ForGzipAndZstd(
      21, [&](const std::string& data, const std::string& blob, const Indexed& x, const auto& idx) {
        const uint64_t q = 4096;
        ASSERT_EQ((*idx)->piece(), q);
        int fd = BlobFd(blob);
        uint64_t area = Get64(x.sidecar, 48) + Get64(x.sidecar, 56);
        std::mt19937_64 rng(5);
        for (size_t i = 0; i < (*idx)->count(); i++) {
          uint64_t start = (*idx)->SpanStart(i), len = (*idx)->SpanEnd(i) - start;
          SeekPoint p = (*idx)->point(i);
          ASSERT_TRUE(p.flags & SeekPoint::kPrefixes) << "span " << i;
          ASSERT_EQ((*idx)->PrefixCount(i), (len - 1) / q) << "span " << i;
          for (uint64_t k = 1; k * q < len; k++) {
            ASSERT_EQ(Get64(x.sidecar, area + p.prefix_at + 8 * (k - 1)),
                      XXH3_128bits(data.data() + start, k * q).low64)
                << "span " << i << " prefix " << k;
          }
          for (uint64_t need :
               {uint64_t{1}, q - 1, q, q + 1, len / 2, len - 1, len, len + 7, 1 + rng() % len}) {
            auto d = (*idx)->DecodeSpan(fd, i, SeekIndex::Decoder::kIsalThenZlib, need);
            ASSERT_TRUE(d.ok()) << "span " << i << " need " << need << ": " << d.status().message();
            uint64_t want = std::min(len, (need ? (need - 1) / q + 1 : 1) * q);
            ASSERT_EQ(d->size(), want) << "span " << i << " need " << need;
            ASSERT_EQ((*idx)->DecodeLength(i, need), want);
            ASSERT_TRUE(*d == data.substr(start, want)) << "span " << i << " need " << need;
          }
        }
        // A damaged prefix value: that prefix fails, the one before and the whole span read.
        size_t k = (*idx)->count() / 2;
        ASSERT_GE((*idx)->PrefixCount(k), 4u);
        std::string bad = x.sidecar;
        bad[area + (*idx)->point(k).prefix_at + 8 * 2] ^= 4;  // the value of the first 3 pieces
        auto b = SeekIndex::FromBytes(bad, x.layer);
        ASSERT_TRUE(b.ok());
        auto three = (*b)->DecodeSpan(fd, k, SeekIndex::Decoder::kIsalThenZlib, 3 * q);
        ASSERT_FALSE(three.ok());
        EXPECT_EQ(three.status().code(), Status::Code::kCorruption) << three.status().message();
        EXPECT_TRUE((*b)->DecodeSpan(fd, k, SeekIndex::Decoder::kIsalThenZlib, 2 * q).ok());
        EXPECT_TRUE((*b)->DecodeSpan(fd, k).ok());
        // Prefix values out of the file: the sidecar is refused.
        std::string out = x.sidecar;
        out.resize(out.size() - 8);
        EXPECT_FALSE(SeekIndex::FromBytes(out, x.layer).ok());
        // A damaged blob: every read of span k fails or gives the right bytes, the whole
        // span fails, and its first piece (before the damage) still reads.
        uint64_t lo = (*idx)->point(k).in_off, hi = (*idx)->point(k + 1).in_off;
        std::string damaged = blob;
        damaged[(lo + hi) / 2] ^= 0x10;
        int dfd = BlobFd(damaged);
        size_t failed = 0;
        uint64_t len = (*idx)->SpanEnd(k) - (*idx)->SpanStart(k);
        for (uint64_t need = 1; need <= len; need += q) {
          auto d = (*idx)->DecodeSpan(dfd, k, SeekIndex::Decoder::kIsalThenZlib, need);
          if (!d.ok()) {
            EXPECT_EQ(d.status().code(), Status::Code::kCorruption) << d.status().message();
            failed++;
            continue;
          }
          ASSERT_TRUE(*d == data.substr((*idx)->SpanStart(k), d->size())) << "need " << need;
        }
        EXPECT_GT(failed, 0u);
        EXPECT_FALSE((*idx)->DecodeSpan(dfd, k).ok());
        EXPECT_TRUE((*idx)->DecodeSpan(dfd, k, SeekIndex::Decoder::kIsalThenZlib, 1).ok());
      });
}

// Verify (imgfs verify) decodes every span and checks its value and its prefix values:
// clean on a good index, and a damaged span value, prefix value or blob byte is
// Corruption naming the span.
TEST_F(SeekIndexTest, VerifyChecksEverySpanValueAndPrefixValue) {
  ForGzipAndZstd(
      22, [&](const std::string& data, const std::string& blob, const Indexed& x, const auto& idx) {
        int fd = BlobFd(blob);
        Status good = (*idx)->Verify(fd);
        EXPECT_TRUE(good.ok()) << good.message();
        size_t k = (*idx)->count() / 2;
        ASSERT_GE((*idx)->PrefixCount(k), 4u);
        uint64_t area = Get64(x.sidecar, 48) + Get64(x.sidecar, 56);
        auto verify_with = [&](size_t at, uint8_t flip) {
          std::string bad = x.sidecar;
          bad[at] ^= flip;
          auto b = SeekIndex::FromBytes(bad, x.layer);
          EXPECT_TRUE(b.ok()) << b.status().message();
          return b.ok() ? (*b)->Verify(fd) : b.status();
        };
        // Span k's value (record k, bytes 40..71).
        Status span = verify_with(SeekIndex::kHeaderSize + k * SeekIndex::kRecordSize + 45, 1);
        EXPECT_EQ(span.code(), Status::Code::kCorruption) << span.message();
        EXPECT_NE(span.message().find("span " + std::to_string(k)), std::string::npos)
            << span.message();
        // The value of span k's first 4 pieces: whole-span reads never look at it.
        Status prefix = verify_with(area + (*idx)->point(k).prefix_at + 8 * 3, 0x20);
        EXPECT_EQ(prefix.code(), Status::Code::kCorruption) << prefix.message();
        EXPECT_NE(prefix.message().find("span " + std::to_string(k) + ": the value of its first " +
                                        std::to_string(4 * (*idx)->piece())),
                  std::string::npos)
            << prefix.message();
        // A damaged blob.
        std::string damaged = blob;
        damaged[((*idx)->point(k).in_off + (*idx)->point(k + 1).in_off) / 2] ^= 0x10;
        Status blob_bad = (*idx)->Verify(BlobFd(damaged));
        EXPECT_EQ(blob_bad.code(), Status::Code::kCorruption) << blob_bad.message();
      });
}

// A prefix decode reads about its share of the span's compressed bytes first. Where the
// span's start compresses worse than its end, that share is too short: the rest is read
// and the prefix decoded again. Where it compresses better, the share is plenty.
TEST_F(SeekIndexTest, APrefixReadsItsShareOfTheCompressedBytesAndTheRestWhenShort) {
  std::mt19937_64 rng(3);
  auto noise = [&](size_t n) {
    std::string s(n, '\0');
    for (char& c : s) c = static_cast<char>(rng());
    return s;
  };
  const uint64_t mib = 1 << 20;
  std::string data =
      noise(mib) + std::string(3 * mib, '\0') + noise(mib) + std::string(3 * mib, '\0');
  std::string blob = GzipMember(data);
  Indexed x = RunIndexer(blob, 4 * mib);
  auto idx = SeekIndex::FromBytes(x.sidecar, x.layer);
  ASSERT_TRUE(idx.ok()) << idx.status().message();
  ASSERT_GE((*idx)->count(), 2u);
  ASSERT_EQ((*idx)->piece(), mib / 4);
  int fd = BlobFd(blob);
  uint64_t len = (*idx)->SpanEnd(0);
  uint64_t total = (*idx)->point(1).in_off - (*idx)->point(0).in_off;
  // The first MiB is noise: its prefix needs at least a MiB of compressed bytes, more
  // than its share.
  ASSERT_LT(SeekIndex::PrefixInput(total, len, mib), mib);
  auto d = (*idx)->DecodeSpan(fd, 0, SeekIndex::Decoder::kIsalThenZlib, mib);
  ASSERT_TRUE(d.ok()) << d.status().message();
  EXPECT_TRUE(*d == data.substr(0, mib));
  for (auto dec : {SeekIndex::Decoder::kZlibOnly, SeekIndex::Decoder::kIsalOnly}) {
    auto e = (*idx)->DecodeSpan(fd, 0, dec, mib / 2);
    ASSERT_TRUE(e.ok()) << e.status().message();
    EXPECT_TRUE(*e == data.substr(0, mib / 2));
  }
  // The span after it: whatever its shape, every prefix reads right.
  for (uint64_t need = 1; need < (*idx)->SpanEnd(1) - (*idx)->SpanStart(1); need += mib / 4) {
    auto e = (*idx)->DecodeSpan(fd, 1, SeekIndex::Decoder::kIsalThenZlib, need);
    ASSERT_TRUE(e.ok()) << e.status().message();
    EXPECT_TRUE(*e == data.substr((*idx)->SpanStart(1), e->size())) << need;
  }
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
  auto orig = SeekIndex::FromBytes(x.sidecar, x.layer);
  ASSERT_TRUE(orig.ok());
  for (size_t i = 0; i < (*orig)->count(); i++) {  // an index made before prefix values
    size_t flags = SeekIndex::kHeaderSize + i * SeekIndex::kRecordSize + 33;
    s[flags] = static_cast<char>(s[flags] & ~SeekPoint::kPrefixes);
  }
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
  // Reads never use it, so verify has nothing to check in it (not a false problem).
  Status v = (*idx)->Verify(BlobFd(blob));
  EXPECT_TRUE(v.ok()) << v.message();
}

}  // namespace
}  // namespace imgfs
