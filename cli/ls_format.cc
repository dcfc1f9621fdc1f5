#include "cli/ls_format.h"

#include <sys/stat.h>
#include <sys/sysmacros.h>

#include <algorithm>
#include <ctime>
#include <vector>

namespace imgfs {
namespace {

// The length of a valid UTF-8 sequence of a printable code point at s[i], or 0 (a
// control byte, DEL, a C1 control, or bytes that are not valid UTF-8).
size_t PrintableAt(std::string_view s, size_t i) {
  unsigned char c = static_cast<unsigned char>(s[i]);
  if (c < 0x80) return (c >= 0x20 && c != 0x7f) ? 1 : 0;
  size_t len = c >= 0xf0 && c <= 0xf4 ? 4 : c >= 0xe0 ? 3 : c >= 0xc2 && c < 0xe0 ? 2 : 0;
  if (!len || i + len > s.size()) return 0;
  uint32_t cp = c & (len == 2 ? 0x1f : len == 3 ? 0x0f : 0x07);
  for (size_t k = 1; k < len; k++) {
    unsigned char d = static_cast<unsigned char>(s[i + k]);
    if ((d & 0xc0) != 0x80) return 0;
    cp = (cp << 6) | (d & 0x3f);
  }
  // Overlong forms, surrogates, beyond U+10FFFF, C1 controls.
  if ((len == 3 && cp < 0x800) || (len == 4 && (cp < 0x10000 || cp > 0x10ffff)) ||
      (cp >= 0xd800 && cp <= 0xdfff) || (cp >= 0x80 && cp <= 0x9f))
    return 0;
  return len;
}

// "\n", "\t", … or "\NNN".
std::string Escape(unsigned char c) {
  switch (c) {
    case '\\':
      return "\\\\";
    case '\t':
      return "\\t";
    case '\n':
      return "\\n";
    case '\r':
      return "\\r";
    case '\a':
      return "\\a";
    case '\b':
      return "\\b";
    case '\f':
      return "\\f";
    case '\v':
      return "\\v";
  }
  char buf[8];
  std::snprintf(buf, sizeof buf, "\\%03o", c);
  return buf;
}

bool ShellSafe(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
         std::string_view("%+,-./:=@_^").find(c) != std::string_view::npos;
}

std::string ShellEscape(std::string_view s) {
  // Safe punctuation, letters, digits and printable UTF-8: as is.
  bool plain = !s.empty();
  for (size_t i = 0; i < s.size() && plain;) {
    size_t n = PrintableAt(s, i);
    plain = n > 1 || (n == 1 && ShellSafe(s[i]));
    i += n ? n : 1;
  }
  if (plain) return std::string(s);
  // Runs of printable bytes in '…' (a ' as \'), the others as $'\n'.
  std::string out;
  bool in_quote = false;
  for (size_t i = 0; i < s.size();) {
    size_t n = PrintableAt(s, i);
    if (n) {
      if (s[i] == '\'') {
        if (in_quote) out += '\'';
        in_quote = false;
        out += "\\'";
      } else {
        if (!in_quote) out += '\'';
        in_quote = true;
        out.append(s.substr(i, n));
      }
      i += n;
      continue;
    }
    if (in_quote) out += '\'';
    in_quote = false;
    out += "$'" + Escape(static_cast<unsigned char>(s[i])) + "'";
    i++;
  }
  if (in_quote) out += '\'';
  return out.empty() ? "''" : out;
}

}  // namespace

void AppendQuoted(std::string* out, std::string_view s, NameQuoting q) {
  if (q == NameQuoting::kShellEscape) {
    out->append(ShellEscape(s));
    return;
  }
  // Runs of bytes that need no escape are appended whole: paths of a deep tree are
  // long, and ls -R writes each directory's path once.
  size_t run = 0;
  for (size_t i = 0; i < s.size(); i++) {
    unsigned char c = static_cast<unsigned char>(s[i]);
    if (c >= 0x20 && c != 0x7f && c != '\\') continue;
    out->append(s.substr(run, i - run));
    out->append(Escape(c));
    run = i + 1;
  }
  out->append(s.substr(run));
}

std::string QuoteName(std::string_view s, NameQuoting q) {
  std::string out;
  AppendQuoted(&out, s, q);
  return out;
}

namespace {

const char* TypeChar(uint32_t mode) {
  switch (mode & S_IFMT) {
    case S_IFDIR:
      return "d";
    case S_IFLNK:
      return "l";
    case S_IFCHR:
      return "c";
    case S_IFBLK:
      return "b";
    case S_IFIFO:
      return "p";
    default:
      return "f";
  }
}

std::string ModeString(uint32_t mode) {
  std::string s = "-";
  switch (mode & S_IFMT) {
    case S_IFDIR:
      s = "d";
      break;
    case S_IFLNK:
      s = "l";
      break;
    case S_IFCHR:
      s = "c";
      break;
    case S_IFBLK:
      s = "b";
      break;
    case S_IFIFO:
      s = "p";
      break;
  }
  const char* rwx = "rwxrwxrwx";
  for (int i = 0; i < 9; i++) s += (mode & (0400 >> i)) ? rwx[i] : '-';
  if (mode & S_ISUID) s[3] = (mode & 0100) ? 's' : 'S';
  if (mode & S_ISGID) s[6] = (mode & 0010) ? 's' : 'S';
  if (mode & S_ISVTX) s[9] = (mode & 0001) ? 't' : 'T';
  return s;
}

std::string Hex(std::string_view v) {
  static const char* k = "0123456789abcdef";
  std::string out;
  for (unsigned char c : v) {
    out += k[c >> 4];
    out += k[c & 15];
  }
  return out;
}

class Lister {
 public:
  Lister(const ImageView& view, LayerReader& cache, const LsOptions& o, FILE* out)
      : view_(view), t_(view.tree()), cache_(cache), o_(o), file_(out) {}
  ~Lister() { Flush(); }

