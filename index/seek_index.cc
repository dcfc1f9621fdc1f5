#include "index/seek_index.h"

#include <dirent.h>
#include <fcntl.h>
#include <isa-l/crc.h>
#include <isa-l/igzip_lib.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>
#include <zlib.h>
#include <zstd.h>

#include <signal.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <optional>

#include "index/file_util.h"

namespace imgfs {

namespace {

constexpr char kMagic[8] = {'I', 'M', 'G', 'F', 'S', 'E', 'E', 'K'};
constexpr uint32_t kWindow = 32768;

void Put32(std::string* s, uint32_t v) {
  s->append(reinterpret_cast<const char*>(&v), 4);
}
void Put64(std::string* s, uint64_t v) {
  s->append(reinterpret_cast<const char*>(&v), 8);
}
uint32_t Get32(const uint8_t* p) {
  uint32_t v;
  std::memcpy(&v, p, 4);
  return v;
}
uint64_t Get64(const uint8_t* p) {
  uint64_t v;
  std::memcpy(&v, p, 8);
  return v;
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

SpanCheck::SpanCheck() : state_(XXH3_createState()) {
  if (!state_) throw std::bad_alloc();
  XXH3_128bits_reset(static_cast<XXH3_state_t*>(state_));
}

SpanCheck::~SpanCheck() {
  XXH3_freeState(static_cast<XXH3_state_t*>(state_));
}

void SpanCheck::Update(const void* p, size_t n) {
  if (n) XXH3_128bits_update(static_cast<XXH3_state_t*>(state_), p, n);
}

void SpanCheck::Finish(uint8_t out[32]) {
  auto* st = static_cast<XXH3_state_t*>(state_);
  XXH128_canonical_t c;
  XXH128_canonicalFromHash(&c, XXH3_128bits_digest(st));
  std::memcpy(out, c.digest, 16);
  std::memset(out + 16, 0, 16);
  XXH3_128bits_reset(st);
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

void IndexingSource::SetSpanDigest(size_t i, const uint8_t check[32]) {
  std::lock_guard<std::mutex> l(impl_->pts_mu);
  if (i < impl_->points.size()) {
    std::memcpy(impl_->points[i].digest, check, 32);
    impl_->hashed++;
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

SpanHasher::SpanHasher(ByteSource* in, IndexingSource* idx) : in_(in), idx_(idx) {}

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
    h_.Finish(check);
    idx_->SetSpanDigest(cur_++, check);
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
    h_.Finish(check);
    idx_->SetSpanDigest(cur_, check);
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

void IndexingSource::Checkpoint(bool fresh, uint64_t in_off, uint8_t bits) {
  Impl& m = *impl_;
  if (!m.points.empty() && !m.elsewhere) m.hash->Finish(m.points.back().digest);
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
    if (!m.hash) m.hash.emplace();
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
    m.hash->Finish(m.points.back().digest);
    m.hash.reset();
  }
  std::string s;
  uint64_t count = m.points.size();
  s.reserve(SeekIndex::kHeaderSize + count * SeekIndex::kRecordSize + m.windows.size());
  s.append(kMagic, 8);
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
    Put64(&s, 0);
  }
  s += m.windows;
  return s;
}

// ---- reading ----

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
  return p;
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

Result<std::string> SeekIndex::DecodeSpan(int blob_fd, size_t i, Decoder decoder) const {
  if (i >= count_) return Status::InvalidArgument("no such span");
  SeekPoint p = point(i);
  uint64_t len = SpanEnd(i) - SpanStart(i);
  if (len > 4 * kMaxSeekSpan) {
    return Status::Corruption("seek index: span " + std::to_string(i) + " is " +
                              std::to_string(len) + " bytes, more than any index imgfs writes");
  }
  std::string out(len, '\0');
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
  std::string in(in_end - in_start, '\0');
  IMGFS_RETURN_IF_ERROR(PreadAll(blob_fd, in.data(), in.size(), static_cast<off_t>(in_start)));
  std::string where = std::string(CompressionName(format_)) + " span " + std::to_string(i) +
                      " (tar bytes " + std::to_string(p.out_off) + "-" +
                      std::to_string(p.out_off + len) + ")";
  if (len == 0) return out;
  p.flags &= ~SeekPoint::kEqualIsZstd;
  auto inflate = [&](const SeekPoint& q) -> Status {
    if (decoder != Decoder::kZlibOnly && IsalSpan(q, in, &out)) return Status::Ok();
    if (decoder == Decoder::kIsalOnly)
      return Status::Corruption(where + ": ISA-L could not decode it");
    return ZlibSpan(q, in, &out, where);
  };
  uint8_t got[32];
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
    IMGFS_RETURN_IF_ERROR(st);
  } else {
    ZSTD_DCtx* dc = ZSTD_createDCtx();
    if (!dc) return Status::Exhausted("zstd: out of memory");
    ZSTD_inBuffer zin{in.data(), in.size(), 0};
    ZSTD_outBuffer zout{out.data(), out.size(), 0};
    while (zout.pos < zout.size) {
      size_t before_in = zin.pos, before_out = zout.pos;
      size_t r = ZSTD_decompressStream(dc, &zout, &zin);
      if (ZSTD_isError(r)) {
        ZSTD_freeDCtx(dc);
        return Status::Corruption(where + ": zstd: " + ZSTD_getErrorName(r));
      }
      if (zin.pos == before_in && zout.pos == before_out) {
        ZSTD_freeDCtx(dc);
        return Status::Corruption(where + ": compressed data ends early");
      }
    }
    ZSTD_freeDCtx(dc);
  }
  SpanCheck::Of(version_, out.data(), out.size(), got);
  if (std::memcmp(got, p.digest, 32) != 0)
    return Status::Corruption(
        where + ": content does not match the digest recorded when the layer was stored");
  return out;
}

// ---- the sidecar files ----

std::string SeekIndexPath(const Store& store, const Digest& diff_id) {
  return store.root() + "/seek/" + diff_id.hex();
}

Status WriteSeekIndex(const Store& store, const Digest& diff_id, const std::string& bytes) {
  IMGFS_RETURN_IF_ERROR(MakeDirs(store.root() + "/seek"));
  return WriteFileAtomic(SeekIndexPath(store, diff_id), bytes, 0644);
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
