// eStargz lazy layers (index/lazy_virtual.h): the entry table and chunk map made from a
// verified TOC at synthetic content offsets, the comparison with the tar's table at
// completion (modulo offsets and non-UTF-8 names), and the chunk map moved to the tar's
// offsets.
#include "index/lazy_virtual.h"

#include <gtest/gtest.h>

namespace imgfs {
namespace {

Digest D(const std::string& s) {
  return Sha256Of(s);
}

TocChunk Chunk(uint64_t file_offset, uint64_t size, uint64_t blob_offset, const std::string& tag) {
  TocChunk c;
  c.file_offset = file_offset;
  c.size = size;
  c.blob_offset = blob_offset;
  c.blob_length = 50;
  c.digest = D(tag);
  c.codec = ChunkCodec::kGzip;
  c.skip = 512;
  return c;
}

LayerToc SampleToc() {
  LayerToc t;
  t.format = TocFormat::kEstargz;
  t.blob_size = 10000;
  auto add = [&](std::string path, EntryType type) -> TocEntry& {
    TocEntry e;
    e.path = std::move(path);
    e.type = type;
    e.mode = 0755;
    e.uid = 1000;
    e.gid = 100;
    e.mtime_sec = 1700000000;
    e.mtime_nsec = 5;
    t.entries.push_back(e);
    return t.entries.back();
  };
  add("etc", EntryType::kDir).xattrs = {{"user.b", "2"}, {"user.a", "1"}};
  TocEntry& a = add("etc/a", EntryType::kFile);
  a.size = 10;
  a.chunks = {Chunk(0, 10, 100, "a")};
  add("etc/link", EntryType::kSymlink).link = "../x/../a";
  TocEntry& b = add("big", EntryType::kFile);
  b.size = 300;
  b.chunks = {Chunk(0, 100, 200, "b0"), Chunk(100, 100, 300, "b1"), Chunk(200, 100, 400, "b2")};
  add("empty", EntryType::kFile);
  add("hard", EntryType::kHardlink).link = "etc/a";
  TocEntry& dev = add("null", EntryType::kChar);
  dev.dev_major = 1;
  dev.dev_minor = 3;
  TocEntry& c = add("caf\xEF\xBF\xBD", EntryType::kFile);  // a Latin-1 name, as JSON has it
  c.size = 7;
  c.chunks = {Chunk(0, 7, 500, "c")};
  return t;
}

TEST(LazyVirtualTest, EntriesAndChunksFromTheToc) {
  auto v = VirtualLayerFromToc(SampleToc());
  ASSERT_TRUE(v.ok()) << v.status().message();
  ASSERT_EQ(v->entries.size(), 8u);
  EXPECT_EQ(v->size, 10u + 300u + 7u);
  const auto& e = v->entries;
  EXPECT_EQ(e[0].path, "etc");
  EXPECT_EQ(e[0].type, EntryType::kDir);
  EXPECT_EQ(e[0].xattrs.size(), 2u);
  EXPECT_EQ(e[1].path, "etc/a");
  EXPECT_EQ(e[1].data_offset, 0u);
  EXPECT_EQ(e[1].size, 10u);
  EXPECT_EQ(e[1].mode, 0755u);
  EXPECT_EQ(e[1].uid, 1000u);
  EXPECT_EQ(e[1].gid, 100u);
  EXPECT_EQ(e[1].mtime_sec, 1700000000);
  EXPECT_EQ(e[1].mtime_nsec, 5u);
  EXPECT_EQ(e[2].link, "../x/../a");  // verbatim
  EXPECT_EQ(e[2].size, 0u);
  EXPECT_EQ(e[3].data_offset, 10u);  // back to back, in TOC order
  EXPECT_EQ(e[4].size, 0u);          // the empty file: nothing in the stream
  EXPECT_EQ(e[5].type, EntryType::kHardlink);
  EXPECT_EQ(e[5].link, "etc/a");
  EXPECT_EQ(e[6].dev_major, 1u);
  EXPECT_EQ(e[6].dev_minor, 3u);
  EXPECT_EQ(e[7].data_offset, 310u);
  // The chunk map: every chunk at its file's synthetic offset, blob place kept.
  ASSERT_EQ(v->map.chunks.size(), 5u);
  EXPECT_EQ(v->map.tar_size, 317u);
  EXPECT_EQ(v->map.blob_size, 10000u);
  uint64_t want_off[] = {0, 10, 110, 210, 310};
  uint64_t want_blob[] = {100, 200, 300, 400, 500};
  for (size_t i = 0; i < 5; i++) {
    EXPECT_EQ(v->map.chunks[i].tar_offset, want_off[i]) << i;
    EXPECT_EQ(v->map.chunks[i].blob_offset, want_blob[i]) << i;
    EXPECT_EQ(v->map.chunks[i].codec, ChunkCodec::kGzip);
    EXPECT_EQ(v->map.chunks[i].skip, 512u);
  }
  EXPECT_EQ(v->map.chunks[2].digest, D("b1"));
}

TEST(LazyVirtualTest, RefusesWhatTheTarIndexerRefuses) {
  LayerToc t = SampleToc();
  t.entries[2].link = "";
  EXPECT_FALSE(VirtualLayerFromToc(t).ok());
  t = SampleToc();
  t.entries[3].chunks.pop_back();  // chunks do not cover the file
  EXPECT_FALSE(VirtualLayerFromToc(t).ok());
}

// The tar's table for the same layer: real offsets, the raw Latin-1 name.
std::vector<LayerEntry> TarTable(const std::vector<LayerEntry>& lazy) {
  std::vector<LayerEntry> t = lazy;
  t[0].xattrs = {{"user.a", "1"}, {"user.b", "2"}};  // another order
  t[1].data_offset = 1024;
  t[1].mtime_nsec = 999;  // tar (pax) nanoseconds: a TOC has seconds only
  t[3].data_offset = 2048;
  t[4].data_offset = 2560;
  t[7].path = "caf\xE9";
  t[7].data_offset = 3072;
  return t;
}

TEST(LazyVirtualTest, CompletionComparesModuloOffsetsAndJsonNames) {
  auto v = VirtualLayerFromToc(SampleToc());
  ASSERT_TRUE(v.ok());
  std::vector<LayerEntry> tar = TarTable(v->entries);
  EXPECT_TRUE(SameModuloOffsets(v->entries, tar).ok());
  struct Case {
    const char* field;
    void (*mutate)(LayerEntry&);
    size_t index;
  };
  Case cases[] = {
      {"mode", [](LayerEntry& e) { e.mode = 0700; }, 1},
      {"owner", [](LayerEntry& e) { e.uid = 0; }, 1},
      {"size", [](LayerEntry& e) { e.size = 11; }, 1},
      {"mtime", [](LayerEntry& e) { e.mtime_sec++; }, 1},
      {"link target", [](LayerEntry& e) { e.link = "a"; }, 2},
      {"type", [](LayerEntry& e) { e.type = EntryType::kFile; }, 2},
      {"device", [](LayerEntry& e) { e.dev_minor = 5; }, 6},
      {"xattrs", [](LayerEntry& e) { e.xattrs.pop_back(); }, 0},
      {"path", [](LayerEntry& e) { e.path = "cafe"; }, 7},
  };
  for (const Case& c : cases) {
    std::vector<LayerEntry> bad = tar;
    c.mutate(bad[c.index]);
    Status st = SameModuloOffsets(v->entries, bad);
    EXPECT_EQ(st.code(), Status::Code::kCorruption) << c.field;
    EXPECT_NE(st.message().find(c.field), std::string::npos) << c.field << ": " << st.message();
  }
  std::vector<LayerEntry> more = tar;
  more.push_back(tar[1]);
  EXPECT_FALSE(SameModuloOffsets(v->entries, more).ok());
  more.resize(tar.size() - 1);
  EXPECT_FALSE(SameModuloOffsets(v->entries, more).ok());
}

TEST(LazyVirtualTest, ChunksMoveToTheTarOffsets) {
  auto v = VirtualLayerFromToc(SampleToc());
  ASSERT_TRUE(v.ok());
  std::vector<LayerEntry> tar = TarTable(v->entries);
  auto m = RelocateChunkMap(v->map, v->entries, tar, 5000);
  ASSERT_TRUE(m.ok()) << m.status().message();
  EXPECT_EQ(m->tar_size, 5000u);
  EXPECT_EQ(m->blob_size, 10000u);
  ASSERT_EQ(m->chunks.size(), 5u);
  uint64_t want_off[] = {1024, 2048, 2148, 2248, 3072};
  uint64_t want_blob[] = {100, 200, 300, 400, 500};
  for (size_t i = 0; i < 5; i++) {
    EXPECT_EQ(m->chunks[i].tar_offset, want_off[i]) << i;
    EXPECT_EQ(m->chunks[i].blob_offset, want_blob[i]) << i;
  }
  EXPECT_EQ(m->chunks[3].digest, D("b2"));
  // A tar whose contents overlap, run past its end, or whose entries differ: refused.
  EXPECT_FALSE(RelocateChunkMap(v->map, v->entries, tar, 3000).ok());
  std::vector<LayerEntry> overlap = tar;
  overlap[3].data_offset = 1030;
  EXPECT_FALSE(RelocateChunkMap(v->map, v->entries, overlap, 5000).ok());
  std::vector<LayerEntry> other = tar;
  other[3].size = 299;
  EXPECT_FALSE(RelocateChunkMap(v->map, v->entries, other, 5000).ok());
}

}  // namespace
}  // namespace imgfs
