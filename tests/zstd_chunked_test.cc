// The zstd:chunked reader (registry/zstd_chunked.h): the TOC parser, the layout from
// the annotations, tar-split, the header gaps of writers without one, and the check of
// the entry table those headers make against the verified TOC (MatchTocToTar).
#include "registry/zstd_chunked.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "index/lazy_layer.h"
#include "tests/compress.h"

namespace imgfs {
namespace {

using test::Zstd;

// A zstd:chunked-like TOC for two files: "a" in 2 chunks, "b" in 1.
std::string TocJson(uint64_t a0, uint64_t a1, uint64_t aend, uint64_t b0, uint64_t bend,
                    const std::string& da0, const std::string& da1, const std::string& db) {
  return R"({"version":1,"entries":[{"type":"dir","name":"./","mode":493},)"
         R"({"type":"reg","name":"d/a","mode":420,"size":300,"digest":"sha256:)" +
         std::string(64, 'f') + R"(","offset":)" + std::to_string(a0) + R"(,"endOffset":)" +
         std::to_string(aend) + R"(,"chunkSize":200,"chunkDigest":")" + da0 +
         R"("},{"type":"chunk","name":"d/a","offset":)" + std::to_string(a1) +
         R"(,"chunkSize":100,"chunkOffset":200,"chunkDigest":")" + da1 +
         R"("},{"type":"reg","name":"d/b","mode":384,"uid":7,"size":50,"digest":")" + db +
         R"(","offset":)" + std::to_string(b0) + R"(,"endOffset":)" + std::to_string(bend) +
         R"(,"xattrs":{"user.k":"aGk="}},{"type":"symlink","name":"d/l","linkName":"a"}]})";
}

TEST(ZstdChunkedTocTest, ParsesChunksOfOldAndNewWriters) {
  Digest blob = Sha256Of("blob");
  std::string da0 = Sha256Of("0").str(), da1 = Sha256Of("1").str(), db = Sha256Of("2").str();
  auto p = ParseZstdChunkedToc(TocJson(100, 180, 260, 300, 330, da0, da1, db), blob, 1000,
                               Sha256Of("toc"));
  ASSERT_TRUE(p.ok()) << p.status().message();
  const LayerToc& t = p->toc;
  ASSERT_EQ(t.entries.size(), 4u);
  EXPECT_EQ(t.entries[0].path, "");
  const TocEntry& a = t.entries[1];
  EXPECT_EQ(a.path, "d/a");
  ASSERT_EQ(a.chunks.size(), 2u);
  EXPECT_EQ(a.chunks[0].blob_offset, 100u);
  EXPECT_EQ(a.chunks[0].blob_length, 80u);  // to the next chunk, not the file's end
  EXPECT_EQ(a.chunks[0].size, 200u);
  EXPECT_EQ(a.chunks[0].digest.str(), da0);
  EXPECT_EQ(a.chunks[1].file_offset, 200u);
  EXPECT_EQ(a.chunks[1].blob_offset, 180u);
  EXPECT_EQ(a.chunks[1].blob_length, 80u);  // to the file's endOffset
  EXPECT_EQ(a.chunks[1].size, 100u);
  const TocEntry& b = t.entries[2];
  ASSERT_EQ(b.chunks.size(), 1u);
  EXPECT_EQ(b.chunks[0].digest.str(), db);  // one chunk: the file digest
  EXPECT_EQ(b.mode, 0600u);
  EXPECT_EQ(b.uid, 7u);
  ASSERT_EQ(b.xattrs.size(), 1u);
  EXPECT_EQ(b.xattrs[0].value, "hi");
  EXPECT_EQ(t.entries[3].type, EntryType::kSymlink);
  EXPECT_EQ(t.entries[3].link, "a");
}

