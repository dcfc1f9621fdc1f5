#include "registry/multipart_ranges.h"

#include <algorithm>
#include <cctype>
#include <iterator>

namespace imgfs {

namespace {

std::string Spec(const BlobRange& r) {
  return std::to_string(r.offset) + "-" + std::to_string(r.offset + r.length - 1);
}

std::string_view TrimView(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

bool IEquals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); i++)
    if (std::tolower(static_cast<unsigned char>(a[i])) !=
        std::tolower(static_cast<unsigned char>(b[i])))
      return false;
  return true;
}

// A decimal number of at most 19 digits (no sign, no spaces).
bool ParseU64(std::string_view s, uint64_t* out) {
  if (s.empty() || s.size() > 19) return false;
  uint64_t v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return false;
    v = v * 10 + static_cast<uint64_t>(c - '0');
  }
  *out = v;
  return true;
}

constexpr size_t kMaxPartHeaderBytes = 1024;  // all header lines of one part
constexpr size_t kMaxPreamble = 1024;

}  // namespace

std::vector<std::vector<BlobRange>> BatchRanges(const std::vector<BlobRange>& ranges) {
  std::vector<std::vector<BlobRange>> out;
  size_t header = 0;
  for (const BlobRange& r : ranges) {
    size_t len = Spec(r).size() + 1;
    if (out.empty() || out.back().size() >= kMaxRangesPerRequest ||
        header + len > kMaxRangeHeaderBytes - 6) {  // 6: "bytes="
      out.emplace_back();
      header = 0;
    }
    out.back().push_back(r);
    header += len;
  }
  return out;
}

std::string RangeHeaderValue(const std::vector<BlobRange>& ranges) {
  std::string v = "bytes=";
  for (size_t i = 0; i < ranges.size(); i++) {
    if (i) v += ',';
    v += Spec(ranges[i]);
  }
  return v;
}

std::string MultipartBoundary(std::string_view ct) {
  size_t semi = ct.find(';');
  if (!IEquals(TrimView(ct.substr(0, semi)), "multipart/byteranges")) return "";
  while (semi != std::string_view::npos) {
    ct.remove_prefix(semi + 1);
    semi = ct.find(';');
    std::string_view param = TrimView(ct.substr(0, semi));
    size_t eq = param.find('=');
    if (eq == std::string_view::npos || !IEquals(TrimView(param.substr(0, eq)), "boundary"))
      continue;
    std::string_view b = TrimView(param.substr(eq + 1));
    if (b.size() >= 2 && b.front() == '"' && b.back() == '"') b = b.substr(1, b.size() - 2);
    if (b.empty() || b.size() > 70) return "";
    for (char c : b)
      if (c == '"' || c == '\r' || c == '\n' || static_cast<unsigned char>(c) < 0x20) return "";
    return std::string(b);
  }
  return "";
}

bool ParseContentRangeAnyTotal(std::string_view v, uint64_t* begin, uint64_t* end,
                               uint64_t* total) {
  v = TrimView(v);
  if (v.size() < 6 || !IEquals(v.substr(0, 6), "bytes ")) return false;
  v.remove_prefix(6);
  size_t dash = v.find('-'), slash = v.find('/');
  if (dash == std::string_view::npos || slash == std::string_view::npos || slash < dash)
    return false;
  uint64_t first, last, size = kUnknownTotal;
  if (!ParseU64(v.substr(0, dash), &first) ||
      !ParseU64(v.substr(dash + 1, slash - dash - 1), &last) ||
      (v.substr(slash + 1) != "*" && !ParseU64(v.substr(slash + 1), &size)))
    return false;
  if (first > last || (size != kUnknownTotal && last >= size)) return false;
  *begin = first;
  *end = last + 1;
  *total = size;
  return true;
}

bool ParseContentRange(std::string_view v, uint64_t blob_size, uint64_t* begin, uint64_t* end) {
  uint64_t b, e, total;
  if (!ParseContentRangeAnyTotal(v, &b, &e, &total) || total == kUnknownTotal || total != blob_size)
    return false;
  *begin = b;
  *end = e;
  return true;
}

