#include "index/file_util.h"

#include <fcntl.h>
#include <sys/stat.h>

#include <cerrno>
#include <cstring>
#include <random>

namespace imgfs {

Result<UniqueFd> OpenFile(const std::string& path, int flags, mode_t mode) {
  int fd = ::open(path.c_str(), flags | O_CLOEXEC, mode);
  if (fd < 0) return Status::FromErrno("open " + path);
  return UniqueFd(fd);
}

Status WriteAll(int fd, const void* data, size_t n) {
  const char* p = static_cast<const char*>(data);
  while (n > 0) {
    ssize_t w = ::write(fd, p, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      return Status::FromErrno("write");
    }
    p += w;
    n -= static_cast<size_t>(w);
  }
  return Status::Ok();
}

Status PreadAll(int fd, void* data, size_t n, off_t offset) {
  char* p = static_cast<char*>(data);
  while (n > 0) {
    ssize_t r = ::pread(fd, p, n, offset);
    if (r < 0) {
      if (errno == EINTR) continue;
      return Status::FromErrno("pread");
    }
    if (r == 0) return Status::Corruption("unexpected end of file");
    p += r;
    n -= static_cast<size_t>(r);
    offset += r;
  }
  return Status::Ok();
}

Result<size_t> ReadSome(int fd, void* data, size_t n) {
  for (;;) {
    ssize_t r = ::read(fd, data, n);
    if (r >= 0) return static_cast<size_t>(r);
    if (errno != EINTR) return Status::FromErrno("read");
  }
}

Result<std::string> ReadFileToString(const std::string& path, size_t max_size) {
  IMGFS_ASSIGN_OR_RETURN(UniqueFd fd, OpenFile(path, O_RDONLY));
  std::string out;
  char buf[65536];
  for (;;) {
    IMGFS_ASSIGN_OR_RETURN(size_t n, ReadSome(fd.get(), buf, sizeof buf));
    if (n == 0) break;
    if (out.size() + n > max_size) return Status::InvalidArgument(path + ": file too large");
    out.append(buf, n);
  }
  return out;
}

Status MakeDirs(const std::string& path, mode_t mode) {
  if (path.empty()) return Status::Ok();
  std::string cur;
  size_t i = 0;
  while (i <= path.size()) {
    size_t j = path.find('/', i);
    if (j == std::string::npos) j = path.size();
    cur = path.substr(0, j);
    if (!cur.empty() && ::mkdir(cur.c_str(), mode) != 0 && errno != EEXIST) {
      return Status::FromErrno("mkdir " + cur);
    }
    i = j + 1;
  }
  if (!IsDirectory(path)) return Status::InvalidArgument(path + " exists and is not a directory");
  return Status::Ok();
}

Status FsyncDir(const std::string& dir) {
  IMGFS_ASSIGN_OR_RETURN(UniqueFd fd, OpenFile(dir, O_RDONLY | O_DIRECTORY));
  if (::fsync(fd.get()) != 0) return Status::FromErrno("fsync " + dir);
  return Status::Ok();
}

Status WriteFileAtomic(const std::string& path, std::string_view data, mode_t mode, bool sync_dir) {
  size_t slash = path.rfind('/');
  std::string dir = slash == std::string::npos ? "." : path.substr(0, slash);
  std::random_device rd;
  std::string tmp = path + ".tmp-" + std::to_string(::getpid()) + "-" + std::to_string(rd());
  IMGFS_ASSIGN_OR_RETURN(UniqueFd fd, OpenFile(tmp, O_WRONLY | O_CREAT | O_EXCL, mode));
  Status st = WriteAll(fd.get(), data.data(), data.size());
  if (st.ok() && ::fsync(fd.get()) != 0) st = Status::FromErrno("fsync " + tmp);
  fd.Reset();
  if (st.ok() && ::rename(tmp.c_str(), path.c_str()) != 0) st = Status::FromErrno("rename " + tmp);
  if (!st.ok()) {
    ::unlink(tmp.c_str());
    return st;
  }
  return sync_dir ? FsyncDir(dir) : Status::Ok();
}

bool PathExists(const std::string& path) {
  struct stat st;
  return ::lstat(path.c_str(), &st) == 0;
}

bool IsDirectory(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

std::string JoinPath(const std::string& a, const std::string& b) {
  if (a.empty()) return b;
  if (a.back() == '/') return a + b;
  return a + "/" + b;
}

std::pair<std::string_view, std::string_view> SplitLast(std::string_view path) {
  // memrchr: string_view::rfind(char) is a byte loop, and the tree build runs this
  // twice per entry.
  const void* s = path.empty() ? nullptr : memrchr(path.data(), '/', path.size());
  if (!s) return {std::string_view(), path};
  size_t at = static_cast<size_t>(static_cast<const char*>(s) - path.data());
  return {path.substr(0, at), path.substr(at + 1)};
}

std::vector<std::string_view> SplitPath(std::string_view path) {
  std::vector<std::string_view> out;
  size_t i = 0;
  while (i <= path.size()) {
    size_t j = path.find('/', i);
    if (j == std::string_view::npos) j = path.size();
    if (j > i) out.push_back(path.substr(i, j - i));
    i = j + 1;
  }
  return out;
}

std::string BaseName(const std::string& path) {
  std::string p = path;
  while (p.size() > 1 && p.back() == '/') p.pop_back();
  size_t s = p.rfind('/');
  return s == std::string::npos ? p : p.substr(s + 1);
}

}  // namespace imgfs