TEST(ZstdChunkedTocTest, RefusesWhatItCannotTrust) {
  Digest blob = Sha256Of("blob"), toc = Sha256Of("toc");
  std::string d = Sha256Of("0").str();
  // A range past the blob.
  EXPECT_FALSE(
      ParseZstdChunkedToc(TocJson(100, 180, 260, 300, 2000, d, d, d), blob, 1000, toc).ok());
  // A name that leaves the root.
  EXPECT_FALSE(ParseZstdChunkedToc(
                   R"({"version":1,"entries":[{"type":"symlink","name":"../x","linkName":"y"}]})",
                   blob, 1000, toc)
                   .ok());
  EXPECT_FALSE(ParseZstdChunkedToc(R"({"version":2,"entries":[]})", blob, 1000, toc).ok());
  EXPECT_FALSE(ParseZstdChunkedToc(R"({"version":1,"entries":[{"type":"sock","name":"s"}]})", blob,
                                   1000, toc)
                   .ok());
  // A file with content but no digest.
  EXPECT_FALSE(
      ParseZstdChunkedToc(
          R"({"version":1,"entries":[{"type":"reg","name":"f","size":5,"offset":1,"endOffset":9}]})",
          blob, 1000, toc)
          .ok());
  EXPECT_FALSE(ParseZstdChunkedToc(R"({"version":1,"entries":[{"type":"chunk","name":"f"}]})", blob,
                                   1000, toc)
                   .ok());
  EXPECT_FALSE(ParseZstdChunkedToc("not json", blob, 1000, toc).ok());
}

// The entry count is bounded, chunk entries included (they used to be uncounted: a
// TOC of a few files with millions of chunk entries was parsed whole).
TEST(ZstdChunkedTocTest, EntryCountIsBoundedChunksIncluded) {
  Digest blob = Sha256Of("blob");
  std::string d = Sha256Of("0").str();
  // 5 entries: a dir, "d/a" and its chunk, "d/b", a symlink.
  std::string json = TocJson(100, 180, 260, 300, 330, d, d, d);
  EXPECT_TRUE(ParseZstdChunkedToc(json, blob, 1000, blob, 5).ok());
  auto p = ParseZstdChunkedToc(json, blob, 1000, blob, 4);
  EXPECT_EQ(p.status().code(), Status::Code::kInvalidArgument);
  EXPECT_NE(p.status().message().find("more than 4 entries"), std::string::npos)
      << p.status().message();
}

// Without a tar-split the tar headers are zstd frames in the blob that no digest
// covers: decoded together they stay within one budget (frames that each stay under
// it used to be decoded whole, every one: a bomb per gap).
TEST(ZstdChunkedTocTest, HeaderGapsDecodeWithinOneBudget) {
  std::string x(3000, 'x'), y(3000, 'y');
  std::string h1 = Zstd(x), h2 = Zstd(y);
  std::string body = h1 + "CONTENT" + h2;
  std::vector<BlobRange> gaps = {{0, h1.size()}, {h1.size() + 7, h2.size()}, {body.size(), 0}};
  std::vector<BlobRange> ranges = {{0, body.size()}};
  auto d = DecodeHeaderGaps(gaps, ranges, {body}, 6000);
  ASSERT_TRUE(d.ok()) << d.status().message();
  ASSERT_EQ(d->size(), 3u);
  EXPECT_EQ((*d)[0], x);
  EXPECT_EQ((*d)[1], y);
  EXPECT_TRUE((*d)[2].empty());
  // Each frame is under 5000 bytes, the two together are not.
  auto over = DecodeHeaderGaps(gaps, ranges, {body}, 5000);
  EXPECT_EQ(over.status().code(), Status::Code::kInvalidArgument);
  EXPECT_NE(over.status().message().find("more than 5000 bytes"), std::string::npos)
      << over.status().message();
  // The gaps fetched one range each.
  auto apart = DecodeHeaderGaps(gaps, {gaps[0], gaps[1]}, {h1, h2}, 6000);
  ASSERT_TRUE(apart.ok()) << apart.status().message();
  EXPECT_EQ((*apart)[1], y);
  EXPECT_FALSE(DecodeHeaderGaps(gaps, {gaps[0]}, {h1}, 6000).ok());  // a gap not fetched
}

