// The flat merged tree (MergedTree: lookups, the stored form), the image root record,
// and the cache of merge states after shared lower layers (LowerTreeCache).
#include "index/merged_tree.h"

#include <sys/stat.h>

#include <algorithm>
#include <cstring>
#include <deque>
#include <mutex>

#include "index/codec.h"
#include "index/file_util.h"

namespace imgfs {
namespace {

constexpr uint32_t kTreeMagic = 0x54474d49;  // "IMGT"
constexpr uint32_t kTreeVersion = 1;
constexpr char kRootMagic[] = "IMGR";

}  // namespace

uint32_t TreeMode(EntryType type, uint32_t perm) {
  uint32_t fmt = 0;
  switch (type) {
    case EntryType::kFile:
    case EntryType::kHardlink:
      fmt = S_IFREG;
      break;
    case EntryType::kDir:
      fmt = S_IFDIR;
      break;
    case EntryType::kSymlink:
      return S_IFLNK | 0777;  // whatever the tar says: Linux symlinks are always 0777
    case EntryType::kChar:
      fmt = S_IFCHR;
      break;
    case EntryType::kBlock:
      fmt = S_IFBLK;
      break;
    case EntryType::kFifo:
      fmt = S_IFIFO;
      break;
  }
  return fmt | (perm & 07777);
}

Result<MergedTree> MergedTree::Build(const std::vector<const std::vector<LayerEntry>*>& layers) {
  if (layers.size() == 1) {
    EntryTable t;
    t.Assign(*layers[0]);
    if (auto flat = FlatLayerTree(t)) return std::move(*flat);
    TreeBuilder b;
    IMGFS_RETURN_IF_ERROR(b.AddLayer(t));
    return b.Finish();
  }
  TreeBuilder b;
  for (const auto* table : layers) IMGFS_RETURN_IF_ERROR(b.AddLayer(*table));
  return b.Finish();
}

uint32_t MergedTree::Intern(std::string_view s) {
  uint32_t off = static_cast<uint32_t>(strings_.size());
  strings_.append(s);
  return off;
}

void MergedTree::AddXattr(std::string_view name, std::string_view value) {
  TreeXattr x;
  x.name_len = static_cast<uint32_t>(name.size());
  x.name_off = Intern(name);
  x.value_len = static_cast<uint32_t>(value.size());
  x.value_off = Intern(value);
  xattrs_.push_back(x);
}

void MergedTree::AddDirent(std::string_view name, uint32_t node) {
  TreeDirent d;
  d.name_len = static_cast<uint32_t>(name.size());
  d.name_off = Intern(name);
  d.node = node;
  dirents_.push_back(d);
}

void MergedTree::CountNames() {
  for (TreeNode& n : nodes_) {
    if (!S_ISDIR(n.mode)) n.nlink = 0;
  }
  for (const TreeDirent& d : dirents_) {
    if (!S_ISDIR(nodes_[d.node].mode)) nodes_[d.node].nlink++;
  }
  nodes_[0] = TreeNode{};
}

uint32_t MergedTree::Lookup(uint32_t dir, std::string_view name) const {
  if (!Valid(dir) || !S_ISDIR(nodes_[dir].mode)) return 0;
  const TreeDirent* b = ChildrenBegin(dir);
  const TreeDirent* e = b + ChildCount(dir);
  auto it = std::lower_bound(
      b, e, name, [this](const TreeDirent& d, std::string_view n) { return Name(d) < n; });
  if (it != e && Name(*it) == name) return it->node;
  return 0;
}

Result<uint32_t> MergedTree::Resolve(std::string_view path, bool follow_last) const {
  std::deque<std::string> pending;
  auto push = [&pending](std::string_view p, bool front) {
    auto comps = SplitPath(p);
    pending.insert(front ? pending.begin() : pending.end(), comps.begin(), comps.end());
  };
  push(path, false);
  uint32_t cur = kRoot;
  int links = 0;
  while (!pending.empty()) {
    std::string c = std::move(pending.front());
    pending.pop_front();
    if (c == ".") continue;
    if (c == "..") {
      cur = nodes_[cur].parent;
      continue;
    }
    if (!S_ISDIR(nodes_[cur].mode)) return Status::InvalidArgument("not a directory");
    uint32_t n = Lookup(cur, c);
    if (n == 0) return uint32_t{0};
    if (S_ISLNK(nodes_[n].mode) && (follow_last || !pending.empty())) {
      if (++links > kMaxSymlinks)
        return Status::InvalidArgument("too many levels of symbolic links");
      std::string_view target = LinkTarget(n);
      if (!target.empty() && target[0] == '/') cur = kRoot;
      push(target, true);
      continue;
    }
    cur = n;
  }
  return cur;
}

size_t MergedTree::MemoryBytes() const {
  return nodes_.capacity() * sizeof(TreeNode) + dirents_.capacity() * sizeof(TreeDirent) +
         xattrs_.capacity() * sizeof(TreeXattr) + strings_.capacity();
}

std::string MergedTree::Encode() const {
  std::string out;
  auto put32 = [&out](uint32_t v) { out.append(reinterpret_cast<const char*>(&v), 4); };
  put32(kTreeMagic);
  put32(kTreeVersion);
  put32(static_cast<uint32_t>(nodes_.size()));
  put32(static_cast<uint32_t>(dirents_.size()));
  put32(static_cast<uint32_t>(xattrs_.size()));
  put32(static_cast<uint32_t>(strings_.size()));
  out.append(reinterpret_cast<const char*>(nodes_.data()), nodes_.size() * sizeof(TreeNode));
  out.append(reinterpret_cast<const char*>(dirents_.data()), dirents_.size() * sizeof(TreeDirent));
  out.append(reinterpret_cast<const char*>(xattrs_.data()), xattrs_.size() * sizeof(TreeXattr));
  out.append(strings_);
  return out;
}

Result<MergedTree> MergedTree::Decode(std::string_view data) {
  auto bad = [](const std::string& why) { return Status::Corruption("merged tree: " + why); };
  if (data.size() < 24) return bad("too short");
  uint32_t h[6];
  std::memcpy(h, data.data(), sizeof h);
  if (h[0] != kTreeMagic || h[1] != kTreeVersion) return bad("unknown format");
  uint64_t need = 24 + uint64_t{h[2]} * sizeof(TreeNode) + uint64_t{h[3]} * sizeof(TreeDirent) +
                  uint64_t{h[4]} * sizeof(TreeXattr) + h[5];
  if (need != data.size()) return bad("size does not match its header");
  if (h[2] < 2) return bad("no root");
  MergedTree t;
  const char* p = data.data() + 24;
  // (memcpy only non-empty sections: an empty vector's data() may be null.)
  auto copy_into = [&p](auto& vec, uint32_t count) {
    vec.resize(count);
    if (count) std::memcpy(vec.data(), p, count * sizeof(vec[0]));
    p += count * sizeof(vec[0]);
  };
  copy_into(t.nodes_, h[2]);
  copy_into(t.dirents_, h[3]);
  copy_into(t.xattrs_, h[4]);
  t.strings_.assign(p, h[5]);
  auto in_strings = [&t](uint32_t off, uint32_t len) {
    return uint64_t{off} + len <= t.strings_.size();
  };
  if (!S_ISDIR(t.nodes_[kRoot].mode)) return bad("root is not a directory");
  std::vector<uint32_t> dir_refs(t.nodes_.size(), 0);
  for (uint32_t i = 1; i < t.nodes_.size(); i++) {
    const TreeNode& n = t.nodes_[i];
    if (!in_strings(n.link_off, n.link_len)) return bad("link target out of range");
    if (uint64_t{n.xattr_begin} + n.xattr_count > t.xattrs_.size())
      return bad("xattrs out of range");
    if (uint64_t{n.child_begin} + n.child_count > t.dirents_.size())
      return bad("children out of range");
    if (!S_ISDIR(n.mode) && n.child_count) return bad("non-directory with children");
    if (n.parent == 0 || n.parent >= t.nodes_.size()) return bad("bad parent");
    for (uint32_t k = 0; k < n.child_count; k++) {
      const TreeDirent& d = t.dirents_[n.child_begin + k];
      if (!in_strings(d.name_off, d.name_len) || d.name_len == 0) return bad("name out of range");
      if (d.node <= kRoot || d.node >= t.nodes_.size()) return bad("dirent to a bad node");
      if (S_ISDIR(t.nodes_[d.node].mode)) {
        if (t.nodes_[d.node].parent != i || ++dir_refs[d.node] > 1) return bad("directory cycle");
      }
    }
  }
  for (const TreeXattr& x : t.xattrs_) {
    if (!in_strings(x.name_off, x.name_len) || !in_strings(x.value_off, x.value_len)) {
      return bad("xattr out of range");
    }
  }
  return t;
}

Result<MergedTree> LowerTreeCache::Build(const std::vector<std::string>& layer_ids,
                                         const TableFn& table) {
  if (layer_ids.size() == 1) {  // most base images: no merge to share or to do
    IMGFS_ASSIGN_OR_RETURN(const EntryTable* t, table(0));
    if (auto flat = FlatLayerTree(*t)) return std::move(*flat);
    // The merge, on the table already decoded (valid: `table` is not called again).
    IMGFS_ASSIGN_OR_RETURN(
        auto b, Apply(layer_ids, [t](size_t) -> Result<const EntryTable*> { return t; }));
    return b->Finish();
  }
  IMGFS_ASSIGN_OR_RETURN(auto b, Apply(layer_ids, table));
  return b->Finish();
}

Result<TreeRoot> LowerTreeCache::BuildRoot(const std::vector<std::string>& layer_ids,
                                           const TableFn& table) {
  IMGFS_ASSIGN_OR_RETURN(auto b, Apply(layer_ids, table));
  return b->FinishRoot();
}

Result<std::unique_ptr<TreeBuilder>> LowerTreeCache::Apply(
    const std::vector<std::string>& layer_ids, const TableFn& table) {
  size_t n = layer_ids.size();
  // The key of the lower stack of k layers, "id1/id2/…/idk/", is the first ends[k]
  // bytes of `all` (one string: a copy per prefix would be quadratic in the layer count,
  // gigabytes for an image of some thousands of layers).
  std::string all;
  std::vector<size_t> ends{0};
  for (const std::string& id : layer_ids) {
    all += id;
    all += '/';
    ends.push_back(all.size());
  }
  std::shared_ptr<const TreeBuilder> start;
  size_t have = 0;
  {
    std::lock_guard<std::mutex> l(mu_);
    // The cached state of the longest lower stack (at most n - 1 layers) of this image.
    auto best = states_.end();
    auto first = ends.begin() + 1, last = ends.begin() + std::max<size_t>(n, 1);  // 1..n-1
    for (auto it = states_.begin(); it != states_.end(); ++it) {
      const std::string& key = it->first;
      auto k = std::lower_bound(first, last, key.size());
      if (k == last || *k != key.size() || all.compare(0, key.size(), key) != 0) continue;
      size_t layers = static_cast<size_t>(k - ends.begin());
      if (layers > have) {
        have = layers;
        best = it;
      }
    }
    if (best != states_.end()) {
      start = best->second;
      states_.splice(states_.begin(), states_, best);
    }
  }
  std::unique_ptr<TreeBuilder> b = start ? start->Clone() : std::make_unique<TreeBuilder>();
  for (size_t i = have; i < n; i++) {
    if (i + 1 == n && n >= 2 && have < n - 1) {
      // Record the state after the lower layers (all but the top) for the next image:
      // sealed (never changed again) and shared; this image goes on on a clone of it.
      b->Seal();
      auto lower = std::shared_ptr<const TreeBuilder>(std::move(b));
      b = lower->Clone();
      std::lock_guard<std::mutex> l(mu_);
      states_.emplace_front(all.substr(0, ends[n - 1]), std::move(lower));
      while (states_.size() > capacity_) states_.pop_back();
    }
    IMGFS_ASSIGN_OR_RETURN(const EntryTable* t, table(i));
    IMGFS_RETURN_IF_ERROR(b->AddLayer(*t));
  }
  return b;
}

TreeRoot MergedTree::Root() const {
  TreeRoot r;
  const TreeNode& n = nodes_[kRoot];
  r.node.mode = n.mode;
  r.node.nlink = n.nlink;
  r.node.uid = n.uid;
  r.node.gid = n.gid;
  r.node.size = n.size;
  r.node.mtime_sec = n.mtime_sec;
  r.node.mtime_nsec = n.mtime_nsec;
  r.node.parent = kRoot;
  for (uint32_t i = 0; i < n.xattr_count; i++) {
    const TreeXattr& x = xattrs_[n.xattr_begin + i];
    r.xattrs.emplace_back(XattrName(x), XattrValue(x));
  }
  return r;
}

std::string EncodeTreeRoot(const TreeRoot& r) {
  Encoder e;
  e.PutRaw(kRootMagic, 4);
  e.PutVarint(r.node.mode);
  e.PutVarint(r.node.nlink);
  e.PutVarint(r.node.uid);
  e.PutVarint(r.node.gid);
  e.PutVarint(r.node.size);
  e.PutSigned(r.node.mtime_sec);
  e.PutVarint(r.node.mtime_nsec);
  e.PutVarint(r.xattrs.size());
  for (const auto& [name, value] : r.xattrs) {
    e.PutBytes(name);
    e.PutBytes(value);
  }
  return e.Take();
}

bool IsTreeRootRecord(std::string_view data) {
  return data.substr(0, 4) == std::string_view(kRootMagic, 4);
}

Result<TreeRoot> DecodeTreeRoot(std::string_view data) {
  if (!IsTreeRootRecord(data)) return Status::Corruption("tree root record: unknown format");
  Decoder d(data.substr(4));
  TreeRoot r;
  uint64_t v[5];
  for (uint64_t& x : v) x = d.Varint();
  int64_t sec = d.Signed();
  uint64_t nsec = d.Varint();
  uint64_t nx = d.Varint();
  if (!d.ok() || v[0] > UINT32_MAX || v[1] > UINT32_MAX || v[2] > UINT32_MAX || v[3] > UINT32_MAX ||
      nsec >= 1000000000 || nx > data.size() || !S_ISDIR(v[0])) {
    return Status::Corruption("tree root record: bad attributes");
  }
  r.node.mode = static_cast<uint32_t>(v[0]);
  r.node.nlink = static_cast<uint32_t>(v[1]);
  r.node.uid = static_cast<uint32_t>(v[2]);
  r.node.gid = static_cast<uint32_t>(v[3]);
  r.node.size = v[4];
  r.node.mtime_sec = sec;
  r.node.mtime_nsec = static_cast<uint32_t>(nsec);
  r.node.parent = MergedTree::kRoot;
  for (uint64_t i = 0; i < nx; i++) {
    std::string_view name = d.Bytes(), value = d.Bytes();
    if (!d.ok()) break;
    r.xattrs.emplace_back(name, value);
  }
  if (!d.done()) return Status::Corruption("tree root record: truncated");
  return r;
}

}  // namespace imgfs
