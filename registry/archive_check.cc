#include "registry/archive_check.h"

#include <algorithm>
#include <cstring>

namespace imgfs {
namespace {

constexpr size_t kBlock = 512;

// A tar numeric field: octal (spaces/NULs around it) or GNU base-256.
bool ParseNumber(const char* f, size_t len, uint64_t* out) {
  if (static_cast<unsigned char>(f[0]) & 0x80) {
    uint64_t v = static_cast<unsigned char>(f[0]) & 0x7f;
    for (size_t i = 1; i < len; i++) {
      if (v >> 55) return false;
      v = (v << 8) | static_cast<unsigned char>(f[i]);
    }
    *out = v;
    return true;
  }
  size_t i = 0;
  while (i < len && f[i] == ' ') i++;
  uint64_t v = 0;
  bool any = false;
  for (; i < len && f[i] >= '0' && f[i] <= '7'; i++) {
    if (v >> 60) return false;
    v = v * 8 + static_cast<uint64_t>(f[i] - '0');
    any = true;
  }
  for (; i < len; i++) {
    if (f[i] != ' ' && f[i] != '\0') return false;
  }
  *out = v;
  return any;
}

}  // namespace

bool IsImageArchiveMemberName(std::string_view name, bool is_dir) {
  while (name.substr(0, 2) == "./") name.remove_prefix(2);
  while (!name.empty() && name.back() == '/') name.remove_suffix(1);
  auto ends = [](std::string_view s, std::string_view suffix) {
    return s.size() >= suffix.size() && s.substr(s.size() - suffix.size()) == suffix;
  };
  // Config and layer files as tools name them: <hex>.json, <hex>.tar(.gz), sha256:<hex>.
  auto file_like = [&ends](std::string_view f) {
    return ends(f, ".json") || ends(f, ".tar") || ends(f, ".tar.gz") || ends(f, ".tgz") ||
           ends(f, ".tar.zst") || f.substr(0, 7) == "sha256:";
  };
  size_t slash = name.find('/');
  if (slash == std::string_view::npos) {  // the top level
    return name.empty() || is_dir || name == "manifest.json" || name == "repositories" ||
           name == "index.json" || name == "oci-layout" || file_like(name);
  }
  std::string_view first = name.substr(0, slash), rest = name.substr(slash + 1);
  if (first == "blobs") return true;  // OCI: blobs/<alg>/<hex> (docker 25+ saves these too)
  if (rest.find('/') != std::string_view::npos) return false;
  // docker-archive: <dir>/layer.tar, <dir>/json, <dir>/VERSION.
  return rest == "json" || rest == "VERSION" || file_like(rest);
}

Status TarStreamCheck::CheckHeader(const char* h) {
  if (std::all_of(h, h + kBlock, [](char c) { return c == 0; })) {
    if (members_ == 0) return Status::InvalidArgument("not a tar archive (it starts with zeros)");
    if (++zero_blocks_ == 2) ended_ = true;
    return Status::Ok();
  }
  zero_blocks_ = 0;
  uint64_t want = 0, size = 0;
  if (!ParseNumber(h + 148, 8, &want)) return Status::InvalidArgument("not a tar archive");
  uint64_t sum = 0;
  for (size_t i = 0; i < kBlock; i++)
    sum += (i >= 148 && i < 156) ? ' ' : static_cast<unsigned char>(h[i]);
  if (sum != want) return Status::InvalidArgument("not a tar archive (bad header checksum)");
  if (!ParseNumber(h + 124, 12, &size)) return Status::InvalidArgument("bad tar member size");
  if (size > (uint64_t{1} << 62)) return Status::InvalidArgument("bad tar member size");
  skip_ = (size + kBlock - 1) / kBlock * kBlock;
  char type = h[156];
  if (type == 'x' || type == 'g' || type == 'L' || type == 'K') {  // metadata for the next
    if (type != 'g') long_name_ = true;
    return Status::Ok();
  }
  bool had_long_name = long_name_;
  long_name_ = false;
  ++members_;
  if (had_long_name) return Status::Ok();  // the real name is in the pax/GNU record
  std::string name(h, strnlen(h, 100));
  if (std::memcmp(h + 257, "ustar", 5) == 0 && h[345]) {
    name = std::string(h + 345, strnlen(h + 345, 155)) + "/" + name;
  }
  if (!IsImageArchiveMemberName(name, type == '5')) {
    std::string shown;
    for (unsigned char c : name.substr(0, 80)) shown += (c >= 0x20 && c < 0x7f) ? char(c) : '?';
    return Status::InvalidArgument("not a docker-archive or OCI archive (a member named \"" +
                                   shown + "\")");
  }
  return Status::Ok();
}

Result<size_t> TarStreamCheck::Feed(const char* data, size_t n) {
  size_t i = 0;
  while (i < n && !ended_) {
    if (skip_ > 0) {
      size_t k = static_cast<size_t>(std::min<uint64_t>(skip_, n - i));
      skip_ -= k;
      i += k;
      continue;
    }
    size_t k = std::min(kBlock - block_.size(), n - i);
    block_.append(data + i, k);
    i += k;
    if (block_.size() == kBlock) {
      IMGFS_RETURN_IF_ERROR(CheckHeader(block_.data()));
      block_.clear();
    }
  }
  return i;
}

}  // namespace imgfs
