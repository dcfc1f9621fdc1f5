// Reading seek sidecars (index/seek_index.h): SeekIndex, which maps and checks a
// sidecar, and decodes a span (or a prefix of one) from the blob with its checks.
#include <fcntl.h>
#include <isa-l/igzip_lib.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>
#include <zstd.h>

#include <algorithm>
#include <cstring>

#include "index/file_util.h"
#include "index/seek_format.h"
#include "index/seek_index.h"

namespace imgfs {

using seek_format::Get32;
using seek_format::Get64;
using seek_format::kMagic;
using seek_format::kWindow;

SeekIndex::~SeekIndex() {
  if (map_) ::munmap(map_, size_);
}

Result<std::shared_ptr<const SeekIndex>> SeekIndex::Open(const std::string& path,
                                                         const LayerRecord& layer) {
  IMGFS_ASSIGN_OR_RETURN(UniqueFd fd, OpenFile(path, O_RDONLY));
  struct stat st;
  if (::fstat(fd.get(), &st) != 0) return Status::FromErrno("stat " + path);
  std::shared_ptr<SeekIndex> idx(new SeekIndex());
  idx->size_ = static_cast<size_t>(st.st_size);
  if (idx->size_ < kHeaderSize) return Status::Corruption(path + ": short seek index");
  void* p = ::mmap(nullptr, idx->size_, PROT_READ, MAP_SHARED, fd.get(), 0);
  if (p == MAP_FAILED) return Status::FromErrno("mmap " + path);
  idx->map_ = p;
  idx->data_ = static_cast<const uint8_t*>(p);
  auto r = Parse(std::move(idx), layer);
  if (!r.ok()) return r.status().WithContext(path);
  return r;
}

Result<std::shared_ptr<const SeekIndex>> SeekIndex::FromBytes(std::string bytes,
                                                              const LayerRecord& layer) {
  std::shared_ptr<SeekIndex> idx(new SeekIndex());
  idx->owned_ = std::move(bytes);
  idx->data_ = reinterpret_cast<const uint8_t*>(idx->owned_.data());
  idx->size_ = idx->owned_.size();
  return Parse(std::move(idx), layer);
}

Result<std::shared_ptr<const SeekIndex>> SeekIndex::Parse(std::shared_ptr<SeekIndex> x,
                                                          const LayerRecord& layer) {
  const uint8_t* d = x->data_;
  if (x->size_ < kHeaderSize || std::memcmp(d, kMagic, 8) != 0)
    return Status::Corruption("not a seek index");
  x->version_ = Get32(d + 8);
  if (x->version_ != 1 && x->version_ != kVersion)
    return Status::Unsupported("seek index version " + std::to_string(x->version_));
  uint32_t fmt = Get32(d + 12);
  if (fmt != static_cast<uint32_t>(Compression::kGzip) &&
      fmt != static_cast<uint32_t>(Compression::kZstd))
    return Status::Corruption("seek index: bad format");
  x->format_ = static_cast<Compression>(fmt);
  x->span_ = Get64(d + 16);
  x->count_ = Get64(d + 24);
  x->tar_size_ = Get64(d + 32);
  x->blob_size_ = Get64(d + 40);
  x->win_base_ = Get64(d + 48);
  x->win_size_ = Get64(d + 56);
  if (x->format_ != layer.compression || x->tar_size_ != layer.size ||
      x->blob_size_ != layer.blob_size)
    return Status::Corruption("seek index does not match its layer");
  if (x->count_ == 0 || x->count_ > (x->size_ - kHeaderSize) / kRecordSize ||
      x->win_base_ != kHeaderSize + x->count_ * kRecordSize || x->win_size_ > x->size_ ||
      x->win_base_ > x->size_ - x->win_size_)
    return Status::Corruption("seek index: bad layout");
  x->starts_.resize(x->count_);
  uint64_t prev_out = 0, prev_in = 0;
  for (uint64_t i = 0; i < x->count_; i++) {
    SeekPoint p = x->point(i);
    bool ok = p.out_off >= prev_out && p.out_off <= x->tar_size_ && p.in_off >= prev_in &&
              p.in_off <= x->blob_size_ && p.bits < 8 && (p.bits == 0 || p.in_off > 0) &&
              p.win_len <= kWindow && p.win_off <= x->win_size_ &&
              p.win_clen <= x->win_size_ - p.win_off && (i > 0 || p.out_off == 0) &&
              ((p.flags & SeekPoint::kFresh) || x->format_ == Compression::kGzip);
    if (!ok) return Status::Corruption("seek index: bad checkpoint " + std::to_string(i));
    if (i > 0) x->max_span_ = std::max(x->max_span_, p.out_off - prev_out);
    x->starts_[i] = prev_out = p.out_off;
    prev_in = p.in_off;
  }
  x->max_span_ = std::max(x->max_span_, x->tar_size_ - prev_out);
  // Prefix values (version 2 since 2026-12-01): after the windows, where readers that do
  // not know them never look.
  x->piece_ = x->version_ >= 2 ? x->span_ / kPiecesPerSpan : 0;
  x->prefix_base_ = x->win_base_ + x->win_size_;
  uint64_t area = x->size_ - x->prefix_base_;
  for (uint64_t i = 0; i < x->count_ && x->piece_; i++) {
    SeekPoint p = x->point(i);
    if (!(p.flags & SeekPoint::kPrefixes)) continue;
    uint64_t n = x->PrefixCount(i);
    if (n > area / 8 || p.prefix_at > area - 8 * n)
      return Status::Corruption("seek index: bad prefix values of checkpoint " + std::to_string(i));
  }
  return std::shared_ptr<const SeekIndex>(std::move(x));
}

SeekPoint SeekIndex::point(size_t i) const {
  const uint8_t* r = data_ + kHeaderSize + i * kRecordSize;
  SeekPoint p;
  p.out_off = Get64(r);
  p.in_off = Get64(r + 8);
  p.win_off = Get64(r + 16);
  p.win_clen = Get32(r + 24);
  p.win_len = Get32(r + 28);
  p.bits = r[32];
  p.flags = r[33];
  std::memcpy(p.digest, r + 40, 32);
  p.prefix_at = Get64(r + 72);
  return p;
}

uint64_t SeekIndex::PrefixCount(size_t i) const {
  uint64_t len = SpanEnd(i) - SpanStart(i);
  return piece_ && len ? (len - 1) / piece_ : 0;
}

uint64_t SeekIndex::PrefixInput(uint64_t total, uint64_t len, uint64_t out_len) {
  if (len == 0) return total;
  return std::min(total, total * out_len / len + total / 8 + (64 << 10));
}

uint64_t SeekIndex::DecodeLength(size_t i, uint64_t need) const {
  uint64_t len = SpanEnd(i) - SpanStart(i);
  if (!piece_ || need >= len || !(point(i).flags & SeekPoint::kPrefixes)) return len;
  uint64_t end = (need ? (need - 1) / piece_ + 1 : 1) * piece_;  // the piece's end
  return std::min(end, len);
}

uint64_t SeekIndex::SpanStart(size_t i) const {
  return starts_[i];
}
uint64_t SeekIndex::SpanEnd(size_t i) const {
  return i + 1 < count_ ? starts_[i + 1] : tar_size_;
}

bool SeekIndex::WorthUsing() const {
  uint64_t limit = 4 * std::clamp<uint64_t>(span_, kDefaultSeekSpan, kMaxSeekSpan);
  return max_span_ <= limit;
}

size_t SeekIndex::Find(uint64_t off) const {
  auto it = std::upper_bound(starts_.begin(), starts_.end(), off);
  return static_cast<size_t>(it - starts_.begin()) - 1;  // starts_[0] == 0
}

Result<std::string> SeekIndex::Window(const SeekPoint& p) const {
  std::string w(p.win_len, '\0');
  const uint8_t* src = data_ + win_base_ + p.win_off;
  if (p.win_clen == p.win_len && !(p.flags & SeekPoint::kEqualIsZstd)) {
    std::memcpy(w.data(), src, p.win_len);  // stored raw
    return w;
  }
  size_t r = ZSTD_decompress(w.data(), w.size(), src, p.win_clen);
  if (ZSTD_isError(r) || r != p.win_len) return Status::Corruption("seek index: bad window");
  return w;
}

// Where the next gzip member starts after a member ended at byte `end` of `in` (the
// byte after its deflate data; `raw`: the 8-byte trailer is still ahead, else the
// decoder read it), zero padding skipped as the pass skips it. in.size() if none.
static size_t NextMember(const std::string& in, size_t end, bool raw) {
  size_t next = end + (raw ? 8 : 0);
  while (next < in.size() && in[next] == 0) next++;
  return std::min(next, in.size());
}

// Decodes a gzip span with ISA-L (about 3× zlib's speed): the window as its dictionary,
// the leftover bits of byte in_off-1 preloaded into the bit buffer; a member that ends
// inside the span is followed by the next (header and trailer checked). False on any
// failure (the caller then decodes with zlib, which names the error).
bool SeekIndex::IsalSpan(const SeekPoint& p, const std::string& in, std::string* out) const {
  auto st = std::make_unique<inflate_state>();
  isal_inflate_init(st.get());
  bool raw = !(p.flags & SeekPoint::kFresh);  // mid-member: raw deflate, no trailer check
  st->crc_flag = raw ? ISAL_DEFLATE : ISAL_GZIP;
  size_t skip = 0;
  std::string w;
  if (raw) {
    if (p.win_len) {
      auto got = Window(p);
      if (!got.ok()) return false;
      w = std::move(*got);
      if (isal_inflate_set_dict(st.get(), reinterpret_cast<uint8_t*>(w.data()),
                                static_cast<uint32_t>(w.size())) != COMP_OK)
        return false;
    }
    if (p.bits) {
      st->read_in = static_cast<uint8_t>(in[0]) >> (8 - p.bits);
      st->read_in_length = p.bits;
      skip = 1;
    }
  }
  uint8_t* base = reinterpret_cast<uint8_t*>(const_cast<char*>(in.data()));
  st->next_in = base + skip;
  st->avail_in = static_cast<uint32_t>(in.size() - skip);
  st->next_out = reinterpret_cast<uint8_t*>(out->data());
  st->avail_out = static_cast<uint32_t>(out->size());
  while (st->avail_out > 0) {
    uint32_t before_in = st->avail_in, before_out = st->avail_out;
    int r = isal_inflate(st.get());
    if (r < 0) return false;
    if (st->block_state == ISAL_BLOCK_FINISH) {
      if (st->avail_out == 0) break;
      // The member ended inside the span, at bit 8 × (bytes fed) − read_in_length
      // (ISA-L may hold bytes past it in its bit buffer); in gzip mode that is past
      // the trailer, which ISA-L has read and checked.
      size_t fed = in.size() - st->avail_in;
      size_t end = (8 * fed - st->read_in_length + 7) / 8;
      size_t next = NextMember(in, end, raw);
      if (next == in.size()) return false;
      uint8_t* o = st->next_out;
      uint32_t room = st->avail_out;
      isal_inflate_reset(st.get());
      raw = false;
      st->crc_flag = ISAL_GZIP;
      st->next_in = base + next;
      st->avail_in = static_cast<uint32_t>(in.size() - next);
      st->next_out = o;
      st->avail_out = room;
      continue;
    }
    if (st->avail_in == before_in && st->avail_out == before_out) return false;
  }
  return true;
}

// The same with zlib: the reference decoder, and the one that words an error.
Status SeekIndex::ZlibSpan(const SeekPoint& p, std::string& in, std::string* out,
                           const std::string& where) const {
  z_stream zs{};
  bool raw = !(p.flags & SeekPoint::kFresh);
  if (inflateInit2(&zs, raw ? -15 : 31) != Z_OK) return Status::Exhausted("inflate init");
  struct End {
    z_stream* z;
    ~End() { inflateEnd(z); }
  } end{&zs};
  size_t skip = 0;
  if (raw) {
    if (p.bits) {
      int v = static_cast<uint8_t>(in[0]) >> (8 - p.bits);
      if (inflatePrime(&zs, p.bits, v) != Z_OK) return Status::Corruption("inflatePrime");
      skip = 1;
    }
    if (p.win_len) {
      IMGFS_ASSIGN_OR_RETURN(std::string w, Window(p));
      if (inflateSetDictionary(&zs, reinterpret_cast<const Bytef*>(w.data()),
                               static_cast<uInt>(w.size())) != Z_OK)
        return Status::Corruption("inflateSetDictionary");
    }
  }
  zs.next_in = reinterpret_cast<Bytef*>(in.data() + skip);
  zs.avail_in = static_cast<uInt>(in.size() - skip);
  zs.next_out = reinterpret_cast<Bytef*>(out->data());
  zs.avail_out = static_cast<uInt>(out->size());
  while (zs.avail_out > 0) {
    int r = inflate(&zs, Z_NO_FLUSH);
    if (r == Z_STREAM_END && zs.avail_out > 0) {
      // The member ended inside the span (zlib stops at the last byte of the deflate
      // data; in gzip mode it has read the trailer too): on with the next member.
      size_t next = NextMember(in, in.size() - zs.avail_in, raw);
      if (next == in.size()) return Status::Corruption(where + ": gzip member ends early");
      if (inflateReset2(&zs, 31) != Z_OK) return Status::Corruption("inflateReset2");
      raw = false;
      zs.next_in = reinterpret_cast<Bytef*>(in.data() + next);
      zs.avail_in = static_cast<uInt>(in.size() - next);
      continue;
    }
    if (r != Z_OK && r != Z_STREAM_END) {
      if (r == Z_BUF_ERROR) return Status::Corruption(where + ": compressed data ends early");
      return Status::Corruption(where + ": corrupt deflate stream" +
                                (zs.msg ? std::string(" (") + zs.msg + ")" : ""));
    }
  }
  return Status::Ok();
}

Result<std::string> SeekIndex::DecodeSpan(int blob_fd, size_t i, Decoder decoder,
                                          uint64_t need) const {
  if (i >= count_) return Status::InvalidArgument("no such span");
  SeekPoint p = point(i);
  uint64_t len = SpanEnd(i) - SpanStart(i);
  if (len > 4 * kMaxSeekSpan) {
    return Status::Corruption("seek index: span " + std::to_string(i) + " is " +
                              std::to_string(len) + " bytes, more than any index imgfs writes");
  }
  // A prefix (whole pieces) when the read needs no more and the span has prefix values.
  uint64_t out_len = DecodeLength(i, need);
  std::string out(out_len, '\0');
  uint64_t in_start = p.in_off - (p.bits ? 1 : 0);
  uint64_t in_end = i + 1 < count_ ? point(i + 1).in_off : blob_size_;
  if (format_ == Compression::kGzip) in_end = std::min(blob_size_, in_end + 8);
  // The compressed bytes of a span, bounded like its output (only a gzip stream of
  // millions of empty members could legitimately need more: it reads as damaged).
  if (in_end - in_start > 4 * kMaxSeekSpan + (1 << 20)) {
    return Status::Corruption("seek index: span " + std::to_string(i) + " reads " +
                              std::to_string(in_end - in_start) +
                              " compressed bytes, more than any index imgfs writes");
  }
  // The window is read from the mapped sidecar after the blob's bytes: on a cold cache
  // that is a second disk read, which the kernel can start now and do beside this one.
  if (map_ && p.win_clen > 0) {
    static const uintptr_t page = static_cast<uintptr_t>(::sysconf(_SC_PAGESIZE));
    uintptr_t a = reinterpret_cast<uintptr_t>(data_ + win_base_ + p.win_off);
    uintptr_t b = a + p.win_clen;
    a &= ~(page - 1);
    (void)::madvise(reinterpret_cast<void*>(a), b - a, MADV_WILLNEED);  // a hint only
  }
  // A prefix needs only the first part of the span's compressed bytes: about its share
  // of them, and a margin (compression varies along a span); when that runs out before
  // the prefix is decoded, the rest is read and the prefix decoded again.
  uint64_t total = in_end - in_start;
  uint64_t first = out_len < len ? PrefixInput(total, len, out_len) : total;
  std::string in(first, '\0');
  IMGFS_RETURN_IF_ERROR(PreadAll(blob_fd, in.data(), in.size(), static_cast<off_t>(in_start)));
  std::string where = std::string(CompressionName(format_)) + " span " + std::to_string(i) +
                      " (tar bytes " + std::to_string(p.out_off) + "-" +
                      std::to_string(p.out_off + len) + ")";
  if (len == 0) return out;
  p.flags &= ~SeekPoint::kEqualIsZstd;
  auto inflate = [&](const SeekPoint& q) -> Status {
    if (decoder != Decoder::kZlibOnly && IsalSpan(q, in, &out)) return Status::Ok();
    // With part of the input, ISA-L failing most likely ran out of it: zlib would only
    // fail too, three times slower, before the rest is read.
    if (decoder == Decoder::kIsalOnly || (decoder != Decoder::kZlibOnly && in.size() < total))
      return Status::Corruption(where + ": ISA-L could not decode it");
    return ZlibSpan(q, in, &out, where);
  };
  uint8_t got[32];
  auto decode = [&]() -> Status {
    if (format_ == Compression::kGzip) {
      Status st = inflate(p);
      // A version-1 window stored as a zstd frame exactly as long as the window reads as
      // raw bytes first (that was the rule), then as the frame.
      const uint8_t* w = data_ + win_base_ + p.win_off;
      constexpr uint8_t kZstdMagic[4] = {0x28, 0xb5, 0x2f, 0xfd};
      if (version_ == 1 && p.win_len >= 4 && p.win_clen == p.win_len &&
          !(p.flags & SeekPoint::kFresh) && std::memcmp(w, kZstdMagic, 4) == 0) {
        if (st.ok()) SpanCheck::Of(version_, out.data(), out.size(), got);
        if (!st.ok() || std::memcmp(got, p.digest, 32) != 0) {
          SeekPoint q = p;
          q.flags |= SeekPoint::kEqualIsZstd;
          std::fill(out.begin(), out.end(), '\0');
          if (Status again = inflate(q); again.ok()) st = again;
        }
      }
      return st;
    }
    ZSTD_DCtx* dc = ZSTD_createDCtx();
    if (!dc) return Status::Exhausted("zstd: out of memory");
    ZSTD_inBuffer zin{in.data(), in.size(), 0};
    ZSTD_outBuffer zout{out.data(), out.size(), 0};
    Status st;
    while (zout.pos < zout.size && st.ok()) {
      size_t before_in = zin.pos, before_out = zout.pos;
      size_t r = ZSTD_decompressStream(dc, &zout, &zin);
      if (ZSTD_isError(r))
        st = Status::Corruption(where + ": zstd: " + ZSTD_getErrorName(r));
      else if (zin.pos == before_in && zout.pos == before_out)
        st = Status::Corruption(where + ": compressed data ends early");
    }
    ZSTD_freeDCtx(dc);
    return st;
  };
  Status st = decode();
  if (!st.ok() && in.size() < total) {
    size_t had = in.size();
    in.resize(total);
    IMGFS_RETURN_IF_ERROR(
        PreadAll(blob_fd, in.data() + had, total - had, static_cast<off_t>(in_start + had)));
    std::fill(out.begin(), out.end(), '\0');
    st = decode();
  }
  IMGFS_RETURN_IF_ERROR(st);
  if (out_len < len) {
    uint64_t want = Get64(data_ + prefix_base_ + p.prefix_at + 8 * (out_len / piece_ - 1));
    if (SpanCheck::PrefixOf(out.data(), out.size()) != want)
      return Status::Corruption(where + ": its first " + std::to_string(out_len) +
                                " bytes do not match the value recorded when the layer was stored");
    return out;
  }
  SpanCheck::Of(version_, out.data(), out.size(), got);
  if (std::memcmp(got, p.digest, 32) != 0)
    return Status::Corruption(
        where + ": content does not match the digest recorded when the layer was stored");
  return out;
}

Status SeekIndex::Verify(int blob_fd) const {
  // Reads do not use such an index (the whole-layer unpack, checked against the
  // diff_id, serves them), and its spans may be too long to decode in memory.
  if (!WorthUsing()) return Status::Ok();
  for (size_t i = 0; i < count_; i++) {
    IMGFS_ASSIGN_OR_RETURN(std::string span, DecodeSpan(blob_fd, i));  // its value checked
    if (!piece_ || !(point(i).flags & SeekPoint::kPrefixes)) continue;
    SpanCheck check(piece_);
    check.Update(span.data(), span.size());
    uint8_t whole[32];
    std::vector<uint64_t> got;
    check.Finish(whole, &got);
    // SpanCheck keeps (length - 1) / piece values, PrefixCount's count, which Parse
    // bounded inside the prefix area.
    const uint8_t* want = data_ + prefix_base_ + point(i).prefix_at;
    for (uint64_t k = 0; k < got.size() && k < PrefixCount(i); k++) {
      if (got[k] != Get64(want + 8 * k))
        return Status::Corruption("span " + std::to_string(i) + ": the value of its first " +
                                  std::to_string((k + 1) * piece_) +
                                  " bytes does not match the one recorded");
    }
  }
  return Status::Ok();
}

}  // namespace imgfs
