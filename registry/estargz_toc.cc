#include "registry/estargz_toc.h"

#include <simdjson.h>
#include <zlib.h>

#include <cstring>
#include <string>
#include <utility>

#include "index/lazy_virtual.h"
#include "registry/credentials.h"
#include "registry/printable.h"

namespace imgfs::estargz {
namespace {

using simdjson::dom::element;
using simdjson::dom::object;

// Inflates exactly one gzip member that must fill `in` to its last byte; at most
// `max_out` bytes of output.
Result<std::string> InflateOneMember(std::string_view in, uint64_t max_out, const char* what) {
  z_stream z{};
  if (inflateInit2(&z, 16 + MAX_WBITS) != Z_OK) {
    return Status::Unavailable(std::string(what) + ": zlib init failed");
  }
  std::string out;
  z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data()));
  z.avail_in = static_cast<uInt>(in.size());
  int rc = Z_OK;
  char buf[64 << 10];
  while (rc != Z_STREAM_END) {
    z.next_out = reinterpret_cast<Bytef*>(buf);
    z.avail_out = sizeof(buf);
    rc = inflate(&z, Z_NO_FLUSH);
    size_t got = sizeof(buf) - z.avail_out;
    if (rc != Z_OK && rc != Z_STREAM_END) {
      if (rc == Z_BUF_ERROR && z.avail_in == 0) break;  // truncated
      inflateEnd(&z);
      return Status::Corruption(std::string(what) + ": not a valid gzip member (" +
                                (z.msg ? z.msg : "zlib error") + ")");
    }
    if (out.size() + got > max_out) {
      inflateEnd(&z);
      return Status::InvalidArgument(std::string(what) + ": inflates to more than " +
                                     std::to_string(max_out) + " bytes");
    }
    out.append(buf, got);
    if (rc == Z_OK && got == 0 && z.avail_in == 0) break;  // no progress: truncated
  }
  uInt left = z.avail_in;
  inflateEnd(&z);
  if (rc != Z_STREAM_END) return Status::Corruption(std::string(what) + ": truncated gzip member");
  if (left != 0) {
    return Status::InvalidArgument(std::string(what) + ": " + std::to_string(left) +
                                   " bytes after its gzip member");
  }
  return out;
}

// An octal tar number field (spaces/NULs around the digits).
bool ParseOctal(std::string_view f, uint64_t* v) {
  size_t i = 0;
  while (i < f.size() && f[i] == ' ') i++;
  uint64_t n = 0;
  size_t digits = 0;
  for (; i < f.size() && f[i] >= '0' && f[i] <= '7'; i++, digits++) {
    if (n >> 60) return false;
    n = n * 8 + static_cast<uint64_t>(f[i] - '0');
  }
  for (; i < f.size(); i++) {
    if (f[i] != ' ' && f[i] != '\0') return false;
  }
  *v = n;
  return digits > 0;
}

std::string CField(std::string_view f) {
  return std::string(f.substr(0, f.find('\0')));
}

Status Bad(const std::string& m) {
  return Status::InvalidArgument("eStargz TOC: " + m);
}
// A refused name or target (NormalizeTocPath, CheckTocSymlinkTarget) at `where`: bad,
// unless it is Unsupported (the layer is pulled in full).
Status Bad(const Status& st, const std::string& where) {
  if (st.code() == Status::Code::kUnsupported) return st.WithContext("eStargz TOC: " + where);
  return Bad(where + ": " + st.message());
}

