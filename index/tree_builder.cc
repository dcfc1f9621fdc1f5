// The merge of layers into one tree (TreeBuilder, the rules in merged_tree.h) and its
// flattening into a MergedTree (TreeBuilder::Finish).
#include <sys/stat.h>
#include <sys/sysmacros.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <deque>
#include <map>
#include <memory>
#include <memory_resource>
#include <unordered_map>
#include <unordered_set>

// ASAN_(UN)POISON_MEMORY_REGION: no-ops outside ASan (gcc and clang ship the header).
#include <sanitizer/asan_interface.h>

#include "index/file_util.h"
#include "index/merged_tree.h"

namespace imgfs {
namespace {

constexpr char kWhiteoutPrefix[] = ".wh.";
constexpr char kOpaqueMarker[] = ".wh..wh..opq";
constexpr char kMetaPrefix[] = ".wh..wh.";

}  // namespace

// The mutable tree used while merging. Nodes live in an arena (Builder::Arena): each
// node, and every map node, name, link target and xattr it holds, is allocated from
// its builder's monotonic buffer and released all at once with the arena, never one by
// one (no destructor runs). A hard link is a second map entry pointing to the same
// MNode. Removing a subtree unlinks it.
//
// Copy on write (issue 12): a clone shares every node of the state it was cloned from
// (Builder::CopyFrom is O(1)); a builder changes only the nodes it owns (owner ==
// its epoch) and copies a shared directory, with the path to it from the root, before
// changing it (Builder::Own). Non-directories are never changed once made, so hard
// links (one node under several names) stay shared; directories have one parent, so
// the path copy reaches every name of a directory. A state shared by clones is never
// changed again: CopyFrom gives the source a new epoch too.
struct MNode {
  using Alloc = std::pmr::polymorphic_allocator<std::byte>;
  explicit MNode(Alloc a) : link(a), xattrs(a), children(a) {}
  MNode(const MNode&) = delete;
  // A copy into another arena (Builder::Own): every string and map node goes there.
  MNode(const MNode& o, Alloc a)
      : type(o.type),
        perm(o.perm),
        uid(o.uid),
        gid(o.gid),
        size(o.size),
        mtime_sec(o.mtime_sec),
        mtime_nsec(o.mtime_nsec),
        dev_major(o.dev_major),
        dev_minor(o.dev_minor),
        layer(o.layer),
        born(o.born),
        data_offset(o.data_offset),
        link(o.link, a),
        xattrs(o.xattrs, a),
        children(o.children, a),
        owner(o.owner),
        sealed(o.sealed),
        sealed_wide_id(o.sealed_wide_id),
        sealed_strings(o.sealed_strings) {}

