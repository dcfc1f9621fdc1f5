// Overlay semantics of the merged tree, one case per rule (see merged_tree.h), on
// layers built as real tars and indexed by the real indexer.
#include "index/merged_tree.h"

#include <gtest/gtest.h>
#include <malloc.h>
#include <sys/stat.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstring>
#include <functional>
#include <map>
#include <random>
#include <thread>

#include "index/file_util.h"
#include "index/layer_indexer.h"
#include "tests/tar_builder.h"

namespace imgfs {
namespace {

using test::TarBuilder;

// A table as the store hands it to LowerTreeCache: views of its encoded bytes (valid
// until the next call, as TableFn allows).
struct EncodedTable {
  std::string bytes;
  EntryTable view;
  const EntryTable* Views(const std::vector<LayerEntry>& entries) {
    bytes = EncodeEntries(entries);
    Status st = view.Decode(bytes);
    EXPECT_TRUE(st.ok()) << st.message();
    return &view;
  }
};

Result<MergedTree> Merge(const std::vector<TarBuilder>& layers) {
  std::vector<std::vector<LayerEntry>> tables;
  for (const TarBuilder& b : layers) {
    std::string tar = b.Build();
    StringSource src(tar);
    auto idx = IndexTarStream(&src);
    if (!idx.ok()) return idx.status();
    tables.push_back(std::move(idx->entries));
  }
  std::vector<const std::vector<LayerEntry>*> ptrs;
  for (auto& t : tables) ptrs.push_back(&t);
  auto direct = MergedTree::Build(ptrs);
  // Every tree of these tests is also built through a LowerTreeCache: cold (records
  // the state after the lower layers), then warm (the top layer applied to a clone of
  // that state). Both must give the same tree, byte for byte, or the same failure.
  LowerTreeCache cache;
  EncodedTable encoded;
  std::vector<std::string> ids;
  for (size_t i = 0; i < tables.size(); i++) ids.push_back("layer" + std::to_string(i));
  for (int round = 0; round < 2; round++) {
    size_t asked = 0;
    auto via = cache.Build(ids, [&](size_t i) -> Result<const EntryTable*> {
      asked++;
      return encoded.Views(tables[i]);
    });
    EXPECT_EQ(via.ok(), direct.ok()) << (via.ok() ? direct : via).status().message();
    if (via.ok() && direct.ok()) {
      EXPECT_EQ(via->Encode(), direct->Encode()) << "round " << round;
    }
    // The root record alone (what a load keeps) matches the full tree's root.
    auto root = cache.BuildRoot(
        ids, [&](size_t i) -> Result<const EntryTable*> { return encoded.Views(tables[i]); });
    EXPECT_EQ(root.ok(), direct.ok());
    if (root.ok() && direct.ok()) {
      EXPECT_EQ(EncodeTreeRoot(*root), EncodeTreeRoot(direct->Root()));
    }
    if (round == 1 && tables.size() >= 2 && direct.ok()) {
      EXPECT_EQ(asked, 1u);  // the top layer only
    }
  }
  return direct;
}

// path → "type mode size layer", every node, depth first.
void Flatten(const MergedTree& t, uint32_t dir, const std::string& prefix,
             std::map<std::string, std::string>* out) {
  const TreeDirent* d = t.ChildrenBegin(dir);
  for (uint32_t i = 0; i < t.ChildCount(dir); i++) {
    std::string path =
        prefix.empty() ? std::string(t.Name(d[i])) : prefix + "/" + std::string(t.Name(d[i]));
    const TreeNode& n = t.node(d[i].node);
    char buf[64];
    snprintf(buf, sizeof buf, "%c %o %llu L%u",
             S_ISDIR(n.mode)   ? 'd'
             : S_ISLNK(n.mode) ? 'l'
             : S_ISREG(n.mode) ? 'f'
                               : 'o',
             n.mode & 07777, (unsigned long long)n.size, n.layer);
    (*out)[path] = buf;
    if (S_ISDIR(n.mode)) Flatten(t, d[i].node, path, out);
  }
}

std::map<std::string, std::string> Paths(const MergedTree& t) {
  std::map<std::string, std::string> m;
  Flatten(t, MergedTree::kRoot, "", &m);
  return m;
}

std::vector<std::string> SplitPathStrings(const std::string& p) {
  std::vector<std::string> out;
  for (std::string_view c : SplitPath(p)) out.emplace_back(c);
  return out;
}

uint32_t NodeAt(const MergedTree& t, const std::string& p) {
  auto r = t.Resolve(p, false);
  return r.ok() ? *r : 0;
}

TEST(MergedTree, SingleLayerWithImplicitParents) {
  TarBuilder l;
  l.File("a/b/c.txt", "hello").Dir("d", 0700);
  auto t = Merge({l});
  ASSERT_TRUE(t.ok()) << t.status().message();
  auto p = Paths(*t);
  EXPECT_EQ(p.size(), 4u);
  EXPECT_EQ(p["a"], "d 755 0 L0");  // implicit: 0755, root-owned
  EXPECT_EQ(p["a/b/c.txt"], "f 644 5 L0");
  EXPECT_EQ(p["d"], "d 700 0 L0");
  EXPECT_EQ(t->node(MergedTree::kRoot).mode, static_cast<uint32_t>(S_IFDIR | 0755));
}

TEST(MergedTree, WhiteoutHidesLowerFile) {
  TarBuilder l1, l2;
  l1.File("etc/a", "1").File("etc/b", "2");
  l2.Whiteout("etc", "a");
  auto p = Paths(*Merge({l1, l2}));
  EXPECT_EQ(p.count("etc/a"), 0u);
  EXPECT_EQ(p.count("etc/b"), 1u);
  EXPECT_EQ(p.count("etc/.wh.a"), 0u);
}

TEST(MergedTree, WhiteoutOfAWholeDirectory) {
  TarBuilder l1, l2;
  l1.File("opt/app/bin/x", "x").File("opt/app/lib/y", "y").File("opt/keep", "k");
  l2.Whiteout("opt", "app");
  auto p = Paths(*Merge({l1, l2}));
  EXPECT_EQ(p.count("opt/app"), 0u);
  EXPECT_EQ(p.count("opt/app/bin/x"), 0u);
  EXPECT_EQ(p.count("opt/keep"), 1u);
}

TEST(MergedTree, OpaqueDirectoryInAOneLayerImage) {
  TarBuilder l;
  l.Dir("data").Opaque("data").File("data/f", "f");
  auto t = Merge({l});
  ASSERT_TRUE(t.ok());
  auto p = Paths(*t);
  EXPECT_EQ(p.count("data/f"), 1u);
  EXPECT_EQ(p.count("data/.wh..wh..opq"), 0u);
  EXPECT_EQ(p.size(), 2u);
}

TEST(MergedTree, OpaqueDirectoryInAnUpperLayer) {
  for (bool marker_first : {true, false}) {
    TarBuilder l1, l2;
    l1.File("data/old1", "1").File("data/sub/old2", "2").File("other", "o");
    l2.Dir("data");
    if (marker_first) l2.Opaque("data");
    l2.File("data/new", "n").File("data/sub/new2", "n2");
    if (!marker_first) l2.Opaque("data");
    auto p = Paths(*Merge({l1, l2}));
    EXPECT_EQ(p.count("data/old1"), 0u) << marker_first;
    EXPECT_EQ(p.count("data/sub/old2"), 0u) << marker_first;
    EXPECT_EQ(p.count("data/new"), 1u) << marker_first;
    EXPECT_EQ(p.count("data/sub/new2"), 1u) << marker_first;
    EXPECT_EQ(p.count("other"), 1u);
  }
}

TEST(MergedTree, DeletedFilesStayDeletedThroughLaterLayers) {
  TarBuilder l1, l2, l3;
  l1.File("etc/gone", "g").File("etc/stay", "s");
  l2.Whiteout("etc", "gone");
  l3.File("etc/new", "n").Dir("etc", 0750);
  auto p = Paths(*Merge({l1, l2, l3}));
  EXPECT_EQ(p.count("etc/gone"), 0u);
  EXPECT_EQ(p.count("etc/stay"), 1u);
  EXPECT_EQ(p.count("etc/new"), 1u);
  EXPECT_EQ(p["etc"], "d 750 0 L2");  // attributes from the topmost layer with an entry
}

TEST(MergedTree, WhiteoutAndReAddInOneLayerKeepTheFile) {
  for (bool whiteout_first : {true, false}) {
    TarBuilder l1, l2;
    l1.File("f", "old");
    if (whiteout_first) l2.Whiteout("", "f");
    l2.File("f", "newer");
    if (!whiteout_first) l2.Whiteout("", "f");
    auto t = Merge({l1, l2});
    ASSERT_TRUE(t.ok());
    auto p = Paths(*t);
    EXPECT_EQ(p["f"], "f 644 5 L1") << whiteout_first;
  }
}

TEST(MergedTree, DuplicateInOneLayerLastWins) {
  TarBuilder l;
  l.File("x", "first").File("x", "second!!", 0600);
  auto p = Paths(*Merge({l}));
  EXPECT_EQ(p["x"], "f 600 8 L0");
}

TEST(MergedTree, FileReplacesLowerDirectoryAndBack) {
  TarBuilder l1, l2, l3;
  l1.File("a/inner", "i").File("b", "file");
  l2.File("a", "now a file");
  l2.Dir("b");
  l3.File("b/child", "c");
  auto p = Paths(*Merge({l1, l2, l3}));
  EXPECT_EQ(p["a"], "f 644 10 L1");
  EXPECT_EQ(p.count("a/inner"), 0u);
  EXPECT_EQ(p["b"], "d 755 0 L1");
  EXPECT_EQ(p.count("b/child"), 1u);
}

TEST(MergedTree, DirectoryReplacedWithWhiteoutThenFile) {
  TarBuilder l1, l2;
  l1.File("a/inner", "i");
  l2.Whiteout("", "a").File("a", "f");
  auto p = Paths(*Merge({l1, l2}));
  EXPECT_EQ(p["a"], "f 644 1 L1");
  EXPECT_EQ(p.size(), 1u);
}

TEST(MergedTree, DirectoryOverDirectoryKeepsChildren) {
  TarBuilder l1, l2;
  l1.Dir("d", 0755).File("d/f", "f");
  l2.Dir("d", 0700);
  auto p = Paths(*Merge({l1, l2}));
  EXPECT_EQ(p["d"], "d 700 0 L1");
  EXPECT_EQ(p.count("d/f"), 1u);
}

TEST(MergedTree, HardLinksShareANode) {
  TarBuilder l1, l2;
  l1.File("bin/a", "content").Hardlink("bin/b", "bin/a").File("solo", "s");
  l2.Hardlink("usr/c", "bin/a");  // to a file from a lower layer
  auto t = Merge({l1, l2});
  ASSERT_TRUE(t.ok()) << t.status().message();
  uint32_t a = NodeAt(*t, "bin/a"), b = NodeAt(*t, "bin/b"), c = NodeAt(*t, "usr/c");
  EXPECT_NE(a, 0u);
  EXPECT_EQ(a, b);
  EXPECT_EQ(a, c);
  EXPECT_EQ(t->node(a).nlink, 3u);
  EXPECT_EQ(t->node(a).size, 7u);
  EXPECT_EQ(t->node(NodeAt(*t, "solo")).nlink, 1u);
  EXPECT_EQ(t->node(NodeAt(*t, "bin")).nlink, 2u);
  EXPECT_EQ(t->node(MergedTree::kRoot).nlink, 4u);  // . .. bin usr
}

TEST(MergedTree, ReplacingOneHardLinkNameKeepsTheOther) {
  TarBuilder l1, l2;
  l1.File("a", "shared").Hardlink("b", "a");
  l2.File("a", "new");
  auto t = Merge({l1, l2});
  ASSERT_TRUE(t.ok());
  EXPECT_EQ(t->node(NodeAt(*t, "b")).size, 6u);
  EXPECT_EQ(t->node(NodeAt(*t, "b")).nlink, 1u);
  EXPECT_EQ(t->node(NodeAt(*t, "a")).size, 3u);
}

TEST(MergedTree, BadHardLinksAreErrors) {
  TarBuilder missing, todir;
  missing.Hardlink("x", "nowhere");
  auto t = Merge({missing});
  ASSERT_FALSE(t.ok());
  EXPECT_NE(t.status().message().find("missing target"), std::string::npos) << t.status().message();
  todir.Dir("d").Hardlink("x", "d");
  EXPECT_FALSE(Merge({todir}).ok());
}

// F5 of docs/differential.md: docker and umoci remove what is at a link's path before
// link(2), so a target at or below that path is gone and the layer is refused.
TEST(MergedTree, HardLinkToItselfOrBelowItselfIsRefused) {
  TarBuilder below, lower, upper, self, sibling;
  below.File("X/f/t", "t").Hardlink("X/f", "X/f/t");
  auto t = Merge({below});
  ASSERT_FALSE(t.ok());
  EXPECT_NE(t.status().message().find("at or below the link itself"), std::string::npos)
      << t.status().message();
  lower.File("b/b/c/d", "d");  // the target from a lower layer
  upper.Hardlink("b/b", "b/b/c/d");
  EXPECT_FALSE(Merge({lower, upper}).ok());
  self.File("a", "a").Hardlink("a", "a");
  EXPECT_FALSE(Merge({self}).ok());
  // A target that only shares a prefix with the link's name is fine.
  sibling.File("ab/x", "x").Hardlink("a", "ab/x");
  auto ok = Merge({sibling});
  ASSERT_TRUE(ok.ok()) << ok.status().message();
  EXPECT_EQ(NodeAt(*ok, "a"), NodeAt(*ok, "ab/x"));
}

TEST(MergedTree, SameLayerParentSymlinksAreFollowedInsideTheImage) {
  TarBuilder l1;
  l1.Dir("usr/lib")
      .Symlink("lib", "usr/lib")
      .Symlink("abs", "/usr/lib")
      .Symlink("up", "../../../../usr")
      .File("lib/libfoo.so", "foo")
      .File("abs/libbar.so", "bar")
      .File("up/share/x", "x");
  auto p = Paths(*Merge({l1}));
  EXPECT_EQ(p.count("usr/lib/libfoo.so"), 1u);
  EXPECT_EQ(p.count("usr/lib/libbar.so"), 1u);
  EXPECT_EQ(p.count("usr/share/x"), 1u);  // ".." clamps at the image root
  EXPECT_EQ(p["lib"], "l 777 7 L0");
}

TEST(MergedTree, SymlinksAreAlways0777) {
  TarBuilder l;
  l.Symlink("s", "target").last().mode = 0644;
  auto p = Paths(*Merge({l}));
  EXPECT_EQ(p["s"], "l 777 6 L0");  // as lstat shows any symlink on Linux
}

TEST(MergedTree, SymlinkLoopInParentIsAnError) {
  TarBuilder l;
  l.Symlink("a", "b").Symlink("b", "a").File("a/x", "x");
  auto t = Merge({l});
  ASSERT_FALSE(t.ok());
  EXPECT_NE(t.status().message().find("symbolic links"), std::string::npos);
  // A lower layer's loop is never followed: the upper layer's "a" is a directory.
  TarBuilder l1, l2;
  l1.Symlink("a", "b").Symlink("b", "a");
  l2.File("a/x", "x");
  auto u = Merge({l1, l2});
  ASSERT_TRUE(u.ok()) << u.status().message();
  EXPECT_EQ(Paths(*u)["a"], "d 755 0 L1");
}

// Rule 3: as in an overlay mount, a layer's paths never go through a lower layer's
// symlink; the upper layer's directory hides it.
TEST(MergedTree, LowerSymlinkParentIsNotFollowed) {
  TarBuilder l1, l2;
  l1.File("usr/lib/libc.so", "c").File("usr/lib/x", "x").Symlink("lib", "usr/lib");
  l2.File("lib/libfoo.so", "foo");
  auto p = Paths(*Merge({l1, l2}));
  EXPECT_EQ(p["lib"], "d 755 0 L1");
  EXPECT_EQ(p.count("lib/libfoo.so"), 1u);
  EXPECT_EQ(p.count("usr/lib/libfoo.so"), 0u);
  EXPECT_EQ(p.count("usr/lib/libc.so"), 1u);
}

TEST(MergedTree, WhiteoutUnderLowerSymlinkDoesNotEmptyItsTarget) {
  for (bool opaque : {false, true}) {
    TarBuilder l1, l2;
    l1.File("usr/lib/libc.so", "c").File("usr/lib/x", "x").Symlink("lib", "usr/lib");
    if (opaque) {
      l2.Opaque("lib");
    } else {
      l2.Whiteout("lib", "x");
    }
    auto t = Merge({l1, l2});
    ASSERT_TRUE(t.ok()) << t.status().message();
    auto p = Paths(*t);
    EXPECT_EQ(p.count("usr/lib/libc.so"), 1u) << opaque;
    EXPECT_EQ(p.count("usr/lib/x"), 1u) << opaque;
    EXPECT_EQ(p["lib"], "d 755 0 L1") << opaque;  // the overlay shows the layer's directory
    EXPECT_EQ(p.count("lib/x"), 0u);
  }
}

TEST(MergedTree, LowerFileAsParentIsReplacedSameLayerFileIsAnError) {
  TarBuilder l1, l2;
  l1.File("f", "file");
  l2.File("f/x", "x");
  auto t = Merge({l1, l2});
  ASSERT_TRUE(t.ok()) << t.status().message();
  EXPECT_EQ(Paths(*t)["f"], "d 755 0 L1");
  TarBuilder same;
  same.File("f", "file").File("f/x", "x");
  auto u = Merge({same});
  ASSERT_FALSE(u.ok());
  EXPECT_NE(u.status().message().find("not a directory"), std::string::npos);
}

// Rule 1, tar order: a hard link made before the whiteout of its target keeps it.
TEST(MergedTree, HardLinkThenWhiteoutOfItsTargetKeepsTheContent) {
  TarBuilder l1, l2;
  l1.File("bin/tool", "content");
  l2.Hardlink("usr/bin/tool", "bin/tool").Whiteout("bin", "tool");
  auto t = Merge({l1, l2});
  ASSERT_TRUE(t.ok()) << t.status().message();
  auto p = Paths(*t);
  EXPECT_EQ(p.count("bin/tool"), 0u);
  ASSERT_EQ(p.count("usr/bin/tool"), 1u);
  EXPECT_EQ(t->node(NodeAt(*t, "usr/bin/tool")).size, 7u);
  EXPECT_EQ(t->node(NodeAt(*t, "usr/bin/tool")).nlink, 1u);
}

TEST(MergedTree, WhiteoutThenHardLinkToItIsAMissingTarget) {
  TarBuilder l1, l2;
  l1.File("bin/tool", "content");
  l2.Whiteout("bin", "tool").Hardlink("usr/bin/tool", "bin/tool");
  auto t = Merge({l1, l2});
  ASSERT_FALSE(t.ok());
  EXPECT_NE(t.status().message().find("missing target"), std::string::npos);
}

TEST(MergedTree, HardLinkThenOpaqueParentKeepsTheContent) {
  TarBuilder l1, l2;
  l1.File("data/a", "aaaa").File("data/b", "b");
  l2.Hardlink("keep", "data/a").Opaque("data");
  auto t = Merge({l1, l2});
  ASSERT_TRUE(t.ok()) << t.status().message();
  auto p = Paths(*t);
  EXPECT_EQ(p.count("data/a"), 0u);
  EXPECT_EQ(p.count("data/b"), 0u);
  EXPECT_EQ(t->node(NodeAt(*t, "keep")).size, 4u);
}

TEST(MergedTree, OpaqueKeepsWhatTheLayerWroteUnderALowerDirectory) {
  TarBuilder l1, l2;
  l1.File("d/sub/old", "o").File("d/old", "o");
  l2.File("d/sub/new", "n").Opaque("d");
  auto p = Paths(*Merge({l1, l2}));
  EXPECT_EQ(p.count("d/sub/new"), 1u);
  EXPECT_EQ(p.count("d/sub/old"), 0u);
  EXPECT_EQ(p.count("d/old"), 0u);
}

// F2 (OCI layer.md, Whiteouts: "Whiteout files MUST only apply to resources in
// lower/parent layers"): `.wh.a` after this layer wrote under `a` removes the lower
// content of `a` and keeps the layer's own, whatever the order. What is left of `a` is
// this layer's: its own entry's attributes, or an implicit directory.
TEST(MergedTree, WhiteoutAfterSameLayerEntriesBelowItHidesOnlyLowerContent) {
  for (int variant = 0; variant < 4; variant++) {
    bool whiteout_first = variant & 1, own_dir = variant & 2;
    TarBuilder l1, l2;
    l1.Dir("a", 0700).File("a/lower", "L").File("a/sub/old", "o").File("keep", "k");
    if (whiteout_first) l2.Whiteout("", "a");
    if (own_dir) l2.Dir("a", 0750);
    l2.File("a/new", "N").File("a/sub/new2", "n");
    if (!whiteout_first) l2.Whiteout("", "a");
    auto t = Merge({l1, l2});
    ASSERT_TRUE(t.ok()) << t.status().message();
    auto p = Paths(*t);
    EXPECT_EQ(p.count("a/lower"), 0u) << variant;
    EXPECT_EQ(p.count("a/sub/old"), 0u) << variant;
    EXPECT_EQ(p["a/new"], "f 644 1 L1") << variant;
    EXPECT_EQ(p["a/sub/new2"], "f 644 1 L1") << variant;
    EXPECT_EQ(p["a"], own_dir ? "d 750 0 L1" : "d 755 0 L1") << variant;
    EXPECT_EQ(p["a/sub"], "d 755 0 L1") << variant;
    EXPECT_EQ(p.count("keep"), 1u) << variant;
    EXPECT_EQ(p.size(), 5u) << variant;
  }
}

// A directory the layer wrote over a lower one keeps the lower children (rule 2), but
// not under an opaque marker of an ancestor, before or after it.
TEST(MergedTree, OpaqueHidesLowerChildrenOfADirectoryTheLayerRewrote) {
  for (bool marker_first : {true, false}) {
    TarBuilder l1, l2;
    l1.File("a/sub/old", "o");
    if (marker_first) l2.Opaque("a");
    l2.Dir("a/sub", 0700);
    if (!marker_first) l2.Opaque("a");
    auto p = Paths(*Merge({l1, l2}));
    EXPECT_EQ(p.count("a/sub/old"), 0u) << marker_first;
    EXPECT_EQ(p["a/sub"], "d 700 0 L1") << marker_first;
  }
}

// F4: a lower directory hidden by its parent's opaque marker is, whatever the order of
// the markers, what this layer holds of it: an implicit directory (as overlayfs shows).
TEST(MergedTree, DirectoryUnderAnOpaqueParentIsTheLayersOwnInEitherOrder) {
  for (bool inner_first : {true, false}) {
    TarBuilder l1, l2;
    l1.Dir("a", 0755).Dir("a/d", 0700).File("a/d/f", "f").File("a/g", "g");
    if (inner_first) l2.Opaque("a/d").Opaque("a");
    if (!inner_first) l2.Opaque("a").Opaque("a/d");
    auto t = Merge({l1, l2});
    ASSERT_TRUE(t.ok()) << t.status().message();
    auto p = Paths(*t);
    EXPECT_EQ(p["a/d"], "d 755 0 L1") << inner_first;
    EXPECT_EQ(p.count("a/d/f"), 0u) << inner_first;
    EXPECT_EQ(p.count("a/g"), 0u) << inner_first;
    EXPECT_EQ(p["a"], "d 755 0 L0") << inner_first;  // the marker's own directory stays
  }
}

// umoci writes a directory replaced by a file as the file, then whiteouts of the old
// children below it: they have nothing left to hide.
TEST(MergedTree, WhiteoutBelowAFileOfTheSameLayerIsMoot) {
  TarBuilder l1, l2;
  l1.File("opt/app/sub/x", "x").File("opt/app/y", "y");
  l2.File("opt/app", "now a file").Whiteout("opt/app", "sub").Opaque("opt/app");
  auto t = Merge({l1, l2});
  ASSERT_TRUE(t.ok()) << t.status().message();
  auto p = Paths(*t);
  EXPECT_EQ(p["opt/app"], "f 644 10 L1");
  EXPECT_EQ(p.count("opt/app/y"), 0u);
}

TEST(MergedTree, WhiteoutInAMissingDirectoryCreatesIt) {
  TarBuilder l1, l2;
  l1.File("x", "x");
  l2.Whiteout("newdir", "nothing");
  auto p = Paths(*Merge({l1, l2}));
  EXPECT_EQ(p["newdir"], "d 755 0 L1");  // docker MkdirAll's a whiteout's parent too
}

TEST(MergedTree, WhiteoutsAreNeverVisible) {
  TarBuilder l;
  l.Whiteout("", "nothing")
      .Whiteout("dir", "nothing")
      .File(".wh..wh.plnk/123", "aufs")
      .File("real", "r");
  auto t = Merge({l});
  ASSERT_TRUE(t.ok()) << t.status().message();
  auto p = Paths(*t);
  for (auto& [path, _] : p) EXPECT_EQ(path.find(".wh."), std::string::npos) << path;
  EXPECT_EQ(p.count("real"), 1u);
}

TEST(MergedTree, RootAttributesFromTheTopmostRootEntry) {
  TarBuilder l1, l2;
  l1.Dir("./", 0700).File("a", "a");
  l2.Dir(".", 0711);
  auto t = Merge({l1, l2});
  ASSERT_TRUE(t.ok());
  EXPECT_EQ(t->node(MergedTree::kRoot).mode & 07777, 0711u);
}

TEST(MergedTree, DenseBreadthFirstNumbersAndSortedChildren) {
  TarBuilder l;
  l.File("z/deep", "d").File("b", "b").File("a", "a").Dir("m");
  auto t = Merge({l});
  ASSERT_TRUE(t.ok());
  EXPECT_EQ(t->node_count(), 7u);  // node 0 (unused), root, a, b, m, z, z/deep
  EXPECT_EQ(NodeAt(*t, "a"), 2u);  // breadth first, children in name order
  EXPECT_EQ(NodeAt(*t, "b"), 3u);
  EXPECT_EQ(NodeAt(*t, "m"), 4u);
  EXPECT_EQ(NodeAt(*t, "z"), 5u);
  EXPECT_EQ(NodeAt(*t, "z/deep"), 6u);
  EXPECT_EQ(t->node(6).parent, 5u);
}

TEST(MergedTree, EncodeDecodeRoundTripAndRejectCorruption) {
  TarBuilder l;
  l.File("a", "a").Symlink("s", "/target").Dir("d").File("d/x", "x").Hardlink("d/y", "a");
  l.File("cap", "c").last().xattrs = {{"security.capability", std::string("\x01\x02\x00", 3)}};
  auto t = Merge({l});
  ASSERT_TRUE(t.ok());
  std::string enc = t->Encode();
  auto back = MergedTree::Decode(enc);
  ASSERT_TRUE(back.ok()) << back.status().message();
  EXPECT_EQ(Paths(*back), Paths(*t));
  EXPECT_EQ(back->LinkTarget(NodeAt(*back, "s")), "/target");
  uint32_t cap = NodeAt(*back, "cap");
  ASSERT_EQ(back->node(cap).xattr_count, 1u);
  EXPECT_EQ(back->XattrValue(back->XattrsBegin(cap)[0]).size(), 3u);
  EXPECT_FALSE(MergedTree::Decode(enc.substr(0, enc.size() - 1)).ok());
  // Random corruption must never crash; most of it must be caught.
  std::mt19937 rng(42);
  for (int i = 0; i < 2000; i++) {
    std::string bad = enc;
    for (int k = 0; k < 4; k++) bad[24 + rng() % (bad.size() - 24)] = static_cast<char>(rng());
    auto r = MergedTree::Decode(bad);
    if (!r.ok()) continue;
    // Whatever decodes must be safe to walk.
    std::map<std::string, std::string> p;
    Flatten(*r, MergedTree::kRoot, "", &p);
  }
}

TEST(MergedTree, ResolveFollowsSymlinksAndDotDot) {
  TarBuilder l;
  l.File("usr/bin/env", "e").Symlink("bin", "usr/bin").Symlink("usr/bin/self", "../../bin/env");
  auto t = Merge({l});
  ASSERT_TRUE(t.ok());
  uint32_t env = NodeAt(*t, "usr/bin/env");
  EXPECT_EQ(*t->Resolve("/bin/env", true), env);
  EXPECT_EQ(*t->Resolve("bin/self", true), env);
  EXPECT_EQ(*t->Resolve("/usr/../../../usr/bin/env", true), env);
  EXPECT_NE(*t->Resolve("bin", false), NodeAt(*t, "usr/bin"));
  EXPECT_EQ(*t->Resolve("bin", true), NodeAt(*t, "usr/bin"));
  EXPECT_EQ(*t->Resolve("missing/x", true), 0u);
}

}  // namespace
}  // namespace imgfs

