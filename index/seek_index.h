// Seek indexes: random access into a compressed layer without an uncompressed copy.
//
// IndexingSource decompresses a layer blob (gzip, zstd or none, like
// DecompressingSource) and, in the same pass, records checkpoints:
//   gzip  at the first deflate block boundary or member start after every `span` bytes
//         of output (and at the first member): uncompressed offset, compressed offset,
//         bit offset and the 32 KiB window (stored zstd-compressed; a member start needs
//         none). A span may run across member ends (DecodeSpan goes on with the next
//         member), so a blob of many tiny members gets no more checkpoints than one
//         member would: their number is bounded by the output, not by the blob. Decoding uses
//         ISA-L, made to stop at the end of a block once a checkpoint is due (ReadGzip explains
//         how); a span is resumed with ISA-L (isal_inflate_set_dict, leftover bits in read_in),
//         zlib's inflatePrime + inflateSetDictionary as the fallback.
//   zstd  at the first frame boundary after every `span` bytes of output (a zstd:chunked
//         layer has one frame per file, so spans end near `span`). No window is needed.
// The input is read in place (ByteSource::ReadView: a PipelinedSource's chunks are not
// copied); only the bytes around a chunk's end are (Fill in seek_index.cc).
// For every span (checkpoint i to checkpoint i+1, the last to the end of the tar) it
// records a check value of the span's uncompressed bytes (SpanCheck: XXH3-128 since
// sidecar version 2, SHA-256 in version 1, which is still read); DecodeSpan checks it,
// so a damaged blob fails reads in the damaged span only. With each span it also
// records prefix values (SpanCheck, every span/16 bytes), so that a read of a span's
// first bytes decodes and checks only the pieces it needs. The value guards against
// damage after the verified pass, not against someone who can write the store (they
// could rewrite the sidecar as well): the blob digest and diff_id, checked by that
// pass and by `imgfs verify`, are what a registry or an archive is held to.
//
// The sidecar (ROOT/seek/<diff_id hex>, format in docs/store-format.md) is written
// ingest → fsync → rename; SeekIndex mmaps it for reading.
//
// Thread-safety: IndexingSource belongs to one thread. A SeekIndex is immutable and
// DecodeSpan may run on any number of threads at once.
#ifndef IMGFS_INDEX_SEEK_INDEX_H_
#define IMGFS_INDEX_SEEK_INDEX_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "index/store.h"
#include "index/stream.h"

namespace imgfs {

constexpr uint64_t kDefaultSeekSpan = 1 << 20;
// The smallest span $IMGFS_SEEK_SPAN may ask for: every checkpoint keeps a window of up
// to 32 KiB, so smaller spans would make the index larger than what it indexes.
constexpr uint64_t kMinSeekSpan = 64 << 10;
// The largest span $IMGFS_SEEK_SPAN may ask for. A span is decoded whole into memory,
// so an index whose spans are far longer (over 4 × this) is not used, and DecodeSpan
// refuses such a span, or one that reads more than that of compressed bytes (a damaged
// sidecar cannot ask for gigabytes).
constexpr uint64_t kMaxSeekSpan = 64 << 20;
// The span for new indexes: $IMGFS_SEEK_SPAN (bytes, raised to kMinSeekSpan, lowered to
// kMaxSeekSpan; 0 = record no index) or 1 MiB.
uint64_t SeekSpanFromEnv();
// Prefix checks (SpanCheck) divide a span into pieces of span/16 bytes (a span longer
// than the index's span, from a long deflate block or zstd frame, has more of them).
constexpr uint64_t kPiecesPerSpan = 16;

class IndexingSource : public ByteSource {
 public:
  // span 0: decompress only (DecompressingSource, ISA-L for gzip), record nothing.
  IndexingSource(ByteSource* in, Compression hint, uint64_t span);
  ~IndexingSource() override;
  Result<size_t> Read(void* buf, size_t n) override;
  Compression compression() const { return c_; }
  // After Read returned 0: the sidecar's bytes, or "" when no index applies
  // (uncompressed layer, span 0).
  Result<std::string> Finish();
  uint64_t checkpoints() const;
  // The span digests are computed by a SpanHasher reading this source's output (on
  // another thread, to balance the pipeline) instead of here. Before the first Read.
  void HashSpansElsewhere();
  // For SpanHasher (thread-safe): the tar offset of checkpoint i (UINT64_MAX when not
  // recorded yet), and span i's digest.
  uint64_t PointOut(size_t i);
  void SetSpanDigest(size_t i, const uint8_t check[32], const std::vector<uint64_t>& prefixes);
  // The piece size of the prefix checks (SpanCheck) of this index.
  uint64_t piece() const { return span_ / kPiecesPerSpan; }
  // The window length checkpoint i needs (0: none), and its stored (compressed) bytes,
  // which the SpanHasher makes from the tar bytes before the checkpoint: compressing
  // ~120 windows per 128 MB of tar was a tenth of the inflate thread's work.
  uint32_t PointWindow(size_t i);
  void SetSpanWindow(size_t i, std::string_view stored);

