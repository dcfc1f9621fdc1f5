#include "index/lazy_layer.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zstd.h>

#include <algorithm>
#include <cstring>
#include <memory>
#include <mutex>
#include <random>

#include "index/codec.h"
#include "index/file_util.h"
#include "index/stream.h"

namespace imgfs {

void RangeMap::Add(uint64_t start, uint64_t end) {
  if (start >= end) return;
  auto it = ranges_.upper_bound(start);
  if (it != ranges_.begin()) {
    auto prev = std::prev(it);
    if (prev->second >= start) {  // touches or overlaps the previous range
      start = prev->first;
      end = std::max(end, prev->second);
      it = ranges_.erase(prev);
    }
  }
  while (it != ranges_.end() && it->first <= end) {
    end = std::max(end, it->second);
    it = ranges_.erase(it);
  }
  ranges_[start] = end;
}

void RangeMap::Remove(uint64_t start, uint64_t end) {
  if (start >= end) return;
  auto it = ranges_.upper_bound(start);
  if (it != ranges_.begin()) --it;
  while (it != ranges_.end() && it->first < end) {
    uint64_t s = it->first, e = it->second;
    if (e <= start) {
      ++it;
      continue;
    }
    it = ranges_.erase(it);
    if (s < start) ranges_[s] = start;
    if (e > end) ranges_[end] = e;
  }
}

bool RangeMap::Covers(uint64_t start, uint64_t end) const {
  if (start >= end) return true;
  auto it = ranges_.upper_bound(start);
  if (it == ranges_.begin()) return false;
  --it;
  return it->first <= start && it->second >= end;
}

std::vector<std::pair<uint64_t, uint64_t>> RangeMap::Missing(uint64_t start, uint64_t end) const {
  std::vector<std::pair<uint64_t, uint64_t>> out;
  uint64_t pos = start;
  auto it = ranges_.upper_bound(start);
  if (it != ranges_.begin()) --it;
  for (; it != ranges_.end() && pos < end; ++it) {
    if (it->second <= pos) continue;
    if (it->first >= end) break;
    if (it->first > pos) out.emplace_back(pos, it->first);
    pos = std::max(pos, it->second);
  }
  if (pos < end) out.emplace_back(pos, end);
  return out;
}

uint64_t RangeMap::Total() const {
  uint64_t t = 0;
  for (const auto& [s, e] : ranges_) t += e - s;
  return t;
}

std::string RangeMap::Encode() const {
  std::string out = "imgfs-ranges 1\n";
  for (const auto& [s, e] : ranges_) out += std::to_string(s) + " " + std::to_string(e) + "\n";
  return out;
}

namespace {

bool ParseU64(std::string_view s, uint64_t* v) {
  if (s.empty() || s.size() > 20) return false;
  uint64_t x = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return false;
    uint64_t d = static_cast<uint64_t>(c - '0');
    if (x > (UINT64_MAX - d) / 10) return false;
    x = x * 10 + d;
  }
  *v = x;
  return true;
}

std::vector<std::string_view> Lines(std::string_view text) {
  std::vector<std::string_view> out;
  size_t pos = 0;
  while (pos < text.size()) {
    size_t nl = text.find('\n', pos);
    if (nl == text.npos) {
      out.push_back(text.substr(pos));  // no final newline: a torn write
      out.push_back("\x01");
      break;
    }
    out.push_back(text.substr(pos, nl - pos));
    pos = nl + 1;
  }
  return out;
}

}  // namespace

Result<RangeMap> RangeMap::Decode(std::string_view text, uint64_t limit) {
  auto lines = Lines(text);
  if (lines.empty() || lines[0] != "imgfs-ranges 1")
    return Status::Corruption("range map: bad header");
  RangeMap m;
  uint64_t last_end = 0;
  for (size_t i = 1; i < lines.size(); i++) {
    std::string_view l = lines[i];
    size_t sp = l.find(' ');
    uint64_t s, e;
    if (sp == l.npos || !ParseU64(l.substr(0, sp), &s) || !ParseU64(l.substr(sp + 1), &e))
      return Status::Corruption("range map: bad line " + std::to_string(i + 1));
    if (s >= e || e > limit || (i > 1 && s <= last_end))
      return Status::Corruption("range map: range " + std::to_string(s) + "-" + std::to_string(e) +
                                " out of order or out of bounds");
    m.ranges_[s] = e;
    last_end = e;
  }
  return m;
}

