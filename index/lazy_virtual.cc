#include "index/lazy_virtual.h"

#include <algorithm>
#include <optional>

namespace imgfs {

Result<VirtualLayer> VirtualLayerFromToc(const LayerToc& toc) {
  VirtualLayer v;
  LayerToc placed = toc;
  uint64_t pos = 0;
  for (TocEntry& t : placed.entries) {
    LayerEntry e;
    e.path = t.path;
    e.type = t.type;
    e.mode = t.mode & 07777;
    e.uid = t.uid;
    e.gid = t.gid;
    e.mtime_sec = t.mtime_sec;
    e.mtime_nsec = t.mtime_nsec;
    e.xattrs = t.xattrs;
    switch (t.type) {
      case EntryType::kFile:
        e.size = t.size;
        e.data_offset = pos;
        t.tar_offset = pos;
        if (pos + t.size < pos) return Status::Corruption("TOC: file sizes overflow");
        pos += t.size;
        break;
      case EntryType::kSymlink:
        // As the tar indexer: Linux can hold neither an empty nor an over-long target.
        if (t.link.empty() || t.link.size() > kMaxSymlinkTarget)
          return Status::InvalidArgument("TOC symlink \"" + t.path + "\": bad target length");
        e.link = t.link;
        break;
      case EntryType::kHardlink:
        e.link = t.link;
        break;
      case EntryType::kChar:
      case EntryType::kBlock:
        e.dev_major = t.dev_major;
        e.dev_minor = t.dev_minor;
        break;
      default:
        break;
    }
    v.entries.push_back(std::move(e));
  }
  placed.tar_size = pos;
  IMGFS_ASSIGN_OR_RETURN(v.map, ChunkMapFromToc(placed));
  v.size = pos;
  return v;
}

std::string AsJsonString(std::string_view s) {
  std::string out;
  size_t i = 0;
  while (i < s.size()) {
    unsigned char c = static_cast<unsigned char>(s[i]);
    size_t n = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
    bool ok = n > 0 && i + n <= s.size();
    for (size_t k = 1; ok && k < n; k++) ok = (static_cast<unsigned char>(s[i + k]) & 0xC0) == 0x80;
    if (ok && n == 2) ok = c >= 0xC2;
    if (ok && n == 3) {
      unsigned char c1 = static_cast<unsigned char>(s[i + 1]);
      ok = !(c == 0xE0 && c1 < 0xA0) && !(c == 0xED && c1 >= 0xA0);
    }
    if (ok && n == 4) {
      unsigned char c1 = static_cast<unsigned char>(s[i + 1]);
      ok = c <= 0xF4 && !(c == 0xF0 && c1 < 0x90) && !(c == 0xF4 && c1 >= 0x90);
    }
    if (ok) {
      out.append(s.substr(i, n));
      i += n;
    } else {
      out += "\xEF\xBF\xBD";
      i++;
    }
  }
  return out;
}

namespace {

// `s` with each U+FFFD as one byte (0x80: not '.', '/' or NUL), or nullopt when it
// holds none.
std::optional<std::string> ReplacementsAsOneByte(std::string_view s) {
  static constexpr std::string_view kReplacement = "\xEF\xBF\xBD";
  if (s.find(kReplacement) == std::string_view::npos) return std::nullopt;
  std::string shrunk;
  shrunk.reserve(s.size());
  for (size_t i = 0; i < s.size();) {
    if (s.substr(i, kReplacement.size()) == kReplacement) {
      shrunk.push_back('\x80');
      i += kReplacement.size();
    } else {
      shrunk.push_back(s[i++]);
    }
  }
  return shrunk;
}

}  // namespace

Result<std::string> NormalizeTocPath(std::string_view name, bool allow_root, bool link_target) {
  auto path = NormalizeTarPath(name, allow_root, link_target);
  if (path.ok()) return path;
  auto shrunk = ReplacementsAsOneByte(name);
  if (shrunk && NormalizeTarPath(*shrunk, allow_root, link_target).ok())
    return Status::Unsupported("too long in the TOC's spelling of bytes that are not UTF-8");
  return path.status();
}

Status CheckTocSymlinkTarget(std::string_view target) {
  auto fits = [](std::string_view t) {
    return t.size() <= kMaxSymlinkTarget && t.find('\0') == std::string_view::npos;
  };
  if (fits(target)) return Status::Ok();
  auto shrunk = ReplacementsAsOneByte(target);
  if (shrunk && fits(*shrunk))
    return Status::Unsupported(
        "symlink target too long in the TOC's spelling of bytes that are not UTF-8");
  return Status::InvalidArgument("symlink target longer than 4095 bytes or with a NUL");
}

std::vector<Xattr> JsonXattrs(std::vector<Xattr> xs) {
  for (Xattr& x : xs) x.name = AsJsonString(x.name);
  std::sort(xs.begin(), xs.end(), [](const Xattr& a, const Xattr& b) { return a.name < b.name; });
  return xs;
}

namespace {

std::string Differs(const LayerEntry& a, const LayerEntry& b) {
  if (a.path != AsJsonString(b.path)) return "path";
  if (a.type != b.type) return "type";
  if (a.mode != b.mode) return "mode";
  if (a.uid != b.uid || a.gid != b.gid) return "owner";
  if (a.size != b.size) return "size";
  if (a.mtime_sec != b.mtime_sec) return "mtime";  // RFC 3339 seconds in Go's TOC
  if (a.dev_major != b.dev_major || a.dev_minor != b.dev_minor) return "device";
  if (a.link != (b.type == EntryType::kSymlink || b.type == EntryType::kHardlink
                     ? AsJsonString(b.link)
                     : b.link))
    return "link target";
  if (JsonXattrs(a.xattrs) != JsonXattrs(b.xattrs)) return "xattrs";
  return "";
}

}  // namespace

Status SameModuloOffsets(const std::vector<LayerEntry>& lazy, const std::vector<LayerEntry>& tar) {
  size_t n = std::min(lazy.size(), tar.size());
  for (size_t i = 0; i < n; i++) {
    std::string why = Differs(lazy[i], tar[i]);
    if (!why.empty()) {
      return Status::Corruption("tar entry " + std::to_string(i + 1) + " \"" + tar[i].path +
                                "\": " + why + " differs from the table of contents (\"" +
                                lazy[i].path + "\")");
    }
  }
  if (lazy.size() != tar.size()) {
    return Status::Corruption("the tar has " + std::to_string(tar.size()) +
                              " entries, the table of contents " + std::to_string(lazy.size()));
  }
  return Status::Ok();
}

Result<ChunkMap> RelocateChunkMap(const ChunkMap& virt, const std::vector<LayerEntry>& lazy,
                                  const std::vector<LayerEntry>& tar, uint64_t tar_size) {
  IMGFS_RETURN_IF_ERROR(SameModuloOffsets(lazy, tar));
  ChunkMap out;
  out.blob_size = virt.blob_size;
  out.tar_size = tar_size;
  for (size_t i = 0; i < lazy.size(); i++) {
    const LayerEntry& l = lazy[i];
    if (l.type != EntryType::kFile || l.size == 0) continue;
    // The chunks of this file in the virtual stream: [l.data_offset, +size).
    auto it = std::lower_bound(virt.chunks.begin(), virt.chunks.end(), l.data_offset,
                               [](const LazyChunk& c, uint64_t o) { return c.tar_offset < o; });
    uint64_t covered = 0;
    for (; it != virt.chunks.end() && it->tar_offset < l.data_offset + l.size; ++it) {
      if (it->tar_offset != l.data_offset + covered)
        return Status::Corruption("lazy chunk map: file \"" + l.path + "\" not covered");
      LazyChunk c = *it;
      c.tar_offset = tar[i].data_offset + covered;
      covered += c.size;
      out.chunks.push_back(c);
    }
    if (covered != l.size)
      return Status::Corruption("lazy chunk map: file \"" + l.path + "\" not covered");
  }
  std::sort(out.chunks.begin(), out.chunks.end(),
            [](const LazyChunk& a, const LazyChunk& b) { return a.tar_offset < b.tar_offset; });
  for (size_t i = 0; i < out.chunks.size(); i++) {
    const LazyChunk& c = out.chunks[i];
    if (c.tar_offset + c.size > tar_size ||
        (i > 0 && out.chunks[i - 1].tar_offset + out.chunks[i - 1].size > c.tar_offset))
      return Status::Corruption("the tar's content offsets overlap or run past its end");
  }
  return out;
}

}  // namespace imgfs
