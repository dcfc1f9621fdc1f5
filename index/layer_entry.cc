#include "index/layer_entry.h"

#include <vector>

#include "index/codec.h"

namespace imgfs {

namespace {
constexpr uint64_t kEntriesFormat = 1;
}

Result<std::string> NormalizeTarPath(std::string_view raw, bool allow_root, bool link_target) {
  auto shown = [raw](size_t n) {
    return std::string(raw.substr(0, n)) + (raw.size() > n ? "..." : "");
  };
  if (raw.find('\0') != std::string_view::npos) {
    return Status::InvalidArgument("path \"" + shown(64) + "\" contains a NUL byte");
  }
  const bool rooted = !raw.empty() && raw[0] == '/' && !link_target;
  std::vector<std::string_view> comps;
  size_t i = 0;
  while (i <= raw.size()) {
    size_t j = raw.find('/', i);
    if (j == std::string_view::npos) j = raw.size();
    std::string_view comp = raw.substr(i, j - i);
    i = j + 1;
    if (comp.empty() || comp == ".") continue;
    if (comp == "..") {
      if (!comps.empty()) {
        comps.pop_back();
      } else if (!rooted) {
        return Status::InvalidArgument("path \"" + shown(256) +
                                       "\" escapes the image root (\"..\")");
      }
      continue;
    }
    comps.push_back(comp);
  }
  std::string out;
  out.reserve(raw.size());
  for (std::string_view c : comps) {
    if (c.size() > 255) {
      return Status::InvalidArgument("path \"" + shown(64) +
                                     "\" has a component longer than 255 bytes");
    }
    if (!out.empty()) out.push_back('/');
    out.append(c);
  }
  if (out.size() > 4095) {
    return Status::InvalidArgument("path \"" + out.substr(0, 64) +
                                   "...\" is longer than 4095 bytes");
  }
  if (out.empty() && !allow_root) {
    return Status::InvalidArgument("empty file name \"" + shown(64) + "\"");
  }
  return out;
}

std::string EncodeEntries(const std::vector<LayerEntry>& entries) {
  Encoder e;
  e.PutVarint(kEntriesFormat);
  e.PutVarint(entries.size());
  for (const LayerEntry& x : entries) {
    e.PutBytes(x.path);
    e.PutVarint(static_cast<uint8_t>(x.type));
    e.PutVarint(x.mode);
    e.PutVarint(x.uid);
    e.PutVarint(x.gid);
    e.PutVarint(x.size);
    e.PutSigned(x.mtime_sec);
    e.PutVarint(x.mtime_nsec);
    e.PutVarint(x.dev_major);
    e.PutVarint(x.dev_minor);
    e.PutBytes(x.link);
    e.PutVarint(x.data_offset);
    e.PutVarint(x.xattrs.size());
    for (const Xattr& xa : x.xattrs) {
      e.PutBytes(xa.name);
      e.PutBytes(xa.value);
    }
  }
  return e.Take();
}

Status EntryTable::Decode(std::string_view data) {
  entries_.clear();
  xattrs_.clear();
  Decoder d(data);
  if (d.Varint() != kEntriesFormat) return Status::Corruption("entry table: unknown format");
  uint64_t n = d.Varint();
  if (!d.ok() || n > data.size()) return Status::Corruption("entry table: bad count");
  entries_.reserve(n);
  for (uint64_t i = 0; i < n && d.ok(); i++) {
    LayerEntryView& x = entries_.emplace_back();
    x.path = d.Bytes();
    uint64_t t = d.Varint();
    if (t < 1 || t > 7) return Status::Corruption("entry table: bad entry type");
    x.type = static_cast<EntryType>(t);
    x.mode = static_cast<uint32_t>(d.Varint() & 07777);
    x.uid = d.Varint();
    x.gid = d.Varint();
    x.size = d.Varint();
    x.mtime_sec = d.Signed();
    x.mtime_nsec = static_cast<uint32_t>(d.Varint());
    x.dev_major = static_cast<uint32_t>(d.Varint());
    x.dev_minor = static_cast<uint32_t>(d.Varint());
    x.link = d.Bytes();
    x.data_offset = d.Varint();
    uint64_t nx = d.Varint();
    if (nx > data.size()) return Status::Corruption("entry table: bad xattr count");
    x.xattr_begin = static_cast<uint32_t>(xattrs_.size());
    x.xattr_count = static_cast<uint32_t>(nx);
    for (uint64_t k = 0; k < nx && d.ok(); k++) {
      XattrView& xa = xattrs_.emplace_back();
      xa.name = d.Bytes();
      xa.value = d.Bytes();
    }
  }
  if (!d.done()) return Status::Corruption("entry table: truncated or trailing bytes");
  return Status::Ok();
}

namespace {

// Every field but the xattrs, between a LayerEntry and a LayerEntryView (either way).
template <typename From, typename To>
void CopyFields(const From& e, To* x) {
  x->path = e.path;
  x->type = e.type;
  x->mode = e.mode;
  x->uid = e.uid;
  x->gid = e.gid;
  x->size = e.size;
  x->mtime_sec = e.mtime_sec;
  x->mtime_nsec = e.mtime_nsec;
  x->dev_major = e.dev_major;
  x->dev_minor = e.dev_minor;
  x->link = e.link;
  x->data_offset = e.data_offset;
}

}  // namespace

void EntryTable::Assign(const std::vector<LayerEntry>& entries) {
  entries_.clear();
  xattrs_.clear();
  entries_.reserve(entries.size());
  for (const LayerEntry& e : entries) {
    LayerEntryView& x = entries_.emplace_back();
    CopyFields(e, &x);
    x.xattr_begin = static_cast<uint32_t>(xattrs_.size());
    x.xattr_count = static_cast<uint32_t>(e.xattrs.size());
    for (const Xattr& xa : e.xattrs) xattrs_.push_back({xa.name, xa.value});
  }
}

Result<std::vector<LayerEntry>> DecodeEntries(std::string_view data) {
  EntryTable t;
  IMGFS_RETURN_IF_ERROR(t.Decode(data));
  std::vector<LayerEntry> out;
  out.reserve(t.size());
  for (size_t i = 0; i < t.size(); i++) {
    const LayerEntryView& v = t[i];
    LayerEntry& x = out.emplace_back();
    CopyFields(v, &x);
    const XattrView* xa = t.XattrsBegin(v);
    for (uint32_t k = 0; k < v.xattr_count; k++) {
      x.xattrs.push_back({std::string(xa[k].name), std::string(xa[k].value)});
    }
  }
  return out;
}

}  // namespace imgfs