// The entry table of a lazy pull comes from indexing the headers with every content
// byte as a zero: a TOC claiming a file of 2^45 bytes would cost hours of hashing
// zeros. Past kMaxLazyTarBytes the layer is pulled in full (Unsupported).
TEST(ZstdChunkedTocTest, AnAbsurdTarStreamIsNotIndexedLazily) {
  Digest blob = Sha256Of("blob");
  std::string d = Sha256Of("0").str();
  for (uint64_t size : {kMaxLazyTarBytes - 1024, uint64_t{1} << 45}) {
    std::string n = std::to_string(size);
    auto p = ParseZstdChunkedToc(R"({"version":1,"entries":[{"type":"reg","name":"f","size":)" + n +
                                     R"(,"digest":")" + d + R"(","offset":1,"endOffset":9}]})",
                                 blob, 1000, blob);
    ASSERT_TRUE(p.ok()) << p.status().message();
    auto segs = ParseTarSplit(R"({"type":2,"payload":"AAAA"})"
                              "\n"
                              R"({"type":1,"name":"f","size":)" +
                              n + "}\n");
    ASSERT_TRUE(segs.ok()) << segs.status().message();
    LayerToc toc = p->toc;
    auto src = ApplyTarSplit(toc, *segs);
    if (size < kMaxLazyTarBytes) {
      EXPECT_TRUE(src.ok()) << src.status().message();
    } else {
      EXPECT_EQ(src.status().code(), Status::Code::kUnsupported) << src.status().message();
    }
  }
}

TEST(ZstdChunkedTocTest, LayoutFromOldAndNewAnnotations) {
  std::map<std::string, std::string> old_names = {
      {"io.containers.zstd-chunked.manifest-position", "900:50:200:1"},
      {"io.containers.zstd-chunked.manifest-checksum", Sha256Of("x").str()}};
  ASSERT_TRUE(IsZstdChunked(old_names));
  auto l = ParseZstdChunkedLayout(old_names, 1000);
  ASSERT_TRUE(l.ok()) << l.status().message();
  EXPECT_EQ(l->toc_offset, 900u);
  EXPECT_FALSE(l->has_tarsplit);
  EXPECT_FALSE(ParseZstdChunkedLayout(old_names, 940).ok());  // past the blob
  std::map<std::string, std::string> bad = old_names;
  bad["io.containers.zstd-chunked.manifest-position"] = "900:50:200";
  EXPECT_FALSE(ParseZstdChunkedLayout(bad, 1000).ok());
  bad["io.containers.zstd-chunked.manifest-position"] = "900:50:200:2";
  EXPECT_FALSE(ParseZstdChunkedLayout(bad, 1000).ok());
  EXPECT_FALSE(IsZstdChunked({}));
}

TEST(ZstdChunkedTocTest, TarSplitGivesTarOffsetsAndMustAgreeWithTheToc) {
  Digest blob = Sha256Of("blob");
  std::string d = Sha256Of("0").str();
  auto p = ParseZstdChunkedToc(TocJson(100, 180, 260, 300, 330, d, d, d), blob, 1000, blob);
  ASSERT_TRUE(p.ok());
  std::string jsonl = R"({"type":2,"payload":")" + std::string(684, 'A') +
                      R"(","position":0})"
                      "\n"  // 513 bytes
                      R"({"type":1,"name":"d/a","size":300,"position":1})"
                      "\n"
                      R"({"type":2,"payload":"AAAA","position":2})"
                      "\n"
                      R"({"type":1,"name":"./d/b","size":50,"position":3})"
                      "\n";
  auto segs = ParseTarSplit(jsonl);
  ASSERT_TRUE(segs.ok()) << segs.status().message();
  LayerToc toc = p->toc;
  auto src = ApplyTarSplit(toc, *segs);
  ASSERT_TRUE(src.ok()) << src.status().message();
  EXPECT_EQ(toc.entries[1].tar_offset, 513u);
  EXPECT_EQ(toc.entries[2].tar_offset, 513u + 300 + 3);
  EXPECT_EQ(toc.tar_size, 513u + 300 + 3 + 50);
  // A size that disagrees with the TOC.
  auto segs2 = *segs;
  segs2[3].size = 51;
  LayerToc toc2 = p->toc;
  EXPECT_FALSE(ApplyTarSplit(toc2, segs2).ok());
  // Header gaps (no tar-split): blob order must be tar order.
  auto gaps = HeaderGaps(p->toc, 500);
  ASSERT_TRUE(gaps.ok());
  ASSERT_EQ(gaps->size(), 3u);
  EXPECT_EQ((*gaps)[0].length, 100u);
  EXPECT_EQ((*gaps)[1].offset, 260u);
  EXPECT_EQ((*gaps)[2].offset, 330u);
  EXPECT_EQ((*gaps)[2].length, 500u - 8 - 330);
  EXPECT_FALSE(HeaderGaps(p->toc, 335).ok());  // contents run into the TOC
}