 private:
  struct Impl;
  Status Fill();
  Result<size_t> ReadGzip(void* buf, size_t n);
  Result<size_t> ReadZstd(void* buf, size_t n);
  void Checkpoint(bool fresh, uint64_t in_off, uint8_t bits);
  void FinishSpan();  // the last point's check value and prefix values
  void Hash(const void* p, size_t n);
  ByteSource* in_;
  Compression c_;
  uint64_t span_;
  std::unique_ptr<Impl> impl_;
};

// The check value of one span's tar bytes as the current sidecar version records it:
// XXH3-128 (canonical, big-endian), then 16 zero bytes. About 6× cheaper than SHA-256
// here (SHA-NI), which was one more hash of the whole tar on every pull.
//
// Prefix checks: with a piece size Q, it also keeps, for every multiple of Q inside the
// span (k·Q < the span's length, k ≥ 1), the value of the span's first k·Q bytes: the
// low 64 bits of their XXH3-128 (PrefixOf), read off the running state at no extra pass.
// A read of a span's first bytes then decodes only to the end of the piece holding its
// last byte, and is checked by that prefix's value (64 bits; the span's is 128).
class SpanCheck {
 public:
  explicit SpanCheck(uint64_t piece = 0);
  ~SpanCheck();
  SpanCheck(const SpanCheck&) = delete;
  SpanCheck& operator=(const SpanCheck&) = delete;
  void Update(const void* p, size_t n);
  // Writes the value of the bytes given since construction or the last Finish, appends
  // their prefix values (if a piece size was given) to *prefixes, and starts again.
  void Finish(uint8_t out[32], std::vector<uint64_t>* prefixes = nullptr);
  // The value of `n` bytes at `p` as sidecar `version` records it (1: SHA-256).
  static void Of(uint32_t version, const void* p, size_t n, uint8_t out[32]);
  // The prefix value of `n` bytes at `p`.
  static uint64_t PrefixOf(const void* p, size_t n);

 private:
  void* state_;  // XXH3_state_t
  uint64_t piece_ = 0, len_ = 0;
  std::vector<uint64_t> prefixes_;  // of the span under way
};

// The last <= 32 KiB of a byte stream (a deflate window): what a checkpoint's window is
// cut from, and what inflate resumes with after a block boundary.
class WindowTail {
 public:
  static constexpr size_t kSize = 32768;
  void Add(const void* p, size_t n);  // p may be null when n is 0
  void Clear() { len_ = 0; }
  const uint8_t* data() const { return buf_.data(); }
  size_t size() const { return len_; }

 private:
  std::vector<uint8_t> buf_ = std::vector<uint8_t>(kSize);
  size_t len_ = 0;
};

// Passes the output of an IndexingSource (HashSpansElsewhere) through, hashing its
// spans and compressing its checkpoints' windows; Finish reads what is left and records
// the last span's digest, and must run before the IndexingSource's Finish.
class SpanHasher : public ByteSource {
 public:
  SpanHasher(ByteSource* in, IndexingSource* idx);
  ~SpanHasher() override;
  SpanHasher(const SpanHasher&) = delete;
  SpanHasher& operator=(const SpanHasher&) = delete;
  Result<size_t> Read(void* buf, size_t n) override;
  Result<std::string_view> ReadView(char* scratch, size_t n) override;
  Status Finish();

