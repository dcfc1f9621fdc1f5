#include "registry/build_files.h"

#include <archive.h>
#include <archive_entry.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <ftw.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <fstream>
#include <memory>

namespace imgfs::build_files {

// Lexically cleans an absolute path: no "", ".", ".." components ("/.." is "/").
std::string CleanAbs(std::string_view p) {
  std::vector<std::string> parts;
  std::string cur;
  auto flush = [&] {
    if (cur == "..") {
      if (!parts.empty()) parts.pop_back();
    } else if (!cur.empty() && cur != ".") {
      parts.push_back(cur);
    }
    cur.clear();
  };
  for (char c : p) {
    if (c == '/') {
      flush();
    } else {
      cur.push_back(c);
    }
  }
  flush();
  std::string out;
  for (const auto& s : parts) out += "/" + s;
  return out.empty() ? "/" : out;
}

TempDir::~TempDir() {
  if (path.empty()) return;
  ::nftw(
      path.c_str(),
      [](const char* p, const struct stat*, int, struct FTW*) {
        ::remove(p);  // best effort: what cannot go stays in $TMPDIR
        return 0;
      },
      16, FTW_DEPTH | FTW_PHYS);
}

Result<std::string> MakeTempDir() {
  const char* t = std::getenv("TMPDIR");
  std::string tmpl = std::string(t && *t ? t : "/var/tmp") + "/imgfs-build-XXXXXX";
  if (!::mkdtemp(tmpl.data())) return Status::FromErrno("mkdtemp " + tmpl);
  return tmpl;
}

Ignore Ignore::Load(const std::string& context) {
  Ignore ig;
  std::ifstream in(context + "/.dockerignore");
  std::string line;
  while (std::getline(in, line)) {
    while (!line.empty() && (line.back() == '\r' || line.back() == ' ' || line.back() == '\t'))
      line.pop_back();
    size_t b = line.find_first_not_of(" \t");
    if (b == std::string::npos || line[b] == '#') continue;
    line = line.substr(b);
    bool neg = line[0] == '!';
    if (neg) line = line.substr(1);
    std::string p = CleanAbs("/" + line).substr(1);
    if (p.empty()) continue;
    ig.rules.push_back({p, neg});
  }
  return ig;
}
bool Ignore::Match(const std::string& pat, const std::string& rel) {
  if (pat.find("**") != std::string::npos) {
    std::string p = pat;
    for (size_t at; (at = p.find("**")) != std::string::npos;) p.replace(at, 2, "*");
    return ::fnmatch(p.c_str(), rel.c_str(), 0) == 0;
  }
  return ::fnmatch(pat.c_str(), rel.c_str(), FNM_PATHNAME) == 0;
}
bool Ignore::Excluded(const std::string& rel) const {
  bool out = false;
  for (const auto& r : rules) {
    bool m = Match(r.pattern, rel);
    for (size_t at = rel.find('/'); !m && at != std::string::npos; at = rel.find('/', at + 1)) {
      m = Match(r.pattern, rel.substr(0, at));
    }
    if (m) out = !r.negate;
  }
  return out;
}

Status ApplyMeta(const std::string& path, mode_t mode, uid_t uid, gid_t gid, struct timespec mtime,
                 bool symlink) {
  if (::lchown(path.c_str(), uid, gid) != 0) {
    if (errno == EPERM && ::geteuid() != 0) {
      return Status::Unsupported("imgfs build needs root: COPY/ADD set file owners (" +
                                 std::to_string(uid) + ":" + std::to_string(gid) + ")");
    }
    return Status::FromErrno("chown " + path);
  }
  if (!symlink && ::chmod(path.c_str(), mode & 07777) != 0)
    return Status::FromErrno("chmod " + path);
  struct timespec ts[2] = {mtime, mtime};
  if (::utimensat(AT_FDCWD, path.c_str(), ts, AT_SYMLINK_NOFOLLOW) != 0) {
    return Status::FromErrno("utimensat " + path);
  }
  return Status::Ok();
}

Status CopyFile(const std::string& src, const std::string& dst) {
  int in = ::open(src.c_str(), O_RDONLY | O_CLOEXEC);
  if (in < 0) return Status::FromErrno(src);
  int out = ::open(dst.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (out < 0) {
    Status s = Status::FromErrno(dst);
    ::close(in);
    return s;
  }
  Status s;
  char buf[1 << 16];
  for (;;) {
    ssize_t n = ::read(in, buf, sizeof buf);
    if (n < 0) {
      s = Status::FromErrno(src);
      break;
    }
    if (n == 0) break;
    for (ssize_t done = 0; done < n;) {
      ssize_t w = ::write(out, buf + done, n - done);
      if (w < 0) {
        s = Status::FromErrno(dst);
        break;
      }
      done += w;
    }
    if (!s.ok()) break;
  }
  ::close(in);
  if (::close(out) != 0 && s.ok()) s = Status::FromErrno(dst);
  return s;
}

// A tar archive (plain, gzip, bzip2, xz or zstd) is extracted into `dst`, as docker's
// ADD does. Returns false when `src` is not one (then it is copied as a file).
Result<bool> ExtractArchive(const std::string& src, const std::string& dst) {
  struct ArchiveFree {
    void operator()(archive* a) { archive_read_free(a); }
  };
  std::unique_ptr<archive, ArchiveFree> a(archive_read_new());
  archive_read_support_format_tar(a.get());
  archive_read_support_format_gnutar(a.get());
  archive_read_support_filter_gzip(a.get());
  archive_read_support_filter_bzip2(a.get());
  archive_read_support_filter_xz(a.get());
  archive_read_support_filter_zstd(a.get());
  if (archive_read_open_filename(a.get(), src.c_str(), 1 << 16) != ARCHIVE_OK) return false;
  archive_entry* e = nullptr;
  int r = archive_read_next_header(a.get(), &e);
  if (r != ARCHIVE_OK && r != ARCHIVE_WARN) return false;
  struct WriteFree {
    void operator()(archive* w) { archive_write_free(w); }
  };
  std::unique_ptr<archive, WriteFree> w(archive_write_disk_new());
  archive_write_disk_set_options(w.get(), ARCHIVE_EXTRACT_PERM | ARCHIVE_EXTRACT_OWNER |
                                              ARCHIVE_EXTRACT_TIME | ARCHIVE_EXTRACT_XATTR |
                                              ARCHIVE_EXTRACT_SECURE_SYMLINKS |
                                              ARCHIVE_EXTRACT_SECURE_NODOTDOT);
  for (; r == ARCHIVE_OK || r == ARCHIVE_WARN; r = archive_read_next_header(a.get(), &e)) {
    std::string path = CleanAbs(std::string("/") + archive_entry_pathname(e));
    if (path == "/") continue;
    archive_entry_set_pathname(e, (dst + path).c_str());
    if (const char* hl = archive_entry_hardlink(e)) {
      archive_entry_set_hardlink(e, (dst + CleanAbs(std::string("/") + hl)).c_str());
    }
    if (archive_write_header(w.get(), e) < ARCHIVE_WARN) {
      return Status::InvalidArgument(src + ": " + archive_error_string(w.get()));
    }
    const void* buf;
    size_t size;
    int64_t off;
    int rr;
    while ((rr = archive_read_data_block(a.get(), &buf, &size, &off)) == ARCHIVE_OK) {
      if (archive_write_data_block(w.get(), buf, size, off) < ARCHIVE_WARN) {
        return Status::InvalidArgument(src + ": " + archive_error_string(w.get()));
      }
    }
    if (rr != ARCHIVE_EOF)
      return Status::InvalidArgument(src + ": " + archive_error_string(a.get()));
    if (archive_write_finish_entry(w.get()) < ARCHIVE_WARN) {
      return Status::InvalidArgument(src + ": " + archive_error_string(w.get()));
    }
  }
  if (r != ARCHIVE_EOF) return Status::InvalidArgument(src + ": " + archive_error_string(a.get()));
  return true;
}

}  // namespace imgfs::build_files