namespace {
bool ChunkTooLarge(uint64_t size, uint64_t skip, uint64_t blob_length) {
  return skip > kMaxLazyChunk || size > kMaxLazyChunk - skip || blob_length > 2 * kMaxLazyChunk;
}
}  // namespace

Result<ChunkMap> ChunkMapFromToc(const LayerToc& toc) {
  ChunkMap m;
  m.blob_size = toc.blob_size;
  m.tar_size = toc.tar_size;
  for (const TocEntry& e : toc.entries) {
    if (e.type != EntryType::kFile || e.size == 0) continue;
    if (e.tar_offset == kUnknownOffset)
      return Status::InvalidArgument("TOC file \"" + e.path + "\" has no tar offset");
    uint64_t covered = 0;
    for (const TocChunk& c : e.chunks) {
      if (c.file_offset != covered || c.size == 0)
        return Status::InvalidArgument("TOC file \"" + e.path + "\": chunks not contiguous");
      if (ChunkTooLarge(c.size, c.skip, c.blob_length)) {
        return Status::Unsupported("TOC file \"" + e.path + "\": a chunk of " +
                                   std::to_string(c.size) + " bytes (" +
                                   std::to_string(c.blob_length) +
                                   " compressed) is more than a lazy read decodes at once (" +
                                   std::to_string(kMaxLazyChunk >> 20) + " MiB)");
      }
      LazyChunk l;
      l.tar_offset = e.tar_offset + c.file_offset;
      l.size = c.size;
      l.blob_offset = c.blob_offset;
      l.blob_length = c.blob_length;
      l.digest = c.digest;
      l.codec = c.codec;
      l.skip = c.skip;
      m.chunks.push_back(l);
      covered += c.size;
    }
    if (covered != e.size)
      return Status::InvalidArgument("TOC file \"" + e.path + "\": chunks do not cover it");
  }
  std::sort(m.chunks.begin(), m.chunks.end(),
            [](const LazyChunk& a, const LazyChunk& b) { return a.tar_offset < b.tar_offset; });
  for (size_t i = 0; i < m.chunks.size(); i++) {
    const LazyChunk& c = m.chunks[i];
    if (m.tar_size && c.tar_offset + c.size > m.tar_size)
      return Status::InvalidArgument("TOC: a chunk ends past the tar stream");
    if (i > 0 && m.chunks[i - 1].tar_offset + m.chunks[i - 1].size > c.tar_offset)
      return Status::InvalidArgument("TOC: chunks overlap in the tar stream");
  }
  return m;
}

namespace {
constexpr char kChunkMagic[] = "imgfs-chunks 1\n";
}

std::string EncodeChunkMap(const ChunkMap& m) {
  Encoder e;
  e.PutRaw(kChunkMagic, sizeof(kChunkMagic) - 1);
  e.PutVarint(m.blob_size);
  e.PutVarint(m.tar_size);
  e.PutVarint(m.chunks.size());
  for (const LazyChunk& c : m.chunks) {
    e.PutVarint(c.tar_offset);
    e.PutVarint(c.size);
    e.PutVarint(c.blob_offset);
    e.PutVarint(c.blob_length);
    e.PutBytes(c.digest.hex());
    e.PutVarint(static_cast<uint64_t>(c.codec));
    e.PutVarint(c.skip);
  }
  return e.Take();
}

Result<ChunkMap> DecodeChunkMap(std::string_view data) {
  size_t ml = sizeof(kChunkMagic) - 1;
  if (data.substr(0, ml) != std::string_view(kChunkMagic, ml))
    return Status::Corruption("chunk map: bad header");
  Decoder d(data.substr(ml));
  ChunkMap m;
  m.blob_size = d.Varint();
  m.tar_size = d.Varint();
  uint64_t n = d.Varint();
  if (!d.ok() || n > data.size()) return Status::Corruption("chunk map: truncated");
  m.chunks.reserve(static_cast<size_t>(n));
  uint64_t prev_end = 0;
  for (uint64_t i = 0; i < n; i++) {
    LazyChunk c;
    c.tar_offset = d.Varint();
    c.size = d.Varint();
    c.blob_offset = d.Varint();
    c.blob_length = d.Varint();
    std::string_view hex = d.Bytes();
    uint64_t codec = d.Varint();
    c.skip = d.Varint();
    if (!d.ok()) return Status::Corruption("chunk map: truncated");
    auto dg = Digest::FromHex(hex);
    if (!dg.ok()) return Status::Corruption("chunk map: bad digest");
    c.digest = *dg;
    if (codec < 1 || codec > 3) return Status::Corruption("chunk map: bad codec");
    c.codec = static_cast<ChunkCodec>(codec);
    if (c.size == 0 || c.tar_offset < prev_end || c.size > m.tar_size ||
        c.tar_offset > m.tar_size - c.size || c.blob_offset > m.blob_size ||
        c.blob_length > m.blob_size - c.blob_offset ||
        (c.codec != ChunkCodec::kZeros && c.blob_length == 0) ||
        ChunkTooLarge(c.size, c.skip, c.blob_length))
      return Status::Corruption("chunk map: chunk " + std::to_string(i) + " out of bounds");
    prev_end = c.tar_offset + c.size;
    m.chunks.push_back(c);
  }
  if (!d.done()) return Status::Corruption("chunk map: trailing bytes");
  return m;
}

