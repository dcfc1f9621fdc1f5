// What docker accepts, byte for byte (docs/layer-rules.md): lexical ".." cleaning,
// names and link targets as raw bytes in every header kind, pax times as Go reads
// them, empty layers, refused NULs and overlong symlink targets.
#include <gtest/gtest.h>

#include <clocale>

#include "index/layer_indexer.h"
#include "index/stream.h"
#include "index/tar_headers.h"
#include "tests/tar_builder.h"

namespace imgfs {
namespace {

using test::RawTar;
using test::TarBuilder;

Result<LayerIndex> Index(const std::string& bytes, Compression c = Compression::kAuto) {
  StringSource src(bytes);
  DecompressingSource dec(&src, c);
  return IndexTarStream(&dec);
}

// libarchive normalises only in a UTF-8 locale; the CLI runs in one (cli/main.cc).
class Utf8Locale : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_NE(std::setlocale(LC_CTYPE, "C.UTF-8"), nullptr); }
  void TearDown() override { std::setlocale(LC_CTYPE, "C"); }
};

RawTar::Header H(const std::string& name, char type = '0', uint64_t size = 0) {
  RawTar::Header h;
  h.name = name;
  h.type = type;
  h.size = size;
  return h;
}

const std::string kNfc = "caf\xc3\xa9";   // é as U+00E9
const std::string kNfd = "cafe\xcc\x81";  // e + U+0301
const std::string kLatin1 = "caf\xe9";    // not UTF-8 at all

TEST(TarFidelity, DotDotThatStaysInsideIsCleaned) {
  TarBuilder b;
  b.File("./data/../data/f.txt", "x").File("/../../etc/rooted", "r").File("a/b/..", "y");
  b.Hardlink("h", "./data/x/../f.txt");
  auto idx = Index(b.Build());
  ASSERT_TRUE(idx.ok()) << idx.status().message();
  ASSERT_EQ(idx->entries.size(), 4u);
  EXPECT_EQ(idx->entries[0].path, "data/f.txt");
  EXPECT_EQ(idx->entries[1].path, "etc/rooted");  // rooted: ".." clamps (filepath.Clean)
  EXPECT_EQ(idx->entries[2].path, "a");
  EXPECT_EQ(idx->entries[3].link, "data/f.txt");
}

TEST(TarFidelity, DotDotThatLeavesIsRefused) {
  for (const char* p : {"../etc/passwd", "a/../../b", "./..", ".."}) {
    TarBuilder b;
    b.File(p, "x");
    auto idx = Index(b.Build());
    ASSERT_FALSE(idx.ok()) << p;
    EXPECT_NE(idx.status().message().find("escapes the image root"), std::string::npos)
        << idx.status().message();
  }
  // A hard-link target is joined to the root: "/.." leaves it too (moby: Join+prefix).
  for (const char* t : {"../a", "/../a", "x/../../a"}) {
    TarBuilder h;
    h.File("a", "x").Hardlink("b", t);
    auto idx = Index(h.Build());
    ASSERT_FALSE(idx.ok()) << t;
    EXPECT_NE(idx.status().message().find("escapes the image root"), std::string::npos)
        << idx.status().message();
  }
}

TEST_F(Utf8Locale, NfcAndNfdTwinsStayTwoInPaxRecords) {
  RawTar t;
  t.Pax({{"path", kNfc}}).Entry(H("x1", '0', 3), "nfc");
  t.Pax({{"path", kNfd}}).Entry(H("x2", '0', 3), "nfd");
  t.Pax({{"path", "l"}, {"linkpath", kNfd}}).Entry(H("x3", '2'));
  t.Pax({{"path", "h"}, {"linkpath", kNfd}}).Entry(H("x4", '1'));
  auto idx = Index(t.Finish());
  ASSERT_TRUE(idx.ok()) << idx.status().message();
  ASSERT_EQ(idx->entries.size(), 4u);
  EXPECT_EQ(idx->entries[0].path, kNfc);
  EXPECT_EQ(idx->entries[1].path, kNfd);
  EXPECT_EQ(idx->entries[2].link, kNfd);
  EXPECT_EQ(idx->entries[3].link, kNfd);
}