namespace imgfs {
namespace {

// A shared (sealed) base state keeps its subtrees' checks: an owner id past 32 bits
// deep in the base fails the root record of every image on it, as the full build does.
TEST(MergedTree, SealedBaseStateKeepsItsSubtreeChecks) {
  std::vector<std::vector<LayerEntry>> tables;
  test::TarBuilder base, top;
  base.Dir("d").Dir("d/sub").File("d/sub/f", "x");
  top.File("x", "y");
  for (const test::TarBuilder* b : {&base, &top}) {
    std::string tar = b->Build();
    StringSource src(tar);
    auto idx = IndexTarStream(&src);
    ASSERT_TRUE(idx.ok());
    tables.push_back(std::move(idx->entries));
  }
  for (LayerEntry& e : tables[0])
    if (e.path == "d/sub/f") e.uid = uint64_t{1} << 32;
  auto direct = MergedTree::Build({&tables[0], &tables[1]});
  ASSERT_FALSE(direct.ok());
  LowerTreeCache cache;
  std::vector<std::string> ids = {"base", "top"};
  EncodedTable encoded;
  auto table = [&](size_t i) -> Result<const EntryTable*> { return encoded.Views(tables[i]); };
  for (int round = 0; round < 2; round++) {  // cold, then on the sealed base state
    auto root = cache.BuildRoot(ids, table);
    ASSERT_FALSE(root.ok()) << "round " << round;
    EXPECT_NE(root.status().message().find("32 bits"), std::string::npos);
  }
  // The same shape without it builds (another cache).
  for (LayerEntry& e : tables[0]) e.uid = 0;
  LowerTreeCache fine;
  for (int round = 0; round < 2; round++) EXPECT_TRUE(fine.BuildRoot(ids, table).ok());
}

// The builder reuses the last entry's directory walk (WalkDown). Differential check
// against the full walk from the root for every entry: seeded random layers whose
// entries wander up and down a small namespace in tar-like order, with symlinks
// (relative, absolute, "..", loops), whiteouts, opaque markers, hard links, a directory
// replaced by a file and back, the root entry, a layer listed twice; built directly
// and through a LowerTreeCache (clones). The same tree byte for byte, or the same
// error. The reference also keeps every replaced or erased node (SetReclaimForTest),
// so the nodes the builder frees (Builder::Drop) are checked by the same comparison.
std::vector<LayerEntry> RandomLayer(std::mt19937& rng) {
  // Directory names first ("d" and "a" are prefixes of "dd" and "ab": a reused walk
  // must match whole components), then whiteouts.
  static const char* const kNames[] = {"a",  "b",     "c",     "dd",          "d",
                                       "ab", ".wh.a", ".wh.b", ".wh..wh..opq"};
  constexpr size_t kDirNames = 6;
  static const char* const kTargets[] = {"a",        "../a", "/b/c", ".",  "..",    "a/b",
                                         "../../dd", "/",    "c/..", "dd", "/a/./b"};
  auto pick = [&](size_t n) { return static_cast<size_t>(rng() % n); };
  std::vector<std::string> dir;  // where the walk stands
  std::vector<LayerEntry> out;
  size_t n = 1 + pick(30);
  for (size_t i = 0; i < n; i++) {
    switch (pick(10)) {
      case 0:
      case 1:
        if (!dir.empty()) dir.pop_back();
        break;
      case 2:
        dir.clear();
        break;
      case 3:
      case 4:
      case 5:
        if (dir.size() < 4) dir.push_back(kNames[pick(kDirNames)]);
        break;
      case 6:  // a sibling ("d" after "dd", "ab" after "a")
        if (!dir.empty()) dir.back() = kNames[pick(kDirNames)];
        break;
      default:
        break;  // the same directory
    }
    LayerEntry e;
    for (const std::string& c : dir) e.path += c + "/";
    e.path += kNames[pick(pick(4) == 0 ? std::size(kNames)
                                       : kDirNames)];  // replaced below for non-directories
    if (pick(60) == 0) e.path.clear();                 // the root entry
    e.mode = 0700 + static_cast<uint32_t>(pick(0100));
    e.mtime_sec = static_cast<int64_t>(i);
    size_t kind = pick(e.path.empty() ? 1 : 12);
    if (kind < 5) {
      e.type = EntryType::kDir;
    } else if (kind < 8) {
      e.type = EntryType::kFile;
      e.size = pick(100);
      e.data_offset = i * 512;
    } else if (kind < 10) {
      e.type = EntryType::kSymlink;
      e.link = kTargets[pick(std::size(kTargets))];
    } else if (kind < 11) {
      e.type = EntryType::kHardlink;  // mostly to a file this layer made
      e.link = kNames[pick(kDirNames)];
      std::vector<std::string> files;
      for (const LayerEntry& o : out)
        if (o.type == EntryType::kFile) files.push_back(o.path);
      if (!files.empty() && pick(6) != 0) e.link = files[pick(files.size())];
    } else {
      e.type = EntryType::kFifo;
    }
    // Non-directories mostly take names no walk goes into (fewer layers that fail).
    if (e.type != EntryType::kDir && !e.path.empty() && pick(3) != 0) {
      static const char* const kLeaves[] = {"f", "g", "h"};
      e.path = e.path.substr(0, e.path.size() - SplitPathStrings(e.path).back().size()) +
               kLeaves[pick(3)];
    }
    if (e.type == EntryType::kDir && pick(2)) dir = SplitPathStrings(e.path);
    out.push_back(std::move(e));
  }
  return out;
}

TEST(MergedTree, ReusedWalksBuildWhatFullWalksBuild) {
  struct Reuse {  // restores the default even when an assertion returns early
    ~Reuse() { TreeBuilder::SetWalkReuseForTest(true); }
  } restore;
  size_t built = 0, failed = 0;
  for (uint32_t seed = 1; seed <= 6000; seed++) {
    std::mt19937 rng(seed);
    std::vector<std::vector<LayerEntry>> tables(1 + rng() % 4);
    for (auto& t : tables) t = RandomLayer(rng);
    // Some stacks list a layer again: it replaces its own earlier nodes (freed).
    if (tables.size() >= 2 && rng() % 4 == 0) tables[tables.size() - 1] = tables[0];
    std::vector<const std::vector<LayerEntry>*> ptrs;
    std::vector<std::string> ids;
    for (auto& t : tables) {
      ptrs.push_back(&t);
      ids.push_back("l" + std::to_string(ids.size()));
    }
    // The reference: full walks, and no node freed (Builder::Drop off).
    TreeBuilder::SetWalkReuseForTest(false);
    TreeBuilder::SetReclaimForTest(false);
    auto full = MergedTree::Build(ptrs);
    TreeBuilder::SetWalkReuseForTest(true);
    TreeBuilder::SetReclaimForTest(true);
    auto reused = MergedTree::Build(ptrs);
    ASSERT_EQ(full.ok(), reused.ok())
        << "seed " << seed << ": " << (full.ok() ? reused : full).status().message();
    if (!full.ok()) {
      EXPECT_EQ(full.status().message(), reused.status().message()) << "seed " << seed;
      failed++;
      continue;
    }
    ASSERT_EQ(full->Encode(), reused->Encode()) << "seed " << seed;
    built++;
    // A builder cloned after its first layer, and both going on with the rest: each
    // gives the tree (neither's walks may change nodes the other shares).
    if (tables.size() >= 2) {
      TreeBuilder src;
      ASSERT_TRUE(src.AddLayer(tables[0]).ok());
      std::unique_ptr<TreeBuilder> copy = src.Clone();
      for (size_t i = 1; i < tables.size(); i++) {
        ASSERT_TRUE(src.AddLayer(tables[i]).ok());
        ASSERT_TRUE(copy->AddLayer(tables[i]).ok());
      }
      auto a = src.Finish(), b = copy->Finish();
      ASSERT_TRUE(a.ok() && b.ok()) << "seed " << seed;
      ASSERT_EQ(a->Encode(), full->Encode()) << "seed " << seed << ": the source";
      ASSERT_EQ(b->Encode(), full->Encode()) << "seed " << seed << ": the clone";
    }
    LowerTreeCache cache;  // cold, then the top layer on a clone of the lower state
    EncodedTable encoded;
    auto table = [&](size_t i) -> Result<const EntryTable*> { return encoded.Views(tables[i]); };
    for (int round = 0; round < 2; round++) {
      auto via = cache.Build(ids, table);
      ASSERT_TRUE(via.ok()) << "seed " << seed << ": " << via.status().message();
      ASSERT_EQ(via->Encode(), full->Encode()) << "seed " << seed << " round " << round;
    }
  }
  // Both outcomes are exercised (a generator that only made errors would prove little).
  EXPECT_GT(built, 1000u);
  EXPECT_GT(failed, 100u);
}

size_t HeapBytes() {
  struct mallinfo2 m = mallinfo2();
  return m.uordblks + m.hblkhd;
}

#if defined(__SANITIZE_THREAD__)
#define IMGFS_TEST_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define IMGFS_TEST_TSAN 1
#endif
#endif
#ifdef IMGFS_TEST_TSAN
constexpr size_t kFinishPeakLimit = size_t{64} << 20;  // 4 bytes of shadow per byte
#else
constexpr size_t kFinishPeakLimit = size_t{16} << 20;
#endif

// How far the process's resident set rose above where it stood while `fn` ran: the
// high-water mark (VmHWM) is reset to the current RSS first (clear_refs 5).
size_t PeakRssGrowth(const std::function<void()>& fn) {
  auto status_kb = [](const char* field) {
    FILE* f = std::fopen("/proc/self/status", "r");
    EXPECT_NE(f, nullptr);
    if (!f) return size_t{0};
    char line[256];
    size_t kb = 0;
    while (std::fgets(line, sizeof line, f)) {
      if (std::strncmp(line, field, std::strlen(field)) == 0)
        kb = std::strtoull(line + std::strlen(field), nullptr, 10);
    }
    std::fclose(f);
    return kb;
  };
  FILE* c = std::fopen("/proc/self/clear_refs", "w");
  EXPECT_NE(c, nullptr) << "cannot reset the RSS high-water mark";
  if (c) {
    std::fputs("5", c);
    std::fclose(c);
  }
  size_t before = status_kb("VmRSS:");
  fn();
  size_t peak = status_kb("VmHWM:");
  return peak > before ? (peak - before) << 10 : 0;
}

// A layer listed again and again (a manifest may list one layer thousands of times),
// or names whited out and made again: the builder's arena (released only with the
// builder) does not keep what was replaced. A directory listed again takes its new
// attributes in place; a replaced or erased non-directory the builder made is freed
// into the arena (Builder::Drop). Measured when written, builder heap after the layers:
// | shape                                   | arena, no reuse | before the arena | now    |
// | one dir, 64 KiB xattr, 1,000 times      | 82 MB           | 0.1 MB           | 0.1 MB |
// | 2,000 dirs, 4 xattrs each, 1,000 times  | 623 MB          | 1.8 MB           | 2.3 MB |
// | 200 dirs + 2,000 files, 1,000 times     | 623 MB          | 413 MB           | 1.0 MB |
// | one file, 64 KiB xattr, 1,000 times     | 88 MB           | 63 MB            | 0.1 MB |
// | 10,000 files / their whiteouts, 100 ×   | 185 MB          | 103 MB           | 3.4 MB |
// | 2,000 files in d / `.wh.d`, 1,000 ×     |                 | 465 MB           | 1.1 MB |
// | 2,000 files in d / a file d, 1,000 ×    |                 | 465 MB           | 1.1 MB |
// (mallinfo2 reads 0 under a sanitizer: no check there.)
TEST(MergedTree, RelistedLayersDoNotGrowTheBuilder) {
  auto entry = [](std::string path, EntryType type, int xattrs, size_t value_size) {
    LayerEntry e;
    e.path = std::move(path);
    e.type = type;
    e.mode = 0755;
    for (int i = 0; i < xattrs; i++) {
      e.xattrs.push_back({"security.selinux-" + std::to_string(i), std::string(value_size, 'v')});
    }
    return e;
  };
  struct Shape {
    const char* what;
    std::vector<std::vector<LayerEntry>> layers;  // applied in turn, `times` layers in all
    int times;
    uint32_t nodes;  // of the tree: node 0, the root, the rest
  };
  std::vector<Shape> shapes(7);
  shapes[0] = {
      "a directory with a 64 KiB xattr", {{entry("d", EntryType::kDir, 1, 64 << 10)}}, 1000, 3};
  shapes[1] = {"2,000 directories with 4 xattrs each", {{}}, 300, 2002};
  for (int d = 0; d < 2000; d++) {
    shapes[1].layers[0].push_back(entry("dir-" + std::to_string(d), EntryType::kDir, 4, 40));
  }
  shapes[2] = {"200 directories of 10 files", {{}}, 300, 2 + 2 + 200 + 2000};
  for (int d = 0; d < 200; d++) {
    std::string dir = "usr/share/directory-" + std::to_string(d);
    shapes[2].layers[0].push_back(entry(dir, EntryType::kDir, 1, 30));
    for (int f = 0; f < 10; f++) {
      shapes[2].layers[0].push_back(
          entry(dir + "/file-" + std::to_string(f), EntryType::kFile, 0, 0));
    }
  }
  shapes[3] = {
      "a file with a 64 KiB xattr", {{entry("f", EntryType::kFile, 1, 64 << 10)}}, 1000, 3};
  shapes[4] = {"2,000 files, then their whiteouts", {{}, {}}, 100, 3};
  for (int f = 0; f < 2000; f++) {
    std::string name = "file-with-a-rather-long-name-" + std::to_string(f);
    shapes[4].layers[0].push_back(entry("d/" + name, EntryType::kFile, 0, 0));
    shapes[4].layers[1].push_back(entry("d/.wh." + name, EntryType::kFile, 0, 0));
  }
  // A directory of the builder's leaves the tree: what it holds goes too.
  shapes[5] = {"2,000 files in d, then a whiteout of d",
               {{}, {entry(".wh.d", EntryType::kFile, 0, 0)}},
               300,
               2};
  shapes[6] = {
      "2,000 files in d, then a file d", {{}, {entry("d", EntryType::kFile, 0, 0)}}, 300, 3};
  for (int s : {5, 6}) shapes[s].layers[0] = shapes[4].layers[0];
  for (const Shape& shape : shapes) {
    size_t before = HeapBytes();
    TreeBuilder b;
    for (int i = 0; i < shape.times; i++) {
      ASSERT_TRUE(b.AddLayer(shape.layers[i % shape.layers.size()]).ok()) << shape.what;
    }
    size_t grown = HeapBytes() - before;
    EXPECT_LT(grown, size_t{8} << 20) << shape.what << ", " << shape.times << " layers";
    // Finish sizes its arrays from what the builder made; capped, since a relisted
    // layer makes its nodes again each time (600,000 for shape 2: 32 MB of node table,
    // ≈ 150 MB under TSan, which keeps 4 bytes of shadow per byte touched).
    Result<MergedTree> t = Status::Unavailable("not run");
    size_t finish_peak = PeakRssGrowth([&] { t = b.Finish(); });
    EXPECT_LT(finish_peak, kFinishPeakLimit) << shape.what << ": Finish";
    ASSERT_TRUE(t.ok()) << shape.what;
    EXPECT_EQ(t->node_count(), shape.nodes) << shape.what;
  }
}

// Mount threads build trees from one LowerTreeCache at once: each takes a cached state,
// clones it and applies its own layers (each builder allocates from its own arena only),
// while others record and evict states (capacity 2). Every tree must equal the direct
// build of its stack; run under TSan and ASan by the CI.
TEST(LowerTreeCacheTest, ConcurrentBuildsShareStates) {
  std::vector<std::vector<LayerEntry>> layers(6);
  for (int i = 0; i < 6; i++) {
    for (int f = 0; f < 30; f++) {
      LayerEntry e;
      e.path = "a-long-directory-name/sub" + std::to_string(f % 3) + "/file-with-long-name-" +
               std::to_string(f + i);
      e.type = EntryType::kFile;
      e.xattrs.push_back({"user.some-long-xattr-name", std::string(40, 'x')});
      layers[i].push_back(e);
    }
    if (i % 2) {  // erase what lower layers made (map nodes go back to the arena)
      LayerEntry w;
      w.path = "a-long-directory-name/sub1/.wh..wh..opq";
      layers[i].push_back(w);
    }
  }
  LowerTreeCache cache(2);
  std::atomic<int> mismatches{0}, errors{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 3; t++) {
    threads.emplace_back([&, t] {
      EncodedTable encoded;
      for (int it = 0; it < 150; it++) {
        std::vector<std::string> ids;
        std::vector<const std::vector<LayerEntry>*> stack;
        int n = 2 + (it + t) % 5;
        for (int i = 0; i < n; i++) {
          int l = (i + (it % 3 == 0 ? t : 0)) % 6;
          ids.push_back("L" + std::to_string(l));
          stack.push_back(&layers[l]);
        }
        auto via = cache.Build(
            ids, [&](size_t i) -> Result<const EntryTable*> { return encoded.Views(*stack[i]); });
        auto direct = MergedTree::Build(stack);
        if (!via.ok() || !direct.ok()) {
          errors++;
        } else if (via->Encode() != direct->Encode()) {
          mismatches++;
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(errors.load(), 0);
  EXPECT_EQ(mismatches.load(), 0);
}

// An image of thousands of layers (an 8 MiB manifest may list one small layer some
// 50,000 times): the cache's keys of the lower stacks cost memory linear in the layer
// count, not one copy of the id chain per prefix (65 * 4,000^2 / 2 bytes = 520 MB here).
// mallinfo2 counts glibc's heap (HeapBytes: small blocks and mmapped ones, where a
// builder's larger arena blocks go); under a sanitizer's allocator it reads 0 (no check).
TEST(LowerTreeCacheTest, ThousandsOfLayersKeepKeyMemoryLinear) {
  TarBuilder l;
  l.File("etc/f", "x");
  std::string tar = l.Build();
  StringSource src(tar);
  auto idx = IndexTarStream(&src);
  ASSERT_TRUE(idx.ok());
  const std::vector<LayerEntry> table = idx->entries;
  constexpr size_t kLayers = 4000;
  std::vector<std::string> ids(kLayers, std::string(64, 'a'));  // the same layer each time
  LowerTreeCache cache;
  size_t before = HeapBytes(), peak = before, asked = 0;
  EncodedTable encoded;
  auto fn = [&](size_t) -> Result<const EntryTable*> {
    peak = std::max(peak, HeapBytes());
    asked++;
    return encoded.Views(table);
  };
  auto root = cache.BuildRoot(ids, fn);
  ASSERT_TRUE(root.ok()) << root.status().message();
  EXPECT_EQ(asked, kLayers);
  EXPECT_LT(peak - before, size_t{64} << 20) << "heap grew by " << (peak - before);
  asked = 0;
  auto again = cache.BuildRoot(ids, fn);  // on the cached state after 3,999 layers
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(asked, 1u);
  EXPECT_EQ(EncodeTreeRoot(*again), EncodeTreeRoot(*root));
  // A shorter image on the same layers finds no state for its lower stack and builds
  // all of its layers.
  ids.resize(10);
  asked = 0;
  ASSERT_TRUE(cache.BuildRoot(ids, fn).ok());
  EXPECT_EQ(asked, 10u);
}

}  // namespace
}  // namespace imgfs
