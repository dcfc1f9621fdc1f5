// /proc/self/mountinfo text (fs/mountinfo.h) as arbitrary bytes. Properties: no crash;
// every entry parsed back from a line written with the kernel's escapes (\NNN for
// space, tab, newline and backslash) is the same entry; MountAt finds the last entry
// of a mount point.
#include <cstdint>
#include <string>
#include <string_view>

#include "fs/mountinfo.h"
#include "tests/fuzz/fuzz_check.h"

using namespace imgfs;

namespace {

std::string Escape(const std::string& v) {
  std::string out;
  for (unsigned char c : v) {
    if (c == ' ' || c == '\t' || c == '\n' || c == '\\') {
      out += '\\';
      out += static_cast<char>('0' + (c >> 6));
      out += static_cast<char>('0' + ((c >> 3) & 7));
      out += static_cast<char>('0' + (c & 7));
    } else {
      out += static_cast<char>(c);
    }
  }
  return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view in(reinterpret_cast<const char*>(data), size);
  std::vector<MountEntry> table = ParseMountInfo(in);
  std::string again;
  for (const MountEntry& e : table) {
    FUZZ_CHECK(!e.mount_point.empty() && !e.fstype.empty() && !e.source.empty());
    again += "36 35 98:0 / " + Escape(e.mount_point) + " rw,noatime master:1 - " +
             Escape(e.fstype) + " " + Escape(e.source) + " rw,errors=continue\n";
  }
  std::vector<MountEntry> round = ParseMountInfo(again);
  FUZZ_CHECK(round.size() == table.size());
  for (size_t i = 0; i < table.size(); i++) {
    FUZZ_CHECK(round[i].mount_point == table[i].mount_point);
    FUZZ_CHECK(round[i].fstype == table[i].fstype);
    FUZZ_CHECK(round[i].source == table[i].source);
  }
  if (!table.empty()) {
    auto top = MountAt(table, table.back().mount_point);
    FUZZ_CHECK(top && top->source == table.back().source && top->fstype == table.back().fstype);
  }
  return 0;
}
