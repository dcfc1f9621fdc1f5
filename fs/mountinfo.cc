#include "fs/mountinfo.h"

#include "index/file_util.h"

namespace imgfs {
namespace {

// mountinfo escapes space, tab, newline and backslash as \NNN octal.
std::string Unescape(std::string_view s) {
  std::string out;
  for (size_t i = 0; i < s.size(); i++) {
    if (s[i] == '\\' && i + 3 < s.size() && s[i + 1] >= '0' && s[i + 1] <= '3' && s[i + 2] >= '0' &&
        s[i + 2] <= '7' && s[i + 3] >= '0' && s[i + 3] <= '7') {
      out += static_cast<char>((s[i + 1] - '0') * 64 + (s[i + 2] - '0') * 8 + (s[i + 3] - '0'));
      i += 3;
    } else {
      out += s[i];
    }
  }
  return out;
}

std::vector<std::string_view> Fields(std::string_view line) {
  std::vector<std::string_view> f;
  size_t i = 0;
  while (i < line.size()) {
    while (i < line.size() && line[i] == ' ') i++;
    size_t j = line.find(' ', i);
    if (j == std::string_view::npos) j = line.size();
    if (j > i) f.push_back(line.substr(i, j - i));
    i = j;
  }
  return f;
}

}  // namespace

std::vector<MountEntry> ParseMountInfo(std::string_view text) {
  // ID PARENT MAJ:MIN ROOT MOUNT_POINT OPTIONS [OPTIONAL...] - FSTYPE SOURCE SUPER_OPTIONS
  std::vector<MountEntry> out;
  size_t at = 0;
  while (at < text.size()) {
    size_t nl = text.find('\n', at);
    if (nl == std::string_view::npos) nl = text.size();
    auto f = Fields(text.substr(at, nl - at));
    at = nl + 1;
    size_t dash = 6;
    while (dash < f.size() && f[dash] != "-") dash++;
    if (f.size() < 6 || dash + 2 >= f.size()) continue;
    out.push_back(MountEntry{Unescape(f[4]), Unescape(f[dash + 1]), Unescape(f[dash + 2])});
  }
  return out;
}

Result<std::vector<MountEntry>> ReadMountInfo() {
  IMGFS_ASSIGN_OR_RETURN(std::string text, ReadFileToString("/proc/self/mountinfo", 64 << 20));
  return ParseMountInfo(text);
}

std::optional<MountEntry> MountAt(const std::vector<MountEntry>& table, const std::string& path) {
  std::optional<MountEntry> top;
  for (const MountEntry& e : table) {
    if (e.mount_point == path) top = e;  // later lines are mounted on top
  }
  return top;
}

std::string EscapeFuseOption(std::string_view v) {
  std::string out;
  for (char c : v) {
    if (c == ',' || c == '\\') out += '\\';
    out += c;
  }
  return out;
}

}  // namespace imgfs
