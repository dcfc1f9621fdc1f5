#include "registry/zstd_chunked.h"

#include <simdjson.h>
#include <zstd.h>

#include <algorithm>
#include <cstring>
#include <map>

#include "index/lazy_virtual.h"
#include "registry/credentials.h"
#include "registry/json.h"
#include "registry/printable.h"

namespace imgfs {
namespace {

using simdjson::dom::element;
using simdjson::dom::object;

// "A:B:C[:D]" → the numbers; every field a plain decimal.
Result<std::vector<uint64_t>> SplitNumbers(std::string_view s, size_t want, const char* what) {
  std::vector<uint64_t> out;
  size_t start = 0;
  while (true) {
    size_t colon = s.find(':', start);
    std::string_view f = s.substr(start, colon == std::string_view::npos ? s.npos : colon - start);
    if (f.empty() || f.size() > 19) break;
    uint64_t v = 0;
    bool ok = true;
    for (char c : f) {
      if (c < '0' || c > '9') ok = false;
      v = v * 10 + static_cast<uint64_t>(c - '0');
    }
    if (!ok) break;
    out.push_back(v);
    if (colon == std::string_view::npos) break;
    start = colon + 1;
  }
  if (out.size() != want) {
    return Status::InvalidArgument(std::string(what) + ": \"" + std::string(s) + "\" is not " +
                                   std::to_string(want) + " colon-separated numbers");
  }
  return out;
}

Status InBlob(uint64_t off, uint64_t len, uint64_t blob_size, const std::string& what) {
  if (len == 0 || off > blob_size || len > blob_size - off) {
    return Status::InvalidArgument(what + ": range " + std::to_string(off) + "+" +
                                   std::to_string(len) + " is outside the blob (" +
                                   std::to_string(blob_size) + " bytes)");
  }
  return Status::Ok();
}

std::string Str(const object& o, const char* key) {
  std::string_view s;
  if (o[key].get(s) == simdjson::SUCCESS) return std::string(s);
  return "";
}

// A non-negative integer field (absent: 0). Negative or not a number: an error.
Result<uint64_t> Num(const object& o, const char* key, const std::string& where) {
  element el;
  if (o[key].get(el) != simdjson::SUCCESS || el.is_null()) return uint64_t{0};
  int64_t i;
  uint64_t u;
  if (el.get(u) == simdjson::SUCCESS) return u;
  if (el.get(i) == simdjson::SUCCESS) {
    if (i < 0) return Status::InvalidArgument(where + ": " + key + " is negative");
    return static_cast<uint64_t>(i);
  }
  return Status::InvalidArgument(where + ": " + key + " is not an integer");
}

Result<EntryType> TypeOf(std::string_view t, const std::string& where) {
  if (t == "reg") return EntryType::kFile;
  if (t == "dir") return EntryType::kDir;
  if (t == "symlink") return EntryType::kSymlink;
  if (t == "hardlink") return EntryType::kHardlink;
  if (t == "char") return EntryType::kChar;
  if (t == "block") return EntryType::kBlock;
  if (t == "fifo") return EntryType::kFifo;
  return Status::InvalidArgument(where + ": unknown entry type \"" + std::string(t) + "\"");
}

}  // namespace

namespace {
// Older writers (containers/storage before 1.40, Debian 12's skopeo 1.9) spell the
// annotations "io.containers.zstd-chunked.*": the same values under the new names.
std::map<std::string, std::string> Canonical(const std::map<std::string, std::string>& in) {
  static const std::string kOld = "io.containers.zstd-chunked.";
  static const std::string kNew = "io.github.containers.zstd-chunked.";
  std::map<std::string, std::string> out = in;
  for (const auto& [k, v] : in) {
    if (k.rfind(kOld, 0) == 0) out.try_emplace(kNew + k.substr(kOld.size()), v);
  }
  return out;
}
}  // namespace

bool IsZstdChunked(const std::map<std::string, std::string>& in) {
  auto annotations = Canonical(in);
  return annotations.count(kZstdChunkedTocPosition) && annotations.count(kZstdChunkedTocChecksum);
}

Result<ZstdChunkedLayout> ParseZstdChunkedLayout(const std::map<std::string, std::string>& in,
                                                 uint64_t blob_size) {
  auto annotations = Canonical(in);
  ZstdChunkedLayout l;
  auto pos = annotations.find(kZstdChunkedTocPosition);
  auto sum = annotations.find(kZstdChunkedTocChecksum);
  if (pos == annotations.end() || sum == annotations.end()) {
    return Status::InvalidArgument("not a zstd:chunked layer (no TOC annotations)");
  }
  IMGFS_ASSIGN_OR_RETURN(auto t, SplitNumbers(pos->second, 4, kZstdChunkedTocPosition));
  if (t[3] != 1) {
    return Status::Unsupported("zstd:chunked TOC type " + std::to_string(t[3]) +
                               " (only type 1 is known)");
  }
  l.toc_offset = t[0];
  l.toc_length = t[1];
  l.toc_size = t[2];
  IMGFS_RETURN_IF_ERROR(InBlob(l.toc_offset, l.toc_length, blob_size, "zstd:chunked TOC"));
  if (l.toc_size > kMaxTocBytes) return Status::InvalidArgument("zstd:chunked TOC too large");
  IMGFS_ASSIGN_OR_RETURN(l.toc_digest, Digest::Parse(sum->second));
  auto tpos = annotations.find(kZstdChunkedTarSplitPosition);
  if (tpos != annotations.end()) {
    IMGFS_ASSIGN_OR_RETURN(auto s, SplitNumbers(tpos->second, 3, kZstdChunkedTarSplitPosition));
    l.has_tarsplit = true;
    l.tarsplit_offset = s[0];
    l.tarsplit_length = s[1];
    l.tarsplit_size = s[2];
    IMGFS_RETURN_IF_ERROR(
        InBlob(l.tarsplit_offset, l.tarsplit_length, blob_size, "zstd:chunked tar-split"));
    if (l.tarsplit_size > kMaxTarSplitBytes)
      return Status::InvalidArgument("zstd:chunked tar-split too large");
  }
  auto tsum = annotations.find(kZstdChunkedTarSplitChecksum);
  if (tsum != annotations.end()) {
    IMGFS_ASSIGN_OR_RETURN(Digest d, Digest::Parse(tsum->second));
    l.tarsplit_digest = d;
  }
  return l;
}

namespace {

using DCtxPtr = std::unique_ptr<ZSTD_DCtx, size_t (*)(ZSTD_DCtx*)>;

// DecompressZstd with a decoder context of the caller's (reset first): one context for
// the thousands of small header frames of a layer saves making one each (~40 us).
Result<std::string> DecompressZstdWith(const DCtxPtr& d, std::string_view compressed,
                                       uint64_t max_size) {
  ZSTD_DCtx_reset(d.get(), ZSTD_reset_session_only);
  std::string out;
  ZSTD_inBuffer in{compressed.data(), compressed.size(), 0};
  char buf[1 << 16];
  size_t last = 1;
  while (in.pos < in.size) {
    ZSTD_outBuffer ob{buf, sizeof buf, 0};
    last = ZSTD_decompressStream(d.get(), &ob, &in);
    if (ZSTD_isError(last)) {
      return Status::Corruption(std::string("zstd: ") + ZSTD_getErrorName(last));
    }
    if (out.size() + ob.pos > max_size) {
      return Status::InvalidArgument("zstd: more than " + std::to_string(max_size) +
                                     " bytes decompressed");
    }
    out.append(buf, ob.pos);
    if (ob.pos == 0 && in.pos == in.size) break;
  }
  // Drain what the decoder still holds.
  for (int i = 0; i < 1 << 20 && last != 0; i++) {
    ZSTD_outBuffer ob{buf, sizeof buf, 0};
    last = ZSTD_decompressStream(d.get(), &ob, &in);
    if (ZSTD_isError(last)) {
      return Status::Corruption(std::string("zstd: ") + ZSTD_getErrorName(last));
    }
    if (out.size() + ob.pos > max_size)
      return Status::InvalidArgument("zstd: more than " + std::to_string(max_size) + " bytes");
    out.append(buf, ob.pos);
    if (ob.pos == 0) break;
  }
  if (last != 0) return Status::Corruption("zstd: truncated frame");
  return out;
}

}  // namespace

Result<std::string> DecompressZstd(std::string_view compressed, uint64_t max_size) {
  DCtxPtr d(ZSTD_createDCtx(), ZSTD_freeDCtx);
  if (!d) return Status::Exhausted("zstd: out of memory");
  return DecompressZstdWith(d, compressed, max_size);
}

Result<ParsedZstdToc> ParseZstdChunkedToc(std::string_view json, const Digest& blob,
                                          uint64_t blob_size, const Digest& toc_digest,
                                          size_t max_entries) {
  ParsedZstdToc out;
  LayerToc& toc = out.toc;
  toc.format = TocFormat::kZstdChunked;
  toc.blob = blob;
  toc.blob_size = blob_size;
  toc.toc_digest = toc_digest;
  simdjson::dom::parser parser;
  element root;
  if (auto e = parser.parse(json.data(), json.size()).get(root); e) {
    return Status::InvalidArgument(std::string("zstd:chunked TOC: ") + simdjson::error_message(e));
  }
  object top;
  if (root.get(top) != simdjson::SUCCESS)
    return Status::InvalidArgument("zstd:chunked TOC: not an object");
  IMGFS_ASSIGN_OR_RETURN(uint64_t version, Num(top, "version", "zstd:chunked TOC"));
  if (version != 1) {
    return Status::Unsupported("zstd:chunked TOC version " + std::to_string(version));
  }
  std::string tsd = Str(top, "tarSplitDigest");
  if (!tsd.empty()) {
    IMGFS_ASSIGN_OR_RETURN(Digest d, Digest::Parse(tsd));
    out.tarsplit_digest = d;
  }
  // containers/storage writes "entries": null for a tar with no entries (a nil slice;
  // an empty layer, e.g. of a RUN that changed nothing), and a writer may leave it
  // out: none, not an error.
  simdjson::dom::array entries;
  auto field = top["entries"];
  bool none = field.error() == simdjson::NO_SUCH_FIELD || field.is_null();
  if (none) return out;
  if (field.get(entries) != simdjson::SUCCESS)
    return Status::InvalidArgument("zstd:chunked TOC: no entries array");
  // Per regular file, the chunk entries seen so far, and their raw blob ends.
  struct RawChunk {
    uint64_t file_offset, size_hint, offset, end;
    std::string digest;
    bool zeros;
  };
  std::vector<RawChunk> raw;
  uint64_t reg_end = 0;
  auto finish_file = [&]() -> Status {
    if (toc.entries.empty() || toc.entries.back().type != EntryType::kFile) return Status::Ok();
    TocEntry& f = toc.entries.back();
    std::string where = "zstd:chunked TOC entry \"" + f.path + "\"";
    if (f.size == 0) {
      raw.clear();
      return Status::Ok();
    }
    if (!f.digest) return Status::InvalidArgument(where + ": no digest");
    bool all_digests = true;
    for (const RawChunk& c : raw) all_digests = all_digests && !c.digest.empty();
    for (size_t i = 1; i < raw.size(); i++)
      if (raw[i].file_offset <= raw[i - 1].file_offset) all_digests = false;
    if (raw.size() <= 1 || !all_digests || raw[0].file_offset != 0) {
      // One chunk: the file's whole range, checked against the file digest (the
      // frames of all its chunks decode to the whole content).
      TocChunk c;
      c.file_offset = 0;
      c.size = f.size;
      c.blob_offset = raw.empty() ? 0 : raw[0].offset;
      uint64_t end = reg_end;
      for (const RawChunk& r : raw) end = std::max(end, r.end);
      c.blob_length = end > c.blob_offset ? end - c.blob_offset : 0;
      c.digest = *f.digest;
      c.codec = ChunkCodec::kZstd;
      IMGFS_RETURN_IF_ERROR(InBlob(c.blob_offset, c.blob_length, blob_size, where));
      f.chunks = {c};
      raw.clear();
      return Status::Ok();
    }
    for (size_t i = 0; i < raw.size(); i++) {
      TocChunk c;
      c.file_offset = raw[i].file_offset;
      uint64_t next = i + 1 < raw.size() ? raw[i + 1].file_offset : f.size;
      if (next > f.size || next <= c.file_offset)
        return Status::InvalidArgument(where + ": chunk offsets out of order");
      c.size = next - c.file_offset;
      if (raw[i].zeros) {
        c.codec = ChunkCodec::kZeros;
      } else {
        // A chunk ends where the next begins (older writers give chunks no endOffset;
        // the file's own endOffset covers all its chunks), the last at the file's end.
        uint64_t end = i + 1 < raw.size() ? raw[i + 1].offset : reg_end;
        if (raw[i].end != 0 && (i > 0 || i + 1 == raw.size())) end = raw[i].end;
        if (end <= raw[i].offset) return Status::InvalidArgument(where + ": empty chunk range");
        c.blob_offset = raw[i].offset;
        c.blob_length = end - raw[i].offset;
        IMGFS_RETURN_IF_ERROR(InBlob(c.blob_offset, c.blob_length, blob_size, where));
      }
      if (!raw[i].digest.empty()) {
        IMGFS_ASSIGN_OR_RETURN(c.digest, Digest::Parse(raw[i].digest));
      }
      f.chunks.push_back(c);
    }
    raw.clear();
    return Status::Ok();
  };
  size_t count = 0;
  for (element el : entries) {
    if (++count > max_entries) {
      return Status::InvalidArgument("zstd:chunked TOC: more than " + std::to_string(max_entries) +
                                     " entries");
    }
    object o;
    if (el.get(o) != simdjson::SUCCESS)
      return Status::InvalidArgument("zstd:chunked TOC: an entry is not an object");
    std::string type = Str(o, "type");
    std::string name = Str(o, "name");
    std::string where = "zstd:chunked TOC entry \"" + Printable(name, 100) + "\"";
    if (type == "chunk") {
      if (toc.entries.empty() || toc.entries.back().type != EntryType::kFile || raw.empty())
        return Status::InvalidArgument(where + ": a chunk that follows no regular file");
      RawChunk c;
      IMGFS_ASSIGN_OR_RETURN(c.file_offset, Num(o, "chunkOffset", where));
      IMGFS_ASSIGN_OR_RETURN(c.size_hint, Num(o, "chunkSize", where));
      IMGFS_ASSIGN_OR_RETURN(c.offset, Num(o, "offset", where));
      IMGFS_ASSIGN_OR_RETURN(c.end, Num(o, "endOffset", where));
      c.digest = Str(o, "chunkDigest");
      c.zeros = Str(o, "chunkType") == "zeros";
      raw.push_back(std::move(c));
      continue;
    }
    IMGFS_RETURN_IF_ERROR(finish_file());
    TocEntry e;
    IMGFS_ASSIGN_OR_RETURN(e.type, TypeOf(type, where));
    auto path = NormalizeTocPath(name, e.type == EntryType::kDir);
    if (!path.ok()) return path.status().WithContext(where);
    e.path = std::move(*path);
    IMGFS_ASSIGN_OR_RETURN(uint64_t mode, Num(o, "mode", where));
    e.mode = static_cast<uint32_t>(mode & 07777);
    IMGFS_ASSIGN_OR_RETURN(e.uid, Num(o, "uid", where));
    IMGFS_ASSIGN_OR_RETURN(e.gid, Num(o, "gid", where));
    IMGFS_ASSIGN_OR_RETURN(e.size, Num(o, "size", where));
    IMGFS_ASSIGN_OR_RETURN(uint64_t major, Num(o, "devMajor", where));
    IMGFS_ASSIGN_OR_RETURN(uint64_t minor, Num(o, "devMinor", where));
    e.dev_major = static_cast<uint32_t>(major);
    e.dev_minor = static_cast<uint32_t>(minor);
    e.mtime_sec = ParseRfc3339(Str(o, "modtime"));
    std::string link = Str(o, "linkName");
    if (e.type == EntryType::kHardlink) {
      auto target = NormalizeTocPath(link, false, /*link_target=*/true);
      if (!target.ok()) return target.status().WithContext(where + ": link target");
      e.link = std::move(*target);
    } else if (e.type == EntryType::kSymlink) {
      IMGFS_RETURN_IF_ERROR(CheckTocSymlinkTarget(link).WithContext(where));
      e.link = link;
    }
    object xa;
    if (o["xattrs"].get(xa) == simdjson::SUCCESS) {
      for (auto field : xa) {
        std::string_view v;
        if (field.value.get(v) != simdjson::SUCCESS)
          return Status::InvalidArgument(where + ": xattr value is not a string");
        IMGFS_ASSIGN_OR_RETURN(std::string bytes, Base64Decode(v));
        e.xattrs.push_back(Xattr{std::string(field.key), std::move(bytes)});
      }
    }
    if (e.type == EntryType::kFile) {
      if (e.size > (1ull << 50)) return Status::InvalidArgument(where + ": size too large");
      std::string dg = Str(o, "digest");
      if (!dg.empty()) {
        IMGFS_ASSIGN_OR_RETURN(Digest d, Digest::Parse(dg));
        e.digest = d;
      }
      if (e.size > 0) {
        RawChunk c;
        c.file_offset = 0;
        IMGFS_ASSIGN_OR_RETURN(c.size_hint, Num(o, "chunkSize", where));
        IMGFS_ASSIGN_OR_RETURN(c.offset, Num(o, "offset", where));
        IMGFS_ASSIGN_OR_RETURN(c.end, Num(o, "endOffset", where));
        reg_end = c.end;
        c.digest = Str(o, "chunkDigest");
        c.zeros = Str(o, "chunkType") == "zeros";
        raw.push_back(std::move(c));
      }
    }
    toc.entries.push_back(std::move(e));
  }
  IMGFS_RETURN_IF_ERROR(finish_file());
  return out;
}

Result<std::vector<TarSplitSegment>> ParseTarSplit(std::string_view jsonl) {
  std::vector<TarSplitSegment> out;
  simdjson::dom::parser parser;
  size_t pos = 0, line_no = 0;
  while (pos < jsonl.size()) {
    size_t nl = jsonl.find('\n', pos);
    std::string_view line = jsonl.substr(pos, nl == jsonl.npos ? jsonl.npos : nl - pos);
    pos = nl == jsonl.npos ? jsonl.size() : nl + 1;
    line_no++;
    if (line.empty()) continue;
    std::string where = "tar-split line " + std::to_string(line_no);
    element el;
    if (auto e = parser.parse(line.data(), line.size()).get(el); e)
      return Status::InvalidArgument(where + ": " + simdjson::error_message(e));
    object o;
    if (el.get(o) != simdjson::SUCCESS) return Status::InvalidArgument(where + ": not an object");
    IMGFS_ASSIGN_OR_RETURN(uint64_t type, Num(o, "type", where));
    TarSplitSegment s;
    if (type == 1) {
      s.is_file = true;
      s.name = Str(o, "name");
      if (std::string raw = Str(o, "name_raw"); !raw.empty()) {  // tar-split prefers it
        auto bytes = Base64Decode(raw);
        if (!bytes.ok()) return Status::InvalidArgument(where + ": name_raw is not base64");
        s.name = std::move(*bytes);
      }
      IMGFS_ASSIGN_OR_RETURN(s.size, Num(o, "size", where));
      if (s.size > (1ull << 50)) return Status::InvalidArgument(where + ": size too large");
    } else if (type == 2) {
      std::string payload = Str(o, "payload");
      IMGFS_ASSIGN_OR_RETURN(s.raw, Base64Decode(payload));
    } else {
      return Status::InvalidArgument(where + ": unknown type " + std::to_string(type));
    }
    out.push_back(std::move(s));
  }
  return out;
}

namespace {
// A file's content extent in the blob (its chunks with bytes), or false when none.
bool FileExtent(const TocEntry& e, uint64_t* start, uint64_t* end) {
  bool any = false;
  for (const TocChunk& c : e.chunks) {
    if (c.codec == ChunkCodec::kZeros) continue;
    *start = any ? std::min(*start, c.blob_offset) : c.blob_offset;
    *end = any ? std::max(*end, c.blob_offset + c.blob_length) : c.blob_offset + c.blob_length;
    any = true;
  }
  return any;
}
}  // namespace

Result<std::vector<BlobRange>> HeaderGaps(const LayerToc& toc, uint64_t toc_offset) {
  std::vector<BlobRange> out;
  uint64_t pos = 0;
  for (const TocEntry& e : toc.entries) {
    if (e.type != EntryType::kFile || e.size == 0) continue;
    uint64_t s = 0, t = 0;
    if (!FileExtent(e, &s, &t))
      return Status::Unsupported("zstd:chunked file \"" + e.path + "\" has no bytes in the blob");
    if (s < pos) {
      return Status::Corruption("zstd:chunked TOC: file \"" + e.path +
                                "\" is not after the previous file in the blob");
    }
    out.push_back(BlobRange{pos, s - pos});
    pos = t;
  }
  constexpr uint64_t kSkippableHeader = 8;
  if (toc_offset < pos + kSkippableHeader)
    return Status::Corruption("zstd:chunked TOC: file contents run into the TOC");
  out.push_back(BlobRange{pos, toc_offset - kSkippableHeader - pos});
  return out;
}

Result<std::vector<TarSplitSegment>> SegmentsFromGaps(const LayerToc& toc,
                                                      std::vector<std::string> decoded_gaps) {
  std::vector<TarSplitSegment> out;
  size_t g = 0;
  auto gap = [&]() -> Status {
    if (g >= decoded_gaps.size()) return Status::InvalidArgument("too few header ranges");
    TarSplitSegment s;
    s.raw = std::move(decoded_gaps[g++]);
    out.push_back(std::move(s));
    return Status::Ok();
  };
  for (const TocEntry& e : toc.entries) {
    if (e.type != EntryType::kFile || e.size == 0) continue;
    IMGFS_RETURN_IF_ERROR(gap());
    TarSplitSegment f;
    f.is_file = true;
    f.name = e.path;
    f.size = e.size;
    out.push_back(std::move(f));
  }
  IMGFS_RETURN_IF_ERROR(gap());
  if (g != decoded_gaps.size()) return Status::InvalidArgument("too many header ranges");
  return out;
}

Result<std::vector<std::string>> DecodeHeaderGaps(const std::vector<BlobRange>& gaps,
                                                  const std::vector<BlobRange>& ranges,
                                                  const std::vector<std::string>& bodies,
                                                  uint64_t budget) {
  const uint64_t limit = budget;
  DCtxPtr dctx(ZSTD_createDCtx(), ZSTD_freeDCtx);
  if (!dctx) return Status::Exhausted("zstd: out of memory");
  std::vector<std::string> out;
  size_t r = 0;
  for (const BlobRange& g : gaps) {
    if (g.length == 0) {
      out.emplace_back();
      continue;
    }
    while (r < ranges.size() && ranges[r].offset + ranges[r].length < g.offset + g.length) r++;
    if (r == ranges.size() || g.offset < ranges[r].offset || r >= bodies.size() ||
        bodies[r].size() != ranges[r].length)
      return Status::Corruption("header range lookup");
    std::string_view bytes(bodies[r]);
    auto d = DecompressZstdWith(dctx, bytes.substr(g.offset - ranges[r].offset, g.length), budget);
    if (!d.ok() && d.status().code() == Status::Code::kInvalidArgument) {
      return Status::InvalidArgument("its tar headers decompress to more than " +
                                     std::to_string(limit) + " bytes");
    }
    if (!d.ok())
      return d.status().WithContext("tar headers at blob offset " + std::to_string(g.offset));
    budget -= d->size();
    out.push_back(std::move(*d));
  }
  return out;
}

namespace {

// The tar stream with file contents zeroed, made on the fly.
class HeaderOnlyTar : public ByteSource {
 public:
  explicit HeaderOnlyTar(std::vector<TarSplitSegment> s) : segs_(std::move(s)) {}
  Result<size_t> Read(void* buf, size_t n) override {
    while (i_ < segs_.size()) {
      const TarSplitSegment& s = segs_[i_];
      uint64_t len = s.is_file ? s.size : s.raw.size();
      if (off_ >= len) {
        i_++;
        off_ = 0;
        continue;
      }
      size_t k = static_cast<size_t>(std::min<uint64_t>(n, len - off_));
      if (s.is_file) {
        std::memset(buf, 0, k);
      } else {
        std::memcpy(buf, s.raw.data() + off_, k);
      }
      off_ += k;
      return k;
    }
    return size_t{0};
  }

