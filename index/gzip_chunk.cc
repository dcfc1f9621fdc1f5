#include "index/gzip_chunk.h"

#include <zlib.h>

#include <string>

namespace imgfs {

Result<std::string> DecodeGzipChunk(std::string_view in, uint64_t skip, uint64_t size,
                                    const Digest& digest) {
  if (skip > kMaxGzipChunk || size > kMaxGzipChunk - skip) {
    return Status::InvalidArgument("gzip chunk: " + std::to_string(skip + size) +
                                   " bytes of output, more than the limit");
  }
  const uint64_t want = skip + size;
  std::string out(want, '\0');
  uint64_t have = 0;
  size_t used = 0;
  // Member after member (zlib's gzip mode stops at each member's end).
  while (have < want) {
    if (used >= in.size()) {
      return Status::Corruption("gzip chunk: the members end after " + std::to_string(have) +
                                " of " + std::to_string(want) + " bytes");
    }
    z_stream z{};
    if (inflateInit2(&z, 16 + MAX_WBITS) != Z_OK) {
      return Status::Unavailable("gzip chunk: zlib init failed");
    }
    int rc = Z_OK;
    while (have < want && rc != Z_STREAM_END) {
      size_t left_in = in.size() - used;
      z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data() + used));
      z.avail_in = static_cast<uInt>(std::min<size_t>(left_in, 1u << 30));
      z.next_out = reinterpret_cast<Bytef*>(out.data() + have);
      z.avail_out = static_cast<uInt>(std::min<uint64_t>(want - have, 1u << 30));
      uInt in_before = z.avail_in, out_before = z.avail_out;
      rc = inflate(&z, Z_NO_FLUSH);
      used += in_before - z.avail_in;
      have += out_before - z.avail_out;
      if (rc != Z_OK && rc != Z_STREAM_END) {
        std::string msg = rc == Z_BUF_ERROR ? "truncated" : (z.msg ? z.msg : "zlib error");
        inflateEnd(&z);
        return Status::Corruption("gzip chunk: not valid gzip (" + msg + ")");
      }
    }
    inflateEnd(&z);
  }
  std::string content = out.substr(skip);
  Digest got = Sha256Of(content);
  if (!(got == digest)) {
    return Status::Corruption("gzip chunk: digest " + got.str() + ", expected " + digest.str());
  }
  return content;
}

}  // namespace imgfs
