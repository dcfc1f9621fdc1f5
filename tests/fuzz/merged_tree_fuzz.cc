// The merged-tree codec and merge (index/merged_tree.h). An even first byte: the rest
// is a stored tree for Decode. An odd one: the rest drives FuzzedDataProvider to make
// up to four layers of entries over a small name alphabet (whiteouts, opaque markers,
// "..", symlinks up and across, hard links) for Build. Properties: no crash; a tree
// that decodes is safe to walk from the root (every accessor in bounds, each directory
// reached once) and to Resolve in; a built tree encodes to bytes that decode; the
// lower-tree cache builds the same trees as Build, and so does a builder with the full
// parent walk that frees no node (TreeBuilder::SetWalkReuseForTest(false),
// SetReclaimForTest(false)); for one layer, Build (which lays the layer out flat when it
// can, FlatLayerTree) gives the general merge's tree or its error.
#include <fuzzer/FuzzedDataProvider.h>
#include <sys/stat.h>

#include <cstdint>
#include <deque>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "index/layer_entry.h"
#include "index/merged_tree.h"
#include "tests/fuzz/fuzz_check.h"

using namespace imgfs;

namespace {

void Walk(const MergedTree& t, std::string_view probe) {
  std::vector<bool> seen(t.node_count(), false);
  std::deque<uint32_t> dirs{MergedTree::kRoot};
  seen[MergedTree::kRoot] = true;
  while (!dirs.empty()) {
    uint32_t d = dirs.front();
    dirs.pop_front();
    const TreeDirent* c = t.ChildrenBegin(d);
    for (uint32_t i = 0; i < t.ChildCount(d); i++) {
      FUZZ_CHECK(t.Valid(c[i].node));
      std::string_view name = t.Name(c[i]);
      FUZZ_CHECK(!name.empty());
      (void)t.Lookup(d, name);
      uint32_t n = c[i].node;
      (void)t.LinkTarget(n);
      const TreeXattr* x = t.XattrsBegin(n);
      for (uint32_t k = 0; k < t.node(n).xattr_count; k++) {
        (void)t.XattrName(x[k]);
        (void)t.XattrValue(x[k]);
      }
      if (S_ISDIR(t.node(n).mode)) {
        FUZZ_CHECK(!seen[n]);  // no directory reachable twice: no cycle for ls -R
        seen[n] = true;
        dirs.push_back(n);
      }
    }
  }
  for (bool follow : {false, true}) {
    auto r = t.Resolve(probe, follow);
    if (r.ok() && *r != 0) FUZZ_CHECK(t.Valid(*r));
  }
}

constexpr const char* kNames[] = {
    "a", "b", "c", ".", "..", ".wh.a", ".wh.b", ".wh..wh..opq", ".wh..wh.plnk", "", "dir", "x y"};

std::string RandomPath(FuzzedDataProvider& p) {
  std::string s = p.ConsumeBool() ? "/" : "";
  int n = p.ConsumeIntegralInRange(1, 4);
  for (int i = 0; i < n; i++) {
    if (i) s += '/';
    s += kNames[p.ConsumeIntegralInRange<size_t>(0, std::size(kNames) - 1)];
  }
  return s;
}

// LowerTreeCache gives the trees Build gives: a stack, the same again (on the cached
// lower state), each shorter prefix, and stacks whose layer j is another one (a cached
// state of another chain of ids must not be taken).
void CheckLowerTreeCache(const std::vector<const std::vector<LayerEntry>*>& layers) {
  LowerTreeCache cache;
  std::string bytes;
  EntryTable view;
  auto same = [&](const std::vector<std::string>& ids,
                  const std::vector<const std::vector<LayerEntry>*>& tables) {
    auto direct = MergedTree::Build(tables);
    auto cached = cache.Build(ids, [&](size_t i) -> Result<const EntryTable*> {
      // As the store hands tables over: views of the encoded bytes.
      bytes = EncodeEntries(*tables[i]);
      FUZZ_CHECK(view.Decode(bytes).ok());
      return &view;
    });
    FUZZ_CHECK(direct.ok() == cached.ok());
    if (direct.ok() && cached.ok()) FUZZ_CHECK(direct->Encode() == cached->Encode());
  };
  size_t n = layers.size();
  std::vector<std::string> ids;
  for (size_t i = 0; i < n; i++) ids.push_back("L" + std::to_string(i));
  same(ids, layers);
  same(ids, layers);
  for (size_t k = n - 1; k >= 1; k--) {
    same({ids.begin(), ids.begin() + k}, {layers.begin(), layers.begin() + k});
  }
  for (size_t j = 0; j < n; j++) {
    std::vector<std::string> other_ids = ids;
    std::vector<const std::vector<LayerEntry>*> other = layers;
    other_ids[j] = "M" + std::to_string(j);  // as long as "L<j>"
    other[j] = layers[(j + 1) % n];
    same(other_ids, other);
  }
}

// One layer: `built` (MergedTree::Build, which lays the layer out flat when
// FlatLayerTree takes it) is the general merge's tree byte for byte, or its error.
void CheckFlatLayout(const std::vector<LayerEntry>& layer, const Result<MergedTree>& built) {
  EntryTable table;
  table.Assign(layer);
  TreeBuilder b;
  Status st = b.AddLayer(table);
  auto merged = st.ok() ? b.Finish() : Result<MergedTree>(st);
  FUZZ_CHECK(merged.ok() == built.ok());
  if (built.ok()) {
    FUZZ_CHECK(merged->Encode() == built->Encode());
  } else {
    FUZZ_CHECK(merged.status().message() == built.status().message());
  }
}

void BuildAndCheck(FuzzedDataProvider& p, bool with_cache) {
  std::vector<std::vector<LayerEntry>> layers(p.ConsumeIntegralInRange(1, 4));
  for (auto& layer : layers) {
    int n = p.ConsumeIntegralInRange(0, 24);
    for (int i = 0; i < n && p.remaining_bytes(); i++) {
      LayerEntry e;
      e.type = static_cast<EntryType>(p.ConsumeIntegralInRange(1, 7));
      auto path = NormalizeTarPath(RandomPath(p), e.type == EntryType::kDir);
      if (!path.ok()) continue;
      e.path = *path;
      e.mode = p.ConsumeIntegral<uint16_t>() & 07777;
      e.uid = p.ConsumeIntegral<uint32_t>();
      e.size = p.ConsumeIntegralInRange<uint64_t>(0, 1 << 20);
      e.mtime_sec = p.ConsumeIntegral<int64_t>();
      if (e.type == EntryType::kSymlink) {
        e.link = RandomPath(p);
      } else if (e.type == EntryType::kHardlink) {
        auto target = NormalizeTarPath(RandomPath(p), false);
        if (!target.ok()) continue;
        e.link = *target;
      }
      if (p.ConsumeBool()) e.xattrs.push_back({"user.x", p.ConsumeRandomLengthString(8)});
      layer.push_back(std::move(e));
    }
  }
  std::vector<const std::vector<LayerEntry>*> ptrs;
  for (auto& l : layers) ptrs.push_back(&l);
  auto tree = MergedTree::Build(ptrs);
  // The builder reuses each entry's parent walk when it can (Builder::WalkDown) and
  // frees the nodes it replaces (Builder::Drop): the full walk from the root for every
  // entry, keeping every node, must give the same tree or error.
  TreeBuilder::SetWalkReuseForTest(false);
  TreeBuilder::SetReclaimForTest(false);
  auto full = MergedTree::Build(ptrs);
  TreeBuilder::SetWalkReuseForTest(true);
  TreeBuilder::SetReclaimForTest(true);
  FUZZ_CHECK(full.ok() == tree.ok());
  if (tree.ok()) {
    FUZZ_CHECK(full->Encode() == tree->Encode());
  } else {
    FUZZ_CHECK(full.status().message() == tree.status().message());
  }
  if (layers.size() == 1) {
    CheckFlatLayout(layers[0], tree);
    // The same layer as image builders write layers, so that the flat layout is taken
    // more often: every parent listed before its entry, no whiteout, no path twice.
    std::vector<LayerEntry> listed;
    std::set<std::string> dirs, paths;
    for (const LayerEntry& e : layers[0]) {
      if (e.path.find(".wh.") != std::string::npos || paths.count(e.path)) continue;
      bool parents_ok = true;
      for (size_t at = e.path.find('/'); at != std::string::npos; at = e.path.find('/', at + 1)) {
        std::string dir = e.path.substr(0, at);
        if (paths.count(dir) && !dirs.count(dir)) parents_ok = false;  // a non-directory
      }
      if (!parents_ok) continue;
      paths.insert(e.path);
      if (e.type == EntryType::kDir) dirs.insert(e.path);
      for (size_t at = e.path.find('/'); at != std::string::npos; at = e.path.find('/', at + 1)) {
        std::string dir = e.path.substr(0, at);
        if (!dirs.insert(dir).second) continue;
        paths.insert(dir);
        LayerEntry d;
        d.path = dir;
        d.type = EntryType::kDir;
        d.mode = 0755;
        listed.push_back(std::move(d));
      }
      listed.push_back(e);
    }
    CheckFlatLayout(listed, MergedTree::Build({&listed}));
  }
  if (with_cache) CheckLowerTreeCache(ptrs);  // ~10 builds: half the inputs only
  if (!tree.ok()) return;
  auto decoded = MergedTree::Decode(tree->Encode());
  FUZZ_CHECK(decoded.ok());
  FUZZ_CHECK(decoded->node_count() == tree->node_count());
  Walk(*decoded, RandomPath(p));
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  if (data[0] % 2 == 1) {
    FuzzedDataProvider p(data + 1, size - 1);
    BuildAndCheck(p, (data[0] & 2) != 0);
    return 0;
  }
  std::string_view in(reinterpret_cast<const char*>(data) + 1, size - 1);
  auto t = MergedTree::Decode(in);
  if (!t.ok()) return 0;
  // The probe path: the stored strings are as good a source of names as any.
  Walk(*t, in.substr(in.size() > 64 ? in.size() - 64 : 0));
  return 0;
}
