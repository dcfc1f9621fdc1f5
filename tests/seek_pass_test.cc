// The pull/load pass's gzip checkpoints (IndexingSource, index/seek_index.cc), which
// ISA-L finds by being stopped at block ends, checked against zlib on many streams:
// seeded random data (text, random bytes, long runs, a mix) compressed by zlib (levels
// 0-9, every strategy, small memLevels, flushes that make empty and tiny blocks), by
// ISA-L (levels 0-3), by gzip -1..-9 and pigz, alone and as multi-member streams with
// zero padding, read through IndexingSource with random read sizes and spans.
// For each: the output is the input; the checkpoints are exactly those zlib's
// inflate(Z_BLOCK) gives (the first block boundary after every `span` bytes of output,
// and every member start: same tar offset, blob offset and bit offset) or, for streams
// with flushes (blocks of a few bytes), real block boundaries at least `span` apart;
// and every span decodes to its bytes three times: with SeekIndex::DecodeSpan's ISA-L
// alone, with its zlib alone, and with an independent zlib decoder here (inflatePrime +
// inflateSetDictionary from the record).
// Damaged streams give the same errors as before (CRC mismatch, truncated, bad magic).
#include <fcntl.h>
#include <gtest/gtest.h>
#include <isa-l/igzip_lib.h>
#include <unistd.h>
#include <zlib.h>
#include <zstd.h>

#include <cstdio>
#include <cstring>
#include <random>
#include <set>

#include "index/file_util.h"
#include "index/seek_index.h"
#include "tests/compress.h"
#include "tests/read_to_end.h"
#include "tests/tar_builder.h"