// "YYYY-MM-DDTHH:MM:SS[.frac](Z|+HH:MM|-HH:MM)" (RFC 3339, as Go writes it) to Unix time.
bool ParseRfc3339(std::string_view s, int64_t* sec, uint32_t* nsec) {
  auto num = [&](size_t pos, size_t len, int* out) {
    if (pos + len > s.size()) return false;
    int n = 0;
    for (size_t i = pos; i < pos + len; i++) {
      if (s[i] < '0' || s[i] > '9') return false;
      n = n * 10 + (s[i] - '0');
    }
    *out = n;
    return true;
  };
  int y, mo, d, h, mi, se;
  if (!num(0, 4, &y) || s.size() < 20 || s[4] != '-' || !num(5, 2, &mo) || s[7] != '-' ||
      !num(8, 2, &d) || (s[10] != 'T' && s[10] != 't') || !num(11, 2, &h) || s[13] != ':' ||
      !num(14, 2, &mi) || s[16] != ':' || !num(17, 2, &se)) {
    return false;
  }
  if (mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || se > 60) return false;
  size_t i = 19;
  uint32_t ns = 0;
  if (i < s.size() && s[i] == '.') {
    size_t digits = 0;
    for (i++; i < s.size() && s[i] >= '0' && s[i] <= '9'; i++, digits++) {
      if (digits < 9) ns = ns * 10 + static_cast<uint32_t>(s[i] - '0');
    }
    if (digits == 0) return false;
    for (; digits < 9; digits++) ns *= 10;
  }
  int64_t off = 0;
  if (i < s.size() && (s[i] == 'Z' || s[i] == 'z')) {
    i++;
  } else if (i < s.size() && (s[i] == '+' || s[i] == '-')) {
    int oh, om;
    if (!num(i + 1, 2, &oh) || i + 3 >= s.size() || s[i + 3] != ':' || !num(i + 4, 2, &om) ||
        oh > 23 || om > 59) {
      return false;
    }
    off = (s[i] == '+' ? 1 : -1) * (oh * 3600 + om * 60);
    i += 6;
  } else {
    return false;
  }
  if (i != s.size()) return false;
  // Days from the civil date (proleptic Gregorian), Howard Hinnant's algorithm.
  int64_t yy = y - (mo <= 2);
  int64_t era = (yy >= 0 ? yy : yy - 399) / 400;
  int64_t yoe = yy - era * 400;
  int64_t doy = (153 * (mo + (mo > 2 ? -3 : 9)) + 2) / 5 + d - 1;
  int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  int64_t days = era * 146097 + doe - 719468;
  *sec = days * 86400 + h * 3600 + mi * 60 + se - off;
  *nsec = ns;
  return true;
}

// An optional non-negative integer field (absent: 0).
Status UintField(object o, const char* key, uint64_t max, uint64_t* out, const std::string& where) {
  *out = 0;
  element el;
  if (o[key].get(el) != simdjson::SUCCESS) return Status::Ok();
  int64_t v;
  if (el.get(v) != simdjson::SUCCESS || v < 0 || static_cast<uint64_t>(v) > max) {
    return Bad(where + ": \"" + key + "\" is not an integer in [0, " + std::to_string(max) + "]");
  }
  *out = static_cast<uint64_t>(v);
  return Status::Ok();
}

Result<std::string_view> StringField(object o, const char* key, const std::string& where) {
  element el;
  if (o[key].get(el) != simdjson::SUCCESS) return std::string_view();
  std::string_view s;
  if (el.get(s) != simdjson::SUCCESS) return Bad(where + ": \"" + key + "\" is not a string");
  return s;
}

Result<Digest> DigestField(object o, const char* key, const std::string& where) {
  IMGFS_ASSIGN_OR_RETURN(std::string_view s, StringField(o, key, where));
  if (s.empty()) return Bad(where + ": no \"" + key + "\"");
  auto d = Digest::Parse(s);
  if (!d.ok()) return Bad(where + ": \"" + key + "\": " + d.status().message());
  return *d;
}

}  // namespace