  EntryType type = EntryType::kDir;
  uint32_t perm = 0755;
  uint64_t uid = 0, gid = 0, size = 0;
  int64_t mtime_sec = 0;
  uint32_t mtime_nsec = 0;
  uint32_t dev_major = 0, dev_minor = 0;
  uint32_t layer = 0;  // of the attributes and content
  uint32_t born = 0;   // the layer that made this node (symlinks: whose paths follow it)
  uint64_t data_offset = 0;
  std::pmr::string link;
  std::pmr::vector<std::pair<std::pmr::string, std::pmr::string>> xattrs;  // (name, value)
  using Children = std::pmr::map<std::pmr::string, MNode*, std::less<>>;
  Children children;
  uint64_t owner = 0;  // the epoch of the builder that may change it in place
  // Set by Builder::Seal on a state that will be shared (never changed again): the
  // subtree's Finish checks (FinishRoot does not walk it again).
  bool sealed = false;
  bool sealed_wide_id = false;  // an owner id larger than 32 bits in the subtree
  uint64_t sealed_strings = 0;  // bytes of names, link targets, xattrs below
  // A non-directory owned by its builder: how many names it has in that builder's tree
  // (a hard link adds one). Builder::Drop frees it at 0.
  uint32_t names = 0;
};

namespace {
std::atomic<uint64_t> g_epoch{1};
std::atomic<bool> g_walk_reuse{true};  // SetWalkReuseForTest
std::atomic<bool> g_reclaim{true};     // SetReclaimForTest
}  // namespace

// A builder's memory (see MNode): a monotonic buffer for blocks up to 256 bytes, with
// those given back (nodes Builder::Drop frees, the map nodes and names a whiteout
// erases) kept on free lists by size and reused, so that layers that replace, erase
// and re-add names do not grow it; larger blocks come from a pool resource that frees
// them when given back.
// Single-threaded: only its builder allocates from it. Under ASan a block on a free list
// is poisoned, so a use after Builder::Drop is reported.
class ArenaResource final : public std::pmr::memory_resource {
 private:
  static constexpr size_t kQuantum = 16, kClasses = 16;  // blocks up to 256 bytes
  struct Free {
    Free* next;
  };
  static size_t Class(size_t bytes) { return bytes == 0 ? 0 : (bytes - 1) / kQuantum; }
  static bool Small(size_t bytes, size_t align) {
    return bytes <= kQuantum * kClasses && align <= kQuantum;
  }
  void* do_allocate(size_t bytes, size_t align) override {
    if (!Small(bytes, align)) return big_.allocate(bytes, align);
    size_t c = Class(bytes);
    if (Free* f = free_[c]) {
      ASAN_UNPOISON_MEMORY_REGION(f, (c + 1) * kQuantum);
      free_[c] = f->next;
      return f;
    }
    return buf_.allocate((c + 1) * kQuantum, kQuantum);
  }
  void do_deallocate(void* p, size_t bytes, size_t align) override {
    if (!Small(bytes, align)) return big_.deallocate(p, bytes, align);
    size_t c = Class(bytes);
    free_[c] = new (p) Free{free_[c]};
    ASAN_POISON_MEMORY_REGION(p, (c + 1) * kQuantum);
  }
  bool do_is_equal(const std::pmr::memory_resource& o) const noexcept override {
    return this == &o;
  }
  // A small first block: a clone that changes a few directories (an image's own top
  // layer) takes little, and cached states keep their ancestors' arenas alive.
  std::pmr::monotonic_buffer_resource buf_{4 << 10};
  Free* free_[kClasses] = {};
  // Larger blocks (long link targets, xattr values): each its own, freed when given
  // back, all of them with the arena.
  std::pmr::unsynchronized_pool_resource big_;
};

class Builder {
 public:
  Builder() : arena_(std::make_shared<Arena>()) { root_ = New(); }
  Builder(const Builder&) = delete;
  Builder& operator=(const Builder&) = delete;

  Status AddLayer(uint32_t layer, const EntryTable& entries) {
    // A clone made since the last layer shares the last walk's nodes (CopyFrom gave this
    // builder a new epoch but cannot clear its walk): never reuse a walk across layers.
    ForgetWalk();
    layer_ = layer;
    written_.clear();
    descended_.clear();
    // What the layer writes matters only to its own later whiteouts: track it up to
    // the last one (most layers have none).
    size_t last_whiteout = 0;
    for (size_t i = 0; i < entries.size(); i++) {
      if (SplitLast(entries[i].path).second.rfind(kWhiteoutPrefix, 0) == 0) last_whiteout = i + 1;
    }
    // One pass, in tar order (see merged_tree.h, rules 1 and 2).
    for (size_t i = 0; i < entries.size(); i++) {
      const LayerEntryView& e = entries[i];
      track_ = i < last_whiteout;
      auto [dir, base] = SplitLast(e.path);
      if (InMetaDir(dir)) continue;
      Status st;
      if (base.rfind(kWhiteoutPrefix, 0) == 0) {
        if (base.rfind(kMetaPrefix, 0) == 0 && base != kOpaqueMarker) continue;  // aufs
        st = AddWhiteout(dir, base);
      } else {
        st = AddEntry(layer, e, entries.XattrsBegin(e), dir, base);
      }
      if (!st.ok()) return st.WithContext("entry \"" + std::string(e.path) + "\"");
    }
    return Status::Ok();
  }

  MNode* root() { return root_; }
  const MNode* root() const { return root_; }
  // Upper bounds of what Finish lays out: the nodes made by this builder and the states
  // it shares nodes with (any number since replaced or dropped: not the tree's size),
  // and the bytes of the names, link targets and xattrs they were given.
  size_t made_nodes() const { return made_nodes_; }
  size_t made_text() const { return made_text_; }

  // A copy of `o`'s state that shares its nodes (copy on write, see MNode). `o` is
  // given a new epoch: from now on it copies what it would change too.
  void CopyFrom(const Builder& o) {
    bases_ = o.bases_;
    bases_.push_back(o.arena_);
    arena_ = std::make_shared<Arena>();
    root_ = o.root_;
    layer_ = o.layer_;
    made_nodes_ = o.made_nodes_;
    made_text_ = o.made_text_;
    epoch_.store(g_epoch.fetch_add(1));
    o.epoch_.store(g_epoch.fetch_add(1));
    ForgetWalk();
  }