 private:
  void Take(const char* p, size_t n);
  ByteSource* in_;
  IndexingSource* idx_;
  SpanCheck h_;
  std::vector<uint64_t> prefixes_;  // of the span just finished
  WindowTail tail_;                 // the last 32 KiB passed through
  void* wc_ = nullptr;              // ZSTD_CCtx for the windows
  uint64_t pos_ = 0;
  size_t cur_ = 0;
  bool off_ = false;  // the source records no index: nothing to hash
};

// One checkpoint as stored (80 bytes on disk, little-endian).
struct SeekPoint {
  uint64_t out_off = 0;  // offset in the tar
  uint64_t in_off = 0;   // offset in the blob of the first whole byte to feed
  uint64_t win_off = 0;  // offset of the compressed window in the windows area
  uint32_t win_clen = 0, win_len = 0;
  uint8_t bits = 0;         // gzip: bits of byte in_off-1 still to be read (0-7)
  uint8_t flags = 0;        // kFresh: a member/frame starts here (no window, no bits)
  uint8_t digest[32] = {};  // the span's SpanCheck value (version 1: SHA-256)
  // kPrefixes: the span's prefix values are at this byte offset of the prefix area.
  uint64_t prefix_at = 0;
  static constexpr uint8_t kFresh = 1;
  static constexpr uint8_t kPrefixes = 2;
  // In memory only (DecodeSpan): read a window whose stored length equals its length as
  // a zstd frame, not raw bytes (version-1 sidecars could store such frames).
  static constexpr uint8_t kEqualIsZstd = 0x80;
};

class SeekIndex {
 public:
  // The version written; versions 1 (SHA-256 span digests) and 2 are read.
  static constexpr uint32_t kVersion = 2;
  static constexpr size_t kHeaderSize = 64, kRecordSize = 80;
  ~SeekIndex();
  // Maps `path` and checks it against the layer (sizes, format, bounds).
  static Result<std::shared_ptr<const SeekIndex>> Open(const std::string& path,
                                                       const LayerRecord& layer);
  // Parses sidecar bytes held in memory (tests, fuzzing).
  static Result<std::shared_ptr<const SeekIndex>> FromBytes(std::string bytes,
                                                            const LayerRecord& layer);
  Compression format() const { return format_; }
  uint32_t version() const { return version_; }
  uint64_t span() const { return span_; }
  size_t count() const { return count_; }
  SeekPoint point(size_t i) const;
  uint64_t SpanStart(size_t i) const;
  uint64_t SpanEnd(size_t i) const;  // exclusive
  // The span holding tar offset `off` (< tar size).
  size_t Find(uint64_t off) const;
  // The longest span (a deflate block or zstd frame may be far longer than `span`).
  uint64_t max_span() const { return max_span_; }
  // Whether reads should use the index: not when a span is longer than 4 × max(span,
  // 1 MiB) — one read would inflate that much (one huge deflate block, or one zstd
  // frame for a whole large layer); the whole-layer path is then cheaper.
  bool WorthUsing() const;
  // Which decoder DecodeSpan uses for a gzip span: ISA-L, and zlib when ISA-L fails
  // (reads); or one of them alone (tests: each decoder must give every span by itself).
  enum class Decoder { kIsalThenZlib, kZlibOnly, kIsalOnly };
  // Decodes span i from the blob and checks its digest. need < the span's length: only
  // its first DecodeLength(i, need) bytes (whole pieces; the whole span when it has no
  // prefix values), checked against their prefix value.
  Result<std::string> DecodeSpan(int blob_fd, size_t i, Decoder decoder = Decoder::kIsalThenZlib,
                                 uint64_t need = UINT64_MAX) const;
  // Decodes every span from the blob, one at a time, and checks its value and each of
  // its prefix values (`imgfs verify`): what reads would check, all at once. The first
  // mismatch is Corruption naming the span (and the prefix). Nothing to check when the
  // index is not WorthUsing (reads never use it).
  Status Verify(int blob_fd) const;
  // How many bytes of span i DecodeSpan gives for a read of its first `need` bytes: the
  // end of the piece holding byte need-1, or the span's length.
  uint64_t DecodeLength(size_t i, uint64_t need) const;
  // The piece size of the prefix values (0: none, version 1), and span i's count of them.
  uint64_t piece() const { return piece_; }
  uint64_t PrefixCount(size_t i) const;
  // The compressed bytes a prefix decode reads first, of a span of `len` tar bytes in
  // `total` compressed ones: the prefix's share and a margin (the rest is read if the
  // decode runs out).
  static uint64_t PrefixInput(uint64_t total, uint64_t len, uint64_t out_len);

 private:
  SeekIndex() = default;
  static Result<std::shared_ptr<const SeekIndex>> Parse(std::shared_ptr<SeekIndex> idx,
                                                        const LayerRecord& layer);
  Result<std::string> Window(const SeekPoint& p) const;
  bool IsalSpan(const SeekPoint& p, const std::string& in, std::string* out) const;
  Status ZlibSpan(const SeekPoint& p, std::string& in, std::string* out,
                  const std::string& where) const;
  const uint8_t* data_ = nullptr;
  size_t size_ = 0;
  void* map_ = nullptr;  // munmap on destruction when set
  std::string owned_;    // FromBytes
  Compression format_ = Compression::kNone;
  uint32_t version_ = 0;
  uint64_t span_ = 0, count_ = 0, tar_size_ = 0, blob_size_ = 0, win_base_ = 0, win_size_ = 0;
  uint64_t max_span_ = 0;
  uint64_t piece_ = 0, prefix_base_ = 0;  // prefix values: piece size, area offset
  std::vector<uint64_t> starts_;          // out_off of each point, for Find
};

// ROOT/seek/<diff_id hex>
std::string SeekIndexPath(const Store& store, const Digest& diff_id);
// Writes a sidecar: a temp file in ROOT/seek/, fsync, rename, fsync of the directory
// (sync_dir = false: not the directory; a sidecar whose name a crash lost is rebuilt on
// the layer's first read).
Status WriteSeekIndex(const Store& store, const Digest& diff_id, const std::string& bytes,
                      bool sync_dir = true);
// Reads the whole blob once (verifying the diff_id) and returns its sidecar's bytes
// ("" for an uncompressed layer). For layers stored before seek indexes.
Result<std::string> BuildSeekIndex(const LayerRecord& layer, int blob_fd);
// Removes sidecars (and stale temp files) whose layer the index no longer has.
struct SeekPruneResult {
  uint64_t removed = 0, bytes = 0;
};
Result<SeekPruneResult> PruneSeekIndexes(const Store& store);

}  // namespace imgfs

#endif  // IMGFS_INDEX_SEEK_INDEX_H_