namespace imgfs {
namespace {

using test::GzipMember;
using test::Zstd;

using Rng = std::mt19937_64;

std::string Data(Rng& r, size_t n) {
  static const char* words[] = {"layer ", "image ", "gzip ", "seek ", "window ",  "span ",
                                "block ", "tar ",   "blob ", "\n",    "usr/lib/", "0x1f "};
  std::string s;
  int kind = static_cast<int>(r() % 4);
  while (s.size() < n) {
    int k = kind == 3 ? static_cast<int>(r() % 3) : kind;
    size_t piece = kind == 3 ? 1 + r() % 20000 : n;
    for (size_t i = 0; i < piece && s.size() < n; i++) {
      if (k == 0) {
        s += words[r() % 12];
      } else if (k == 1) {
        s.push_back(static_cast<char>(r()));
      } else {
        s.append(1 + r() % 3000, static_cast<char>('a' + r() % 3));
      }
    }
  }
  s.resize(n);
  return s;
}

std::string Isal(const std::string& d, int level) {
  isal_zstream zs;
  isal_deflate_init(&zs);
  static const uint32_t sizes[] = {ISAL_DEF_LVL0_DEFAULT, ISAL_DEF_LVL1_DEFAULT,
                                   ISAL_DEF_LVL2_DEFAULT, ISAL_DEF_LVL3_DEFAULT};
  std::vector<uint8_t> lvl(sizes[level]);
  zs.level = static_cast<uint32_t>(level);
  zs.level_buf = lvl.data();
  zs.level_buf_size = static_cast<uint32_t>(lvl.size());
  zs.gzip_flag = IGZIP_GZIP;
  zs.end_of_stream = 1;
  zs.flush = NO_FLUSH;
  std::string out;
  std::vector<uint8_t> buf(1 << 16);
  zs.next_in = reinterpret_cast<uint8_t*>(const_cast<char*>(d.data()));
  zs.avail_in = static_cast<uint32_t>(d.size());
  do {
    zs.next_out = buf.data();
    zs.avail_out = static_cast<uint32_t>(buf.size());
    EXPECT_EQ(isal_deflate(&zs), COMP_OK);
    out.append(reinterpret_cast<char*>(buf.data()), buf.size() - zs.avail_out);
  } while (zs.internal_state.state != ZSTATE_END);
  EXPECT_EQ(zs.avail_in, 0u);
  return out;
}

// `tool` (gzip -6, pigz -p 2 -9 ...) over the data, through a temp file.
std::string Tool(const std::string& dir, const std::string& d, const std::string& tool) {
  std::string in = dir + "/in", out = dir + "/out.gz";
  test::WriteFile(in, d);
  std::string cmd = tool + " -c <" + in + " >" + out;
  EXPECT_EQ(std::system(cmd.c_str()), 0) << cmd;
  auto fd = OpenFile(out, O_RDONLY);
  EXPECT_TRUE(fd.ok());
  std::string s;
  char b[65536];
  ssize_t k;
  while (fd.ok() && (k = ::read(fd->get(), b, sizeof b)) > 0) s.append(b, static_cast<size_t>(k));
  return s;
}

// The checkpoints zlib's inflate(Z_BLOCK) gives: the first member start, then the first
// block boundary (not the end of the last block) or member start after >= span bytes
// of output.
// `all` gets every block boundary (tar offset, blob bit offset).
std::vector<SeekPoint> Reference(const std::string& blob, uint64_t span,
                                 std::set<std::pair<uint64_t, uint64_t>>* all) {
  std::vector<SeekPoint> pts;
  z_stream zs{};
  EXPECT_EQ(inflateInit2(&zs, 31), Z_OK);
  std::vector<char> out(1 << 16);
  size_t pos = 0;
  uint64_t total = 0, last = 0;
  bool member = false;
  while (true) {
    if (!member) {
      while (pos < blob.size() && blob[pos] == 0 && !pts.empty()) pos++;
      if (pos == blob.size()) break;
      EXPECT_EQ(inflateReset2(&zs, 31), Z_OK);
      if (pts.empty() || total - last >= span) {
        SeekPoint p;
        p.out_off = total;
        p.in_off = pos;
        p.flags = SeekPoint::kFresh;
        pts.push_back(p);
        last = total;
      }
      member = true;
    }
    zs.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(blob.data() + pos));
    zs.avail_in = static_cast<uInt>(blob.size() - pos);
    zs.next_out = reinterpret_cast<Bytef*>(out.data());
    zs.avail_out = static_cast<uInt>(out.size());
    int ret = inflate(&zs, Z_BLOCK);
    pos = blob.size() - zs.avail_in;
    total += out.size() - zs.avail_out;
    if (ret == Z_STREAM_END) {
      member = false;
      continue;
    }
    if (ret != Z_OK) {
      ADD_FAILURE() << "reference inflate: " << ret;
      break;
    }
    if ((zs.data_type & 128) && !(zs.data_type & 64))
      all->emplace(total, 8 * pos - static_cast<uint64_t>(zs.data_type & 7));
    if ((zs.data_type & 128) && !(zs.data_type & 64) && total - last >= span) {
      SeekPoint p;
      p.out_off = total;
      p.in_off = pos;
      p.bits = static_cast<uint8_t>(zs.data_type & 7);
      pts.push_back(p);
      last = total;
    }
  }
  inflateEnd(&zs);
  return pts;
}

// Span i decoded by zlib from its record's positions alone, with the true window
// (the 32 KiB of `plain` before the span, within its member).
bool ZlibSpan(const SeekIndex& idx, const std::string& blob, const std::string& plain,
              uint64_t member_start, size_t i, std::string* out) {
  SeekPoint p = idx.point(i);
  out->assign(idx.SpanEnd(i) - idx.SpanStart(i), '\0');
  bool fresh = p.flags & SeekPoint::kFresh;
  z_stream zs{};
  if (inflateInit2(&zs, fresh ? 31 : -15) != Z_OK) return false;
  size_t start = p.in_off;
  if (!fresh) {
    if (p.bits &&
        inflatePrime(&zs, p.bits, static_cast<uint8_t>(blob[p.in_off - 1]) >> (8 - p.bits)) != Z_OK)
      return false;
    uint64_t w = std::min<uint64_t>(32768, p.out_off - member_start);
    if (w && inflateSetDictionary(&zs, reinterpret_cast<const Bytef*>(plain.data() + p.out_off - w),
                                  static_cast<uInt>(w)) != Z_OK)
      return false;
  }
  zs.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(blob.data() + start));
  zs.avail_in = static_cast<uInt>(blob.size() - start);
  zs.next_out = reinterpret_cast<Bytef*>(out->data());
  zs.avail_out = static_cast<uInt>(out->size());
  bool ok = true;
  while (ok && zs.avail_out > 0) {
    int r = inflate(&zs, Z_NO_FLUSH);
    if (r == Z_STREAM_END && zs.avail_out > 0) {
      // A span may run across member ends: skip the trailer (raw inflate) and any zero
      // padding, then a whole member with its header.
      size_t next = blob.size() - zs.avail_in + (fresh ? 0 : 8);
      while (next < blob.size() && blob[next] == 0) next++;
      if (next >= blob.size() || inflateReset2(&zs, 31) != Z_OK) {
        ok = false;
        break;
      }
      fresh = true;
      zs.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(blob.data() + next));
      zs.avail_in = static_cast<uInt>(blob.size() - next);
      continue;
    }
    ok = r == Z_OK || (r == Z_STREAM_END && zs.avail_out == 0);
  }
  inflateEnd(&zs);
  return ok;
}