  // Records, on every directory, its subtree's checks, and freezes the state (a new
  // epoch): FinishRoot of a clone then walks only what the clone changed.
  void Seal() {
    ForgetWalk();
    epoch_.store(g_epoch.fetch_add(1));
    // Post-order without recursion: children before their parent.
    std::vector<std::pair<MNode*, bool>> work{{root_, false}};
    while (!work.empty()) {
      auto [d, done] = work.back();
      work.pop_back();
      if (d->sealed) continue;
      if (!done) {
        work.push_back({d, true});
        for (const auto& [name, child] : d->children)
          if (child->type == EntryType::kDir && !child->sealed) work.push_back({child, false});
        continue;
      }
      uint64_t strings = 0;
      bool wide = false;
      for (const auto& [name, child] : d->children) {
        strings += name.size() + child->link.size();
        for (const auto& [xn, xv] : child->xattrs) strings += xn.size() + xv.size();
        wide = wide || child->uid > UINT32_MAX || child->gid > UINT32_MAX;
        if (child->type == EntryType::kDir) {
          strings += child->sealed_strings;
          wide = wide || child->sealed_wide_id;
        }
      }
      d->sealed_strings = strings;
      d->sealed_wide_id = wide;
      d->sealed = true;
    }
  }

 private:
  MNode* New() {
    MNode* n = new (arena_->Take()) MNode(arena_->alloc());
    made_nodes_++;
    n->born = layer_;
    n->layer = layer_;
    n->owner = epoch_.load();
    return n;
  }

  // `n` itself when this builder owns it, else a copy it owns (children still shared).
  // The caller puts the copy where `n` was (its parent is owned already).
  MNode* Own(MNode* n) {
    uint64_t mine = epoch_.load();
    if (n->owner == mine) return n;
    MNode* c = new (arena_->Take()) MNode(*n, arena_->alloc());
    made_nodes_++;
    c->owner = mine;
    c->sealed = false;
    return c;
  }
  MNode* OwnRoot() { return root_ = Own(root_); }

  // A name of `n` was added to (Named) or removed from (Drop) this builder's tree. A
  // non-directory this builder owns is named only in its tree (it was made after the
  // last clone or seal), so when its last name goes it is freed into the arena; a
  // directory it owns that leaves the tree (replaced, whited out) takes a name from
  // everything below it that the builder owns, and gives back its map. So a layer
  // listed again and again, or names whited out and made again, do not pile up nodes.
  // Directory nodes themselves are never freed (a directory's address is a key of
  // written_ and descended_, and the walk keeps a chain of them): one empty node each.
  void Named(MNode* n) {
    if (n->type != EntryType::kDir && n->owner == epoch_.load()) n->names++;
  }
  void Drop(MNode* n) {
    uint64_t mine = epoch_.load();
    if (n->owner != mine) return;  // shared with other states: not this builder's
    if (!g_reclaim.load(std::memory_order_relaxed)) return;
    if (n->type != EntryType::kDir) {
      Unname(n);
      return;
    }
    // A directory of this builder's holds only nodes made after it was (owned) or ones
    // it shared when copied (not owned); an owned child directory has no other parent.
    std::vector<MNode*> work{n};
    while (!work.empty()) {
      MNode* d = work.back();
      work.pop_back();
      for (const auto& [name, child] : d->children) {
        if (child->owner != mine) continue;
        if (child->type == EntryType::kDir) {
          work.push_back(child);
        } else {
          Unname(child);
        }
      }
      d->children.clear();
    }
  }
  void Unname(MNode* n) {
    if (--n->names > 0) return;
    n->~MNode();
    arena_->res.deallocate(n, sizeof(MNode), alignof(MNode));
  }

  // aufs metadata directories (".wh..wh.plnk", ".wh..wh.orph") and their content.
  static bool InMetaDir(std::string_view dir) {
    if (dir.find(kMetaPrefix) == std::string_view::npos) return false;
    size_t i = 0;
    while (i < dir.size()) {
      if (dir.substr(i).rfind(kMetaPrefix, 0) == 0) return true;
      size_t j = dir.find('/', i);
      if (j == std::string_view::npos) break;
      i = j + 1;
    }
    return false;
  }

