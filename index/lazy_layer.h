// The on-disk state of a lazily pulled layer (issue 9; format in docs/store-format.md).
//
//   ROOT/lazy/<blob hex>/
//     source    where the blob comes from: "imgfs-lazy-source 1\nHOST\nREPO\nINSECURE\n"
//     chunks    the chunk map (EncodeChunkMap): every regular file's chunks by tar offset
//     data      the blob as a sparse file of its full size; only mapped ranges hold bytes
//     ranges    the range map (RangeMap::Encode): the byte ranges of `data` that are on
//               disk. Bytes are written to `data` and fdatasync'ed before the ranges file
//               naming them is replaced (temp, fsync, rename, fsync dir), so after a crash
//               the map never names bytes that are not there.
//     broken    (only when completion found a mismatch) one line: why
//
// A lazy layer has its LayerRecord and entry table in LMDB like any other, but its
// blob is not (yet) in blobs/: the index invariant "every layer names a committed blob"
// becomes "every layer names a committed blob or has a lazy/ directory". A plain pull,
// or the mount daemon in the background (cli/lazy_complete.h), completes it (the whole
// blob is verified as usual) and removes the directory.
//
// Nothing read from these files is trusted: the chunk map is bounds-checked against the
// blob and tar sizes, and every chunk's bytes are checked against its digest when read.
//
// Thread-safety: RangeMap and the codecs are values; LazyDir's functions are reentrant.
#ifndef IMGFS_INDEX_LAZY_LAYER_H_
#define IMGFS_INDEX_LAZY_LAYER_H_

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "index/digest.h"
#include "index/layer_toc.h"
#include "index/status.h"

namespace imgfs {

// A set of disjoint half-open byte ranges [start, end), merged when they touch.
class RangeMap {
 public:
  void Add(uint64_t start, uint64_t end);
  void Remove(uint64_t start, uint64_t end);
  bool Covers(uint64_t start, uint64_t end) const;
  // The parts of [start, end) not in the map, in order.
  std::vector<std::pair<uint64_t, uint64_t>> Missing(uint64_t start, uint64_t end) const;
  uint64_t Total() const;  // bytes covered
  size_t size() const { return ranges_.size(); }
  const std::map<uint64_t, uint64_t>& ranges() const { return ranges_; }
  // "imgfs-ranges 1\n" then one "START END\n" per range. Decode refuses overlapping,
  // unordered or out-of-[0, limit] ranges.
  std::string Encode() const;
  static Result<RangeMap> Decode(std::string_view text, uint64_t limit);
  bool operator==(const RangeMap& o) const { return ranges_ == o.ranges_; }

