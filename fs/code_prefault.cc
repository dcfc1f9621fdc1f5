// Maps the daemon's code in (see code_prefault.h).
#include "fs/code_prefault.h"

#include <sys/mman.h>
#include <unistd.h>

#include <climits>
#include <cstdio>
#include <string>

#ifndef MADV_POPULATE_READ
#define MADV_POPULATE_READ 22  // Linux 5.14; headers of glibc < 2.35 lack it
#endif

namespace imgfs {

const std::vector<std::string_view> kReadPathLibraries = {
    "libfuse3.", "liblmdb.", "libisal.",   "libz.",     "libzstd.", "libxxhash.",
    "libc.",     "libm.",    "libstdc++.", "libgcc_s.", "ld-linux"};

uint64_t MapCodeIn(const std::vector<std::string_view>& libraries) {
  char exe[PATH_MAX];
  ssize_t exe_len = ::readlink("/proc/self/exe", exe, sizeof exe - 1);
  std::string self = exe_len > 0 ? std::string(exe, static_cast<size_t>(exe_len)) : "";
  std::FILE* maps = std::fopen("/proc/self/maps", "re");
  if (!maps) return 0;
  uint64_t asked = 0;
  char line[PATH_MAX + 256];
  while (std::fgets(line, sizeof line, maps)) {
    unsigned long lo = 0, hi = 0, inode = 0;
    char perms[5] = {};
    int path_at = 0;
    // "lo-hi perms offset dev inode   path": file mappings (inode != 0) that are read but
    // not written: code, and read-only data (ISA-L's and xxHash's tables).
    if (std::sscanf(line, "%lx-%lx %4s %*s %*s %lu %n", &lo, &hi, perms, &inode, &path_at) < 4)
      continue;
    if (perms[0] != 'r' || perms[1] == 'w' || inode == 0 || hi <= lo) continue;
    std::string_view path(line + path_at);
    while (!path.empty() && (path.back() == '\n' || path.back() == ' ')) path.remove_suffix(1);
    std::string_view name = path.substr(path.rfind('/') + 1);
    bool want = !self.empty() && path == self;
    for (std::string_view lib : libraries) want = want || name.substr(0, lib.size()) == lib;
    if (!want) continue;
    if (::madvise(reinterpret_cast<void*>(lo), hi - lo, MADV_POPULATE_READ) == 0) asked += hi - lo;
  }
  std::fclose(maps);
  return asked;
}

}  // namespace imgfs