  // Walks `path` from the root. With `create` (a path of the layer being applied,
  // rule 3): symlinks made by this layer are followed inside the image; a missing
  // component, or a non-directory from a lower layer (a symlink included), becomes an
  // implicit directory of this layer. Without `create` (a hard-link target, rule 4):
  // every symlink is followed and a missing or non-directory component gives nullptr.
  // With `nondir_ok`, a non-directory of this layer in the way gives nullptr, not an
  // error (a whiteout below it has nothing to hide: the non-directory hides it all).
  Result<MNode*> ResolveDir(std::string_view path, bool create, bool nondir_ok = false) {
    if (create && !track_ && g_walk_reuse.load(std::memory_order_relaxed)) {
      if (MNode* d = WalkDown(path)) return d;
    }
    if (create) ForgetWalk();
    // With create, every directory on the path is owned (copied when shared): the
    // caller changes the last one.
    std::vector<MNode*> stack{create ? OwnRoot() : root_};
    std::deque<std::string> pending;
    SplitInto(path, &pending, false);
    int links = 0;
    while (!pending.empty()) {
      std::string c = std::move(pending.front());
      pending.pop_front();
      if (c.empty() || c == ".") continue;
      if (c == "..") {
        if (stack.size() > 1) stack.pop_back();
        continue;
      }
      MNode* cur = stack.back();
      auto it = cur->children.find(std::string_view(c));
      MNode* child = it == cur->children.end() ? nullptr : it->second;
      if (child && child->type == EntryType::kSymlink && (!create || child->born == layer_)) {
        if (++links > MergedTree::kMaxSymlinks)
          return Status::InvalidArgument("too many levels of symbolic links");
        if (!child->link.empty() && child->link[0] == '/') stack.resize(1);
        SplitInto(child->link, &pending, true);
        continue;
      }
      if (child && child->type == EntryType::kDir) {
        if (create && track_) descended_.emplace(cur, c);
        if (create) child = it->second = Own(child);
        stack.push_back(child);
        continue;
      }
      if (!create) return static_cast<MNode*>(nullptr);
      if (child && child->born == layer_) {
        if (nondir_ok) return static_cast<MNode*>(nullptr);
        return Status::InvalidArgument("parent \"" + c + "\" is not a directory");
      }
      MNode* d = New();
      PutChild(cur, c, d);
      if (track_) written_.emplace(cur, c);
      stack.push_back(d);
    }
    return stack.back();
  }

  // ResolveDir(path, create) for a path that goes straight down (no symlink of this
  // layer on it, no "." or ".."), starting from the longest prefix it shares with the
  // last such walk: in tar order the next entry is most often in the same directory or
  // one below. Returns nullptr, having changed nothing ResolveDir would not, when the
  // path needs the full walk (a symlink, a "." or "..", a non-directory of this layer).
  // The last walk's chain stays valid because between two walks the tree changes only
  // below its last directory (an entry adds or replaces a child there) or through what
  // calls ForgetWalk (a full walk, which every whiteout takes, the root entry, the
  // start of a layer; a clone or seal, which give new epochs, come between layers).
  MNode* WalkDown(std::string_view path) {
    size_t keep = 0;  // components shared with the last walk
    size_t pos = 0;   // where the rest of `path` starts
    if (!walk_nodes_.empty()) {
      while (keep < walk_ends_.size()) {
        size_t end = walk_ends_[keep];
        if (end > path.size() || (end < path.size() && path[end] != '/') ||
            path.compare(pos, end - pos, walk_path_, pos, end - pos) != 0) {
          break;
        }
        pos = end + 1;
        keep++;
      }
      walk_nodes_.resize(keep + 1);
      walk_ends_.resize(keep);
      walk_path_.resize(keep ? walk_ends_.back() : 0);
    } else {
      walk_nodes_.push_back(OwnRoot());
    }
    while (pos < path.size()) {
      size_t slash = path.find('/', pos);
      if (slash == std::string_view::npos) slash = path.size();
      std::string_view c = path.substr(pos, slash - pos);
      if (c.empty() || c == "." || c == "..") return ForgetWalk();
      MNode* cur = walk_nodes_.back();
      auto it = cur->children.find(c);
      MNode* child = it == cur->children.end() ? nullptr : it->second;
      if (child && child->type == EntryType::kDir) {
        child = it->second = Own(child);
      } else if (child && child->born == layer_) {
        return ForgetWalk();  // this layer's symlink (followed) or non-directory (an error)
      } else {
        child = New();  // missing, or a lower non-directory: an implicit directory
        PutChild(cur, c, child);
      }
      if (!walk_path_.empty()) walk_path_ += '/';
      walk_path_.append(c);
      walk_ends_.push_back(walk_path_.size());
      walk_nodes_.push_back(child);
      pos = slash + 1;
    }
    return walk_nodes_.back();
  }
  // Sets dir's child `name` to n (added or replaced).
  void PutChild(MNode* dir, std::string_view name, MNode* n) {
    PutChild(dir, dir->children.lower_bound(name), name, n);
  }
  // The same, with `it` = dir->children.lower_bound(name), already searched.
  void PutChild(MNode* dir, MNode::Children::iterator it, std::string_view name, MNode* n) {
    Named(n);
    made_text_ += name.size() + n->link.size();
    for (const auto& [xn, xv] : n->xattrs) made_text_ += xn.size() + xv.size();
    if (it != dir->children.end() && it->first == name) {
      MNode* old = it->second;
      it->second = n;
      Drop(old);
    } else {
      dir->children.emplace_hint(it, name, n);
    }
  }
  MNode* ForgetWalk() {
    walk_path_.clear();
    walk_ends_.clear();
    walk_nodes_.clear();
    return nullptr;
  }