TEST_F(Utf8Locale, RawBytesInEveryHeaderKind) {
  std::string long_dir = std::string(120, 'd') + "/" + kNfd;
  RawTar t;
  // hdrcharset=BINARY pax, Latin-1 bytes.
  t.Pax({{"hdrcharset", "BINARY"}, {"path", kLatin1 + "-bin"}}).Entry(H("a1"));
  // Latin-1 in a UTF-8 pax record (invalid UTF-8: kept as is).
  t.Pax({{"path", kLatin1 + "-pax"}}).Entry(H("a2"));
  // GNU long name and long link.
  t.GnuLong('L', long_dir + "-gnu").GnuLong('K', long_dir + "-target");
  RawTar::Header g = H("short", '2');
  g.gnu_magic = true;
  t.Entry(g);
  // ustar prefix + name, NFD and Latin-1.
  RawTar::Header u = H(kNfd + "-name");
  u.prefix = kLatin1 + "/" + kNfd;
  t.Entry(u);
  // Plain ustar name and linkname fields.
  RawTar::Header v = H(kLatin1 + "-v7", '2');
  v.linkname = kNfd;
  t.Entry(v);
  auto idx = Index(t.Finish());
  ASSERT_TRUE(idx.ok()) << idx.status().message();
  ASSERT_EQ(idx->entries.size(), 5u);
  EXPECT_EQ(idx->entries[0].path, kLatin1 + "-bin");
  EXPECT_EQ(idx->entries[1].path, kLatin1 + "-pax");
  EXPECT_EQ(idx->entries[2].path, long_dir + "-gnu");
  EXPECT_EQ(idx->entries[2].link, long_dir + "-target");
  EXPECT_EQ(idx->entries[3].path, kLatin1 + "/" + kNfd + "/" + kNfd + "-name");
  EXPECT_EQ(idx->entries[4].path, kLatin1 + "-v7");
  EXPECT_EQ(idx->entries[4].link, kNfd);
}

TEST(TarFidelity, NulInsidePaxPathOrLinkpathIsRefused) {
  for (const char* key : {"path", "linkpath"}) {
    RawTar t;
    t.Pax({{key, std::string("a\0b", 3)}}).Entry(H("x", '2'));
    auto idx = Index(t.Finish());
    ASSERT_FALSE(idx.ok()) << key;
    EXPECT_NE(idx.status().message().find("NUL"), std::string::npos) << idx.status().message();
  }
}

TEST(TarFidelity, SymlinkTargetMustFitPathMax) {
  TarBuilder ok, bad;
  ok.Symlink("s", std::string(4095, 'a'));
  auto i = Index(ok.Build());
  ASSERT_TRUE(i.ok()) << i.status().message();
  EXPECT_EQ(i->entries[0].link.size(), 4095u);
  bad.Symlink("s", std::string(4096, 'a'));
  auto j = Index(bad.Build());
  ASSERT_FALSE(j.ok());
  EXPECT_NE(j.status().message().find("PATH_MAX"), std::string::npos) << j.status().message();
}

// F1: a pax SCHILY.xattr record with an empty value sets no xattr (Go's reader skips
// it, so docker and umoci do; POSIX pax: a zero-length value deletes the keyword),
// and an empty record after a valued one for the same name deletes it (the last
// record of a name wins, as in Go).
TEST(TarFidelity, EmptyXattrRecordsAreDropped) {
  RawTar t;
  t.Pax({{"SCHILY.xattr.user.a", "1"}, {"SCHILY.xattr.user.empty", ""}}).Entry(H("f", '0', 1), "x");
  t.Pax({{"SCHILY.xattr.user.b", "2"}, {"SCHILY.xattr.user.b", ""}}).Entry(H("g", '0', 1), "y");
  t.Pax({{"SCHILY.xattr.user.c", "1"}, {"SCHILY.xattr.user.c", "2"}}).Entry(H("h", '0', 1), "z");
  auto idx = Index(t.Finish());
  ASSERT_TRUE(idx.ok()) << idx.status().message();
  ASSERT_EQ(idx->entries.size(), 3u);
  ASSERT_EQ(idx->entries[0].xattrs.size(), 1u);
  EXPECT_EQ(idx->entries[0].xattrs[0].name, "user.a");
  EXPECT_EQ(idx->entries[0].xattrs[0].value, "1");
  EXPECT_TRUE(idx->entries[1].xattrs.empty());
  ASSERT_EQ(idx->entries[2].xattrs.size(), 1u);  // a repeated record: the last one wins
  EXPECT_EQ(idx->entries[2].xattrs[0].value, "2");
}

// F3: Linux cannot hold a symlink with an empty target (symlink(2): ENOENT); docker
// and umoci fail such a layer, and so does imgfs, with one clear error.
TEST(TarFidelity, SymlinkWithEmptyTargetIsRefused) {
  TarBuilder t;
  t.Symlink("e", "");
  auto idx = Index(t.Build());
  ASSERT_FALSE(idx.ok());
  EXPECT_NE(idx.status().message().find("empty target"), std::string::npos)
      << idx.status().message();
  EXPECT_NE(idx.status().message().find("\"e\""), std::string::npos) << idx.status().message();
}

