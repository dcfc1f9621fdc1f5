// MapCodeIn (fs/code_prefault.h): after it, the code of a library this process uses
// (libc) is mapped in whole, where the process had touched part of it.
#include "fs/code_prefault.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>

namespace imgfs {
namespace {

struct Mapping {
  uint64_t size_kb = 0, rss_kb = 0;
  bool found = false;
};

// Size and Rss (pages in this process's page tables) of the mapping holding `addr`,
// from /proc/self/smaps.
Mapping MappingOf(uintptr_t addr) {
  std::ifstream smaps("/proc/self/smaps");
  Mapping m;
  bool inside = false;
  std::string line;
  while (std::getline(smaps, line)) {
    unsigned long lo = 0, hi = 0;
    char dash = 0;
    std::istringstream head(line);
    if (head >> std::hex >> lo >> dash >> hi && dash == '-') {
      if (m.found) break;  // the next mapping
      inside = addr >= lo && addr < hi;
      m.found = inside;
      continue;
    }
    if (!inside) continue;
    std::istringstream field(line);
    std::string key;
    uint64_t kb = 0;
    field >> key >> kb;
    if (key == "Size:") m.size_kb = kb;
    if (key == "Rss:") m.rss_kb = kb;
  }
  return m;
}

TEST(CodePrefaultTest, MapsTheWholeTextIn) {
  // libc's code: large enough that a process touches only part of it.
  auto here = reinterpret_cast<uintptr_t>(&::qsort);
  Mapping before = MappingOf(here);
  ASSERT_TRUE(before.found);
  ASSERT_GT(before.size_kb, 0u);
  EXPECT_GT(MapCodeIn(), before.size_kb * 1024 - 1);  // at least this mapping
  Mapping after = MappingOf(here);
  EXPECT_EQ(after.rss_kb, after.size_kb)
      << "before: " << before.rss_kb << " of " << before.size_kb << " kB";
}

}  // namespace
}  // namespace imgfs