  // A whiteout or opaque marker (rule 1): hides lower content only.
  Status AddWhiteout(std::string_view dir, std::string_view base) {
    IMGFS_ASSIGN_OR_RETURN(MNode * p, ResolveDir(dir, /*create=*/true, /*nondir_ok=*/true));
    if (!p) return Status::Ok();
    if (base == kOpaqueMarker) {
      HideLower(p);
      return Status::Ok();
    }
    std::string name(base.substr(sizeof(kWhiteoutPrefix) - 1));
    auto it = p->children.find(std::string_view(name));
    if (it == p->children.end()) return Status::Ok();
    std::pair<MNode*, std::string> key{p, std::move(name)};
    if (!written_.count(key) && !descended_.count(key)) {
      MNode* gone = it->second;
      p->children.erase(it);
      Drop(gone);
      return Status::Ok();
    }
    // This layer wrote NAME or something below it: only the lower content goes (OCI:
    // as if the whiteout came first). A directory the layer only passed through is
    // left as what the layer holds of it: an implicit directory.
    if (it->second->type == EntryType::kDir) {
      it->second = Own(it->second);
      if (!written_.count(key)) MakeImplicit(it->second);
      HideLower(it->second);
    }
    return Status::Ok();
  }

  // A lower directory whose lower self is hidden: only this layer's implicit directory
  // is left (mode 0755, root-owned, mtime 0, as rule 3 makes a missing parent).
  void MakeImplicit(MNode* d) {
    d->perm = 0755;
    d->uid = d->gid = 0;
    d->mtime_sec = 0;
    d->mtime_nsec = 0;
    d->xattrs.clear();
    d->layer = d->born = layer_;
  }

  // Removes from `dir` everything this layer did not put there, recursively through
  // its directories (a directory it wrote over a lower one holds lower children too);
  // a lower directory it only passed through becomes an implicit one (MakeImplicit),
  // whatever the order of its markers.
  void HideLower(MNode* dir) {
    std::vector<MNode*> work{dir};
    while (!work.empty()) {
      MNode* d = work.back();
      work.pop_back();
      for (auto it = d->children.begin(); it != d->children.end();) {
        std::pair<MNode*, std::string> key{d, std::string(it->first)};
        bool dir_child = it->second->type == EntryType::kDir;
        if (written_.count(key)) {
          if (dir_child) work.push_back(it->second = Own(it->second));
          ++it;
        } else if (descended_.count(key) && dir_child) {
          it->second = Own(it->second);
          MakeImplicit(it->second);
          work.push_back(it->second);
          ++it;
        } else {
          MNode* gone = it->second;
          it = d->children.erase(it);
          Drop(gone);
        }
      }
    }
  }

  static void SplitInto(std::string_view path, std::deque<std::string>* out, bool front) {
    auto comps = SplitPath(path);
    out->insert(front ? out->begin() : out->end(), comps.begin(), comps.end());
  }

  static void SetAttrs(MNode* n, uint32_t layer, const LayerEntryView& e, const XattrView* xattrs) {
    n->perm = e.mode & 07777;
    n->uid = e.uid;
    n->gid = e.gid;
    n->mtime_sec = e.mtime_sec;
    n->mtime_nsec = e.mtime_nsec;
    // In place: a directory listed again (by every copy of a layer an image lists
    // thousands of times) reuses its xattrs' memory.
    n->xattrs.resize(e.xattr_count);
    for (uint32_t i = 0; i < e.xattr_count; i++) {
      n->xattrs[i].first.assign(xattrs[i].name);
      n->xattrs[i].second.assign(xattrs[i].value);
    }
    n->layer = layer;
  }

