#include "index/seek_index.h"

#include <dirent.h>
#include <fcntl.h>
#include <isa-l/crc.h>
#include <isa-l/igzip_lib.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>
#include <zstd.h>

#include <signal.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <optional>

#include "index/file_util.h"
#include "index/seek_format.h"

namespace imgfs {

namespace {

void Put32(std::string* s, uint32_t v) {
  s->append(reinterpret_cast<const char*>(&v), 4);
}
void Put64(std::string* s, uint64_t v) {
  s->append(reinterpret_cast<const char*>(&v), 8);
}

// The 32 raw bytes of a SHA-256 digest.
void DigestBytes(const Digest& d, uint8_t out[32]) {
  const std::string& h = d.hex();
  auto nib = [](char c) -> uint8_t {
    return static_cast<uint8_t>(c <= '9' ? c - '0' : (c | 0x20) - 'a' + 10);
  };
  for (size_t i = 0; i < 32 && 2 * i + 1 < h.size(); i++)
    out[i] = static_cast<uint8_t>(nib(h[2 * i]) << 4 | nib(h[2 * i + 1]));
}

// A checkpoint's window as stored: one zstd frame, or the bytes themselves when
// compression fails or saves nothing (recognised by stored length == length). Until
// version 2 a frame exactly as long as its window (short windows, near a member start)
// was stored as such, and read as raw bytes: DecodeSpan reads those both ways.
std::string CompressWindow(ZSTD_CCtx** wc, const uint8_t* p, size_t len) {
  if (!*wc) *wc = ZSTD_createCCtx();
  std::string z(ZSTD_compressBound(len), '\0');
  size_t r = *wc ? ZSTD_compressCCtx(*wc, z.data(), z.size(), p, len, 3) : 0;
  if (!*wc || ZSTD_isError(r) || r >= len)
    return std::string(reinterpret_cast<const char*>(p), len);
  z.resize(r);
  return z;
}

}  // namespace

SpanCheck::SpanCheck(uint64_t piece) : state_(XXH3_createState()), piece_(piece) {
  if (!state_) throw std::bad_alloc();
  XXH3_128bits_reset(static_cast<XXH3_state_t*>(state_));
}

SpanCheck::~SpanCheck() {
  XXH3_freeState(static_cast<XXH3_state_t*>(state_));
}

void SpanCheck::Update(const void* src, size_t n) {
  auto* st = static_cast<XXH3_state_t*>(state_);
  const auto* p = static_cast<const uint8_t*>(src);
  while (n) {
    size_t k = n;
    if (piece_) {
      // A byte past a multiple of the piece size: that prefix is inside the span.
      if (len_ && len_ % piece_ == 0) prefixes_.push_back(XXH3_128bits_digest(st).low64);
      k = static_cast<size_t>(std::min<uint64_t>(n, piece_ - len_ % piece_));
    }
    XXH3_128bits_update(st, p, k);
    p += k;
    n -= k;
    len_ += k;
  }
}

void SpanCheck::Finish(uint8_t out[32], std::vector<uint64_t>* prefixes) {
  auto* st = static_cast<XXH3_state_t*>(state_);
  XXH128_canonical_t c;
  XXH128_canonicalFromHash(&c, XXH3_128bits_digest(st));
  std::memcpy(out, c.digest, 16);
  std::memset(out + 16, 0, 16);
  XXH3_128bits_reset(st);
  if (prefixes) prefixes->insert(prefixes->end(), prefixes_.begin(), prefixes_.end());
  prefixes_.clear();
  len_ = 0;
}

uint64_t SpanCheck::PrefixOf(const void* p, size_t n) {
  return XXH3_128bits(p, n).low64;
}

void SpanCheck::Of(uint32_t version, const void* p, size_t n, uint8_t out[32]) {
  if (version == 1) {
    Sha256 h;
    h.Update(p, n);
    DigestBytes(h.Finish(), out);
    return;
  }
  XXH128_canonical_t c;
  XXH128_canonicalFromHash(&c, XXH3_128bits(p, n));
  std::memcpy(out, c.digest, 16);
  std::memset(out + 16, 0, 16);
}

uint64_t SeekSpanFromEnv() {
  const char* e = std::getenv("IMGFS_SEEK_SPAN");
  if (!e || !*e) return kDefaultSeekSpan;
  char* end = nullptr;
  unsigned long long v = std::strtoull(e, &end, 10);
  if (end == e || *end) return kDefaultSeekSpan;
  return v == 0 ? 0 : std::clamp<uint64_t>(v, kMinSeekSpan, kMaxSeekSpan);
}

struct IndexingSource::Impl {
  // The input is read where the source holds it (ReadView: a PipelinedSource's chunk),
  // not copied. `in` is that view, or `stitch` when the bytes kept from the previous
  // view (Fill) must precede the next one: then `stitch` holds them and the first
  // kStitchHead bytes of the next view, and `rest` the rest of that view, which `in`
  // points at again once the stitch is read.
  static constexpr size_t kKeep = 16, kStitchHead = 64, kStitchSize = 256;
  const uint8_t* in = nullptr;
  size_t in_pos = 0, in_len = 0;
  std::string_view rest;
  uint8_t stitch[kStitchSize];
  size_t stitch_head = 0;  // bytes of the view at the end of `stitch`
  // Where ReadView puts the bytes of a source without a buffer of its own (FdSource);
  // not zero-filled, so pages a view-giving source never uses are never touched.
  std::unique_ptr<char[]> scratch;
  static constexpr size_t kScratchSize = 1 << 20;
  bool in_eof = false, started = false;
  uint64_t comp_base = 0;  // blob offset of in[0]
  uint64_t out_pos = 0;
  uint64_t last_point = 0;
  // gzip, decoded by ISA-L (see ReadGzip)
  std::unique_ptr<inflate_state> gz;
  bool in_member = false;
  bool stopping = false;                // bfinal set by us: ISA-L stops at the end of this block
  uint64_t last_boundary = UINT64_MAX;  // bit offset in the blob of the last one seen
  // The last <= 32 KiB of the member's output (the window of the next checkpoint).
  WindowTail tail;
  // zstd
  ZSTD_DCtx* zd = nullptr;
  size_t zlast = 0;
  ZSTD_CCtx* wc = nullptr;  // compresses windows
  std::vector<SeekPoint> points;
  std::string windows;
  std::string prefixes;  // the prefix area: each span's prefix values, in span order
  std::optional<SpanCheck> hash;
  // With HashSpansElsewhere: guards `points` and `windows` (points appended here, read
  // and given digests and compressed windows by a SpanHasher on another thread);
  // `hashed` counts the digests it gave, `windows_given` the windows, of
  // `windows_due`.
  bool elsewhere = false;
  std::mutex pts_mu;
  size_t hashed = 0, windows_due = 0, windows_given = 0;
  std::unique_ptr<DecompressingSource> plain;  // span 0
  ~Impl() {
    if (zd) ZSTD_freeDCtx(zd);
    if (wc) ZSTD_freeCCtx(wc);
  }
};

IndexingSource::IndexingSource(ByteSource* in, Compression hint, uint64_t span)
    : in_(in), c_(hint), span_(span), impl_(std::make_unique<Impl>()) {}

IndexingSource::~IndexingSource() = default;

uint64_t IndexingSource::checkpoints() const {
  return impl_->points.size();
}

void IndexingSource::HashSpansElsewhere() {
  impl_->elsewhere = true;
}

uint64_t IndexingSource::PointOut(size_t i) {
  std::lock_guard<std::mutex> l(impl_->pts_mu);
  return i < impl_->points.size() ? impl_->points[i].out_off : UINT64_MAX;
}

uint32_t IndexingSource::PointWindow(size_t i) {
  std::lock_guard<std::mutex> l(impl_->pts_mu);
  return i < impl_->points.size() ? impl_->points[i].win_len : 0;
}

void IndexingSource::SetSpanWindow(size_t i, std::string_view stored) {
  Impl& m = *impl_;
  std::lock_guard<std::mutex> l(m.pts_mu);
  if (i < m.points.size() && m.points[i].win_len && !m.points[i].win_clen) {
    m.points[i].win_off = m.windows.size();
    m.points[i].win_clen = static_cast<uint32_t>(stored.size());
    m.windows += stored;
    m.windows_given++;
  }
}

namespace {
void AddPrefixes(std::string* area, SeekPoint* p, const std::vector<uint64_t>& prefixes) {
  p->prefix_at = area->size();
  p->flags |= SeekPoint::kPrefixes;
  for (uint64_t v : prefixes) Put64(area, v);
}
}  // namespace

void IndexingSource::SetSpanDigest(size_t i, const uint8_t check[32],
                                   const std::vector<uint64_t>& prefixes) {
  Impl& m = *impl_;
  std::lock_guard<std::mutex> l(m.pts_mu);
  if (i < m.points.size()) {
    std::memcpy(m.points[i].digest, check, 32);
    if (piece()) AddPrefixes(&m.prefixes, &m.points[i], prefixes);
    m.hashed++;
  }
}

void WindowTail::Add(const void* src, size_t n) {
  if (n == 0) return;
  const auto* p = static_cast<const uint8_t*>(src);
  if (n >= kSize) {
    std::memcpy(buf_.data(), p + n - kSize, kSize);
    len_ = kSize;
    return;
  }
  size_t keep = std::min(len_, kSize - n);
  std::memmove(buf_.data(), buf_.data() + len_ - keep, keep);
  std::memcpy(buf_.data() + keep, p, n);
  len_ = keep + n;
}

SpanHasher::SpanHasher(ByteSource* in, IndexingSource* idx)
    : in_(in), idx_(idx), h_(idx->piece()) {}

Result<size_t> SpanHasher::Read(void* buf, size_t n) {
  IMGFS_ASSIGN_OR_RETURN(size_t k, in_->Read(buf, n));
  Take(static_cast<const char*>(buf), k);
  return k;
}

Result<std::string_view> SpanHasher::ReadView(char* scratch, size_t n) {
  IMGFS_ASSIGN_OR_RETURN(std::string_view v, in_->ReadView(scratch, n));
  Take(v.data(), v.size());
  return v;
}

void SpanHasher::Take(const char* p, size_t n) {
  // A checkpoint at tar offset X is recorded before any byte past X is produced, so
  // the one ending a byte read here is known by the time that byte arrives. The first
  // (tar offset 0) comes before any byte: without it there is no index to hash for (an
  // uncompressed layer, IMGFS_SEEK_SPAN=0).
  if (n && pos_ == 0 && idx_->PointOut(0) == UINT64_MAX) off_ = true;
  if (off_) return;
  for (;;) {
    uint64_t next = idx_->PointOut(cur_ + 1);
    if (next > pos_ + n) break;  // UINT64_MAX: none yet
    size_t k = static_cast<size_t>(next - pos_);
    h_.Update(p, k);
    tail_.Add(p, k);
    p += k;
    n -= k;
    pos_ = next;
    uint8_t check[32];
    prefixes_.clear();
    h_.Finish(check, &prefixes_);
    idx_->SetSpanDigest(cur_++, check, prefixes_);
    // The new checkpoint's window (gzip within a member): the tar bytes just before it.
    if (uint32_t w = idx_->PointWindow(cur_); w && w <= tail_.size()) {
      auto* wc = static_cast<ZSTD_CCtx*>(wc_);
      std::string z = CompressWindow(&wc, tail_.data() + tail_.size() - w, w);
      wc_ = wc;
      idx_->SetSpanWindow(cur_, z);
    }
  }
  h_.Update(p, n);
  tail_.Add(p, n);
  pos_ += n;
}

SpanHasher::~SpanHasher() {
  ZSTD_freeCCtx(static_cast<ZSTD_CCtx*>(wc_));
}

Status SpanHasher::Finish() {
  std::vector<char> buf(1 << 16);
  for (;;) {
    IMGFS_ASSIGN_OR_RETURN(std::string_view v, ReadView(buf.data(), buf.size()));
    if (v.empty()) break;
  }
  Take(nullptr, 0);
  if (idx_->PointOut(cur_) != UINT64_MAX) {
    uint8_t check[32];
    prefixes_.clear();
    h_.Finish(check, &prefixes_);
    idx_->SetSpanDigest(cur_, check, prefixes_);
  }
  return Status::Ok();
}

Status IndexingSource::Fill() {
  Impl& m = *impl_;
  // Called with fewer than 4 bytes unread. The last kKeep bytes read stay readable just
  // before in_pos: a gzip block boundary found by ISA-L may lie up to 8 bytes before
  // what it was fed (ReadGzip feeds them again).
  size_t from = m.in_pos - std::min(m.in_pos, Impl::kKeep);
  if (!m.rest.empty() && m.in == m.stitch && from >= m.in_len - m.stitch_head) {
    // The stitch is read: back to its view, kStitchHead (>= kKeep) bytes in.
    size_t head = m.in_len - m.stitch_head;  // bytes before the view in the stitch
    m.comp_base += head;
    m.in_pos -= head;
    m.in = reinterpret_cast<const uint8_t*>(m.rest.data()) - m.stitch_head;
    m.in_len = m.stitch_head + m.rest.size();
    m.rest = std::string_view();
    m.stitch_head = 0;
    return Status::Ok();
  }
  do {
    // The kept bytes (at most kKeep + 3, since fewer than 4 are unread) go to the
    // stitch before the next view is asked for: it may reuse the memory they are in.
    from = m.in_pos - std::min(m.in_pos, Impl::kKeep);
    size_t keep = m.in_len - from;
    if (keep > 0) std::memmove(m.stitch, m.in + from, keep);
    m.comp_base += from;
    m.in_pos -= from;
    m.in_len = keep;
    m.in = m.stitch;
    m.stitch_head = 0;
    std::string_view v = m.rest;
    m.rest = std::string_view();
    if (v.empty()) {
      if (!m.scratch) m.scratch.reset(new char[Impl::kScratchSize]);
      IMGFS_ASSIGN_OR_RETURN(v, in_->ReadView(m.scratch.get(), Impl::kScratchSize));
    }
    if (v.empty()) {
      m.in_eof = true;
      break;
    }
    if (keep == 0) {
      m.in = reinterpret_cast<const uint8_t*>(v.data());  // nothing to stitch
      m.in_len = v.size();
      continue;  // to the test: a view of fewer than 4 bytes is stitched to the next
    }
    size_t head = std::min(v.size(), Impl::kStitchHead);
    std::memcpy(m.stitch + keep, v.data(), head);
    m.in_len = keep + head;
    m.stitch_head = head;
    m.rest = v.substr(head);
  } while (m.in_len - m.in_pos < 4 && m.rest.empty());
  return Status::Ok();
}

void IndexingSource::Hash(const void* p, size_t n) {
  if (impl_->hash && n) impl_->hash->Update(p, n);
}

void IndexingSource::FinishSpan() {
  Impl& m = *impl_;
  std::vector<uint64_t> prefixes;
  m.hash->Finish(m.points.back().digest, &prefixes);
  if (piece()) AddPrefixes(&m.prefixes, &m.points.back(), prefixes);
}

void IndexingSource::Checkpoint(bool fresh, uint64_t in_off, uint8_t bits) {
  Impl& m = *impl_;
  if (!m.points.empty() && !m.elsewhere) FinishSpan();
  SeekPoint p;
  p.out_off = m.out_pos;
  p.in_off = in_off;
  p.bits = bits;
  p.flags = fresh ? SeekPoint::kFresh : 0;
  if (!fresh && c_ == Compression::kGzip && m.tail.size() > 0) {
    p.win_len = static_cast<uint32_t>(m.tail.size());
    if (m.elsewhere) {
      m.windows_due++;  // the SpanHasher compresses it (SetSpanWindow)
    } else {
      std::string z = CompressWindow(&m.wc, m.tail.data(), m.tail.size());
      p.win_off = m.windows.size();
      p.win_clen = static_cast<uint32_t>(z.size());
      m.windows += z;
    }
  }
  if (m.elsewhere) {
    std::lock_guard<std::mutex> l(m.pts_mu);
    m.points.push_back(p);
  } else {
    m.points.push_back(p);
    if (!m.hash) m.hash.emplace(piece());
  }
  m.last_point = m.out_pos;
}

Result<size_t> IndexingSource::Read(void* buf, size_t n) {
  Impl& m = *impl_;
  if (!span_) {
    // No index: the one-pass decoder as before (ISA-L for gzip).
    if (!m.plain) m.plain = std::make_unique<DecompressingSource>(in_, c_);
    auto r = m.plain->Read(buf, n);
    c_ = m.plain->compression();
    return r;
  }
  if (!m.started) {
    while (m.in_len < 4 && !m.in_eof) IMGFS_RETURN_IF_ERROR(Fill());
    Compression seen =
        DetectCompression(std::string_view(reinterpret_cast<const char*>(m.in), m.in_len));
    if (c_ == Compression::kAuto) c_ = seen;
    if (m.in_len == 0 && m.in_eof) c_ = Compression::kNone;  // as DecompressingSource
    if (c_ == Compression::kGzip && seen != Compression::kGzip)
      return Status::Corruption("not a gzip stream (bad magic)");
    if (c_ == Compression::kGzip) {
      m.gz = std::make_unique<inflate_state>();
      isal_inflate_init(m.gz.get());
    }
    if (c_ == Compression::kZstd) {
      if (seen != Compression::kZstd) return Status::Corruption("not a zstd stream (bad magic)");
      m.zd = ZSTD_createDCtx();
      if (!m.zd) return Status::Exhausted("zstd: out of memory");
    }
    m.started = true;
  }
  if (c_ == Compression::kGzip) return ReadGzip(buf, n);
  if (c_ == Compression::kZstd) return ReadZstd(buf, n);
  if (m.in_pos == m.in_len) {
    if (m.in_eof) return size_t{0};
    if (!m.rest.empty()) {
      size_t k = std::min(n, m.rest.size());
      std::memcpy(buf, m.rest.data(), k);
      m.rest.remove_prefix(k);
      return k;
    }
    return in_->Read(buf, n);
  }
  size_t k = std::min(n, m.in_len - m.in_pos);
  std::memcpy(buf, m.in + m.in_pos, k);
  m.in_pos += k;
  return k;
}

// gzip with ISA-L, recording checkpoints at deflate block boundaries.
//
// isal_inflate has no "stop at the end of this block" mode (zlib's Z_BLOCK), but it
// does stop after a block whose bfinal flag is set. Near a checkpoint, while a block is
// being decoded (its header read, its real bfinal 0), bfinal is set to 1: ISA-L ends
// the "stream" after this block (ISAL_BLOCK_INPUT_DONE, then ISAL_BLOCK_FINISH once
// the output is flushed). That is a block boundary: the bits not yet consumed are in
// read_in, so the boundary is bit 8 * (bytes fed) - read_in_length of the blob.
// Decoding goes on from the same state: block_state back to ISAL_BLOCK_NEW_HDR,
// bfinal 0, and the history, which ISA-L drops at a stream's end, set again from our
// copy of the last 32 KiB of output (the checkpoint's window). While bfinal is ours,
// ISA-L cannot pass a block header, so it never overwrites a real bfinal. ISA-L would
// check the gzip trailer at the fake end, so during those calls crc_flag is
// ISAL_DEFLATE and the CRC is updated here (crc32_gzip_refl, as ISA-L does); the real
// end of the member is checked by ISA-L as before.
//
// A boundary is also seen when the input runs out inside the next block's header
// (ISAL_BLOCK_HDR: the header bytes read so far are in tmp_in_buffer, read_in is back
// at the boundary). After a stop, the bytes ISA-L had read ahead into read_in are given
// back and the next header is read in 16-byte input slices, so that a following short
// block is not passed unseen; until the checkpoint is near, the output is capped so
// that ISA-L (whose internal buffer decodes up to ~32 KiB beyond what it hands out)
// never gets past the span unarmed. So the checkpoint is the first boundary after
// `span` bytes of output, as with zlib's Z_BLOCK (tests/seek_pass_test.cc checks it
// against zlib), except where blocks of a few bytes (flushes) hide it: then it is a
// later boundary.
Result<size_t> IndexingSource::ReadGzip(void* buf, size_t n) {
  constexpr uint64_t kNear = 64 << 10;  // look for boundaries from this far before
  constexpr size_t kSlice = 16;         // input per call while a header is being read
  Impl& m = *impl_;
  inflate_state& s = *m.gz;
  for (;;) {
    if (!m.in_member) {
      // A member starts here. After the first, trailing zero padding is tolerated (as
      // DecompressingSource does); anything else must be a valid member.
      if (!m.points.empty()) {
        while (m.in_pos < m.in_len && m.in[m.in_pos] == 0) m.in_pos++;
      }
      if (m.in_pos == m.in_len) {
        if (m.in_eof) return size_t{0};
        IMGFS_RETURN_IF_ERROR(Fill());
        continue;
      }
      isal_inflate_reset(&s);
      s.crc_flag = ISAL_GZIP;
      m.tail.Clear();
      m.stopping = false;
      m.last_boundary = UINT64_MAX;
      // A member start is a checkpoint like a block boundary: the first, then one
      // `span` on (a span may hold many members; DecodeSpan crosses their ends).
      if (m.points.empty() || m.out_pos - m.last_point >= span_)
        Checkpoint(true, m.comp_base + m.in_pos, 0);
      m.in_member = true;
    }
    if (m.in_pos == m.in_len && !m.in_eof) IMGFS_RETURN_IF_ERROR(Fill());
    uint64_t since = m.out_pos - m.last_point;
    size_t in_n = m.in_len - m.in_pos;
    size_t out_n = std::min<size_t>(n, UINT32_MAX);
    if (since + kNear < span_) {
      out_n = std::min<uint64_t>(out_n, span_ - kNear - since);
    } else if (!m.stopping) {
      if (s.bfinal == 0 &&
          (s.block_state == ISAL_BLOCK_CODED || s.block_state == ISAL_BLOCK_TYPE0)) {
        s.bfinal = 1;
        m.stopping = true;
      } else if (s.block_state == ISAL_BLOCK_NEW_HDR || s.block_state == ISAL_BLOCK_HDR) {
        in_n = std::min(in_n, kSlice);
      }
    }
    s.crc_flag = m.stopping ? ISAL_DEFLATE : ISAL_GZIP;
    s.next_in = const_cast<uint8_t*>(m.in + m.in_pos);
    s.avail_in = static_cast<uint32_t>(in_n);
    s.next_out = static_cast<uint8_t*>(buf);
    s.avail_out = static_cast<uint32_t>(out_n);
    int ret = isal_inflate(&s);
    m.in_pos += in_n - s.avail_in;
    size_t produced = out_n - s.avail_out;
    if (m.stopping) {
      s.crc = crc32_gzip_refl(s.crc, static_cast<uint8_t*>(buf), produced);
      s.crc_flag = ISAL_GZIP;
    }
    if (ret < 0) {
      if (ret == ISAL_INCORRECT_CHECKSUM) return Status::Corruption("gzip: CRC mismatch");
      if (ret == ISAL_INVALID_WRAPPER || ret == ISAL_UNSUPPORTED_METHOD)
        return Status::Corruption("not a gzip stream (bad magic)");
      return Status::Corruption("gzip: corrupt deflate stream (code " + std::to_string(ret) + ")");
    }
    Hash(buf, produced);
    m.out_pos += produced;
    m.tail.Add(buf, produced);
    uint64_t fed = m.comp_base + m.in_pos;  // blob bytes given to ISA-L so far
    bool boundary = false;
    if (s.block_state == ISAL_BLOCK_FINISH && m.stopping) {
      // The block we stopped ended.
      m.stopping = false;
      s.block_state = ISAL_BLOCK_NEW_HDR;
      s.bfinal = 0;
      if (m.tail.size() > 0 &&
          isal_inflate_set_dict(&s, const_cast<uint8_t*>(m.tail.data()),
                                static_cast<uint32_t>(m.tail.size())) != COMP_OK)
        return Status::Corruption("gzip: cannot resume after a block boundary");
      m.last_boundary = 8 * fed - static_cast<uint64_t>(s.read_in_length);
      boundary = true;
      // ISA-L reads ahead up to 8 bytes into read_in; give back all but the bits of the
      // boundary's own byte, so the next header is read from the input, in slices.
      uint64_t in_off = (m.last_boundary + 7) / 8;
      int keep = static_cast<int>(8 * in_off - m.last_boundary);
      s.read_in &= (uint64_t{1} << keep) - 1;
      s.read_in_length = keep;
      m.in_pos = static_cast<size_t>(in_off - m.comp_base);
    } else if (s.block_state == ISAL_BLOCK_FINISH) {
      m.in_member = false;
    } else if (s.block_state == ISAL_BLOCK_HDR && s.tmp_out_valid == s.tmp_out_processed) {
      // Inside the next header, every byte before it handed out.
      uint64_t bit = 8 * (fed - static_cast<uint64_t>(s.tmp_in_size)) -
                     static_cast<uint64_t>(s.read_in_length);
      boundary = bit != m.last_boundary;
      m.last_boundary = bit;
    }
    if (boundary && m.out_pos - m.last_point >= span_) {
      uint64_t in_off = (m.last_boundary + 7) / 8;
      Checkpoint(false, in_off, static_cast<uint8_t>(8 * in_off - m.last_boundary));
    }
    if (produced > 0) return produced;
    if (!m.in_member || boundary) continue;
    if (m.in_pos == m.in_len && m.in_eof)
      return Status::Corruption("gzip: unexpected end of stream (truncated)");
  }
}

Result<size_t> IndexingSource::ReadZstd(void* buf, size_t n) {
  Impl& m = *impl_;
  for (;;) {
    if (m.in_pos == m.in_len) {
      if (m.in_eof) {
        if (m.zlast != 0) return Status::Corruption("zstd: unexpected end of stream (truncated)");
        return size_t{0};
      }
      IMGFS_RETURN_IF_ERROR(Fill());
      continue;
    }
    // zlast == 0: the previous frame is complete, a frame starts at in_pos.
    if (span_ && m.zlast == 0 && (m.points.empty() || m.out_pos - m.last_point >= span_))
      Checkpoint(true, m.comp_base + m.in_pos, 0);
    ZSTD_inBuffer in{m.in, m.in_len, m.in_pos};
    ZSTD_outBuffer out{buf, n, 0};
    size_t r = ZSTD_decompressStream(m.zd, &out, &in);
    m.in_pos = in.pos;
    if (ZSTD_isError(r)) return Status::Corruption(std::string("zstd: ") + ZSTD_getErrorName(r));
    m.zlast = r;
    Hash(buf, out.pos);
    m.out_pos += out.pos;
    if (out.pos > 0) return out.pos;
  }
}

Result<std::string> IndexingSource::Finish() {
  Impl& m = *impl_;
  if (!span_ || c_ == Compression::kNone || m.points.empty()) return std::string();
  if (!m.in_eof || m.in_pos != m.in_len)
    return Status::InvalidArgument("seek index: stream not read to its end");
  uint64_t blob_size = m.comp_base + m.in_len;
  if (m.elsewhere) {
    if (m.hashed != m.points.size() || m.windows_given != m.windows_due)
      return Status::InvalidArgument("seek index: the spans were not all hashed or windowed");
  } else {
    FinishSpan();
    m.hash.reset();
  }
  std::string s;
  uint64_t count = m.points.size();
  s.reserve(SeekIndex::kHeaderSize + count * SeekIndex::kRecordSize + m.windows.size() +
            m.prefixes.size());
  s.append(seek_format::kMagic, 8);
  Put32(&s, SeekIndex::kVersion);
  Put32(&s, static_cast<uint32_t>(c_));
  Put64(&s, span_);
  Put64(&s, count);
  Put64(&s, m.out_pos);
  Put64(&s, blob_size);
  Put64(&s, SeekIndex::kHeaderSize + count * SeekIndex::kRecordSize);
  Put64(&s, m.windows.size());
  for (const SeekPoint& p : m.points) {
    Put64(&s, p.out_off);
    Put64(&s, p.in_off);
    Put64(&s, p.win_off);
    Put32(&s, p.win_clen);
    Put32(&s, p.win_len);
    s.push_back(static_cast<char>(p.bits));
    s.push_back(static_cast<char>(p.flags));
    s.append(6, '\0');
    s.append(reinterpret_cast<const char*>(p.digest), 32);
    Put64(&s, p.prefix_at);
  }
  s += m.windows;
  s += m.prefixes;
  return s;
}

// ---- the sidecar files ----

std::string SeekIndexPath(const Store& store, const Digest& diff_id) {
  return store.root() + "/seek/" + diff_id.hex();
}

Status WriteSeekIndex(const Store& store, const Digest& diff_id, const std::string& bytes,
                      bool sync_dir) {
  IMGFS_RETURN_IF_ERROR(MakeDirs(store.root() + "/seek"));
  return WriteFileAtomic(SeekIndexPath(store, diff_id), bytes, 0644, sync_dir);
}

Result<std::string> BuildSeekIndex(const LayerRecord& layer, int blob_fd) {
  if (layer.compression == Compression::kNone) return std::string();
  FdSource src(blob_fd);
  uint64_t span = SeekSpanFromEnv();
  IndexingSource dec(&src, layer.compression, span ? span : kDefaultSeekSpan);
  Sha256 h;
  std::vector<char> buf(1 << 20);
  uint64_t total = 0;
  for (;;) {
    IMGFS_ASSIGN_OR_RETURN(size_t n, dec.Read(buf.data(), buf.size()));
    if (n == 0) break;
    h.Update(buf.data(), n);
    total += n;
  }
  Digest got = h.Finish();
  if (!(got == layer.diff_id) || total != layer.size) {
    return Status::Corruption("uncompressed content hashes to " + got.str() + ", expected " +
                              layer.diff_id.str());
  }
  return dec.Finish();
}

Result<SeekPruneResult> PruneSeekIndexes(const Store& store) {
  SeekPruneResult r;
  std::string dir = store.root() + "/seek";
  DIR* d = ::opendir(dir.c_str());
  if (!d) {
    if (errno == ENOENT) return r;
    return Status::FromErrno("opendir " + dir);
  }
  std::vector<std::string> names;
  while (struct dirent* e = ::readdir(d)) {
    std::string name = e->d_name;
    if (name != "." && name != "..") names.push_back(name);
  }
  ::closedir(d);
  for (const std::string& name : names) {
    std::string p = dir + "/" + name;
    bool remove = false;
    size_t tmp = name.find(".tmp-");
    if (tmp != std::string::npos) {
      // "<hex>.tmp-<pid>-<n>": remove only when its writer is gone.
      pid_t pid = static_cast<pid_t>(std::atol(name.c_str() + tmp + 5));
      remove = !(pid > 0 && (::kill(pid, 0) == 0 || errno == EPERM));
    } else {
      auto diff_id = Digest::FromHex(name);
      if (!diff_id.ok()) continue;  // not ours: leave it
      IMGFS_ASSIGN_OR_RETURN(auto layer, store.GetLayer(*diff_id));
      remove = !layer;
    }
    struct stat st;
    if (remove && ::lstat(p.c_str(), &st) == 0 && S_ISREG(st.st_mode) && ::unlink(p.c_str()) == 0) {
      r.removed++;
      r.bytes += static_cast<uint64_t>(st.st_size);
    }
  }
  return r;
}

}  // namespace imgfs