Result<uint64_t> ParseFooter(std::string_view f, uint64_t blob_size) {
  if (f.size() != kFooterSize || blob_size < kFooterSize) {
    return Status::InvalidArgument("eStargz footer: the blob is shorter than 51 bytes");
  }
  // Header: magic, deflate, FLG = FEXTRA only (no name, comment or header CRC).
  const auto u = [&](size_t i) { return static_cast<unsigned char>(f[i]); };
  if (u(0) != 0x1f || u(1) != 0x8b || u(2) != 8 || u(3) != 0x04) {
    return Status::InvalidArgument("eStargz footer: not a gzip header with an Extra field");
  }
  if (u(10) != 26 || u(11) != 0 || f[12] != 'S' || f[13] != 'G' || u(14) != 22 || u(15) != 0) {
    return Status::InvalidArgument("eStargz footer: no 'SG' Extra subfield of 22 bytes");
  }
  std::string_view hex = f.substr(16, 16);
  if (f.substr(32, 6) != "STARGZ") {
    return Status::InvalidArgument("eStargz footer: the Extra subfield does not end in STARGZ");
  }
  uint64_t off = 0;
  for (char c : hex) {
    int v = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
    if (v < 0) return Status::InvalidArgument("eStargz footer: the TOC offset is not hex");
    off = off * 16 + static_cast<uint64_t>(v);
  }
  IMGFS_ASSIGN_OR_RETURN(std::string body, InflateOneMember(f, 0, "eStargz footer"));
  if (off >= blob_size - kFooterSize) {
    return Status::InvalidArgument("eStargz footer: TOC offset " + std::to_string(off) +
                                   " is not before the footer (blob of " +
                                   std::to_string(blob_size) + " bytes)");
  }
  return off;
}

Result<TocFile> ExtractToc(std::string_view member, const TocLimits& limits) {
  if (member.size() > limits.max_toc_member) {
    return Status::InvalidArgument("eStargz TOC member: " + std::to_string(member.size()) +
                                   " bytes, more than the limit " +
                                   std::to_string(limits.max_toc_member));
  }
  IMGFS_ASSIGN_OR_RETURN(std::string tar,
                         InflateOneMember(member, limits.max_toc_json, "eStargz TOC member"));
  if (tar.size() < 512) return Bad("the TOC member holds no tar header");
  std::string_view h(tar.data(), 512);
  uint64_t sum = 0, want = 0;
  for (size_t i = 0; i < 512; i++) {
    sum += (i >= 148 && i < 156) ? ' ' : static_cast<unsigned char>(h[i]);
  }
  if (!ParseOctal(h.substr(148, 8), &want) || want != sum) {
    return Bad("the TOC member's tar header has a bad checksum");
  }
  std::string name = CField(h.substr(0, 100));
  if (h.substr(257, 5) == "ustar") {
    std::string prefix = CField(h.substr(345, 155));
    if (!prefix.empty()) name = prefix + "/" + name;
  }
  if (name != kTocName) return Bad("the TOC member's first entry is \"" + name + "\"");
  if (h[156] != '0' && h[156] != '\0') return Bad("stargz.index.json is not a regular file");
  uint64_t size = 0;
  if (!ParseOctal(h.substr(124, 12), &size) || size > tar.size() - 512) {
    return Bad("stargz.index.json's size is bad or past the end of the TOC member");
  }
  uint64_t mode = 0, uid = 0, gid = 0, mtime = 0;
  if (!ParseOctal(h.substr(100, 8), &mode) || !ParseOctal(h.substr(108, 8), &uid) ||
      !ParseOctal(h.substr(116, 8), &gid) || !ParseOctal(h.substr(136, 12), &mtime) ||
      uid > UINT32_MAX || gid > UINT32_MAX || mtime > (1ull << 40)) {
    return Bad("stargz.index.json's tar header has a bad mode, uid, gid or mtime");
  }
  TocFile f;
  f.json = tar.substr(512, size);
  f.entry.path = kTocName;
  f.entry.type = EntryType::kFile;
  f.entry.mode = static_cast<uint32_t>(mode & 07777);
  f.entry.uid = uid;
  f.entry.gid = gid;
  f.entry.mtime_sec = static_cast<int64_t>(mtime);
  f.entry.size = size;
  return f;
}

Result<std::string> ExtractTocJson(std::string_view member, const TocLimits& limits) {
  IMGFS_ASSIGN_OR_RETURN(TocFile f, ExtractToc(member, limits));
  return std::move(f.json);
}

