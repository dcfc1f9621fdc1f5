#include "index/tar_headers.h"

#include <algorithm>
#include <cstring>

namespace imgfs {
namespace {

constexpr size_t kBlock = 512;
constexpr uint64_t kMaxExtension = 16 << 20;  // a pax or GNU long-name header's data

Status Bad(const std::string& why) {
  return Status::Corruption("malformed tar header: " + why);
}

// A NUL-terminated field.
std::string_view CString(std::string_view f) {
  size_t n = f.find('\0');
  return n == std::string_view::npos ? f : f.substr(0, n);
}

// Go's parseNumeric: base-256 (high bit set) or octal with spaces/NULs trimmed.
Result<int64_t> ParseNumeric(std::string_view f, const char* what) {
  if (!f.empty() && (static_cast<uint8_t>(f[0]) & 0x80)) {
    bool neg = static_cast<uint8_t>(f[0]) & 0x40;
    uint64_t x = 0;
    for (size_t i = 0; i < f.size(); i++) {
      uint8_t c = static_cast<uint8_t>(f[i]);
      if (neg) c ^= 0xff;
      if (i == 0) c &= 0x7f;
      if ((x >> 56) > 0) return Bad(std::string(what) + " out of range");
      x = (x << 8) | c;
    }
    if ((x >> 63) > 0) return Bad(std::string(what) + " out of range");
    return neg ? -1 - static_cast<int64_t>(x) : static_cast<int64_t>(x);
  }
  size_t b = 0, e = f.size();
  while (b < e && (f[b] == ' ' || f[b] == '\0')) b++;
  while (e > b && (f[e - 1] == ' ' || f[e - 1] == '\0')) e--;
  uint64_t x = 0;
  for (size_t i = b; i < e; i++) {
    if (f[i] < '0' || f[i] > '7') return Bad(std::string("bad octal ") + what);
    if ((x >> 60) > 0) return Bad(std::string(what) + " out of range");
    x = x * 8 + static_cast<uint64_t>(f[i] - '0');
  }
  if ((x >> 63) > 0) return Bad(std::string(what) + " out of range");
  return static_cast<int64_t>(x);
}

// Go's strconv.ParseInt(s, 10, 64).
bool ParseDecimal(std::string_view s, int64_t* out) {
  bool neg = false;
  if (!s.empty() && (s[0] == '-' || s[0] == '+')) {
    neg = s[0] == '-';
    s.remove_prefix(1);
  }
  if (s.empty()) return false;
  uint64_t x = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return false;
    if (x > (uint64_t{1} << 63) / 10) return false;
    x = x * 10 + static_cast<uint64_t>(c - '0');
  }
  if (x > (neg ? (uint64_t{1} << 63) : (uint64_t{1} << 63) - 1)) return false;
  *out = neg ? static_cast<int64_t>(0 - x) : static_cast<int64_t>(x);
  return true;
}

bool HeaderOnly(char t) {
  return t >= '1' && t <= '6';
}

}  // namespace

Result<std::pair<int64_t, uint32_t>> ParsePaxTime(std::string_view s) {
  size_t dot = s.find('.');
  std::string_view ss = s.substr(0, dot);
  std::string_view sn = dot == std::string_view::npos ? std::string_view() : s.substr(dot + 1);
  int64_t secs = 0;
  if (!ParseDecimal(ss, &secs)) return Bad("pax time \"" + std::string(s.substr(0, 40)) + "\"");
  if (sn.empty()) return std::pair<int64_t, uint32_t>{secs, 0};
  if (sn.find_first_not_of("0123456789") != std::string_view::npos) {
    return Bad("pax time \"" + std::string(s.substr(0, 40)) + "\"");
  }
  uint32_t nsec = 0;
  for (size_t i = 0; i < 9; i++) nsec = nsec * 10 + (i < sn.size() ? sn[i] - '0' : 0);
  // A negative time counts its fraction away from zero: -1.5 is 1.5 s before the epoch.
  if (!ss.empty() && ss[0] == '-' && nsec > 0) {
    if (secs == INT64_MIN) return Bad("pax time out of range");
    return std::pair<int64_t, uint32_t>{secs - 1, 1000000000 - nsec};
  }
  return std::pair<int64_t, uint32_t>{secs, nsec};
}

Status TarHeaderWalker::Feed(std::string_view in) {
  if (!error_.ok()) return error_;
  while (!in.empty()) {
    switch (state_) {
      case State::kDone:
        offset_ += in.size();
        return Status::Ok();
      case State::kSkip: {
        uint64_t k = std::min<uint64_t>(need_, in.size());
        need_ -= k;
        offset_ += k;
        in.remove_prefix(static_cast<size_t>(k));
        if (need_ == 0) state_ = State::kHeader;
        break;
      }
      case State::kHeader: {
        if (pending_.empty() && in.size() >= kBlock) {  // the usual case: no copy
          offset_ += kBlock;
          error_ = Header(in.substr(0, kBlock));
          in.remove_prefix(kBlock);
          if (!error_.ok()) return error_;
          break;
        }
        size_t k = std::min(kBlock - pending_.size(), in.size());
        pending_.append(in.substr(0, k));
        offset_ += k;
        in.remove_prefix(k);
        if (pending_.size() == kBlock) {
          std::string block = std::move(pending_);
          pending_.clear();
          error_ = Header(block);
          if (!error_.ok()) return error_;
        }
        break;
      }
      case State::kExtData: {
        size_t k = static_cast<size_t>(std::min<uint64_t>(need_, in.size()));
        pending_.append(in.substr(0, k));
        need_ -= k;
        offset_ += k;
        in.remove_prefix(k);
        if (need_ == 0) {
          std::string data = std::move(pending_);
          pending_.clear();
          if (ext_type_ == 'x' || ext_type_ == 'X') {
            error_ = PaxRecords(data);
            if (!error_.ok()) return error_;
          } else if (ext_type_ == 'L') {  // (an empty one changes nothing, as in Go)
            gnu_name_ = std::string(CString(data));
            has_gnu_name_ = !gnu_name_.empty();
          } else if (ext_type_ == 'K') {
            gnu_link_ = std::string(CString(data));
            has_gnu_link_ = !gnu_link_.empty();
          }  // 'g': pax global records are not applied (as Go's reader)
          need_ = pad_;
          state_ = need_ ? State::kSkip : State::kHeader;
        }
        break;
      }
    }
  }
  return Status::Ok();
}