// The TOC of a layer with no entries has no "entries" (Go's omitempty): an empty TOC,
// not an error (pull --lazy failed such images; found by tests/differential/lazydiff.py).
TEST(ZstdChunkedTocTest, ATocWithoutEntriesIsAnEmptyLayer) {
  Digest blob = Sha256Of("blob");
  for (const char* json :
       {R"({"version":1})", R"({"version":1,"entries":null})", R"({"version":1,"entries":[]})"}) {
    auto p = ParseZstdChunkedToc(json, blob, 1000, blob);
    ASSERT_TRUE(p.ok()) << json << ": " << p.status().message();
    EXPECT_TRUE(p->toc.entries.empty()) << json;
  }
  EXPECT_FALSE(ParseZstdChunkedToc(R"({"version":1,"entries":5})", blob, 1000, blob).ok());
  EXPECT_FALSE(ParseZstdChunkedToc(R"({"version":1,"entries":{}})", blob, 1000, blob).ok());
}

// tar-split writes a name that is not UTF-8 as "name_raw" (base64 of its bytes); the
// TOC, JSON made by Go, has it with U+FFFD for each bad byte. Both are the same file.
// (Before, "name" alone was read: such a layer failed pull --lazy; found by
// tests/e2e/lazy_tarsplit.sh.)
TEST(ZstdChunkedTocTest, TarSplitNameThatIsNotUtf8) {
  Digest blob = Sha256Of("blob");
  std::string d = Sha256Of("0").str();
  auto p = ParseZstdChunkedToc(
      R"({"version":1,"entries":[{"type":"reg","name":"caf\ufffd","size":4,"digest":")" + d +
          R"(","offset":1,"endOffset":9}]})",
      blob, 1000, blob);
  ASSERT_TRUE(p.ok()) << p.status().message();
  std::string jsonl = R"({"type":2,"payload":"AAAA"})"
                      "\n"
                      R"({"type":1,"name_raw":"Y2Fm6Q==","size":4})"  // "caf\xe9"
                      "\n";
  auto segs = ParseTarSplit(jsonl);
  ASSERT_TRUE(segs.ok()) << segs.status().message();
  ASSERT_EQ(segs->size(), 2u);
  EXPECT_EQ((*segs)[1].name, "caf\xe9");
  LayerToc toc = p->toc;
  auto src = ApplyTarSplit(toc, *segs);
  ASSERT_TRUE(src.ok()) << src.status().message();
  EXPECT_EQ(toc.entries[0].tar_offset, 3u);
  // Another name's bytes do not match it.
  (*segs)[1].name = "cafe";
  LayerToc toc2 = p->toc;
  EXPECT_EQ(ApplyTarSplit(toc2, *segs).status().code(), Status::Code::kCorruption);
  EXPECT_FALSE(ParseTarSplit(R"({"type":1,"name_raw":"%%%","size":4})").ok());
}