struct Case {
  std::string name;
  std::string blob;
  std::string plain;
  bool exact = true;  // no flushes: the checkpoints must be exactly zlib's
};

class SeekPassTest : public ::testing::Test {
 protected:
  void SetUp() override { dir_ = test::MakeTempDir(); }
  void TearDown() override { test::RemoveTree(dir_); }

  // One stream through IndexingSource and every check in the file comment.
  void Check(const Case& c, uint64_t span, Rng& r) {
    SCOPED_TRACE(c.name + " span " + std::to_string(span));
    StringSource src(c.blob);
    IndexingSource dec(&src, Compression::kGzip, span);
    std::string plain;
    std::vector<char> buf(300000);
    for (;;) {
      size_t want = 1 + r() % (r() % 2 ? 300000 : 5000);
      auto n = dec.Read(buf.data(), want);
      ASSERT_TRUE(n.ok()) << n.status().message();
      if (*n == 0) break;
      plain.append(buf.data(), *n);
    }
    ASSERT_EQ(plain.size(), c.plain.size());
    ASSERT_TRUE(plain == c.plain);
    auto side = dec.Finish();
    ASSERT_TRUE(side.ok()) << side.status().message();
    LayerRecord layer;
    layer.compression = Compression::kGzip;
    layer.size = plain.size();
    layer.blob_size = c.blob.size();
    auto idx = SeekIndex::FromBytes(*side, layer);
    ASSERT_TRUE(idx.ok()) << idx.status().message();
    std::set<std::pair<uint64_t, uint64_t>> all;
    std::vector<SeekPoint> want = Reference(c.blob, span, &all);
    if (!c.exact) {
      // Blocks of a few bytes (flushes) may hide the first boundary after the span from
      // ISA-L: then the checkpoint is a later boundary, but always a real one, and never
      // closer than the span to the one before.
      uint64_t last = 0;
      for (size_t i = 0; i < (*idx)->count(); i++) {
        SeekPoint got = (*idx)->point(i);
        if (got.flags & SeekPoint::kFresh) {
          last = got.out_off;
          continue;
        }
        ASSERT_TRUE(all.count({got.out_off, 8 * got.in_off - got.bits})) << "checkpoint " << i;
        ASSERT_GE(got.out_off - last, span) << "checkpoint " << i;
        last = got.out_off;
      }
      want.clear();
      for (size_t i = 0; i < (*idx)->count(); i++) want.push_back((*idx)->point(i));
    }
    ASSERT_EQ((*idx)->count(), want.size());
    for (size_t i = 0; i < want.size(); i++) {
      SeekPoint got = (*idx)->point(i);
      ASSERT_EQ(got.out_off, want[i].out_off) << "checkpoint " << i;
      ASSERT_EQ(got.in_off, want[i].in_off) << "checkpoint " << i;
      ASSERT_EQ(got.bits, want[i].bits) << "checkpoint " << i;
      ASSERT_EQ(got.flags & SeekPoint::kFresh, want[i].flags & SeekPoint::kFresh)
          << "checkpoint " << i;
      ASSERT_EQ((got.flags & SeekPoint::kPrefixes) != 0, span >= kPiecesPerSpan)
          << "checkpoint " << i;
    }
    std::string path = dir_ + "/blob";
    test::WriteFile(path, c.blob);
    auto fd = OpenFile(path, O_RDONLY);
    ASSERT_TRUE(fd.ok());
    uint64_t member = 0;
    for (size_t i = 0; i < (*idx)->count(); i++) {
      SeekPoint p = (*idx)->point(i);
      if (p.flags & SeekPoint::kFresh) member = p.out_off;
      std::string slice =
          plain.substr((*idx)->SpanStart(i), (*idx)->SpanEnd(i) - (*idx)->SpanStart(i));
      auto d = (*idx)->DecodeSpan(fd->get(), i, SeekIndex::Decoder::kIsalOnly);
      ASSERT_TRUE(d.ok()) << "span " << i << " (ISA-L): " << d.status().message();
      ASSERT_TRUE(*d == slice) << "span " << i << " (ISA-L)";
      auto dz = (*idx)->DecodeSpan(fd->get(), i, SeekIndex::Decoder::kZlibOnly);
      ASSERT_TRUE(dz.ok()) << "span " << i << " (zlib): " << dz.status().message();
      ASSERT_TRUE(*dz == slice) << "span " << i << " (zlib)";
      std::string z;
      ASSERT_TRUE(ZlibSpan(**idx, c.blob, plain, member, i, &z)) << "zlib, span " << i;
      ASSERT_TRUE(z == slice) << "zlib, span " << i;
    }
    checked_++;
  }

