// The mount daemon's machine code, mapped in at start (fs/fuse_adapter.cc).
#pragma once

#include <cstdint>

namespace imgfs {

// Faults in every executable file mapping of this process (imgfs itself and the
// libraries it loaded) with MADV_POPULATE_READ, so that the first request of each kind
// (the first read: the span decoder, ISA-L, xxHash, zstd) does not wait on the disk for
// its code. The pages stay reclaimable; a kernel older than 5.14 refuses the advice and
// nothing happens. Returns the bytes of the mappings it asked for.
uint64_t MapCodeIn();

}  // namespace imgfs
