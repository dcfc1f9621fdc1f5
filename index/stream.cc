#include "index/stream.h"

#include <isa-l/igzip_lib.h>
#include <zstd.h>

#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "index/file_util.h"

namespace imgfs {

Result<size_t> FdSource::Read(void* buf, size_t n) {
  n = static_cast<size_t>(std::min<uint64_t>(n, left_));
  if (n == 0) return size_t{0};
  for (;;) {
    ssize_t r = ::pread(fd_, buf, n, static_cast<off_t>(pos_));
    if (r < 0) {
      if (errno == EINTR) continue;
      return Status::FromErrno("read");
    }
    if (r == 0 && left_ != UINT64_MAX) return Status::Corruption("unexpected end of file");
    pos_ += r;
    if (left_ != UINT64_MAX) left_ -= r;
    return static_cast<size_t>(r);
  }
}

Result<size_t> StringSource::Read(void* buf, size_t n) {
  n = std::min(n, s_.size());
  if (n == 0) return n;  // an empty view's data() may be null
  std::memcpy(buf, s_.data(), n);
  s_.remove_prefix(n);
  return n;
}

Result<size_t> TeeSource::Read(void* buf, size_t n) {
  IMGFS_ASSIGN_OR_RETURN(size_t got, in_->Read(buf, n));
  bytes_ += got;
  if (!writer_) {
    hash_.Update(buf, got);
  } else if (got) {
    IMGFS_RETURN_IF_ERROR(writer_->Write(buf, got));  // the writer hashes
  }
  return got;
}

double ThreadCpuSeconds() {
  struct rusage ru;
  if (::getrusage(RUSAGE_THREAD, &ru) != 0) return 0;
  return static_cast<double>(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
         static_cast<double>(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

namespace {

const bool kStageReports = std::getenv("IMGFS_STAGE_CPU") != nullptr;
const auto kProcessStart = std::chrono::steady_clock::now();  // near enough: static init

double MsSinceStart() {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - kProcessStart)
      .count();
}

}  // namespace

void ReportStageCpu(const char* stage, double seconds) {
  if (!kStageReports || !stage) return;
  char line[160];
  int n = std::snprintf(line, sizeof line, "imgfs-stage-cpu %s %.6f %.1f\n", stage, seconds,
                        MsSinceStart());
  if (n > 0) (void)!::write(2, line, static_cast<size_t>(n));  // one write: lines stay whole
}

void ReportStageMark(const char* what) {
  if (!kStageReports) return;
  char line[160];
  int n = std::snprintf(line, sizeof line, "imgfs-stage-time %s %.1f\n", what, MsSinceStart());
  if (n > 0) (void)!::write(2, line, static_cast<size_t>(n));
}

PipelinedSource::PipelinedSource(ByteSource* in, size_t chunk, size_t depth, const char* stage)
    : in_(in), chunk_(chunk), depth_(depth), stage_(stage) {
  thread_ = std::thread([this] {
    Produce();
    ReportStageCpu(stage_, ThreadCpuSeconds());
  });
}

PipelinedSource::~PipelinedSource() {
  {
    std::lock_guard<std::mutex> l(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  thread_.join();
}

void PipelinedSource::Produce() {
  for (;;) {
    Chunk c;
    {
      std::lock_guard<std::mutex> l(mu_);
      if (!free_.empty()) {
        c.data = std::move(free_.back());
        free_.pop_back();
      }
    }
    if (!c.data) c.data.reset(new char[chunk_]);  // not zero-filled: it is written first
    Status st;
    bool end = false;
    while (c.len < chunk_) {
      auto r = in_->Read(c.data.get() + c.len, chunk_ - c.len);
      if (!r.ok()) {
        st = r.status();
        break;
      }
      if (*r == 0) {
        end = true;
        break;
      }
      c.len += *r;
    }
    std::unique_lock<std::mutex> l(mu_);
    cv_.wait(l, [&] { return stop_ || queue_.size() < depth_; });
    if (stop_) return;
    if (c.len > 0) queue_.push_back(std::move(c));
    if (!st.ok()) error_ = st;
    if (!st.ok() || end) {
      eof_ = true;
      cv_.notify_all();
      return;
    }
    cv_.notify_all();
  }
}

Result<bool> PipelinedSource::NextChunk() {
  if (cur_pos_ < cur_.len) return true;
  std::unique_lock<std::mutex> l(mu_);
  if (cur_.data) free_.push_back(std::move(cur_.data));  // back to the producer
  cur_.len = 0;
  cur_pos_ = 0;
  cv_.wait(l, [&] { return !queue_.empty() || eof_; });
  if (queue_.empty()) {
    if (!error_.ok()) return error_;
    return false;
  }
  cur_ = std::move(queue_.front());
  queue_.pop_front();
  cv_.notify_all();
  return true;
}

Result<size_t> PipelinedSource::Read(void* buf, size_t n) {
  IMGFS_ASSIGN_OR_RETURN(bool more, NextChunk());
  if (!more) return size_t{0};
  size_t k = std::min(n, cur_.len - cur_pos_);
  std::memcpy(buf, cur_.data.get() + cur_pos_, k);
  cur_pos_ += k;
  return k;
}

Result<std::string_view> PipelinedSource::ReadView(char*, size_t n) {
  IMGFS_ASSIGN_OR_RETURN(bool more, NextChunk());
  if (!more) return std::string_view();
  size_t k = std::min(n, cur_.len - cur_pos_);
  std::string_view v(cur_.data.get() + cur_pos_, k);
  cur_pos_ += k;
  return v;
}

const char* CompressionName(Compression c) {
  switch (c) {
    case Compression::kNone:
      return "none";
    case Compression::kGzip:
      return "gzip";
    case Compression::kZstd:
      return "zstd";
    case Compression::kAuto:
      return "auto";
  }
  return "?";
}

Compression DetectCompression(std::string_view h) {
  if (h.size() >= 2 && static_cast<uint8_t>(h[0]) == 0x1f && static_cast<uint8_t>(h[1]) == 0x8b) {
    return Compression::kGzip;
  }
  if (h.size() >= 4 && static_cast<uint8_t>(h[0]) == 0x28 && static_cast<uint8_t>(h[1]) == 0xb5 &&
      static_cast<uint8_t>(h[2]) == 0x2f && static_cast<uint8_t>(h[3]) == 0xfd) {
    return Compression::kZstd;
  }
  return Compression::kNone;
}

struct DecompressingSource::Impl {
  inflate_state gz;
  ZSTD_DCtx* zstd = nullptr;
  size_t zstd_last = 0;  // last ZSTD_decompressStream result; 0 = at a frame boundary
  ~Impl() {
    if (zstd) ZSTD_freeDCtx(zstd);
  }
};

DecompressingSource::DecompressingSource(ByteSource* in, Compression c)
    : in_(in), c_(c), inbuf_(1 << 20), impl_(std::make_unique<Impl>()) {}

DecompressingSource::~DecompressingSource() = default;

Status DecompressingSource::Fill() {
  if (in_pos_ > 0 && in_pos_ < in_len_) {
    std::memmove(inbuf_.data(), inbuf_.data() + in_pos_, in_len_ - in_pos_);
  }
  in_len_ -= in_pos_;
  in_pos_ = 0;
  while (!in_eof_ && in_len_ < inbuf_.size()) {
    IMGFS_ASSIGN_OR_RETURN(size_t n, in_->Read(inbuf_.data() + in_len_, inbuf_.size() - in_len_));
    if (n == 0) {
      in_eof_ = true;
      break;
    }
    in_len_ += n;
    if (in_len_ >= 4) break;  // enough to make progress; keep latency low
  }
  return Status::Ok();
}

Result<size_t> DecompressingSource::Read(void* buf, size_t n) {
  if (!started_) {
    while (in_len_ < 4 && !in_eof_) IMGFS_RETURN_IF_ERROR(Fill());
    Compression seen =
        DetectCompression(std::string_view(reinterpret_cast<const char*>(inbuf_.data()), in_len_));
    if (c_ == Compression::kAuto) c_ = seen;
    // A 0-byte blob is an empty stream whatever its declared compression: docker,
    // containerd and umoci detect compression from the first bytes and read it so.
    if (in_len_ == 0 && in_eof_) c_ = Compression::kNone;
    if (c_ == Compression::kGzip) {
      if (seen != Compression::kGzip) return Status::Corruption("not a gzip stream (bad magic)");
      isal_inflate_init(&impl_->gz);
      impl_->gz.crc_flag = ISAL_GZIP;
    } else if (c_ == Compression::kZstd) {
      if (seen != Compression::kZstd) return Status::Corruption("not a zstd stream (bad magic)");
      impl_->zstd = ZSTD_createDCtx();
      if (!impl_->zstd) return Status::Exhausted("zstd: out of memory");
    }
    started_ = true;
  }
  switch (c_) {
    case Compression::kGzip:
      return ReadGzip(buf, n);
    case Compression::kZstd:
      return ReadZstd(buf, n);
    default:
      break;
  }
  if (in_pos_ == in_len_) {
    if (in_eof_) return size_t{0};
    return in_->Read(buf, n);  // pass-through once the peeked bytes are consumed
  }
  size_t k = std::min(n, in_len_ - in_pos_);
  std::memcpy(buf, inbuf_.data() + in_pos_, k);
  in_pos_ += k;
  return k;
}

Result<size_t> DecompressingSource::ReadGzip(void* buf, size_t n) {
  inflate_state& s = impl_->gz;
  for (;;) {
    if (member_done_) {
      // Another gzip member may follow (multi-member streams are legal); trailing zero
      // padding is tolerated, anything else must be a valid member.
      while (in_pos_ < in_len_ && inbuf_[in_pos_] == 0) in_pos_++;
      if (in_pos_ == in_len_) {
        if (in_eof_) return size_t{0};
        IMGFS_RETURN_IF_ERROR(Fill());
        continue;
      }
      isal_inflate_reset(&s);
      s.crc_flag = ISAL_GZIP;
      member_done_ = false;
    }
    if (in_pos_ == in_len_ && !in_eof_) IMGFS_RETURN_IF_ERROR(Fill());
    s.next_in = inbuf_.data() + in_pos_;
    s.avail_in = static_cast<uint32_t>(in_len_ - in_pos_);
    s.next_out = static_cast<uint8_t*>(buf);
    s.avail_out = static_cast<uint32_t>(std::min<size_t>(n, UINT32_MAX));
    uint32_t out_before = s.avail_out;
    int ret = isal_inflate(&s);
    in_pos_ = in_len_ - s.avail_in;
    size_t produced = out_before - s.avail_out;
    if (ret < 0) {
      return Status::Corruption(ret == ISAL_INCORRECT_CHECKSUM
                                    ? "gzip: CRC mismatch"
                                    : "gzip: corrupt deflate stream (code " + std::to_string(ret) +
                                          ")");
    }
    if (s.block_state == ISAL_BLOCK_FINISH) member_done_ = true;
    if (produced > 0) return produced;
    if (member_done_) continue;
    if (in_pos_ == in_len_ && in_eof_)
      return Status::Corruption("gzip: unexpected end of stream (truncated)");
  }
}

Result<size_t> DecompressingSource::ReadZstd(void* buf, size_t n) {
  for (;;) {
    if (in_pos_ == in_len_) {
      if (in_eof_) {
        if (impl_->zstd_last != 0)
          return Status::Corruption("zstd: unexpected end of stream (truncated)");
        return size_t{0};
      }
      IMGFS_RETURN_IF_ERROR(Fill());
      continue;
    }
    ZSTD_inBuffer in{inbuf_.data(), in_len_, in_pos_};
    ZSTD_outBuffer out{buf, n, 0};
    size_t r = ZSTD_decompressStream(impl_->zstd, &out, &in);
    in_pos_ = in.pos;
    if (ZSTD_isError(r)) return Status::Corruption(std::string("zstd: ") + ZSTD_getErrorName(r));
    impl_->zstd_last = r;
    if (out.pos > 0) return out.pos;
  }
}

Status DecompressToFd(ByteSource* in, Compression c, int fd, const Digest& expected) {
  DecompressingSource dec(in, c);
  Sha256 h;
  std::vector<char> buf(1 << 20);
  for (;;) {
    IMGFS_ASSIGN_OR_RETURN(size_t n, dec.Read(buf.data(), buf.size()));
    if (n == 0) break;
    h.Update(buf.data(), n);
    IMGFS_RETURN_IF_ERROR(WriteAll(fd, buf.data(), n));
  }
  Digest got = h.Finish();
  if (!(got == expected)) {
    return Status::Corruption("uncompressed content hashes to " + got.str() + ", expected " +
                              expected.str());
  }
  return Status::Ok();
}

}  // namespace imgfs
