#include "fs/image_diff.h"

#include <sys/stat.h>

#include <algorithm>
#include <cstring>

namespace imgfs {
namespace {

class Differ {
 public:
  Differ(const ImageView& o, const ImageView& n, LayerReader& cache)
      : o_(o), n_(n), cache_(cache) {}

  // Compares directories on and nn (both present); returns whether anything below changed.
  Result<bool> Dir(uint32_t on, uint32_t nn, const std::string& path) {
    const MergedTree& ot = o_.tree();
    const MergedTree& nt = n_.tree();
    const TreeDirent* od = ot.ChildrenBegin(on);
    const TreeDirent* nd = nt.ChildrenBegin(nn);
    uint32_t oi = 0, ni = 0, oc = ot.ChildCount(on), nc = nt.ChildCount(nn);
    bool any = false;
    while (oi < oc || ni < nc) {
      int cmp = oi == oc ? 1 : ni == nc ? -1 : ot.Name(od[oi]).compare(nt.Name(nd[ni]));
      if (cmp < 0) {
        out_.push_back({'D', path + "/" + std::string(ot.Name(od[oi]))});
        any = true;
        oi++;
      } else if (cmp > 0) {
        AddAll(nd[ni].node, path + "/" + std::string(nt.Name(nd[ni])));
        any = true;
        ni++;
      } else {
        std::string p = path + "/" + std::string(nt.Name(nd[ni]));
        uint32_t a = od[oi].node, b = nd[ni].node;
        size_t at = out_.size();
        IMGFS_ASSIGN_OR_RETURN(bool changed, Differs(a, b));
        bool below = false;
        bool adir = S_ISDIR(ot.node(a).mode), bdir = S_ISDIR(nt.node(b).mode);
        if (adir && bdir) {
          IMGFS_ASSIGN_OR_RETURN(below, Dir(a, b, p));
        } else if (bdir) {
          for (uint32_t i = 0; i < nt.ChildCount(b); i++) {
            const TreeDirent& d = nt.ChildrenBegin(b)[i];
            AddAll(d.node, p + "/" + std::string(nt.Name(d)));
          }
          below = nt.ChildCount(b) > 0;
        } else if (adir) {
          // A directory replaced by a non-directory: its children are gone (moby lists
          // them, one level deep, as deletions).
          for (uint32_t i = 0; i < ot.ChildCount(a); i++) {
            out_.push_back({'D', p + "/" + std::string(ot.Name(ot.ChildrenBegin(a)[i]))});
          }
        }
        if (changed || below) {
          out_.insert(out_.begin() + static_cast<ptrdiff_t>(at), PathChange{'C', p});
          any = true;
        }
        oi++;
        ni++;
      }
    }
    return any;
  }

  std::vector<PathChange> Take() { return std::move(out_); }

 private:
  void AddAll(uint32_t n, const std::string& path) {
    out_.push_back({'A', path});
    const MergedTree& t = n_.tree();
    if (!S_ISDIR(t.node(n).mode)) return;
    for (uint32_t i = 0; i < t.ChildCount(n); i++) {
      const TreeDirent& d = t.ChildrenBegin(n)[i];
      AddAll(d.node, path + "/" + std::string(t.Name(d)));
    }
  }

  Result<bool> Differs(uint32_t a, uint32_t b) {
    const MergedTree& ot = o_.tree();
    const MergedTree& nt = n_.tree();
    const TreeNode& x = ot.node(a);
    const TreeNode& y = nt.node(b);
    if (x.mode != y.mode || x.uid != y.uid || x.gid != y.gid || x.rdev != y.rdev) return true;
    if (ot.LinkTarget(a) != nt.LinkTarget(b)) return true;
    if (x.xattr_count != y.xattr_count) return true;
    for (uint32_t i = 0; i < x.xattr_count; i++) {
      const TreeXattr& xa = ot.XattrsBegin(a)[i];
      const TreeXattr& ya = nt.XattrsBegin(b)[i];
      if (ot.XattrName(xa) != nt.XattrName(ya) || ot.XattrValue(xa) != nt.XattrValue(ya))
        return true;
    }
    if (S_ISDIR(x.mode)) return false;
    if (x.size != y.size || x.mtime_sec != y.mtime_sec || x.mtime_nsec != y.mtime_nsec) return true;
    if (!S_ISREG(x.mode) || x.size == 0) return false;
    if (x.data_offset == y.data_offset && x.layer < o_.layers().size() &&
        y.layer < n_.layers().size() &&
        o_.layers()[x.layer].diff_id == n_.layers()[y.layer].diff_id) {
      return false;  // the same bytes of the same layer
    }
    std::vector<char> p(1 << 20), q(1 << 20);
    for (uint64_t off = 0; off < x.size;) {
      IMGFS_ASSIGN_OR_RETURN(size_t n, o_.Read(cache_, a, p.data(), p.size(), off));
      IMGFS_ASSIGN_OR_RETURN(size_t m, n_.Read(cache_, b, q.data(), n, off));
      if (n == 0 || m != n) return Status::Corruption("short read comparing content");
      if (std::memcmp(p.data(), q.data(), n) != 0) return true;
      off += n;
    }
    return false;
  }

  const ImageView& o_;
  const ImageView& n_;
  LayerReader& cache_;
  std::vector<PathChange> out_;
};

}  // namespace

Result<std::vector<PathChange>> DiffViews(const ImageView& old_view, const ImageView& new_view,
                                          LayerReader& cache) {
  Differ d(old_view, new_view, cache);
  IMGFS_RETURN_IF_ERROR(d.Dir(MergedTree::kRoot, MergedTree::kRoot, "").status());
  std::vector<PathChange> out = d.Take();
  std::stable_sort(out.begin(), out.end(),
                   [](const PathChange& a, const PathChange& b) { return a.path < b.path; });
  return out;
}

}  // namespace imgfs
