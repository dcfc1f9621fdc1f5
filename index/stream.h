// Byte streams for the one-pass layer pipeline:
//
//   file/archive member ──FdSource──▶ TeeSource (copy into ingest/ + sha256 of the blob, once)
//        ──PipelinedSource (a reader thread, so inflate runs on the other core)──▶
//   DecompressingSource (ISA-L gzip, zstd, or none; by media type and magic bytes)
//        ──▶ tar indexer (libarchive) ──▶ sha256 of the uncompressed stream = diff_id
//
// Every source returns 0 at the end of its stream and an error Status for damaged or
// truncated input; a decompressor reports a stream that ends early as corruption.
//
// Thread-safety: each source belongs to one consumer thread. PipelinedSource owns a
// producer thread that is the only user of its inner source.
#ifndef IMGFS_INDEX_STREAM_H_
#define IMGFS_INDEX_STREAM_H_

#include <sys/types.h>

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "index/blob_store.h"
#include "index/digest.h"
#include "index/status.h"

namespace imgfs {

class ByteSource {
 public:
  virtual ~ByteSource() = default;
  // Reads up to n bytes; 0 means end of stream.
  virtual Result<size_t> Read(void* buf, size_t n) = 0;
  // Reads up to n bytes without copying them when the source holds them already: the
  // view is valid until the next call on this source; empty means end of stream. By
  // default the bytes are read into `scratch` (n bytes of room).
  virtual Result<std::string_view> ReadView(char* scratch, size_t n) {
    IMGFS_ASSIGN_OR_RETURN(size_t k, Read(scratch, n));
    return std::string_view(scratch, k);
  }
};

// Reads [offset, offset+length) of an fd with pread (length UINT64_MAX: to EOF).
class FdSource : public ByteSource {
 public:
  FdSource(int fd, uint64_t offset = 0, uint64_t length = UINT64_MAX)
      : fd_(fd), pos_(offset), left_(length) {}
  Result<size_t> Read(void* buf, size_t n) override;

 private:
  int fd_;
  uint64_t pos_;
  uint64_t left_;
};

class StringSource : public ByteSource {
 public:
  explicit StringSource(std::string_view s) : s_(s) {}
  Result<size_t> Read(void* buf, size_t n) override;

 private:
  std::string_view s_;
};

// Hashes everything read through it and, when given a writer, copies it there. Each
// byte is hashed once: with a writer, the writer's hash is the blob digest.
class TeeSource : public ByteSource {
 public:
  TeeSource(ByteSource* in, BlobStore::Writer* writer) : in_(in), writer_(writer) {}
  Result<size_t> Read(void* buf, size_t n) override;
  Digest Finish() { return writer_ ? writer_->Sum() : hash_.Finish(); }
  uint64_t bytes() const { return bytes_; }

 private:
  ByteSource* in_;
  BlobStore::Writer* writer_;
  Sha256 hash_;
  uint64_t bytes_ = 0;
};

// CPU accounting per pipeline stage (bench/pull.sh): the calling thread's user+system
// CPU seconds (getrusage RUSAGE_THREAD), and, when IMGFS_STAGE_CPU is set in the
// environment, one "imgfs-stage-cpu STAGE SECONDS MS" line to stderr (MS: wall
// milliseconds since the process started, when the stage ended). ReportStageMark
// writes "imgfs-stage-time WHAT MS" (a point of a pull's timeline) under the same
// variable.
double ThreadCpuSeconds();
void ReportStageCpu(const char* stage, double seconds);
void ReportStageMark(const char* what);

// Runs `in` on a producer thread, handing chunks to the consumer through a bounded
// queue, so reading+hashing+writing the blob overlaps decompression and parsing.
// `stage` names the thread for ReportStageCpu (nullptr: not reported).
class PipelinedSource : public ByteSource {
 public:
  explicit PipelinedSource(ByteSource* in, size_t chunk = 512 << 10, size_t depth = 4,
                           const char* stage = nullptr);
  ~PipelinedSource() override;
  Result<size_t> Read(void* buf, size_t n) override;
  Result<std::string_view> ReadView(char* scratch, size_t n) override;

 private:
  // A filled buffer; buffers are recycled (no allocation, zero-fill or page faults
  // per chunk).
  struct Chunk {
    std::unique_ptr<char[]> data;
    size_t len = 0;
  };
  void Produce();
  // Makes cur_ hold unread bytes; false at the end of the stream (or on error).
  Result<bool> NextChunk();
  ByteSource* in_;
  size_t chunk_;
  size_t depth_;
  const char* stage_;
  std::mutex mu_;  // guards everything below
  std::condition_variable cv_;
  std::deque<Chunk> queue_;
  std::vector<std::unique_ptr<char[]>> free_;
  bool eof_ = false;
  bool stop_ = false;
  Status error_;
  Chunk cur_;  // the consumer's
  size_t cur_pos_ = 0;
  std::thread thread_;
};

enum class Compression : uint8_t { kNone = 0, kGzip = 1, kZstd = 2, kAuto = 255 };

const char* CompressionName(Compression c);
// By magic bytes: gzip 1f 8b, zstd 28 b5 2f fd, anything else is an uncompressed tar.
Compression DetectCompression(std::string_view head);

// Decompresses `in`. With kAuto the format is taken from the magic bytes.
class DecompressingSource : public ByteSource {
 public:
  DecompressingSource(ByteSource* in, Compression c);
  ~DecompressingSource() override;
  Result<size_t> Read(void* buf, size_t n) override;
  Compression compression() const { return c_; }

 private:
  Status Fill();
  Result<size_t> ReadGzip(void* buf, size_t n);
  Result<size_t> ReadZstd(void* buf, size_t n);
  ByteSource* in_;
  Compression c_;
  std::vector<uint8_t> inbuf_;
  size_t in_pos_ = 0;
  size_t in_len_ = 0;
  bool in_eof_ = false;
  bool started_ = false;
  bool member_done_ = false;
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// Decompresses the whole of `in` into `fd`, checking that the output hashes to
// `expected` (a diff_id). Used by the on-demand unpack cache.
Status DecompressToFd(ByteSource* in, Compression c, int fd, const Digest& expected);

}  // namespace imgfs

#endif  // IMGFS_INDEX_STREAM_H_
