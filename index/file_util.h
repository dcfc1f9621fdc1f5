// Small POSIX helpers: an owning fd, full reads/writes, durable renames.
//
// Thread-safety: free functions are reentrant; UniqueFd is a move-only owner.
#ifndef IMGFS_INDEX_FILE_UTIL_H_
#define IMGFS_INDEX_FILE_UTIL_H_

#include <sys/types.h>
#include <unistd.h>

#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "index/status.h"

namespace imgfs {

class UniqueFd {
 public:
  UniqueFd() = default;
  explicit UniqueFd(int fd) : fd_(fd) {}
  UniqueFd(UniqueFd&& o) noexcept : fd_(std::exchange(o.fd_, -1)) {}
  UniqueFd& operator=(UniqueFd&& o) noexcept {
    if (this != &o) {
      Reset();
      fd_ = std::exchange(o.fd_, -1);
    }
    return *this;
  }
  UniqueFd(const UniqueFd&) = delete;
  UniqueFd& operator=(const UniqueFd&) = delete;
  ~UniqueFd() { Reset(); }
  int get() const { return fd_; }
  bool valid() const { return fd_ >= 0; }
  int release() { return std::exchange(fd_, -1); }
  void Reset() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }

 private:
  int fd_ = -1;
};

Result<UniqueFd> OpenFile(const std::string& path, int flags, mode_t mode = 0644);
Status WriteAll(int fd, const void* data, size_t n);
// Reads exactly n bytes at offset; a short file is corruption.
Status PreadAll(int fd, void* data, size_t n, off_t offset);
// Reads up to n bytes; returns the count (0 at EOF).
Result<size_t> ReadSome(int fd, void* data, size_t n);
Result<std::string> ReadFileToString(const std::string& path, size_t max_size = 64 << 20);
Status MakeDirs(const std::string& path, mode_t mode = 0755);
Status FsyncDir(const std::string& dir);
// Writes `data` to path atomically (temp file in the same dir, fsync, rename, fsync dir;
// with sync_dir = false the caller fsyncs the directory later).
Status WriteFileAtomic(const std::string& path, std::string_view data, mode_t mode = 0644,
                       bool sync_dir = true);
bool PathExists(const std::string& path);
bool IsDirectory(const std::string& path);
std::string JoinPath(const std::string& a, const std::string& b);
// The non-empty components of a '/'-separated path ("a//b/" → {"a", "b"}).
std::vector<std::string_view> SplitPath(std::string_view path);
// A path split at its last '/': ("a/b", "c") for "a/b/c", ("", "c") for "c".
std::pair<std::string_view, std::string_view> SplitLast(std::string_view path);
std::string BaseName(const std::string& path);

}  // namespace imgfs

#endif  // IMGFS_INDEX_FILE_UTIL_H_
