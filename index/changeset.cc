#include "index/changeset.h"

#include <set>
#include <string>
#include <string_view>

namespace imgfs {
namespace {

constexpr std::string_view kWh = ".wh.";
constexpr std::string_view kOpq = ".wh..wh..opq";
constexpr std::string_view kMeta = ".wh..wh.";

std::string_view Base(std::string_view p) {
  size_t s = p.rfind('/');
  return s == std::string_view::npos ? p : p.substr(s + 1);
}
std::string_view Dir(std::string_view p) {
  size_t s = p.rfind('/');
  return s == std::string_view::npos ? std::string_view() : p.substr(0, s);
}
// An aufs metadata name (other than the opaque marker) as a component of p.
bool UnderAufsMeta(std::string_view p, bool allow_last_opq) {
  while (!p.empty()) {
    size_t s = p.find('/');
    std::string_view c = p.substr(0, s);
    bool last = s == std::string_view::npos;
    if (c.starts_with(kMeta) && !(last && allow_last_opq && c == kOpq)) return true;
    if (last) break;
    p.remove_prefix(s + 1);
  }
  return false;
}

void MarkOpaque(LayerEntry& e) {
  for (Xattr& x : e.xattrs) {
    if (x.name == kOverlayOpaqueXattr) {
      x.value = "y";
      return;
    }
  }
  e.xattrs.push_back(Xattr{kOverlayOpaqueXattr, "y"});
}

}  // namespace

std::vector<LayerEntry> ChangesetEntries(const std::vector<LayerEntry>& layer) {
  std::set<std::string, std::less<>> opaque, has_entry;
  for (const LayerEntry& e : layer) {
    if (Base(e.path) == kOpq && !UnderAufsMeta(e.path, true)) opaque.emplace(Dir(e.path));
    if (e.type == EntryType::kDir) has_entry.insert(e.path);
  }
  std::vector<LayerEntry> out;
  out.reserve(layer.size());
  for (const LayerEntry& e : layer) {
    if (UnderAufsMeta(e.path, true)) continue;
    std::string_view base = Base(e.path);
    if (base == kOpq) {
      std::string_view dir = Dir(e.path);
      if (has_entry.count(dir)) continue;  // the directory's own entries carry the mark
      LayerEntry d;
      d.path = std::string(dir);
      d.type = EntryType::kDir;
      d.mode = e.mode ? e.mode : 0755;
      d.uid = e.uid;
      d.gid = e.gid;
      d.mtime_sec = e.mtime_sec;
      d.mtime_nsec = e.mtime_nsec;
      MarkOpaque(d);
      out.push_back(std::move(d));
      continue;
    }
    if (base.starts_with(kWh)) {
      LayerEntry w;
      std::string_view dir = Dir(e.path);
      w.path = (dir.empty() ? std::string() : std::string(dir) + "/") +
               std::string(base.substr(kWh.size()));
      w.type = EntryType::kChar;
      w.mode = 0;
      w.uid = e.uid;
      w.gid = e.gid;
      w.mtime_sec = e.mtime_sec;
      w.mtime_nsec = e.mtime_nsec;
      out.push_back(std::move(w));
      continue;
    }
    out.push_back(e);
    if (e.type == EntryType::kDir && opaque.count(e.path)) MarkOpaque(out.back());
  }
  return out;
}

}  // namespace imgfs