Result<std::vector<RangePart>> ParseMultipartByteranges(std::string_view boundary,
                                                        std::string_view body,
                                                        const std::vector<BlobRange>& asked,
                                                        uint64_t blob_size) {
  auto bad = [](const std::string& why) {
    return Status::Corruption("multipart/byteranges answer: " + why);
  };
  if (boundary.empty() || boundary.size() > 70) return bad("no boundary");
  // The asked ranges as intervals, touching ones joined (a server may coalesce them).
  std::vector<std::pair<uint64_t, uint64_t>> iv;
  for (const BlobRange& r : asked) {
    if (r.length == 0 || r.offset > blob_size || r.length > blob_size - r.offset)
      return Status::InvalidArgument("asked range outside the blob");
    if (!iv.empty() && r.offset < iv.back().second)
      return Status::InvalidArgument("asked ranges not sorted and disjoint");
    if (!iv.empty() && r.offset == iv.back().second)
      iv.back().second = r.offset + r.length;
    else
      iv.emplace_back(r.offset, r.offset + r.length);
  }
  const std::string delim = "--" + std::string(boundary);
  // The first delimiter: at the start or after a short preamble, at a line start.
  size_t pos = 0;
  if (body.substr(0, delim.size()) != delim) {
    size_t at = body.substr(0, kMaxPreamble + delim.size() + 2).find("\n" + delim);
    if (at == std::string_view::npos) return bad("no first boundary");
    pos = at + 1;
  }
  pos += delim.size();
  std::vector<RangePart> parts;
  for (;;) {
    // After a delimiter: "--" ends the body; else CRLF and a part's headers.
    if (body.substr(pos, 2) == "--") break;
    if (body.substr(pos, 2) != "\r\n") return bad("malformed boundary line");
    pos += 2;
    if (parts.size() >= asked.size()) return bad("more parts than ranges asked for");
    uint64_t begin = 0, end = 0;
    bool have_range = false;
    size_t header_start = pos;
    for (;;) {
      size_t eol = body.find("\r\n", pos);
      if (eol == std::string_view::npos || eol - header_start > kMaxPartHeaderBytes)
        return bad("part headers unterminated or too long");
      std::string_view line = body.substr(pos, eol - pos);
      pos = eol + 2;
      if (line.empty()) break;
      size_t colon = line.find(':');
      if (colon == std::string_view::npos) return bad("malformed part header");
      if (IEquals(TrimView(line.substr(0, colon)), "content-range")) {
        if (have_range) return bad("two Content-Range headers in one part");
        if (!ParseContentRange(line.substr(colon + 1), blob_size, &begin, &end))
          return bad("bad part Content-Range \"" + std::string(line.substr(colon + 1)) + "\"");
        have_range = true;
      }
    }
    if (!have_range) return bad("a part without Content-Range");
    uint64_t n = end - begin;
    if (n > body.size() - pos) return bad("a part is cut short");
    // Inside one asked interval.
    auto it = std::upper_bound(iv.begin(), iv.end(), begin,
                               [](uint64_t v, const auto& x) { return v < x.first; });
    if (it == iv.begin() || std::prev(it)->second < end)
      return bad("part bytes " + std::to_string(begin) + "-" + std::to_string(end - 1) +
                 " were not asked for");
    parts.push_back({begin, body.substr(pos, static_cast<size_t>(n))});
    pos += static_cast<size_t>(n);
    if (body.substr(pos, 2 + delim.size()) != "\r\n" + delim)
      return bad("part not followed by a boundary");
    pos += 2 + delim.size();
  }
  std::sort(parts.begin(), parts.end(),
            [](const RangePart& a, const RangePart& b) { return a.offset < b.offset; });
  for (size_t i = 1; i < parts.size(); i++)
    if (parts[i].offset < parts[i - 1].offset + parts[i - 1].bytes.size())
      return bad("parts overlap");
  return parts;
}

}  // namespace imgfs
