// FlatLayerTree (index/flat_tree.cc) against the general merge (TreeBuilder) on seeded
// random one-layer tables: plain layers as image builders write them (directories before
// their contents, files, symlinks, hard links, devices, xattrs, the root entry, names
// that sort by byte), some with one trap, which the flat layout must decline or lay out
// as the merge does (a path listed twice, a missing parent, a whiteout, a parent through a
// symlink or a file, "." or "..", a hard link to a later, missing, directory or own path,
// a wide owner id, the root entry listed twice, a path or a hard link's target not spelled
// plainly: "a//b", "a/b/", "/a", "./a", "a/."). Whenever the
// flat layout is given it must be TreeBuilder's tree byte for byte; plain layers must
// take it; MergedTree::Build and LowerTreeCache::Build (which use it) must give the
// general merge's tree or its error.
#include <gtest/gtest.h>

#include <random>
#include <string>
#include <vector>

#include "index/merged_tree.h"

namespace imgfs {
namespace {

LayerEntry Entry(std::string path, EntryType type, uint32_t mode, std::string link = "",
                 uint64_t size = 0) {
  LayerEntry e;
  e.path = std::move(path);
  e.type = type;
  e.mode = mode;
  e.link = std::move(link);
  e.size = size;
  return e;
}

struct Generated {
  std::vector<LayerEntry> entries;
  bool plain = true;  // no trap was set
};

Generated RandomLayer(std::mt19937& rng) {
  auto pick = [&](size_t n) { return static_cast<size_t>(rng() % n); };
  // Prefixes of each other, upper and lower case, a byte above 0x7f: the byte order of
  // children is what both layouts must agree on.
  static const char* const kNames[] = {"a", "ab",  "B",   "b", "bin", "\xc3\xa9t\xc3\xa9",
                                       "z", "a.b", "a-b", "0", "etc", "\xff"};
  Generated g;
  std::vector<std::string> dirs{""};  // directories listed so far ("" = the root)
  std::vector<std::string> leaves;    // non-directories listed so far
  std::vector<std::string> used;      // every path listed
  auto fresh = [&](const std::string& dir) {
    for (int tries = 0; tries < 20; tries++) {
      std::string p = (dir.empty() ? "" : dir + "/") + kNames[pick(std::size(kNames))];
      if (std::find(used.begin(), used.end(), p) == used.end()) return p;
    }
    return std::string();
  };
  const size_t n = 1 + pick(40);
  const size_t trap_at = pick(3) == 0 ? n : pick(n);  // a third of the layers: no trap
  bool root_listed = false;
  for (size_t i = 0; i < n; i++) {
    LayerEntry e;
    e.mode = 0600 + static_cast<uint32_t>(pick(0200));
    e.uid = pick(4) == 0 ? pick(70000) : 0;
    e.gid = pick(4) == 0 ? pick(70000) : 0;
    e.mtime_sec = static_cast<int64_t>(1000 + pick(100000));
    e.mtime_nsec = static_cast<uint32_t>(pick(1000000000));
    if (pick(6) == 0)
      e.xattrs.push_back({"user.k" + std::to_string(pick(3)), std::string(pick(5), 'v')});
    if (pick(20) == 0) e.xattrs.push_back({"security.capability", "cap"});
    if (!root_listed && pick(25) == 0) {  // the root entry, wherever it stands
      root_listed = true;
      e.type = EntryType::kDir;
      g.entries.push_back(std::move(e));
      continue;
    }
    const std::string& dir = dirs[pick(dirs.size())];
    e.path = fresh(dir);
    if (e.path.empty()) continue;
    size_t kind = pick(12);
    if (kind < 4) {
      e.type = EntryType::kDir;
    } else if (kind < 8) {
      e.type = EntryType::kFile;
      e.size = pick(5000);
      e.data_offset = 512 * (i + 1);
    } else if (kind < 9) {
      e.type = EntryType::kSymlink;
      e.link = pick(2) ? "../" + std::string(kNames[pick(std::size(kNames))]) : "/bin/sh";
    } else if (kind < 11 && !leaves.empty()) {
      e.type = EntryType::kHardlink;
      e.link = leaves[pick(leaves.size())];
    } else {
      static const EntryType kDevices[] = {EntryType::kChar, EntryType::kBlock, EntryType::kFifo};
      e.type = kDevices[pick(3)];
      if (e.type != EntryType::kFifo) {
        e.dev_major = static_cast<uint32_t>(pick(300));
        e.dev_minor = static_cast<uint32_t>(pick(300));
      }
    }
    if (i == trap_at) {
      g.plain = false;
      switch (pick(15)) {
        case 0:  // a path listed twice (as anything)
          if (used.empty())
            g.plain = true;
          else
            e.path = used[pick(used.size())];
          break;
        case 1:  // a parent not listed (an implicit directory)
          e.path = (dir.empty() ? "" : dir + "/") + "missing/" + kNames[pick(4)];
          break;
        case 2:  // a whiteout
          e.type = EntryType::kFile;
          e.path = (dir.empty() ? "" : dir + "/") + ".wh." + kNames[pick(4)];
          break;
        case 3:  // an opaque marker
          e.type = EntryType::kFile;
          e.path = (dir.empty() ? "" : dir + "/") + ".wh..wh..opq";
          break;
        case 4: {  // a parent that is a symlink of this layer
          LayerEntry s;
          s.path = fresh(dir);
          if (s.path.empty()) {
            g.plain = true;
            break;
          }
          s.type = EntryType::kSymlink;
          s.link = dir.empty() ? "." : "..";
          used.push_back(s.path);
          g.entries.push_back(s);
          e.path = s.path + "/" + kNames[pick(4)];
          break;
        }
        case 5:  // a parent that is a file
          if (leaves.empty())
            g.plain = true;
          else
            e.path = leaves[pick(leaves.size())] + "/x";
          break;
        case 6:  // "." or ".." in the path
          e.path = (dir.empty() ? "" : dir + "/") + (pick(2) ? "./y" : "../y");
          break;
        case 7:  // a hard link to a path listed later
          e.type = EntryType::kHardlink;
          e.link = "later";
          break;
        case 8:  // a hard link to a missing path, or through a missing directory
          e.type = EntryType::kHardlink;
          e.link = pick(2) ? "nowhere" : "no/where";
          break;
        case 9:  // a hard link to a directory
          e.type = EntryType::kHardlink;
          e.link = dirs.size() > 1 ? dirs[1 + pick(dirs.size() - 1)] : "";
          break;
        case 10:  // a hard link to itself
          e.type = EntryType::kHardlink;
          e.link = e.path;
          break;
        case 11:  // an owner id wider than 32 bits
          e.uid = uint64_t{1} << 33;
          break;
        case 12: {  // a path not spelled plainly: "a//b", "a/b/", "/a/b", "./a/b", "a/b/."
          static const char* const kSpellings[] = {"//", "/./"};
          std::string name = kNames[pick(std::size(kNames))];
          switch (pick(5)) {
            case 0:
              e.path = dir.empty() ? "/" + name : dir + kSpellings[pick(2)] + name;
              break;
            case 1:  // a directory listed again, or a new path, with a slash after it
              e.path =
                  (pick(2) && dirs.size() > 1 ? dirs[1 + pick(dirs.size() - 1)] : e.path) + "/";
              break;
            case 2:
              e.path = "/" + e.path;
              break;
            case 3:
              e.path = "./" + e.path;
              break;
            default:  // the same with "/." after it
              e.path =
                  (pick(2) && dirs.size() > 1 ? dirs[1 + pick(dirs.size() - 1)] : e.path) + "/.";
              break;
          }
          break;
        }
        case 13:  // a hard link whose target is not spelled plainly
          if (leaves.empty()) {
            g.plain = true;
          } else {
            static const char* const kAround[][2] = {{"/", ""}, {"./", ""}, {"", "/"}, {"", "/."}};
            const auto& a = kAround[pick(std::size(kAround))];
            e.type = EntryType::kHardlink;
            e.link = a[0] + leaves[pick(leaves.size())] + a[1];
          }
          break;
        default:  // a second root entry (taken: the last one's attributes)
          if (!root_listed) g.entries.push_back(Entry("", EntryType::kDir, 0755));
          g.entries.push_back(Entry("", EntryType::kDir, 0700));
          root_listed = true;
          continue;
      }
    }
    used.push_back(e.path);
    if (e.type == EntryType::kDir) {
      dirs.push_back(e.path);
    } else {
      leaves.push_back(e.path);
    }
    g.entries.push_back(std::move(e));
  }
  if (trap_at < n) {  // the target of case 7, after the link
    LayerEntry later;
    later.path = "later";
    later.type = EntryType::kFile;
    if (std::find(used.begin(), used.end(), later.path) == used.end()) {
      g.entries.push_back(later);
    }
  }
  return g;
}

TEST(FlatLayerTree, GivesTheMergesTreeOrDeclines) {
  size_t flat = 0, declined = 0, failed = 0;
  for (uint32_t seed = 1; seed <= 20000; seed++) {
    std::mt19937 rng(seed);
    Generated g = RandomLayer(rng);
    EntryTable table;
    table.Assign(g.entries);
    TreeBuilder b;
    Status st = b.AddLayer(table);
    Result<MergedTree> merged = st.ok() ? b.Finish() : Result<MergedTree>(st);
    std::optional<MergedTree> laid = FlatLayerTree(table);
    if (laid) {
      flat++;
      ASSERT_TRUE(merged.ok()) << "seed " << seed << ": the merge fails ("
                               << merged.status().message()
                               << ") where the flat layout gave a tree";
      ASSERT_EQ(laid->Encode(), merged->Encode()) << "seed " << seed;
    } else {
      declined++;
      if (!merged.ok()) failed++;
      ASSERT_FALSE(g.plain) << "seed " << seed << ": a plain layer was declined";
    }
    // The callers: the flat layout when given, else the merge, or the merge's error.
    std::vector<const std::vector<LayerEntry>*> one{&g.entries};
    Result<MergedTree> built = MergedTree::Build(one);
    LowerTreeCache cache;
    Result<MergedTree> cached =
        cache.Build({"layer"}, [&table](size_t) -> Result<const EntryTable*> { return &table; });
    for (Result<MergedTree>* r : {&built, &cached}) {
      ASSERT_EQ(r->ok(), merged.ok()) << "seed " << seed;
      if (r->ok()) {
        ASSERT_EQ((*r)->Encode(), merged->Encode()) << "seed " << seed;
      } else {
        ASSERT_EQ(r->status().message(), merged.status().message()) << "seed " << seed;
      }
    }
  }
  // Both ways are taken often, and the traps include layers the merge refuses.
  EXPECT_GT(flat, 20000u / 3) << declined << " declined";
  EXPECT_GT(declined, 20000u / 3) << flat << " laid out flat";
  EXPECT_GT(failed, 1000u);
}

TEST(FlatLayerTree, HardLinksShareANodeCountedOncePerName) {
  std::vector<LayerEntry> entries(4);
  entries[0] = Entry("bin", EntryType::kDir, 0755);
  entries[1] = Entry("bin/gzip", EntryType::kFile, 0755, "", 10);
  entries[2] = Entry("bin/gunzip", EntryType::kHardlink, 0, "bin/gzip");
  entries[3] = Entry("zcat", EntryType::kHardlink, 0, "bin/gunzip");
  EntryTable table;
  table.Assign(entries);
  std::optional<MergedTree> t = FlatLayerTree(table);
  ASSERT_TRUE(t.has_value());
  auto gzip = t->Resolve("bin/gzip", false), gunzip = t->Resolve("bin/gunzip", false),
       zcat = t->Resolve("zcat", false);
  ASSERT_TRUE(gzip.ok() && gunzip.ok() && zcat.ok());
  EXPECT_NE(*gzip, 0u);
  EXPECT_EQ(*gzip, *gunzip);
  EXPECT_EQ(*gzip, *zcat);
  EXPECT_EQ(t->node(*gzip).nlink, 3u);
  EXPECT_EQ(t->node(*gzip).size, 10u);
  EXPECT_EQ(t->node(MergedTree::kRoot).nlink, 3u);  // ".", "..", bin
}

}  // namespace
}  // namespace imgfs