Status TarHeaderWalker::PaxRecords(std::string_view s) {
  while (!s.empty()) {
    if (s.find_first_not_of('\0') == std::string_view::npos) break;  // NUL padding
    size_t sp = s.find(' ');
    int64_t n = 0;
    if (sp == std::string_view::npos || !ParseDecimal(s.substr(0, sp), &n) || n < 5 ||
        static_cast<uint64_t>(n) > s.size() || static_cast<size_t>(n) <= sp + 1 ||
        s[static_cast<size_t>(n) - 1] != '\n') {
      return Bad("bad pax record");
    }
    std::string_view rec = s.substr(sp + 1, static_cast<size_t>(n) - sp - 2);
    s.remove_prefix(static_cast<size_t>(n));
    size_t eq = rec.find('=');
    if (eq == std::string_view::npos || eq == 0) return Bad("bad pax record");
    std::string_view key = rec.substr(0, eq), value = rec.substr(eq + 1);
    bool text = key == "path" || key == "linkpath" || key == "uname" || key == "gname";
    if (text && value.find('\0') != std::string_view::npos) {
      return Bad("pax " + std::string(key) + " \"" + std::string(CString(value).substr(0, 64)) +
                 "\" contains a NUL byte");
    }
    if (value.empty()) {
      // An empty value restores the header's own field.
      if (key == "path") has_path_ = false;
      if (key == "linkpath") has_link_ = false;
      if (key == "mtime") has_mtime_ = false;
      if (key == "size") has_size_ = false;
      continue;
    }
    if (key == "path") {
      path_ = std::string(value);
      has_path_ = true;
    } else if (key == "linkpath") {
      link_ = std::string(value);
      has_link_ = true;
    } else if (key == "mtime") {
      IMGFS_ASSIGN_OR_RETURN(auto t, ParsePaxTime(value));
      mtime_sec_ = t.first;
      mtime_nsec_ = t.second;
      has_mtime_ = true;
    } else if (key == "size") {
      int64_t sz = 0;
      if (!ParseDecimal(value, &sz) || sz < 0) return Bad("bad pax size");
      size_ = static_cast<uint64_t>(sz);
      has_size_ = true;
    }
  }
  return Status::Ok();
}

Status TarHeaderWalker::Header(std::string_view b) {
  if (b.find_first_not_of('\0') == std::string_view::npos) {
    state_ = State::kDone;  // end of archive: what follows is not parsed
    return Status::Ok();
  }
  char type = b[156];
  IMGFS_ASSIGN_OR_RETURN(int64_t size, ParseNumeric(b.substr(124, 12), "size"));
  if (size < 0) return Bad("negative size");
  if (type == 'x' || type == 'X' || type == 'g' || type == 'L' || type == 'K') {
    if (static_cast<uint64_t>(size) > kMaxExtension) {
      return Bad("extension header of " + std::to_string(size) + " bytes");
    }
    ext_type_ = type;
    need_ = static_cast<uint64_t>(size);
    pad_ = (kBlock - need_ % kBlock) % kBlock;
    if (need_ > 0) {
      state_ = State::kExtData;
    } else {
      need_ = pad_;
      state_ = State::kHeader;
    }
    return Status::Ok();
  }
  RawHeader h;
  h.header_end = offset_;
  h.typeflag = type;
  std::string_view magic = b.substr(257, 6);
  std::string name(CString(b.substr(0, 100)));
  if (magic == std::string_view("ustar\0", 6)) {
    bool star = b.substr(508, 4) == std::string_view("tar\0", 4);
    std::string_view prefix = CString(b.substr(345, star ? 131 : 155));
    if (!prefix.empty()) name = std::string(prefix) + "/" + name;
  }
  h.name = has_gnu_name_ ? gnu_name_ : has_path_ ? path_ : name;
  h.link = has_gnu_link_ ? gnu_link_ : has_link_ ? link_ : std::string(CString(b.substr(157, 100)));
  if (has_mtime_) {
    h.mtime_sec = mtime_sec_;
    h.mtime_nsec = mtime_nsec_;
  } else {
    IMGFS_ASSIGN_OR_RETURN(h.mtime_sec, ParseNumeric(b.substr(136, 12), "mtime"));
  }
  uint64_t data = has_size_ ? size_ : static_cast<uint64_t>(size);
  if (HeaderOnly(type)) data = 0;
  if (type == 'V') {
    // A GNU volume label is not an entry (libarchive skips it too).
  } else {
    queue_.push_back(std::move(h));
  }
  has_path_ = has_link_ = has_mtime_ = has_size_ = has_gnu_name_ = has_gnu_link_ = false;
  need_ = data + (kBlock - data % kBlock) % kBlock;
  state_ = need_ ? State::kSkip : State::kHeader;
  return Status::Ok();
}

bool TarHeaderWalker::Pop(RawHeader* out) {
  if (queue_.empty()) return false;
  *out = std::move(queue_.front());
  queue_.pop_front();
  return true;
}

}  // namespace imgfs