  Status AddEntry(uint32_t layer, const LayerEntryView& e, const XattrView* xattrs,
                  std::string_view dir, std::string_view base) {
    if (e.path.empty()) {  // the image root
      ForgetWalk();
      if (e.type != EntryType::kDir) return Status::InvalidArgument("the root must be a directory");
      SetAttrs(OwnRoot(), layer, e, xattrs);
      return Status::Ok();
    }
    IMGFS_ASSIGN_OR_RETURN(MNode * parent, ResolveDir(dir, /*create=*/true));
    // One search: `it` is where base is or would go (a hint for the insert).
    auto it = parent->children.lower_bound(base);
    bool found = it != parent->children.end() && it->first == base;
    if (track_) written_.emplace(parent, std::string(base));
    if (e.type == EntryType::kDir) {
      if (found && it->second->type == EntryType::kDir) {
        SetAttrs(it->second = Own(it->second), layer, e, xattrs);  // keeps the children
        return Status::Ok();
      }
      MNode* d = New();
      SetAttrs(d, layer, e, xattrs);
      PutChild(parent, it, base, d);
      return Status::Ok();
    }
    if (e.type == EntryType::kHardlink) {
      // docker and umoci remove what is at the entry's path before link(2): a target
      // at or below that path is gone by then, and they refuse the layer.
      if (e.link == e.path ||
          (e.link.size() > e.path.size() && e.link.compare(0, e.path.size(), e.path) == 0 &&
           e.link[e.path.size()] == '/')) {
        return Status::InvalidArgument("hard link to \"" + std::string(e.link) +
                                       "\", which is at or below the link itself (the entry "
                                       "replaces its own target)");
      }
      auto [tdir, tbase] = SplitLast(e.link);
      IMGFS_ASSIGN_OR_RETURN(MNode * tparent, ResolveDir(tdir, /*create=*/false));
      MNode* target = nullptr;
      if (tparent) {
        auto t = tparent->children.find(tbase);
        if (t != tparent->children.end()) target = t->second;
      }
      if (!target) {
        return Status::InvalidArgument("hard link to missing target \"" + std::string(e.link) +
                                       "\"");
      }
      if (target->type == EntryType::kDir) {
        return Status::InvalidArgument("hard link to directory \"" + std::string(e.link) + "\"");
      }
      PutChild(parent, it, base, target);
      return Status::Ok();
    }
    MNode* n = New();
    SetAttrs(n, layer, e, xattrs);
    n->type = e.type;
    n->size = e.type == EntryType::kFile ? e.size : 0;
    n->data_offset = e.data_offset;
    n->dev_major = e.dev_major;
    n->dev_minor = e.dev_minor;
    if (e.type == EntryType::kSymlink) {
      n->link.assign(e.link);
      n->size = e.link.size();
    }
    PutChild(parent, it, base, n);
    return Status::Ok();
  }

  // A builder's nodes and all they hold (see MNode). Only its builder allocates from it
  // (clones get their own); clones keep it alive through bases_ while they share nodes.
  struct Arena {
    ArenaResource res;
    MNode::Alloc alloc() { return MNode::Alloc(&res); }
    void* Take() { return res.allocate(sizeof(MNode), alignof(MNode)); }
  };
  std::shared_ptr<Arena> arena_;               // the nodes this builder made
  std::vector<std::shared_ptr<Arena>> bases_;  // those of the states it shares nodes with
  mutable std::atomic<uint64_t> epoch_{g_epoch.fetch_add(1)};
  MNode* root_;
  uint32_t layer_ = 0;                     // the layer being applied
  size_t made_nodes_ = 0, made_text_ = 0;  // see made_nodes()
  bool track_ = false;                     // record into written_/descended_ (a whiteout follows)
  // Names (parent, name) this layer wrote (entries, implicit directories) and lower
  // directories its paths passed through: what its whiteouts may not hide.
  struct NameHash {
    size_t operator()(const std::pair<MNode*, std::string>& k) const {
      return std::hash<std::string>()(k.second) * 31 + std::hash<MNode*>()(k.first);
    }
  };
  std::unordered_set<std::pair<MNode*, std::string>, NameHash> written_, descended_;
  // The last WalkDown: its path, each component's end in it, and the root then one
  // directory per component (empty: no walk to start from).
  std::string walk_path_;
  std::vector<size_t> walk_ends_;
  std::vector<MNode*> walk_nodes_;
};

namespace {

uint32_t ModeOf(const MNode& n) {
  return TreeMode(n.type, n.perm);
}

// The numbers Finish gave to nodes (a hard-linked file is reached once per name): an
// open-addressing table of node addresses, one allocation for a whole tree where a
// node-based map makes one per node.
class NodeIds {
 public:
  explicit NodeIds(size_t expect) { Resize(expect); }
  // The number of `n`, or `fresh` when `n` has none yet (it is given `fresh`, and
  // *added is set).
  uint32_t Get(const MNode* n, uint32_t fresh, bool* added) {
    if ((count_ + 1) * 2 > slots_.size()) Resize(slots_.size());
    for (size_t i = Slot(n);; i = (i + 1) & (slots_.size() - 1)) {
      if (slots_[i].node == n) {
        *added = false;
        return slots_[i].id;
      }
      if (!slots_[i].node) {
        slots_[i] = {n, fresh};
        count_++;
        *added = true;
        return fresh;
      }
    }
  }