 private:
  std::map<uint64_t, uint64_t> ranges_;  // start → end
};

// One chunk of a regular file, placed in the layer's tar stream.
struct LazyChunk {
  uint64_t tar_offset = 0;  // of its first content byte in the uncompressed tar
  uint64_t size = 0;
  uint64_t blob_offset = 0;
  uint64_t blob_length = 0;
  Digest digest;
  ChunkCodec codec = ChunkCodec::kZstd;
  uint64_t skip = 0;
  bool operator==(const LazyChunk&) const = default;
};

struct ChunkMap {
  uint64_t blob_size = 0;
  uint64_t tar_size = 0;
  std::vector<LazyChunk> chunks;  // sorted by tar_offset, not overlapping
  bool operator==(const ChunkMap&) const = default;
};

// The most one lazy read decodes at once: a chunk's content plus the bytes its codec
// skips (`skip`), and at most twice that of compressed bytes. Every read of a chunk
// that is not in the span cache holds its compressed and decoded bytes in memory, so
// the TOC, which is the image author's, may not name more. (eStargz writers make 4 MiB
// chunks; zstd:chunked chunks are smaller, but a file whose TOC gives no chunk digests
// is one chunk.)
inline constexpr uint64_t kMaxLazyChunk = 256ull << 20;

// The chunk map of a TOC whose files all have tar offsets (files without content are
// left out). Fails when a file's tar offset is unknown or chunks overlap; Unsupported
// (the pull takes the layer in full) when a chunk is over kMaxLazyChunk.
Result<ChunkMap> ChunkMapFromToc(const LayerToc& toc);
std::string EncodeChunkMap(const ChunkMap& m);
// Refuses (Corruption) chunks out of the blob or tar, overlapping, or over kMaxLazyChunk.
Result<ChunkMap> DecodeChunkMap(std::string_view data);

struct LazySource {
  std::string host;  // registry host[:port]
  std::string repo;  // repository path on it
  bool insecure = false;
};
std::string EncodeLazySource(const LazySource& s);
Result<LazySource> DecodeLazySource(std::string_view text);

// Paths and small helpers of ROOT/lazy/<blob hex>/.
struct LazyDir {
  std::string dir;
  // Whether the store at `root` has any lazily pulled layer (a lazy/<hex>/ directory;
  // a directory being made, lazy/.tmp-*, is not one yet). One readdir, no index read.
  static bool AnyIn(const std::string& root);
  static LazyDir For(const std::string& root, const Digest& blob) {
    return LazyDir{root + "/lazy/" + blob.hex()};
  }
  std::string source() const { return dir + "/source"; }
  std::string chunks() const { return dir + "/chunks"; }
  std::string data() const { return dir + "/data"; }
  std::string ranges() const { return dir + "/ranges"; }
  std::string broken() const { return dir + "/broken"; }
  bool Exists() const;
  // Writes source, chunks, an empty sparse data file of blob_size bytes with `local`
  // already in it, and the range map, each crash-safely; the directory appears by
  // rename, whole.
  static Status Create(const std::string& root, const Digest& blob, const LazySource& src,
                       const ChunkMap& map,
                       const std::vector<std::pair<uint64_t, std::string>>& local);
  // The range map on disk (empty when there is none).
  Result<RangeMap> LoadRanges(uint64_t blob_size) const;
  // Why completion failed ("" when it did not).
  std::string BrokenReason() const;
  Status MarkBroken(const std::string& why) const;
  Status Remove() const;
};

// Checks every chunk of `map` against the layer's uncompressed tar, read by inflating
// the complete blob (zstd or gzip) open on `blob_fd` from its start: the bytes at each chunk's tar
// offset must hash to its digest. A mismatch (the TOC described content the tar does
// not have) is a Corruption naming the chunk.
Status VerifyChunksAgainstBlob(int blob_fd, const ChunkMap& map);

// The same check as the tar's bytes go by, in order from its first byte (a completing
// pull feeds it from its one pass over the layer: no second inflate). Feed keeps the
// first mismatch and ignores what follows; Finish, at the tar's end, returns it (or a
// chunk past the end).
class ChunkVerifier {
 public:
  explicit ChunkVerifier(ChunkMap map) : map_(std::move(map)) {}
  void Feed(const char* p, size_t n);
  Status Finish() const;
  uint64_t fed() const { return pos_; }

 private:
  ChunkMap map_;
  uint64_t pos_ = 0;  // tar bytes fed so far
  size_t next_ = 0;   // the chunk being hashed, or the next one
  std::unique_ptr<Sha256> hash_;
  Status bad_;
};

// Fetches byte ranges of one blob (registry/lazy_fetch.h implements it over HTTP Range).
class RangeFetcher {
 public:
  virtual ~RangeFetcher() = default;
  // Fetches [offset, offset+length). `sink(pos, bytes, n)` gets the bytes in order with
  // their blob offset; a server that ignores Range may deliver more (the rest of the
  // blob, from offset on): the sink keeps what it is given. Returns once at least the
  // asked range was delivered, or an error (the sink may have had part of it).
  using Sink = std::function<Status(uint64_t pos, const char* p, size_t n)>;
  virtual Status Fetch(uint64_t offset, uint64_t length, const Sink& sink) = 0;
  // Several ranges (offset, length; sorted, disjoint, none empty; a few hundred at
  // most): `sink` gets at least each range's bytes. The registry's fetcher asks them in
  // one multi-range request (background completion: many small gaps); by default, one
  // Fetch each.
  virtual Status FetchRanges(const std::vector<std::pair<uint64_t, uint64_t>>& ranges,
                             const Sink& sink) {
    for (auto [off, len] : ranges) {
      Status st = Fetch(off, len, sink);
      if (!st.ok()) return st;
    }
    return Status::Ok();
  }
  // "HOST/REPO": for error messages.
  virtual std::string Where() const = 0;
};
// How a process makes fetchers for lazy layers: the CLI sets it (registry access as
// for pull); unset, lazy reads of bytes that are not local fail (Unavailable).
using RangeFetcherFactory = std::function<Result<std::unique_ptr<RangeFetcher>>(
    const LazySource& source, const Digest& blob, uint64_t blob_size)>;
void SetRangeFetcherFactory(RangeFetcherFactory f);
Result<std::unique_ptr<RangeFetcher>> MakeRangeFetcher(const LazySource& source, const Digest& blob,
                                                       uint64_t blob_size);

}  // namespace imgfs

#endif  // IMGFS_INDEX_LAZY_LAYER_H_