  std::string dir_;
  int checked_ = 0;
};

TEST_F(SeekPassTest, CheckpointsAreZlibsBlockBoundariesForEveryCompressor) {
  Rng r(20261129);
  static const int strategies[] = {Z_DEFAULT_STRATEGY, Z_FILTERED, Z_HUFFMAN_ONLY, Z_RLE, Z_FIXED};
  std::vector<Case> cases;
  for (int i = 0; i < 30; i++) {
    size_t n = r() % 3 == 0 ? r() % 5000 : 1 + r() % (2 << 20);
    std::string d = Data(r, n);
    int level = static_cast<int>(r() % 10), strategy = strategies[r() % 5];
    int mem = 1 + static_cast<int>(r() % 9), flush = r() % 3 ? 0 : 1 + static_cast<int>(r() % 4);
    size_t every = 1 + r() % (r() % 2 ? 100 : 100000);
    cases.push_back({"zlib level " + std::to_string(level) + " strategy " +
                         std::to_string(strategy) + " memLevel " + std::to_string(mem) + " flush " +
                         std::to_string(flush) + " every " + std::to_string(every),
                     GzipMember(d, level, strategy, mem, flush, every), d, flush == 0});
  }
  for (int level = 0; level <= 3; level++) {
    std::string d = Data(r, 1 + r() % (2 << 20));
    cases.push_back({"isa-l level " + std::to_string(level), Isal(d, level), d});
  }
  std::vector<std::string> tools;
  for (int l = 1; l <= 9; l++) tools.push_back("gzip -" + std::to_string(l));
  // pigz (Debian package, .ci/install-deps): independent blocks of 128 KiB, with
  // empty stored blocks between them.
  ASSERT_EQ(std::system("command -v pigz >/dev/null"), 0) << "pigz is not installed";
  tools.push_back("pigz -p 2 -6");
  tools.push_back("pigz -p 2 -9 -b 32");
  tools.push_back("pigz -p 2 -1 -i");
  for (const std::string& t : tools) {
    std::string d = Data(r, 1 + r() % (2 << 20));
    cases.push_back({t, Tool(dir_, d, t), d});
  }
  // Multi-member: members of any of the above, and zero padding at the end.
  size_t singles = cases.size();
  for (int i = 0; i < 12; i++) {
    Case m{"members:", "", "", true};
    for (int k = 0, parts = 2 + static_cast<int>(r() % 3); k < parts; k++) {
      const Case& c = cases[r() % singles];
      m.name += " [" + c.name + "]";
      m.blob += c.blob;
      m.plain += c.plain;
      m.exact = m.exact && c.exact;
    }
    if (r() % 2) m.blob.append(1 + r() % 600, '\0');
    cases.push_back(std::move(m));
  }
  static const uint64_t spans[] = {20000, 32768, 65536, 100000, 300000, 1 << 20, 150000};
  int expected = 0, every_block = 0;
  for (const Case& c : cases) {
    uint64_t span = spans[r() % 7];
    // A checkpoint at every block boundary keeps a window (up to 32 KiB) for each: only
    // for streams of at most 4,096 blocks (a stream flushed every few bytes has
    // hundreds of thousands, and this check alone once took 10 GB, 24 GB under TSan).
    std::set<std::pair<uint64_t, uint64_t>> blocks;
    if (c.plain.size() < (256 << 10)) Reference(c.blob, 1, &blocks);
    bool each = c.plain.size() < (256 << 10) && blocks.size() <= 4096;
    expected += each ? 2 : 1;
    every_block += each;
    Check(c, span, r);
    if (HasFatalFailure()) return;
    if (each) {
      Check(c, 1, r);  // a checkpoint at every block boundary
      if (HasFatalFailure()) return;
    }
  }
  EXPECT_EQ(checked_, expected);  // every case went through every check
  EXPECT_GE(every_block, 10);     // and the every-boundary check ran on many of them
}

