// The merged tree of a one-layer image built straight from its entry table (FlatLayerTree,
// merged_tree.h), for the layers the merge rules leave as they are: most base images are
// one layer, and the first lookup inside an image waits for its tree. The general merge
// (TreeBuilder) makes a node, a map node and often a name per entry and then flattens
// them; this lays out the flat tree from the table with a few arrays. The result is the
// same tree byte for byte (flat_tree_test checks it on seeded random layers); a layer
// that any rule but the plainest would change is declined, and the caller merges it.
#include <sys/stat.h>
#include <sys/sysmacros.h>

#include <algorithm>
#include <cstring>
#include <unordered_map>

#include "index/file_util.h"
#include "index/merged_tree.h"

namespace imgfs {

// Slots: 0 is the root, k + 1 is entry k. A layer is taken when (else nullopt):
//   - no entry is a whiteout, an opaque marker or aufs metadata (a ".wh." name);
//   - every entry's parent is a directory entry listed before it (no implicit directory,
//     no symlink or "." or ".." on the way, no non-directory as a parent);
//   - no path is listed twice (the root entry may be: its last listing gives the
//     root's attributes, as in the merge);
//   - every hard link names a non-directory listed before it, by a path whose parent is
//     a directory entry, and not itself or a path below it;
//   - owner ids fit 32 bits and the strings fit the flat tree's offsets.
// Everything else TreeBuilder does (rules 1 to 4 of merged_tree.h) then changes nothing,
// and Finish's numbering (breadth-first, children by name) is reproduced exactly.
std::optional<MergedTree> FlatLayerTree(const EntryTable& table) {
  const size_t n = table.size();
  if (n >= UINT32_MAX / 2) return std::nullopt;
  std::vector<uint32_t> parent(n + 1, 0);   // of each slot; the root's unused
  std::vector<uint32_t> target(n + 1, 0);   // hard links: the slot they name; else itself
  std::vector<bool> listed(n + 1, false);   // slots that are names in the tree
  std::vector<uint32_t> name_at(n + 1, 0);  // where the last component starts in the path
  std::unordered_map<std::string_view, uint32_t> dirs;  // directory path → slot
  dirs.reserve(n / 8 + 16);
  ptrdiff_t root_entry = -1;
  std::string_view last_dir;
  uint32_t last_parent = 0;
  bool have_last = false;
  std::vector<uint32_t> links;  // hard-link slots, in tar order
  for (size_t i = 0; i < n; i++) {
    const LayerEntryView& e = table[i];
    const uint32_t slot = static_cast<uint32_t>(i + 1);
    target[slot] = slot;
    if (e.uid > UINT32_MAX || e.gid > UINT32_MAX) return std::nullopt;
    if (e.path.empty()) {
      if (e.type != EntryType::kDir) return std::nullopt;
      root_entry = static_cast<ptrdiff_t>(i);  // listed again: the last one's attributes
      continue;
    }
    auto [dir, base] = SplitLast(e.path);
    name_at[slot] = static_cast<uint32_t>(e.path.size() - base.size());
    if (base.empty() || base == "." || base == ".." || base.rfind(".wh.", 0) == 0) {
      return std::nullopt;
    }
    if (!dir.empty()) {
      if (!have_last || dir != last_dir) {
        auto it = dirs.find(dir);
        if (it == dirs.end()) return std::nullopt;
        last_dir = dir;
        last_parent = it->second;
        have_last = true;
      }
      parent[slot] = last_parent;
    }
    if (e.type == EntryType::kDir && !dirs.emplace(e.path, slot).second) return std::nullopt;
    if (e.type == EntryType::kHardlink) {
      if (e.link == e.path ||
          (e.link.size() > e.path.size() && e.link.compare(0, e.path.size(), e.path) == 0 &&
           e.link[e.path.size()] == '/')) {
        return std::nullopt;
      }
      links.push_back(slot);
    }
    listed[slot] = true;
  }

  // Children by parent (a counting sort, stable: tar order within a directory), then by
  // name within each directory.
  std::vector<uint32_t> begin(n + 2, 0);
  for (uint32_t s = 1; s <= n; s++) {
    if (listed[s]) begin[parent[s] + 1]++;
  }
  for (size_t s = 1; s < begin.size(); s++) begin[s] += begin[s - 1];
  std::vector<uint32_t> kids(begin[n + 1]);
  {
    std::vector<uint32_t> at(begin.begin(), begin.end() - 1);
    for (uint32_t s = 1; s <= n; s++) {
      if (listed[s]) kids[at[parent[s]]++] = s;
    }
  }
  auto name = [&table, &name_at](uint32_t s) { return table[s - 1].path.substr(name_at[s]); };
  auto by_name = [&name](uint32_t a, uint32_t b) { return name(a) < name(b); };
  for (size_t d = 0; d <= n; d++) {
    auto b = kids.begin() + begin[d], e = kids.begin() + begin[d + 1];
    if (e - b < 2) continue;
    if (!std::is_sorted(b, e, by_name)) std::sort(b, e, by_name);
    for (auto it = b + 1; it != e; ++it) {
      if (name(*(it - 1)) == name(*it)) return std::nullopt;  // a path listed twice
    }
  }

  // Hard links, in tar order (a link to a link names the first one's target).
  for (uint32_t s : links) {
    auto [tdir, tbase] = SplitLast(table[s - 1].link);
    uint32_t p = 0;
    if (!tdir.empty()) {
      auto it = dirs.find(tdir);
      if (it == dirs.end()) return std::nullopt;
      p = it->second;
    }
    auto b = kids.begin() + begin[p], e = kids.begin() + begin[p + 1];
    auto it = std::lower_bound(b, e, tbase,
                               [&name](uint32_t k, std::string_view v) { return name(k) < v; });
    if (it == e || name(*it) != tbase || *it >= s) return std::nullopt;  // missing then
    if (table[*it - 1].type == EntryType::kDir) return std::nullopt;
    target[s] = target[*it];
  }

  // Finish's layout: nodes numbered breadth-first from the root, children by name; per
  // node its link target, its xattrs, then (directories) its children's names.
  MergedTree t;
  size_t text = 0;
  for (size_t i = 0; i < n; i++) text += table[i].path.size() + table[i].link.size();
  t.nodes_.reserve(n + 2);
  t.nodes_.resize(2);
  t.dirents_.reserve(kids.size());
  t.strings_.reserve(text);
  std::vector<uint32_t> order{0, 0};      // BFS position → slot (root: slot 0)
  std::vector<uint32_t> id_of(n + 1, 0);  // slot → node number
  id_of[0] = MergedTree::kRoot;
  for (uint32_t i = 1; i < order.size(); i++) {
    const uint32_t slot = order[i];
    TreeNode& tn = t.nodes_[i];
    const LayerEntryView* e = nullptr;
    if (slot != 0) {
      e = &table[slot - 1];
    } else if (root_entry >= 0) {
      e = &table[static_cast<size_t>(root_entry)];
    }
    const bool is_dir = slot == 0 || e->type == EntryType::kDir;
    if (!e) {
      tn.mode = S_IFDIR | 0755;
    } else {
      tn.mode = TreeMode(e->type, e->mode);
      tn.uid = static_cast<uint32_t>(e->uid);
      tn.gid = static_cast<uint32_t>(e->gid);
      tn.mtime_sec = e->mtime_sec;
      tn.mtime_nsec = e->mtime_nsec;
      if (!is_dir) {
        tn.size = e->type == EntryType::kFile      ? e->size
                  : e->type == EntryType::kSymlink ? e->link.size()
                                                   : 0;
        tn.data_offset = e->data_offset;
        tn.rdev = makedev(e->dev_major, e->dev_minor);
      }
    }
    std::string_view link = e && e->type == EntryType::kSymlink ? e->link : std::string_view();
    tn.link_len = static_cast<uint32_t>(link.size());
    tn.link_off = t.Intern(link);
    tn.xattr_begin = static_cast<uint32_t>(t.xattrs_.size());
    if (e) {
      tn.xattr_count = e->xattr_count;
      const XattrView* x = table.XattrsBegin(*e);
      for (uint32_t k = 0; k < e->xattr_count; k++) t.AddXattr(x[k].name, x[k].value);
    }
    if (i == MergedTree::kRoot) tn.parent = MergedTree::kRoot;
    if (!is_dir) continue;
    uint32_t first = static_cast<uint32_t>(t.dirents_.size());
    uint32_t subdirs = 0;
    for (uint32_t k = begin[slot]; k < begin[slot + 1]; k++) {
      const uint32_t child = kids[k];
      const uint32_t node_slot = target[child];
      if (id_of[node_slot] == 0) {
        id_of[node_slot] = static_cast<uint32_t>(order.size());
        order.push_back(node_slot);
        t.nodes_.emplace_back();
        t.nodes_.back().parent = i;
      }
      if (table[node_slot - 1].type == EntryType::kDir) subdirs++;
      t.AddDirent(name(child), id_of[node_slot]);
    }
    t.nodes_[i].child_begin = first;
    t.nodes_[i].child_count = static_cast<uint32_t>(t.dirents_.size()) - first;
    t.nodes_[i].nlink = 2 + subdirs;
  }
  if (t.strings_.size() > UINT32_MAX / 2) return std::nullopt;
  t.CountNames();
  return t;
}

}  // namespace imgfs
