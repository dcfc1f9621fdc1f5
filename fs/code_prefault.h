// The mount daemon's machine code, mapped in at start (fs/fuse_adapter.cc).
#pragma once

#include <cstdint>
#include <string_view>
#include <vector>

namespace imgfs {

// The libraries a mount's requests run, by file name prefix: FUSE, LMDB, the decoders
// and checks of a read (ISA-L, zlib, zstd, xxHash), the C and C++ runtimes. Not the
// pull's (curl, TLS, crypto), which a lazy image's fetches wait on the network for.
extern const std::vector<std::string_view> kReadPathLibraries;

// Faults in (MADV_POPULATE_READ) the read-only file mappings (code and constant data)
// of this process that are its own binary or a library whose file name starts with one
// of `libraries`, so that the first request of each kind (a first read: the span
// decoder, ISA-L and its tables, xxHash) does not wait on the disk for them. The pages stay
// reclaimable; a kernel older than 5.14 refuses the advice and nothing happens. Returns the bytes
// it asked for.
uint64_t MapCodeIn(const std::vector<std::string_view>& libraries = kReadPathLibraries);

}  // namespace imgfs