Status ReadAll(const std::string& blob, uint64_t span) {
  StringSource src(blob);
  IndexingSource dec(&src, Compression::kGzip, span);
  IMGFS_RETURN_IF_ERROR(test::ReadToEnd(dec, nullptr, 100000));
  return dec.Finish().status();
}

// The errors of the zlib pass, with checkpoints being taken (small spans: the CRC is
// kept by us across the stops) and without (span larger than the stream).
TEST(SeekPassErrors, DamagedStreamsGiveTheSameErrors) {
  Rng r(7);
  std::string d;  // text: many blocks, so many stops at span 4096
  while (d.size() < (1 << 20)) d += std::to_string(r() % 100000) + (r() % 7 ? " layer " : "\n");
  d += std::string(300000, 'x');
  std::string good = GzipMember(d, 6, Z_DEFAULT_STRATEGY, 8, 0, 0);
  for (uint64_t span : {uint64_t{4096}, uint64_t{1} << 30}) {
    SCOPED_TRACE("span " + std::to_string(span));
    EXPECT_TRUE(ReadAll(good, span).ok()) << ReadAll(good, span).message();
    EXPECT_TRUE(ReadAll(good + good, span).ok());
    std::string crc = good;
    crc[crc.size() - 6] ^= 1;  // a bit of the CRC-32
    EXPECT_EQ(ReadAll(crc, span).message(), "gzip: CRC mismatch");
    std::string size = good;
    size[size.size() - 3] ^= 1;  // a bit of ISIZE
    EXPECT_FALSE(ReadAll(size, span).ok());
    EXPECT_EQ(ReadAll(good.substr(0, good.size() / 2), span).message(),
              "gzip: unexpected end of stream (truncated)");
    EXPECT_EQ(ReadAll(good.substr(0, good.size() - 3), span).message(),
              "gzip: unexpected end of stream (truncated)");
    EXPECT_EQ(ReadAll(good + "PK\x03\x04 not gzip", span).message(),
              "not a gzip stream (bad magic)");
    std::string bits = good;
    for (size_t i = 1000; i < bits.size() - 8; i += 997) bits[i] ^= 0x5a;
    Status st = ReadAll(bits, span);
    EXPECT_EQ(st.code(), Status::Code::kCorruption);
    EXPECT_TRUE(st.message().rfind("gzip: ", 0) == 0) << st.message();
  }
}

