// Decoding one chunk of a seekable gzip layer (eStargz, ChunkCodec::kGzip in
// index/layer_toc.h): the chunk's compressed bytes are one or more complete gzip
// members; their output, after `skip` bytes, starts with the chunk's `size` content
// bytes (what follows, tar padding and the next entry's header, is not wanted).
//
// DecodeGzipChunk inflates no more than skip + size bytes of output, refuses input that
// is not gzip or ends before them, and checks the content's sha256 against the chunk's
// digest before returning it: a caller never sees an unverified byte.
//
// Thread-safety: a free function, reentrant.
#ifndef IMGFS_INDEX_GZIP_CHUNK_H_
#define IMGFS_INDEX_GZIP_CHUNK_H_

#include <cstdint>
#include <string>
#include <string_view>

#include "index/digest.h"
#include "index/status.h"

namespace imgfs {

inline constexpr uint64_t kMaxGzipChunk = 1ull << 30;  // skip + size

Result<std::string> DecodeGzipChunk(std::string_view compressed, uint64_t skip, uint64_t size,
                                    const Digest& digest);

}  // namespace imgfs

#endif  // IMGFS_INDEX_GZIP_CHUNK_H_
