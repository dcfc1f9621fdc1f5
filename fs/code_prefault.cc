// Maps the daemon's code in (see code_prefault.h).
#include "fs/code_prefault.h"

#include <sys/mman.h>

#include <cstdio>

namespace imgfs {

uint64_t MapCodeIn() {
  std::FILE* maps = std::fopen("/proc/self/maps", "re");
  if (!maps) return 0;
  uint64_t asked = 0;
  char line[4096];
  while (std::fgets(line, sizeof line, maps)) {
    unsigned long lo = 0, hi = 0, inode = 0;
    char perms[5] = {};
    // "lo-hi perms offset dev inode path": only file mappings (inode != 0) that execute.
    if (std::sscanf(line, "%lx-%lx %4s %*s %*s %lu", &lo, &hi, perms, &inode) != 4) continue;
    if (perms[2] != 'x' || inode == 0 || hi <= lo) continue;
    if (::madvise(reinterpret_cast<void*>(lo), hi - lo, MADV_POPULATE_READ) == 0) asked += hi - lo;
  }
  std::fclose(maps);
  return asked;
}

}  // namespace imgfs