// Damaged streams of every kind end (no hang, no crash) and the checkpointing pass
// agrees with the plain ISA-L decoder (DecompressingSource) on whether the stream is
// good, and on its bytes when it is.
TEST(SeekPassErrors, RandomDamageAgreesWithThePlainDecoder) {
  Rng r(4242);
  std::string text;
  while (text.size() < (300 << 10)) text += std::to_string(r() % 100000) + (r() % 5 ? " a " : "\n");
  std::vector<std::string> good = {GzipMember(text, 6, Z_DEFAULT_STRATEGY, 8, 0, 0),
                                   GzipMember(text, 1, Z_FIXED, 2, 1, 3000) + Isal(text, 1)};
  int bad = 0;
  for (int i = 0; i < 250; i++) {
    std::string blob = good[r() % good.size()];
    switch (r() % 4) {
      case 0:
        for (int k = 0, n = 1 + static_cast<int>(r() % 4); k < n; k++)
          blob[r() % blob.size()] ^= static_cast<char>(1 + r() % 255);
        break;
      case 1:
        blob.resize(r() % blob.size());
        break;
      case 2:
        blob.insert(r() % blob.size(), std::string(1 + r() % 40, static_cast<char>(r())));
        break;
      default:
        blob.erase(r() % blob.size(), 1 + r() % 40);
    }
    if (blob.size() < 4) continue;
    blob[0] = '\x1f';
    blob[1] = '\x8b';
    auto run = [&](bool index, std::string* out) -> Status {
      StringSource src(blob);
      IndexingSource dec(&src, Compression::kGzip, index ? 4096 : 0);
      IMGFS_RETURN_IF_ERROR(test::ReadToEnd(dec, out, 1 + r() % 70000));
      return dec.Finish().status();
    };
    std::string a, b2;
    Status sa = run(true, &a), sb = run(false, &b2);
    ASSERT_EQ(sa.ok(), sb.ok()) << i << ": " << sa.message() << " / " << sb.message();
    if (sa.ok()) {
      ASSERT_TRUE(a == b2) << i;
    } else {
      EXPECT_EQ(sa.code(), Status::Code::kCorruption) << sa.message();
      bad++;
    }
  }
  EXPECT_GT(bad, 180) << bad;  // nearly every damage is caught
}