Result<LayerToc> ParseTocJson(std::string_view json, uint64_t toc_offset, const TocLimits& limits) {
  simdjson::dom::parser p;
  object root;
  if (auto e = p.parse(json.data(), json.size()).get(root); e != simdjson::SUCCESS) {
    return Bad(std::string("not a JSON object: ") + simdjson::error_message(e));
  }
  int64_t version;
  if (root["version"].get(version) != simdjson::SUCCESS || version != 1) {
    return Status::Unsupported("eStargz TOC: version is not 1");
  }
  simdjson::dom::array arr;
  if (root["entries"].get(arr) != simdjson::SUCCESS) return Bad("no \"entries\" array");
  if (arr.size() > limits.max_entries) {
    return Bad(std::to_string(arr.size()) + " entries, more than the limit " +
               std::to_string(limits.max_entries));
  }
  LayerToc toc;
  toc.format = TocFormat::kEstargz;
  // Reserved up front: `open` points into it and no push_back may move it.
  toc.entries.reserve(arr.size());
  TocEntry* open = nullptr;  // the file whose chunks are being collected
  std::string open_name;
  uint64_t covered = 0;
  bool any_data = false;
  uint64_t prev_off = 0, prev_inner = 0;
  size_t index = 0;
  for (element el : arr) {
    std::string where = "entry " + std::to_string(index++);
    object o;
    if (el.get(o) != simdjson::SUCCESS) return Bad(where + ": not an object");
    IMGFS_ASSIGN_OR_RETURN(std::string_view name, StringField(o, "name", where));
    IMGFS_ASSIGN_OR_RETURN(std::string_view type, StringField(o, "type", where));
    where += " (\"" + Printable(name, 200) + "\")";
    bool is_chunk = type == "chunk";
    uint64_t size = 0, offset = 0, inner = 0, chunk_offset = 0, chunk_size = 0;
    if (!is_chunk) {
      if (open && covered != open->size) {
        return Bad("file \"" + open_name + "\": its chunks cover " + std::to_string(covered) +
                   " of " + std::to_string(open->size) + " bytes");
      }
      open = nullptr;
      TocEntry e;
      static const std::pair<const char*, EntryType> kTypes[] = {
          {"reg", EntryType::kFile},        {"dir", EntryType::kDir},
          {"symlink", EntryType::kSymlink}, {"hardlink", EntryType::kHardlink},
          {"char", EntryType::kChar},       {"block", EntryType::kBlock},
          {"fifo", EntryType::kFifo}};
      bool known = false;
      for (const auto& [tn, tv] : kTypes) {
        if (type == tn) e.type = tv, known = true;
      }
      if (!known) return Bad(where + ": unknown type \"" + std::string(type.substr(0, 40)) + "\"");
      auto path = NormalizeTocPath(name, e.type == EntryType::kDir);
      if (!path.ok()) return Bad(path.status(), where);
      e.path = std::move(*path);
      uint64_t mode, uid, gid, major, minor;
      IMGFS_RETURN_IF_ERROR(UintField(o, "mode", 07777777, &mode, where));
      IMGFS_RETURN_IF_ERROR(UintField(o, "uid", UINT32_MAX, &uid, where));
      IMGFS_RETURN_IF_ERROR(UintField(o, "gid", UINT32_MAX, &gid, where));
      IMGFS_RETURN_IF_ERROR(UintField(o, "devMajor", UINT32_MAX, &major, where));
      IMGFS_RETURN_IF_ERROR(UintField(o, "devMinor", UINT32_MAX, &minor, where));
      e.mode = static_cast<uint32_t>(mode & 07777);
      e.uid = uid;
      e.gid = gid;
      if (e.type == EntryType::kChar || e.type == EntryType::kBlock) {
        e.dev_major = static_cast<uint32_t>(major);
        e.dev_minor = static_cast<uint32_t>(minor);
      }
      IMGFS_ASSIGN_OR_RETURN(std::string_view mt, StringField(o, "modtime", where));
      if (!mt.empty() && !ParseRfc3339(mt, &e.mtime_sec, &e.mtime_nsec)) {
        return Bad(where + ": modtime \"" + std::string(mt.substr(0, 40)) + "\" is not RFC 3339");
      }
      IMGFS_ASSIGN_OR_RETURN(std::string_view link, StringField(o, "linkName", where));
      if (e.type == EntryType::kHardlink) {
        auto target = NormalizeTocPath(link, false, true);
        if (!target.ok()) return Bad(target.status(), where + ": link target");
        e.link = std::move(*target);
      } else if (e.type == EntryType::kSymlink) {
        if (Status st = CheckTocSymlinkTarget(link); !st.ok()) return Bad(st, where);
        e.link = std::string(link);
      }
      object xa;
      if (o["xattrs"].get(xa) == simdjson::SUCCESS) {
        for (auto field : xa) {
          if (e.xattrs.size() >= limits.max_xattrs) return Bad(where + ": too many xattrs");
          std::string_view b64;
          if (field.value.get(b64) != simdjson::SUCCESS) {
            return Bad(where + ": an xattr value is not a string");
          }
          auto v = Base64Decode(b64);
          if (!v.ok() || v->size() > limits.max_xattr_bytes || field.key.empty()) {
            return Bad(where + ": xattr \"" + std::string(field.key.substr(0, 60)) +
                       "\" is not a bounded base64 value");
          }
          e.xattrs.push_back({std::string(field.key), std::move(*v)});
        }
      }
      if (e.type == EntryType::kFile) {
        IMGFS_RETURN_IF_ERROR(UintField(o, "size", limits.max_file_size, &size, where));
        e.size = size;
      }
      // A hard link's target is not looked for here: as in a tar, it may be a lower
      // layer's file (docs/layer-rules.md, rule 2); the merge resolves it, or refuses
      // the image, as for a layer pulled in full.
      if (e.type == EntryType::kFile && (size > 0 || o["digest"].error() == simdjson::SUCCESS)) {
        IMGFS_ASSIGN_OR_RETURN(e.digest, DigestField(o, "digest", where));
      }
      toc.entries.push_back(std::move(e));
      if (toc.entries.back().type != EntryType::kFile || size == 0) continue;
      open = &toc.entries.back();
      open_name = std::string(name);
      covered = 0;
    } else {
      if (!open) return Bad(where + ": a chunk that follows no regular file with data");
      if (name != open_name) {
        return Bad(where + ": a chunk of another file than \"" + open_name + "\"");
      }
      if (covered == open->size) {
        return Bad(where + ": a chunk past the end of \"" + open_name + "\"");
      }
    }
    // The data of `open`: this entry is its next chunk.
    IMGFS_RETURN_IF_ERROR(UintField(o, "offset", toc_offset, &offset, where));
    IMGFS_RETURN_IF_ERROR(UintField(o, "innerOffset", limits.max_file_size, &inner, where));
    IMGFS_RETURN_IF_ERROR(UintField(o, "chunkOffset", limits.max_file_size, &chunk_offset, where));
    IMGFS_RETURN_IF_ERROR(UintField(o, "chunkSize", limits.max_file_size, &chunk_size, where));
    if (offset >= toc_offset) return Bad(where + ": data offset not before the TOC");
    if (any_data && (offset < prev_off || (offset == prev_off && inner <= prev_inner))) {
      return Bad(where + ": data offset " + std::to_string(offset) + "+" + std::to_string(inner) +
                 " does not follow the previous one (" + std::to_string(prev_off) + "+" +
                 std::to_string(prev_inner) + ")");
    }
    if (chunk_offset != covered) {
      return Bad(where + ": chunkOffset " + std::to_string(chunk_offset) + ", expected " +
                 std::to_string(covered));
    }
    uint64_t left = open->size - covered;
    if (chunk_size == 0) chunk_size = left;  // 0: to the end of the file
    if (chunk_size > left) {
      return Bad(where + ": chunkSize " + std::to_string(chunk_size) + " past the file's end");
    }
    if (open->chunks.size() >= limits.max_entries) return Bad(where + ": too many chunks");
    TocChunk c;
    c.codec = ChunkCodec::kGzip;
    c.blob_offset = offset;
    c.skip = inner;
    c.file_offset = covered;
    c.size = chunk_size;
    IMGFS_ASSIGN_OR_RETURN(c.digest, DigestField(o, "chunkDigest", where));
    open->chunks.push_back(std::move(c));
    covered += chunk_size;
    any_data = true;
    prev_off = offset;
    prev_inner = inner;
  }
  if (open && covered != open->size) {
    return Bad("file \"" + open_name + "\": its chunks cover " + std::to_string(covered) + " of " +
               std::to_string(open->size) + " bytes");
  }
  // A member ends where the next member with data starts (later pieces sharing it, by
  // innerOffset, have the same start), or at the TOC.
  uint64_t next_start = toc_offset, last_start = toc_offset;
  for (auto it = toc.entries.rbegin(); it != toc.entries.rend(); ++it) {
    for (auto c = it->chunks.rbegin(); c != it->chunks.rend(); ++c) {
      if (c->blob_offset < last_start) next_start = last_start;
      c->blob_length = next_start - c->blob_offset;
      last_start = c->blob_offset;
    }
  }
  return toc;
}