TEST(TarFidelity, PaxTimesAsGoReadsThem) {
  struct Case {
    const char* pax;
    int64_t sec;
    uint32_t nsec;
  } cases[] = {{"-1.5", -2, 500000000},  {"-0.25", -1, 750000000},
               {"1.5", 1, 500000000},    {"-3", -3, 0},
               {"12.0000000019", 12, 1}, {"4102444800.5", 4102444800, 500000000}};
  RawTar t;
  for (const Case& c : cases) t.Pax({{"mtime", c.pax}}).Entry(H(std::string("f") + c.pax));
  auto idx = Index(t.Finish());
  ASSERT_TRUE(idx.ok()) << idx.status().message();
  ASSERT_EQ(idx->entries.size(), std::size(cases));
  for (size_t i = 0; i < std::size(cases); i++) {
    EXPECT_EQ(idx->entries[i].mtime_sec, cases[i].sec) << cases[i].pax;
    EXPECT_EQ(idx->entries[i].mtime_nsec, cases[i].nsec) << cases[i].pax;
  }
  EXPECT_FALSE(ParsePaxTime("1.x").ok());
  EXPECT_FALSE(ParsePaxTime(".5").ok());
}

TEST(TarFidelity, HeaderTimesInOctalAndBase256) {
  auto base256 = [](int64_t v) {
    std::string f(12, '\0');
    uint64_t u = static_cast<uint64_t>(v);
    for (int i = 11; i >= 4; i--, u >>= 8) f[i] = static_cast<char>(u & 0xff);
    for (int i = 0; i < 4; i++) f[i] = v < 0 ? '\xff' : '\0';
    f[0] = static_cast<char>(static_cast<uint8_t>(f[0]) | 0x80);
    return f;
  };
  RawTar t;
  RawTar::Header a = H("octal"), b = H("neg"), c = H("far"), d = H("spaces");
  a.mtime = 017777777777;
  b.mtime_field = base256(-86400);
  c.mtime_field = base256(int64_t{1} << 40);
  d.mtime_field = std::string(" 1750 \0     ", 12);
  t.Entry(a).Entry(b).Entry(c).Entry(d);
  auto idx = Index(t.Finish());
  ASSERT_TRUE(idx.ok()) << idx.status().message();
  ASSERT_EQ(idx->entries.size(), 4u);
  EXPECT_EQ(idx->entries[0].mtime_sec, 017777777777);
  EXPECT_EQ(idx->entries[1].mtime_sec, -86400);
  EXPECT_EQ(idx->entries[2].mtime_sec, int64_t{1} << 40);
  EXPECT_EQ(idx->entries[3].mtime_sec, 01750);
  for (const LayerEntry& e : idx->entries) EXPECT_EQ(e.mtime_nsec, 0u);
}

TEST(TarFidelity, EmptyLayersInEveryEncoding) {
  std::string zero_blocks(1024, '\0');
  TarBuilder none;
  for (const std::string& blob :
       {std::string(), none.Build("gzip"), none.Build("zstd"), zero_blocks, none.Build()}) {
    for (Compression c : {Compression::kAuto, Compression::kGzip, Compression::kZstd}) {
      if (c != Compression::kAuto && !blob.empty() && DetectCompression(blob) != c) continue;
      auto idx = Index(blob, c);
      ASSERT_TRUE(idx.ok()) << blob.size() << ": " << idx.status().message();
      EXPECT_TRUE(idx->entries.empty());
    }
  }
  // The diff_id is the hash of the uncompressed bytes, whatever they are.
  EXPECT_EQ(Index("")->diff_id.hex(), test::Sha256Hex(""));
  EXPECT_EQ(Index(none.Build("gzip"))->diff_id.hex(), test::Sha256Hex(none.Build()));
  EXPECT_EQ(Index(zero_blocks)->diff_id.hex(), test::Sha256Hex(zero_blocks));
  // Garbage is still not a layer.
  EXPECT_FALSE(Index("not a tar at all, not even close").ok());
}

TEST(TarFidelity, HeaderReadersMustAgree) {
  // A pax hard link that declares content, and whose "content" is itself a tar header:
  // libarchive reads it as the link's data, Go's reader (and the raw walker) as the
  // next entry. Two readers that see different entries must refuse the layer.
  RawTar inner;
  inner.Entry(H("sneaky", '0', 0));
  std::string block = inner.Finish().substr(0, 512);
  RawTar t;
  t.Entry(H("target", '0', 1), "t");
  RawTar::Header link = H("link", '1', 512);
  link.linkname = "target";
  t.Pax({{"mtime", "1"}}).Entry(link, block);
  t.Entry(H("after", '0', 1), "a");
  auto idx = Index(t.Finish());
  ASSERT_FALSE(idx.ok());
  EXPECT_NE(idx.status().message().find("ambiguous"), std::string::npos) << idx.status().message();
}

}  // namespace
}  // namespace imgfs