// The span digests hashed on the reader's thread (SpanHasher, as registry/stage.cc
// does) make the same sidecar as hashed in the inflate pass, through a pipeline
// thread and with reads of any size: gzip (one member, several, empty ones) and zstd.
TEST(SpanHasherTest, SameSidecarAsHashingInThePass) {
  Rng r(99);
  std::string text;
  while (text.size() < (3 << 20)) text += std::to_string(r() % 1000000) + " usr/lib/x\n";
  std::string a = text.substr(0, 1 << 20), b = text.substr(1 << 20);
  std::string empty = GzipMember("", 6, Z_DEFAULT_STRATEGY, 8, 0, 0);
  std::vector<std::string> blobs = {
      GzipMember(text, 6, Z_DEFAULT_STRATEGY, 8, 0, 0),
      GzipMember(a, 1, Z_DEFAULT_STRATEGY, 8, 0, 0) + empty +
          GzipMember(b, 9, Z_DEFAULT_STRATEGY, 8, 0, 0) + empty,
  };
  std::string zst = Zstd(a);
  blobs.push_back(zst + zst + zst);
  for (size_t bi = 0; bi < blobs.size(); bi++) {
    for (uint64_t span : {uint64_t{1} << 20, uint64_t{70000}, uint64_t{1}}) {
      SCOPED_TRACE("blob " + std::to_string(bi) + " span " + std::to_string(span));
      std::string plain1, plain2;
      std::string side1, side2;
      {
        StringSource src(blobs[bi]);
        IndexingSource dec(&src, Compression::kAuto, span);
        Status st = test::ReadToEnd(dec, &plain1, 100000);
        ASSERT_TRUE(st.ok()) << st.message();
        auto f = dec.Finish();
        ASSERT_TRUE(f.ok()) << f.status().message();
        side1 = *f;
      }
      {
        StringSource src(blobs[bi]);
        IndexingSource dec(&src, Compression::kAuto, span);
        dec.HashSpansElsewhere();
        {
          PipelinedSource pipe(&dec, 1 + r() % 300000, 4);
          SpanHasher spans(&pipe, &dec);
          std::vector<char> buf(200000);
          // Some reads, then Finish reads the rest (as after IndexTarStream).
          for (int k = 0; k < 20; k++) {
            auto v = spans.ReadView(buf.data(), 1 + r() % buf.size());
            ASSERT_TRUE(v.ok()) << v.status().message();
            if (v->empty()) break;
            plain2.append(v->data(), v->size());
          }
          ASSERT_TRUE(spans.Finish().ok());
        }
        auto f = dec.Finish();
        ASSERT_TRUE(f.ok()) << f.status().message();
        side2 = *f;
      }
      EXPECT_TRUE(plain2 == plain1.substr(0, plain2.size()));
      EXPECT_GE(side1.size(), 64u + 80u);
      EXPECT_TRUE(side1 == side2);
    }
  }
}

// A source that hands out its bytes as views of random sizes (1-3 bytes, around the
// 64-byte stitch, up to 200 KB), each in a fresh buffer whose bytes are overwritten and
// freed by the next call, as a PipelinedSource recycles its chunks: IndexingSource must
// read its input in place and keep nothing of a view past the next call.
class ChoppyViewSource : public ByteSource {
 public:
  ChoppyViewSource(std::string_view s, Rng& r) : s_(s), r_(r) {}
  Result<size_t> Read(void* buf, size_t n) override {
    n = std::min({n, s_.size(), Next()});
    if (n) std::memcpy(buf, s_.data(), n);
    s_.remove_prefix(n);
    return n;
  }
  Result<std::string_view> ReadView(char*, size_t n) override {
    if (cur_) std::memset(cur_.get(), 0x5a, cur_n_);
    n = std::min({n, s_.size(), Next()});
    cur_.reset(n ? new char[n] : nullptr);
    cur_n_ = n;
    if (n) std::memcpy(cur_.get(), s_.data(), n);
    s_.remove_prefix(n);
    return std::string_view(cur_.get(), n);
  }

 private:
  size_t Next() {
    switch (r_() % 5) {
      case 0:
        return 1 + r_() % 3;
      case 1:
        return 60 + r_() % 10;
      case 2:
        return 1 + r_() % 100;
      default:
        return 1 + r_() % 200000;
    }
  }
  std::string_view s_;
  Rng& r_;
  std::unique_ptr<char[]> cur_;
  size_t cur_n_ = 0;
};

