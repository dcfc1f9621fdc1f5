// A seek sidecar (ROOT/seek/<diff_id hex>, index/seek_index.h) that is hostile or
// corrupt, and the blob it indexes. Input: 4 bytes (little-endian) = sidecar length,
// the sidecar, then the blob. The layer record is taken from the sidecar's own header
// (so that the checkpoint checks are reached). Properties: no crash or out-of-bounds
// read; SeekIndex::Open (mmap of a file) and FromBytes agree; an accepted index has
// spans that tile [0, tar size) in order and Find inverts SpanStart; decoding any span
// (from a memfd holding the blob) gives exactly the span's length or an error, the same
// from the mapped index as from the one in memory; a prefix read gives whole pieces of
// at least what it asked, and, when the whole span decodes too, the same bytes; Verify
// passes only when every one of those reads did.
#include <sys/mman.h>
#include <unistd.h>

#include <cstdint>
#include <cstring>
#include <string>

#include "index/seek_index.h"
#include "tests/fuzz/fuzz_check.h"

using namespace imgfs;

namespace {

uint64_t Get64(const std::string& s, size_t at) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; i--) v = v << 8 | static_cast<uint8_t>(s[at + i]);
  return v;
}

int MemFd(const char* name, const std::string& bytes) {
  int fd = ::memfd_create(name, MFD_CLOEXEC);
  FUZZ_CHECK(fd >= 0);
  FUZZ_CHECK(::write(fd, bytes.data(), bytes.size()) == static_cast<ssize_t>(bytes.size()));
  return fd;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 4) return 0;
  uint32_t n = data[0] | data[1] << 8 | data[2] << 16 | static_cast<uint32_t>(data[3]) << 24;
  n = static_cast<uint32_t>(std::min<size_t>(n, size - 4));
  std::string side(reinterpret_cast<const char*>(data + 4), n);
  std::string blob(reinterpret_cast<const char*>(data + 4 + n), size - 4 - n);
  LayerRecord layer;
  layer.blob_size = blob.size();
  layer.compression = Compression::kGzip;
  if (side.size() >= SeekIndex::kHeaderSize) {
    layer.compression = static_cast<Compression>(static_cast<uint8_t>(side[12]));
    layer.size = Get64(side, 32);
    layer.blob_size = Get64(side, 40);
  }
  auto mem = SeekIndex::FromBytes(side, layer);
  int sfd = MemFd("sidecar", side);
  auto file = SeekIndex::Open("/proc/self/fd/" + std::to_string(sfd), layer);
  ::close(sfd);
  FUZZ_CHECK(mem.ok() == file.ok());
  if (!mem.ok()) return 0;
  const SeekIndex& x = **mem;
  FUZZ_CHECK(x.count() >= 1 && x.count() == (*file)->count());
  FUZZ_CHECK(x.SpanStart(0) == 0);
  for (size_t i = 0; i < x.count(); i++) {
    FUZZ_CHECK(x.SpanStart(i) <= x.SpanEnd(i) && x.SpanEnd(i) <= layer.size);
    if (i + 1 < x.count()) FUZZ_CHECK(x.SpanEnd(i) == x.SpanStart(i + 1));
    if (x.SpanStart(i) < layer.size) {
      size_t f = x.Find(x.SpanStart(i));
      FUZZ_CHECK(f >= i && x.SpanStart(f) == x.SpanStart(i) && x.SpanEnd(f) > x.SpanStart(i));
    }
  }
  // Decoding: only spans whose buffers are small (a sidecar may claim a span as large
  // as the layer; DecodeSpan allocates it).
  int bfd = MemFd("blob", blob);
  size_t tried = 0;
  bool all_read = true;  // every decode below succeeded
  for (size_t i = 0; i < x.count() && tried < 8; i++) {
    uint64_t len = x.SpanEnd(i) - x.SpanStart(i);
    uint64_t in_end = i + 1 < x.count() ? x.point(i + 1).in_off : layer.blob_size;
    if (len > (4 << 20) || in_end > (4 << 20) + x.point(i).in_off) continue;
    tried++;
    auto span = x.DecodeSpan(bfd, i);
    if (span.ok()) FUZZ_CHECK(span->size() == len);
    all_read = all_read && span.ok();
    // The mapped sidecar decodes the same (it also asks for the window's pages first).
    auto mapped = (*file)->DecodeSpan(bfd, i);
    FUZZ_CHECK(mapped.ok() == span.ok());
    if (span.ok()) FUZZ_CHECK(*mapped == *span);
    // A prefix read (prefix values): whole pieces up to the one holding byte need-1, at
    // least `need` bytes; when the whole span decodes too, its prefix.
    for (uint64_t need : {uint64_t{1}, x.piece() + 1, len / 2}) {
      if (need == 0 || need > len) continue;
      uint64_t want = x.DecodeLength(i, need);
      FUZZ_CHECK(want >= need && want <= len);
      FUZZ_CHECK(want == len || (x.piece() && want % x.piece() == 0));
      auto pre = x.DecodeSpan(bfd, i, SeekIndex::Decoder::kIsalThenZlib, need);
      if (pre.ok()) FUZZ_CHECK(pre->size() == want);
      if (pre.ok() && span.ok()) FUZZ_CHECK(span->compare(0, want, *pre) == 0);
      all_read = all_read && pre.ok();
    }
  }
  // Verify (imgfs verify) checks what reads check: when every span was read above and
  // it passes, so did every read.
  if (tried == x.count() && x.WorthUsing() && x.Verify(bfd).ok()) FUZZ_CHECK(all_read);
  ::close(bfd);
  return 0;
}