std::string EncodeLazySource(const LazySource& s) {
  return "imgfs-lazy-source 1\n" + s.host + "\n" + s.repo + "\n" + (s.insecure ? "1" : "0") + "\n";
}

Result<LazySource> DecodeLazySource(std::string_view text) {
  auto lines = Lines(text);
  if (lines.size() != 4 || lines[0] != "imgfs-lazy-source 1" || lines[1].empty() ||
      lines[2].empty() || (lines[3] != "0" && lines[3] != "1"))
    return Status::Corruption("lazy source: malformed");
  return LazySource{std::string(lines[1]), std::string(lines[2]), lines[3] == "1"};
}

bool LazyDir::AnyIn(const std::string& root) {
  DIR* d = ::opendir((root + "/lazy").c_str());
  if (!d) return false;
  bool any = false;
  while (dirent* e = ::readdir(d)) {
    if (e->d_name[0] != '.') {
      any = true;
      break;
    }
  }
  ::closedir(d);
  return any;
}

bool LazyDir::Exists() const {
  return IsDirectory(dir);
}

Status LazyDir::Create(const std::string& root, const Digest& blob, const LazySource& src,
                       const ChunkMap& map,
                       const std::vector<std::pair<uint64_t, std::string>>& local) {
  LazyDir final_dir = For(root, blob);
  if (final_dir.Exists()) return Status::Ok();  // another pull made it: same content
  IMGFS_RETURN_IF_ERROR(MakeDirs(root + "/lazy", 0700));
  std::random_device rd;
  LazyDir tmp{root + "/lazy/.tmp-" + blob.hex() + "-" + std::to_string(::getpid()) + "-" +
              std::to_string(rd())};
  if (::mkdir(tmp.dir.c_str(), 0700) != 0) return Status::FromErrno("mkdir " + tmp.dir);
  auto fail = [&](Status st) {
    (void)tmp.Remove();
    return st;
  };
  Status st = WriteFileAtomic(tmp.source(), EncodeLazySource(src), 0600);
  if (st.ok()) st = WriteFileAtomic(tmp.chunks(), EncodeChunkMap(map), 0600);
  if (!st.ok()) return fail(st);
  RangeMap ranges;
  {
    auto fd = OpenFile(tmp.data(), O_WRONLY | O_CREAT | O_EXCL, 0600);
    if (!fd.ok()) return fail(fd.status());
    if (::ftruncate(fd->get(), static_cast<off_t>(map.blob_size)) != 0)
      return fail(Status::FromErrno("truncate " + tmp.data()));
    for (const auto& [off, bytes] : local) {
      if (off > map.blob_size || bytes.size() > map.blob_size - off)
        return fail(Status::InvalidArgument("lazy layer: local range outside the blob"));
      if (::pwrite(fd->get(), bytes.data(), bytes.size(), static_cast<off_t>(off)) !=
          static_cast<ssize_t>(bytes.size()))
        return fail(Status::FromErrno("write " + tmp.data()));
      ranges.Add(off, off + bytes.size());
    }
    if (::fsync(fd->get()) != 0) return fail(Status::FromErrno("fsync " + tmp.data()));
  }
  st = WriteFileAtomic(tmp.ranges(), ranges.Encode(), 0600);
  if (!st.ok()) return fail(st);
  if (::rename(tmp.dir.c_str(), final_dir.dir.c_str()) != 0) {
    int err = errno;
    (void)tmp.Remove();
    if (final_dir.Exists()) return Status::Ok();  // a racing pull won
    return Status::Io("rename " + tmp.dir, err);
  }
  return FsyncDir(root + "/lazy");
}