 private:
  struct Entry {
    const MNode* node = nullptr;
    uint32_t id = 0;
  };
  size_t Slot(const MNode* n) const {
    // Fibonacci hashing: the top bits of address × 2^64/φ.
    return (reinterpret_cast<uintptr_t>(n) * uint64_t{0x9e3779b97f4a7c15}) >> (64 - bits_);
  }
  // At least twice `need` slots, a power of two; the entries move over.
  void Resize(size_t need) {
    std::vector<Entry> old = std::move(slots_);
    bits_ = 6;
    while ((size_t{1} << bits_) < need * 2) bits_++;
    slots_.assign(size_t{1} << bits_, Entry{});
    count_ = 0;
    bool added;
    for (const Entry& e : old) {
      if (e.node) Get(e.node, e.id, &added);
    }
  }
  std::vector<Entry> slots_;
  size_t count_ = 0;
  int bits_ = 6;
};

// Gives back what an estimate reserved beyond a quarter more than was used.
template <typename V>
void Fit(V& v) {
  if (v.capacity() > v.size() + v.size() / 4 + 64) v.shrink_to_fit();
}

}  // namespace

struct TreeBuilder::Impl {
  Builder b;
  uint32_t layers = 0;
};

TreeBuilder::TreeBuilder() : impl_(std::make_unique<Impl>()) {}
TreeBuilder::~TreeBuilder() = default;
TreeBuilder::TreeBuilder(TreeBuilder&&) noexcept = default;

std::unique_ptr<TreeBuilder> TreeBuilder::Clone() const {
  auto c = std::make_unique<TreeBuilder>();
  c->impl_->b.CopyFrom(impl_->b);
  c->impl_->layers = impl_->layers;
  return c;
}

Status TreeBuilder::AddLayer(const std::vector<LayerEntry>& entries) {
  EntryTable t;
  t.Assign(entries);
  return AddLayer(t);
}

Status TreeBuilder::AddLayer(const EntryTable& entries) {
  uint32_t i = impl_->layers++;
  Status st = impl_->b.AddLayer(i, entries);
  if (!st.ok()) return st.WithContext("layer " + std::to_string(i + 1));
  return st;
}

Result<TreeRoot> TreeBuilder::FinishRoot() const {
  // Finish's checks over every reachable node (directories are never hard-linked, so
  // each directory is reached once; a hard-linked file is checked once per name).
  const MNode* root = impl_->b.root();
  uint64_t strings = 0;
  std::vector<const MNode*> dirs{root};
  auto check = [&strings](const MNode& m) {
    if (m.uid > UINT32_MAX || m.gid > UINT32_MAX) {
      return Status::Unsupported("owner id larger than 32 bits");
    }
    strings += m.link.size();
    for (const auto& [xn, xv] : m.xattrs) strings += xn.size() + xv.size();
    return Status::Ok();
  };
  IMGFS_RETURN_IF_ERROR(check(*root));
  uint32_t root_subdirs = 0;
  while (!dirs.empty()) {
    const MNode* d = dirs.back();
    dirs.pop_back();
    for (const auto& [name, child] : d->children) {
      strings += name.size();
      IMGFS_RETURN_IF_ERROR(check(*child));
      if (child->type == EntryType::kDir) {
        if (d == root) root_subdirs++;
        if (child->sealed) {  // a shared subtree, checked when it was sealed
          if (child->sealed_wide_id) return Status::Unsupported("owner id larger than 32 bits");
          strings += child->sealed_strings;
        } else {
          dirs.push_back(child);
        }
      }
    }
    if (strings > UINT32_MAX / 2) return Status::Unsupported("image tree too large");
  }
  TreeRoot r;
  r.node.mode = ModeOf(*root);
  r.node.nlink = 2 + root_subdirs;
  r.node.uid = static_cast<uint32_t>(root->uid);
  r.node.gid = static_cast<uint32_t>(root->gid);
  r.node.size = root->size;
  r.node.mtime_sec = root->mtime_sec;
  r.node.mtime_nsec = root->mtime_nsec;
  r.node.parent = MergedTree::kRoot;
  for (const auto& [xn, xv] : root->xattrs) r.xattrs.emplace_back(xn, xv);
  return r;
}

void TreeBuilder::SetWalkReuseForTest(bool on) {
  g_walk_reuse.store(on);
}

void TreeBuilder::SetReclaimForTest(bool on) {
  g_reclaim.store(on);
}

void TreeBuilder::Seal() {
  impl_->b.Seal();
}

uint32_t TreeBuilder::layer_count() const {
  return impl_->layers;
}

Result<MergedTree> TreeBuilder::Finish() const {
  const Builder& b = impl_->b;
  // Number the reachable nodes breadth-first; root = 1.
  MergedTree t;
  // Reserved from the builder's counts, given back below when far above. The counts
  // are of everything ever made (a layer listed 1,000 times makes its nodes 1,000
  // times over), so the reservation is capped: past it the arrays grow as they go.
  constexpr size_t kReserveNodes = size_t{1} << 17, kReserveText = size_t{8} << 20;
  size_t expect = std::min(b.made_nodes() + 2, kReserveNodes);
  std::vector<const MNode*> order;
  order.reserve(expect);
  order.push_back(nullptr);
  order.push_back(b.root());
  NodeIds ids(expect);
  bool added;
  ids.Get(b.root(), MergedTree::kRoot, &added);
  t.nodes_.reserve(expect);
  t.nodes_.resize(2);
  t.dirents_.reserve(expect);
  t.strings_.reserve(std::min(b.made_text(), kReserveText));
  for (uint32_t i = 1; i < order.size(); i++) {
    const MNode& m = *order[i];
    TreeNode& tn = t.nodes_[i];
    tn.mode = ModeOf(m);
    if (m.uid > UINT32_MAX || m.gid > UINT32_MAX) {
      return Status::Unsupported("owner id larger than 32 bits");
    }
    tn.uid = static_cast<uint32_t>(m.uid);
    tn.gid = static_cast<uint32_t>(m.gid);
    tn.size = m.size;
    tn.mtime_sec = m.mtime_sec;
    tn.mtime_nsec = m.mtime_nsec;
    tn.layer = m.layer;
    tn.data_offset = m.data_offset;
    tn.rdev = makedev(m.dev_major, m.dev_minor);
    tn.link_len = static_cast<uint32_t>(m.link.size());
    tn.link_off = t.Intern(m.link);
    tn.xattr_begin = static_cast<uint32_t>(t.xattrs_.size());
    tn.xattr_count = static_cast<uint32_t>(m.xattrs.size());
    for (const auto& [xn, xv] : m.xattrs) t.AddXattr(xn, xv);
    if (i == MergedTree::kRoot) tn.parent = MergedTree::kRoot;
    if (m.type != EntryType::kDir) continue;
    // Copy what is needed from tn before nodes_ may reallocate below.
    uint32_t begin = static_cast<uint32_t>(t.dirents_.size());
    uint32_t subdirs = 0;
    for (const auto& [name, child] : m.children) {
      uint32_t id = ids.Get(child, static_cast<uint32_t>(order.size()), &added);
      if (added) {
        order.push_back(child);
        t.nodes_.emplace_back();
        t.nodes_.back().parent = i;
      }
      if (child->type == EntryType::kDir) subdirs++;
      t.AddDirent(name, id);
    }
    t.nodes_[i].child_begin = begin;
    t.nodes_[i].child_count = static_cast<uint32_t>(t.dirents_.size()) - begin;
    t.nodes_[i].nlink = 2 + subdirs;
    if (t.strings_.size() > UINT32_MAX / 2) return Status::Unsupported("image tree too large");
  }
  t.CountNames();
  Fit(t.nodes_);
  Fit(t.dirents_);
  Fit(t.strings_);
  return t;
}

}  // namespace imgfs