// The input read in place (views of any size, stitched where a view ends) gives the
// same output, sidecar and errors as the same blob read from one buffer: gzip (one
// member, many with zero padding, tiny flushed blocks), zstd (many frames), a plain
// tar, and truncated or damaged copies of them. Every span of the sidecar decodes to
// its bytes. (Where flushes make blocks of a few bytes, which boundary ISA-L sees
// first depends on how the input arrives, as it did when the input was copied: there
// the checkpoints may differ, the output may not.)
TEST(IndexingSourceViews, SameOutputAndSidecarFromViewsOfAnySize) {
  Rng r(1414);
  std::string text;
  while (text.size() < (1 << 20)) text += std::to_string(r() % 1000000) + " usr/share/doc\n";
  std::string a = text.substr(0, 300000), b = text.substr(300000, 600000);
  std::vector<std::string> blobs = {
      GzipMember(text, 6, Z_DEFAULT_STRATEGY, 8, 0, 0),
      GzipMember(a, 1, Z_DEFAULT_STRATEGY, 8, 0, 0) +
          GzipMember("", 6, Z_DEFAULT_STRATEGY, 8, 0, 0) +
          GzipMember(b, 9, Z_DEFAULT_STRATEGY, 8, 0, 0) + std::string(100, '\0'),
      GzipMember(a, 6, Z_DEFAULT_STRATEGY, 8, 1, 7),
      Isal(text, 1),
      test::ZstdFrames(text, 50000),
      a,
  };
  const size_t flushed = 2;  // blobs[flushed], and its damaged copies below
  for (size_t i = 0, n = blobs.size(); i < n; i++) {
    std::string cut = blobs[i].substr(0, blobs[i].size() * 2 / 3);
    std::string bad = blobs[i];
    bad[bad.size() / 2] ^= 0x20;
    blobs.push_back(cut);
    blobs.push_back(bad);
  }
  std::string dir = test::MakeTempDir();
  for (size_t bi = 0; bi < blobs.size(); bi++) {
    bool exact = (bi < 6 ? bi : (bi - 6) / 2) != flushed;
    std::string path = dir + "/blob" + std::to_string(bi);
    test::WriteFile(path, blobs[bi]);
    auto fd = OpenFile(path, O_RDONLY);
    ASSERT_TRUE(fd.ok());
    for (uint64_t span : {uint64_t{1} << 20, uint64_t{70000}, uint64_t{1}, uint64_t{0}}) {
      for (int round = 0; round < (span == 1 ? 1 : 2); round++) {
        SCOPED_TRACE("blob " + std::to_string(bi) + " span " + std::to_string(span) + " round " +
                     std::to_string(round));
        auto run = [&](ByteSource* src, std::string* plain) -> Result<std::string> {
          IndexingSource dec(src, Compression::kAuto, span);
          IMGFS_RETURN_IF_ERROR(test::ReadToEnd(dec, plain, 1 + r() % 100000));
          return dec.Finish();
        };
        std::string plain1, plain2;
        StringSource whole(blobs[bi]);
        auto side1 = run(&whole, &plain1);
        ChoppyViewSource choppy(blobs[bi], r);
        auto side2 = run(&choppy, &plain2);
        ASSERT_EQ(side1.ok(), side2.ok())
            << side1.status().message() << " / " << side2.status().message();
        EXPECT_EQ(side1.status().message(), side2.status().message());
        if (!side1.ok()) continue;
        ASSERT_TRUE(plain1 == plain2);
        if (exact) {
          EXPECT_TRUE(*side1 == *side2);
        }
        if (side2->empty()) continue;  // no index: a plain tar, or span 0
        LayerRecord layer;
        layer.compression = DetectCompression(blobs[bi]);
        layer.size = plain2.size();
        layer.blob_size = blobs[bi].size();
        auto idx = SeekIndex::FromBytes(*side2, layer);
        ASSERT_TRUE(idx.ok()) << idx.status().message();
        for (size_t i = 0; i < (*idx)->count(); i++) {
          auto d = (*idx)->DecodeSpan(fd->get(), i);
          ASSERT_TRUE(d.ok()) << "span " << i << ": " << d.status().message();
          ASSERT_TRUE(
              *d == plain2.substr((*idx)->SpanStart(i), (*idx)->SpanEnd(i) - (*idx)->SpanStart(i)))
              << "span " << i;
        }
      }
    }
  }
  test::RemoveTree(dir);
}

}  // namespace
}  // namespace imgfs