// A name component of more than 85 bytes that are not UTF-8 is more than 255 bytes in
// the TOC (U+FFFD for each): such a layer is pulled in full (Unsupported), not refused.
TEST(ZstdChunkedTocTest, ANameTooLongOnlyInTheTocsSpellingIsUnsupported) {
  Digest blob = Sha256Of("blob");
  std::string bad;
  for (int i = 0; i < 100; i++) bad += "\xEF\xBF\xBD";
  auto toc = [&](const std::string& entry) {
    return ParseZstdChunkedToc(R"({"version":1,"entries":[)" + entry + "]}", blob, 1000, blob);
  };
  EXPECT_EQ(toc(R"({"type":"dir","name":"d/)" + bad + R"("})").status().code(),
            Status::Code::kUnsupported);
  EXPECT_EQ(toc(R"({"type":"hardlink","name":"l","linkName":")" + bad + R"("})").status().code(),
            Status::Code::kUnsupported);
  // Too long however it is spelled: refused as before.
  for (const std::string& name : {std::string(256, 'a'), bad + std::string(160, 'a')}) {
    auto p = toc(R"({"type":"dir","name":")" + name + R"("})");
    ASSERT_FALSE(p.ok());
    EXPECT_EQ(p.status().code(), Status::Code::kInvalidArgument) << p.status().message();
  }
  // A symlink target: 4,095 bytes at most in the tar, more as the TOC spells it.
  std::string target;
  for (int i = 0; i < 1400; i++) target += "\xEF\xBF\xBD";
  EXPECT_EQ(toc(R"({"type":"symlink","name":"s","linkName":")" + target + R"("})").status().code(),
            Status::Code::kUnsupported);
  EXPECT_EQ(toc(R"({"type":"symlink","name":"s","linkName":")" + std::string(4096, 'a') + R"("})")
                .status()
                .code(),
            Status::Code::kInvalidArgument);
  // A long name is shown short, and control bytes as '?'.
  auto shown = toc(R"({"type":"dir","name":"\u001b[2J)" + bad + R"("})");
  EXPECT_LT(shown.status().message().size(), 400u) << shown.status().message();
  EXPECT_EQ(shown.status().message().find('\x1b'), std::string::npos);
  // 85 of them fit: parsed.
  std::string fits;
  for (int i = 0; i < 85; i++) fits += "\xEF\xBF\xBD";
  EXPECT_TRUE(toc(R"({"type":"dir","name":")" + fits + R"("})").ok());
}

// PrepareLazyLayer joins and looks up the header gaps assuming they are sorted and
// disjoint: a TOC whose files overlap or go back in the blob is refused where the gaps
// are made.
TEST(ZstdChunkedTocTest, HeaderGapsRefuseFilesOutOfBlobOrder) {
  Digest blob = Sha256Of("blob");
  std::string d = Sha256Of("0").str();
  // "d/a" is blob bytes 100-259; "d/b" inside them, then wholly before them.
  for (auto [b0, bend] : {std::pair<uint64_t, uint64_t>{200, 230}, {20, 50}, {259, 270}}) {
    auto p = ParseZstdChunkedToc(TocJson(100, 180, 260, b0, bend, d, d, d), blob, 1000, blob);
    ASSERT_TRUE(p.ok()) << p.status().message();
    auto gaps = HeaderGaps(p->toc, 500);
    ASSERT_FALSE(gaps.ok()) << "d/b at " << b0;
    EXPECT_EQ(gaps.status().code(), Status::Code::kCorruption);
    EXPECT_NE(gaps.status().message().find("\"d/b\" is not after the previous file"),
              std::string::npos)
        << gaps.status().message();
  }
  // Touching is fine: an empty gap.
  auto p = ParseZstdChunkedToc(TocJson(100, 180, 260, 260, 270, d, d, d), blob, 1000, blob);
  ASSERT_TRUE(p.ok()) << p.status().message();
  auto gaps = HeaderGaps(p->toc, 500);
  ASSERT_TRUE(gaps.ok()) << gaps.status().message();
  ASSERT_EQ(gaps->size(), 3u);
  EXPECT_EQ((*gaps)[1].offset, 260u);
  EXPECT_EQ((*gaps)[1].length, 0u);
}

// The entry table from tar headers (no digest of their own) against the TOC.
LayerEntry TarFile(const std::string& path, uint64_t size, uint64_t data_offset) {
  LayerEntry e;
  e.path = path;
  e.type = EntryType::kFile;
  e.mode = 0644;
  e.size = size;
  e.data_offset = data_offset;
  e.mtime_sec = 1700000000;
  return e;
}
TocEntry TocFile(const std::string& path, uint64_t size, uint64_t tar_offset) {
  TocEntry t;
  t.path = path;
  t.type = EntryType::kFile;
  t.mode = 0644;
  t.size = size;
  t.tar_offset = tar_offset;
  t.mtime_sec = 1700000000;
  return t;
}

TEST(MatchTocToTarTest, SameEntriesMatchAndEachFieldIsChecked) {
  LayerToc toc;
  toc.entries = {TocFile("a", 3, 512), TocFile("b", 5, 1536)};
  std::vector<LayerEntry> tar = {TarFile("a", 3, 512), TarFile("b", 5, 1536)};
  EXPECT_TRUE(MatchTocToTar(toc, tar, false).ok());
  // A TOC mtime of 0 (none given) is not compared.
  toc.entries[1].mtime_sec = 0;
  EXPECT_TRUE(MatchTocToTar(toc, tar, false).ok());
  // A root the TOC leaves out: only headers a tar-split's digest covers may give it;
  // headers read from the blob (no digest until completion) make the layer Unsupported
  // (pulled in full). In the TOC, it is checked like any entry.
  LayerEntry root;
  root.type = EntryType::kDir;
  root.mode = 0777;
  tar.insert(tar.begin(), root);
  EXPECT_TRUE(MatchTocToTar(toc, tar, true).ok());
  EXPECT_EQ(MatchTocToTar(toc, tar, false).code(), Status::Code::kUnsupported);
  TocEntry troot;
  troot.type = EntryType::kDir;
  troot.mode = 0755;
  toc.entries.insert(toc.entries.begin(), troot);
  EXPECT_NE(MatchTocToTar(toc, tar, true).message().find("mode differs"), std::string::npos);
  troot.mode = 0777;
  toc.entries[0] = troot;
  EXPECT_TRUE(MatchTocToTar(toc, tar, false).ok());
  // A second root header, the TOC's root used up: the same.
  auto twice = tar;
  twice.push_back(root);
  EXPECT_TRUE(MatchTocToTar(toc, twice, true).ok());
  EXPECT_EQ(MatchTocToTar(toc, twice, false).code(), Status::Code::kUnsupported);
  struct Case {
    const char* field;
    void (*change)(LayerEntry&);
  };
  const Case cases[] = {
      {"mode", [](LayerEntry& e) { e.mode = 0600; }},
      {"owner", [](LayerEntry& e) { e.uid = 1; }},
      {"size", [](LayerEntry& e) { e.size = 4; }},
      // A header naming another file of the same size, its content elsewhere.
      {"content offset", [](LayerEntry& e) { e.data_offset = 2048; }},
      {"mtime", [](LayerEntry& e) { e.mtime_sec++; }},
      {"xattrs",
       [](LayerEntry& e) {
         e.xattrs.push_back({"user.k", "v"});
       }},
      {"type", [](LayerEntry& e) { e.type = EntryType::kFifo; }},
  };
  for (const Case& c : cases) {
    auto changed = tar;
    c.change(changed[1]);
    Status st = MatchTocToTar(toc, changed, false);
    EXPECT_EQ(st.code(), Status::Code::kCorruption) << c.field;
    EXPECT_NE(st.message().find(std::string(c.field) + " differs"), std::string::npos)
        << c.field << ": " << st.message();
  }
}

// A path the tar names twice (the last one wins) is in the TOC twice, in the same order:
// the n-th of the tar goes with the n-th of the TOC (lazydiff found the first
// comparison, against any entry of the path, wrong).
// A device's numbers come from its header: /dev/null (1, 3) must not become /dev/mem
// (1, 1) before completion.
TEST(MatchTocToTarTest, DeviceNumbersAreChecked) {
  LayerToc toc;
  TocEntry t;
  t.path = "dev/null";
  t.type = EntryType::kChar;
  t.mode = 0666;
  t.dev_major = 1;
  t.dev_minor = 3;
  toc.entries = {t};
  LayerEntry e;
  e.path = "dev/null";
  e.type = EntryType::kChar;
  e.mode = 0666;
  e.dev_major = 1;
  e.dev_minor = 3;
  EXPECT_TRUE(MatchTocToTar(toc, {e}, false).ok());
  e.dev_minor = 1;
  EXPECT_NE(MatchTocToTar(toc, {e}, false).message().find("device differs"), std::string::npos);
  e.dev_minor = 3;
  e.dev_major = 2;
  e.type = toc.entries[0].type = EntryType::kBlock;
  EXPECT_NE(MatchTocToTar(toc, {e}, false).message().find("device differs"), std::string::npos);
}

TEST(MatchTocToTarTest, APathNamedTwiceIsMatchedInOrder) {
  LayerToc toc;
  toc.entries = {TocFile("a", 3, 512), TocFile("b", 1, 1536), TocFile("a", 5, 2560)};
  std::vector<LayerEntry> tar = {TarFile("a", 3, 512), TarFile("b", 1, 1536),
                                 TarFile("a", 5, 2560)};
  EXPECT_TRUE(MatchTocToTar(toc, tar, false).ok());
  std::swap(tar[0], tar[2]);  // the same entries, the other way round
  EXPECT_EQ(MatchTocToTar(toc, tar, false).code(), Status::Code::kCorruption);
  // Once more in the tar than in the TOC, or once less.
  tar = {TarFile("a", 3, 512), TarFile("b", 1, 1536), TarFile("a", 5, 2560), TarFile("a", 5, 3584)};
  Status more = MatchTocToTar(toc, tar, false);
  EXPECT_NE(more.message().find("more often"), std::string::npos) << more.message();
  tar = {TarFile("a", 3, 512), TarFile("b", 1, 1536)};
  Status less = MatchTocToTar(toc, tar, false);
  EXPECT_NE(less.message().find("not in the tar as often"), std::string::npos) << less.message();
  tar = {TarFile("a", 3, 512), TarFile("a", 5, 2560), TarFile("c", 1, 1536)};
  Status other = MatchTocToTar(toc, tar, false);
  EXPECT_NE(other.message().find("\"c\": not in the table of contents"), std::string::npos)
      << other.message();
}

// Names, link targets and xattr names that are not UTF-8: the TOC has them as Go's JSON
// encoder spells them (U+FFFD for each bad byte).
TEST(MatchTocToTarTest, BytesThatAreNotUtf8AreComparedInTheTocsSpelling) {
  LayerToc toc;
  toc.entries = {TocFile("caf\xEF\xBF\xBD", 3, 512)};
  toc.entries[0].xattrs = {{"user.\xEF\xBF\xBD", "v"}};
  TocEntry link;
  link.path = "l";
  link.type = EntryType::kHardlink;
  link.link = "caf\xEF\xBF\xBD";
  toc.entries.push_back(link);
  std::vector<LayerEntry> tar = {TarFile("caf\xe9", 3, 512)};
  tar[0].xattrs = {{"user.\xff", "v"}};
  LayerEntry tl;
  tl.path = "l";
  tl.type = EntryType::kHardlink;
  tl.link = "caf\xe9";
  tar.push_back(tl);
  EXPECT_TRUE(MatchTocToTar(toc, tar, false).ok());
  tar[1].link = "cafe";
  EXPECT_NE(MatchTocToTar(toc, tar, false).message().find("link target differs"),
            std::string::npos);
}

}  // namespace
}  // namespace imgfs