 private:
  std::vector<TarSplitSegment> segs_;
  size_t i_ = 0;
  uint64_t off_ = 0;
};

}  // namespace

Result<std::unique_ptr<ByteSource>> ApplyTarSplit(LayerToc& toc,
                                                  std::vector<TarSplitSegment> segments) {
  uint64_t off = 0;
  size_t next = 0;  // the next TOC entry to look at
  for (const TarSplitSegment& s : segments) {
    if (s.is_file && s.size > 0) {
      while (next < toc.entries.size() &&
             !(toc.entries[next].type == EntryType::kFile && toc.entries[next].size > 0))
        next++;
      // The TOC is JSON: a name that is not UTF-8 is there as Go's encoder spells it.
      auto name = NormalizeTarPath(s.name, false);
      if (next == toc.entries.size() || !name.ok() ||
          AsJsonString(*name) != toc.entries[next].path || toc.entries[next].size != s.size) {
        return Status::Corruption("zstd:chunked: tar-split file \"" + s.name + "\" (" +
                                  std::to_string(s.size) +
                                  " bytes) does not match the TOC's next regular file");
      }
      toc.entries[next].tar_offset = off;
      next++;
    }
    uint64_t len = s.is_file ? s.size : s.raw.size();
    if (len > kMaxLazyTarBytes - off) {
      return Status::Unsupported("zstd:chunked: the tar stream is over " +
                                 std::to_string(kMaxLazyTarBytes >> 30) +
                                 " GiB, more than a lazy pull indexes");
    }
    off += len;
  }
  for (; next < toc.entries.size(); next++) {
    if (toc.entries[next].type == EntryType::kFile && toc.entries[next].size > 0) {
      return Status::Corruption("zstd:chunked: TOC file \"" + toc.entries[next].path +
                                "\" is not in the tar-split");
    }
  }
  toc.tar_size = off;
  return std::unique_ptr<ByteSource>(new HeaderOnlyTar(std::move(segments)));
}

Status MatchTocToTar(const LayerToc& toc, const std::vector<LayerEntry>& entries,
                     bool headers_verified) {
  struct Named {
    std::vector<const TocEntry*> toc;  // in TOC order
    size_t used = 0;                   // how many a tar entry met so far
  };
  std::map<std::string, Named> by_path;
  for (const TocEntry& e : toc.entries) by_path[e.path].toc.push_back(&e);
  for (const LayerEntry& e : entries) {
    auto it = by_path.find(AsJsonString(e.path));
    std::string why;
    if (it == by_path.end() || it->second.used == it->second.toc.size()) {
      // The root, when the TOC leaves it out (or has it fewer times): its header is the
      // only word on its attributes, which only a tar-split's digest makes trustworthy
      // before completion.
      if (e.path.empty() && headers_verified) continue;
      if (e.path.empty())
        return Status::Unsupported(
            "the tar's root directory is not in the table of contents as often, and no "
            "tar-split digest covers its header");
      why = it == by_path.end() ? "not in the table of contents"
                                : "in the tar more often than in the table of contents";
    } else {
      const TocEntry& t = *it->second.toc[it->second.used++];
      bool device = e.type == EntryType::kChar || e.type == EntryType::kBlock;
      if (t.type != e.type)
        why = "type";
      else if (t.mode != (e.mode & 07777))
        why = "mode";
      else if (t.uid != e.uid || t.gid != e.gid)
        why = "owner";
      else if (e.type == EntryType::kFile && t.size != e.size)
        why = "size";
      else if (e.type == EntryType::kFile && e.size > 0 && t.tar_offset != e.data_offset)
        why = "content offset";  // a header naming another file of the same size
      else if ((e.type == EntryType::kSymlink || e.type == EntryType::kHardlink) &&
               t.link != AsJsonString(e.link))
        why = "link target";
      else if (device && (t.dev_major != e.dev_major || t.dev_minor != e.dev_minor))
        why = "device";
      else if (t.mtime_sec != 0 && t.mtime_sec != e.mtime_sec)
        why = "mtime";  // (a TOC without one: the header's, checked at completion)
      else if (JsonXattrs(e.xattrs) != JsonXattrs(t.xattrs))
        why = "xattrs";
      if (!why.empty()) why += " differs from the table of contents";
    }
    if (!why.empty()) return Status::Corruption("tar entry \"" + e.path + "\": " + why);
  }
  for (const auto& [path, n] : by_path) {
    if (!path.empty() && n.used < n.toc.size())
      return Status::Corruption("table of contents entry \"" + path + "\" is not in the tar" +
                                (n.used ? " as often" : ""));
  }
  return Status::Ok();
}

}  // namespace imgfs
