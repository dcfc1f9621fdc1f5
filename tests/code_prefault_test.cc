// MapCodeIn (fs/code_prefault.h): it maps in the code and read-only data of this binary
// and of the libraries it is given, and no other: libc's, which the process had touched
// only part of, is resident whole after it.
#include "fs/code_prefault.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <fstream>
#include <sstream>
#include <string>

namespace imgfs {
namespace {

struct Mapping {
  uint64_t size_kb = 0, rss_kb = 0;
  bool found = false;
};

// Size and Rss (pages in this process's page tables) of the read-only mappings (code and
// constant data) of the file whose name starts with `prefix`, from /proc/self/smaps.
Mapping ReadOnlyOf(const std::string& prefix) {
  std::ifstream smaps("/proc/self/smaps");
  Mapping m;
  bool inside = false;
  std::string line;
  while (std::getline(smaps, line)) {
    std::istringstream head(line);
    std::string range, perms, offset, dev, inode, path;
    if (head >> range >> perms >> offset >> dev >> inode && range.find('-') != std::string::npos &&
        perms.size() == 4) {
      head >> path;
      std::string name = path.substr(path.rfind('/') + 1);
      inside = perms[0] == 'r' && perms[1] != 'w' && name.compare(0, prefix.size(), prefix) == 0;
      m.found = m.found || inside;
      continue;
    }
    if (!inside) continue;
    std::istringstream field(line);
    std::string key;
    uint64_t kb = 0;
    field >> key >> kb;
    if (key == "Size:") m.size_kb += kb;
    if (key == "Rss:") m.rss_kb += kb;
  }
  return m;
}

TEST(CodePrefaultTest, MapsItsOwnCodeAndTheLibrariesNamedInWhole) {
  Mapping before = ReadOnlyOf("libc.");
  ASSERT_TRUE(before.found);
  ASSERT_GT(before.size_kb, 0u);
  uint64_t self = MapCodeIn({});  // this test binary only
  EXPECT_GT(self, 0u);
  EXPECT_EQ(MapCodeIn({"libc."}), self + before.size_kb * 1024);
  Mapping after = ReadOnlyOf("libc.");
  EXPECT_EQ(after.rss_kb, after.size_kb)
      << "before: " << before.rss_kb << " of " << before.size_kb << " kB";
}

}  // namespace
}  // namespace imgfs