Result<RangeMap> LazyDir::LoadRanges(uint64_t blob_size) const {
  if (!PathExists(ranges())) return RangeMap();
  IMGFS_ASSIGN_OR_RETURN(std::string text, ReadFileToString(ranges(), 256 << 20));
  return RangeMap::Decode(text, blob_size);
}

std::string LazyDir::BrokenReason() const {
  auto text = ReadFileToString(broken(), 4096);
  if (!text.ok()) return "";
  std::string s = *text;
  while (!s.empty() && s.back() == '\n') s.pop_back();
  return s.empty() ? "broken" : s;
}

Status LazyDir::MarkBroken(const std::string& why) const {
  return WriteFileAtomic(broken(), why + "\n", 0600);
}

Status LazyDir::Remove() const {
  for (const std::string& f : {source(), chunks(), data(), ranges(), broken()}) ::unlink(f.c_str());
  // Temp files of interrupted writes.
  if (::rmdir(dir.c_str()) != 0 && errno != ENOENT) {
    if (auto* d = ::opendir(dir.c_str())) {
      while (auto* ent = ::readdir(d)) {
        std::string n = ent->d_name;
        if (n != "." && n != "..") ::unlink((dir + "/" + n).c_str());
      }
      ::closedir(d);
    }
    if (::rmdir(dir.c_str()) != 0 && errno != ENOENT) return Status::FromErrno("rmdir " + dir);
  }
  return Status::Ok();
}

void ChunkVerifier::Feed(const char* p, size_t n) {
  // Bytes [pos_, pos_+n) of the tar.
  uint64_t pos = pos_;
  pos_ += n;
  while (bad_.ok() && n > 0 && next_ < map_.chunks.size()) {
    const LazyChunk& c = map_.chunks[next_];
    if (pos + n <= c.tar_offset) break;
    if (pos < c.tar_offset) {
      size_t skip = static_cast<size_t>(c.tar_offset - pos);
      p += skip;
      n -= skip;
      pos += skip;
    }
    if (!hash_) hash_ = std::make_unique<Sha256>();
    size_t k = static_cast<size_t>(std::min<uint64_t>(n, c.tar_offset + c.size - pos));
    hash_->Update(p, k);
    p += k;
    n -= k;
    pos += k;
    if (pos == c.tar_offset + c.size) {
      Digest got = hash_->Finish();
      hash_.reset();
      if (!(got == c.digest)) {
        bad_ = Status::Corruption(
            "the table of contents does not match the tar: content at tar offset " +
            std::to_string(c.tar_offset) + " (" + std::to_string(c.size) + " bytes) hashes to " +
            got.str() + ", the TOC says " + c.digest.str());
      }
      next_++;
    }
  }
}

Status ChunkVerifier::Finish() const {
  if (!bad_.ok()) return bad_;
  if (next_ != map_.chunks.size())
    return Status::Corruption("the table of contents names content past the tar's end");
  return Status::Ok();
}

Status VerifyChunksAgainstBlob(int blob_fd, const ChunkMap& map) {
  std::vector<char> out_buf(1 << 20);
  ChunkVerifier check(map);
  // zstd (zstd:chunked) or gzip (eStargz), by its magic bytes.
  FdSource raw(blob_fd);
  DecompressingSource tar(&raw, Compression::kAuto);
  for (;;) {
    IMGFS_ASSIGN_OR_RETURN(size_t got, tar.Read(out_buf.data(), out_buf.size()));
    if (got == 0) break;
    check.Feed(out_buf.data(), got);
  }
  return check.Finish();
}

namespace {
std::mutex g_factory_mu;
RangeFetcherFactory& Factory() {
  static RangeFetcherFactory f;
  return f;
}
}  // namespace

void SetRangeFetcherFactory(RangeFetcherFactory f) {
  std::lock_guard<std::mutex> l(g_factory_mu);
  Factory() = std::move(f);
}

Result<std::unique_ptr<RangeFetcher>> MakeRangeFetcher(const LazySource& source, const Digest& blob,
                                                       uint64_t blob_size) {
  RangeFetcherFactory f;
  {
    std::lock_guard<std::mutex> l(g_factory_mu);
    f = Factory();
  }
  if (!f) return Status::Unavailable("no registry access in this process");
  return f(source, blob, blob_size);
}

}  // namespace imgfs