  Status Line(uint32_t n, std::string_view name);
  Status Dir(uint32_t dir, const std::string& path);
  void Flush() {
    std::fwrite(out_.data(), 1, out_.size(), file_);
    out_.clear();
  }

 private:
  std::string Q(std::string_view s) const {
    return QuoteName(s, o_.tsv ? NameQuoting::kEscape : o_.quoting);
  }
  void AppendQ(std::string_view s) {
    AppendQuoted(&out_, s, o_.tsv ? NameQuoting::kEscape : o_.quoting);
  }
  Result<std::string> ContentSha(uint32_t n);
  void Header(const std::string& path) {
    if (wrote_header_ || !out_.empty()) out_ += '\n';
    AppendQ(path);
    out_ += ":\n";
    wrote_header_ = true;
  }

  const ImageView& view_;
  const MergedTree& t_;
  LayerReader& cache_;
  const LsOptions& o_;
  FILE* file_;
  std::string out_;
  bool wrote_header_ = false;
};

Result<std::string> Lister::ContentSha(uint32_t n) {
  Sha256 h;
  std::vector<char> buf(1 << 20);
  uint64_t off = 0, size = t_.node(n).size;
  while (off < size) {
    IMGFS_ASSIGN_OR_RETURN(size_t got, view_.Read(cache_, n, buf.data(), buf.size(), off));
    if (got == 0) return Status::Corruption("short read");
    h.Update(buf.data(), got);
    off += got;
  }
  return h.Finish().hex();
}

Status Lister::Line(uint32_t n, std::string_view name) {
  const TreeNode& node = t_.node(n);
  if (o_.tsv) {
    std::string sha = "-";
    if (o_.sha && S_ISREG(node.mode)) {
      auto s = ContentSha(n);
      if (!s.ok()) return s.status().WithContext(std::string(name));
      sha = *s;
    }
    std::string xa;
    std::vector<std::string> xs;
    for (uint32_t i = 0; i < node.xattr_count; i++) {
      const TreeXattr& x = t_.XattrsBegin(n)[i];
      xs.push_back(Q(t_.XattrName(x)) + "=" + Hex(t_.XattrValue(x)));
    }
    std::sort(xs.begin(), xs.end());
    for (auto& x : xs) xa += (xa.empty() ? "" : ",") + x;
    char buf[256];
    std::snprintf(buf, sizeof buf, "%s\t%o\t%u\t%u\t%llu\t%lld\t%u\t%u\t%u,%u\t",
                  TypeChar(node.mode), node.mode & 07777, node.uid, node.gid,
                  S_ISDIR(node.mode) ? 0ULL : (unsigned long long)node.size,
                  (long long)node.mtime_sec, node.nlink, n, major(node.rdev), minor(node.rdev));
    out_ += buf;
    out_ += (S_ISLNK(node.mode) ? Q(t_.LinkTarget(n)) : "-") + "\t" + sha + "\t" +
            (xa.empty() ? "-" : xa) + "\t";
    AppendQ(name);
    out_ += '\n';
    return Status::Ok();
  }
  if (!o_.longfmt) {
    out_ += Q(name) + "\n";
    return Status::Ok();
  }
  char when[32];
  time_t mt = node.mtime_sec;
  struct tm tm;
  gmtime_r(&mt, &tm);
  std::strftime(when, sizeof when, "%Y-%m-%d %H:%M", &tm);
  char buf[256];
  std::string size =
      (S_ISCHR(node.mode) || S_ISBLK(node.mode))
          ? std::to_string(major(node.rdev)) + ", " + std::to_string(minor(node.rdev))
          : std::to_string(node.size);
  std::snprintf(buf, sizeof buf, "%s %3u %-6u %-6u %10s %s ", ModeString(node.mode).c_str(),
                node.nlink, node.uid, node.gid, size.c_str(), when);
  out_ += buf + Q(name);
  if (S_ISLNK(node.mode)) out_ += " -> " + Q(t_.LinkTarget(n));
  out_ += "\n";
  return Status::Ok();
}

// Depth-first, pre-order, children in tree (bytewise) order: the output of the former
// recursive walk, with an explicit stack. Each frame is a directory being listed and
// the index of its next child; `path` is shared and cut back when a frame ends.
Status Lister::Dir(uint32_t dir, const std::string& shown) {
  struct Frame {
    uint32_t dir;
    uint32_t next;
    size_t path_len;  // of `path` before this directory's name was appended
  };
  // tsv paths are relative ("etc/passwd"); the ls format's are as the user gave them.
  std::string path = o_.tsv ? "" : shown;
  std::vector<Frame> stack;
  auto enter = [&](uint32_t d, size_t restore_len) -> Status {
    stack.push_back(Frame{d, 0, restore_len});
    if (o_.tsv) return Status::Ok();  // tsv lines are written as the walk meets them
    if (o_.recursive) Header(path);
    const TreeDirent* c = t_.ChildrenBegin(d);
    for (uint32_t i = 0; i < t_.ChildCount(d); i++)
      IMGFS_RETURN_IF_ERROR(Line(c[i].node, t_.Name(c[i])));
    return Status::Ok();
  };
  IMGFS_RETURN_IF_ERROR(enter(dir, path.size()));
  while (!stack.empty()) {
    if (out_.size() > (1 << 20)) Flush();
    Frame& f = stack.back();
    if (f.next >= t_.ChildCount(f.dir)) {
      path.resize(f.path_len);
      stack.pop_back();
      continue;
    }
    const TreeDirent& c = t_.ChildrenBegin(f.dir)[f.next++];
    bool descend = o_.recursive && S_ISDIR(t_.node(c.node).mode);
    if (!o_.tsv && !descend) continue;  // its line was written when its parent was entered
    size_t before = path.size();
    if (o_.tsv ? !path.empty() : path != "/") path += '/';
    path.append(t_.Name(c));
    if (o_.tsv) IMGFS_RETURN_IF_ERROR(Line(c.node, path));
    if (descend) {
      IMGFS_RETURN_IF_ERROR(enter(c.node, before));  // f may dangle from here on
    } else {
      path.resize(before);
    }
  }
  return Status::Ok();
}

}  // namespace

Status ListTree(const ImageView& view, LayerReader& cache, uint32_t n, const std::string& path,
                const LsOptions& o, FILE* out) {
  Lister l(view, cache, o, out);
  if (S_ISDIR(view.tree().node(n).mode)) return l.Dir(n, o.tsv ? "." : path);
  return l.Line(n, path);
}

}  // namespace imgfs