Result<LayerToc> ReadEstargzToc(const Digest& blob, uint64_t blob_size, const BlobReader& read,
                                const Digest& expected, const TocLimits& limits) {
  if (expected.empty()) {
    return Status::InvalidArgument("eStargz: the layer has no " +
                                   std::string(kTocDigestAnnotation) + " annotation");
  }
  if (blob_size < kFooterSize) return Status::InvalidArgument("eStargz: blob shorter than footer");
  IMGFS_ASSIGN_OR_RETURN(std::string footer, read(blob_size - kFooterSize, kFooterSize));
  if (footer.size() != kFooterSize) return Status::Corruption("eStargz: short read of the footer");
  IMGFS_ASSIGN_OR_RETURN(uint64_t toc_offset, ParseFooter(footer, blob_size));
  uint64_t member_size = blob_size - kFooterSize - toc_offset;
  if (member_size > limits.max_toc_member) {
    return Status::InvalidArgument("eStargz TOC member: " + std::to_string(member_size) +
                                   " bytes, more than the limit " +
                                   std::to_string(limits.max_toc_member));
  }
  IMGFS_ASSIGN_OR_RETURN(std::string member, read(toc_offset, member_size));
  if (member.size() != member_size) return Status::Corruption("eStargz: short read of the TOC");
  IMGFS_ASSIGN_OR_RETURN(TocFile file, ExtractToc(member, limits));
  const std::string& json = file.json;
  Digest got = Sha256Of(json);
  if (!(got == expected)) {
    return Status::Corruption("eStargz TOC: digest " + got.str() + " is not the annotated " +
                              expected.str());
  }
  IMGFS_ASSIGN_OR_RETURN(LayerToc toc, ParseTocJson(json, toc_offset, limits));
  toc.blob = blob;
  toc.blob_size = blob_size;
  toc.toc_digest = got;
  // The tar's last entry is the TOC file itself, which the TOC does not list: it is
  // one chunk, the TOC member after its tar header, whose digest is the TOC digest.
  if (toc.entries.size() >= limits.max_entries) return Bad("too many entries");
  TocChunk c;
  c.codec = ChunkCodec::kGzip;
  c.blob_offset = toc_offset;
  c.blob_length = member_size;
  c.skip = 512;
  c.size = file.entry.size;
  c.digest = got;
  file.entry.digest = got;
  if (c.size > 0) file.entry.chunks.push_back(std::move(c));
  toc.entries.push_back(std::move(file.entry));
  return toc;
}

}  // namespace imgfs::estargz
