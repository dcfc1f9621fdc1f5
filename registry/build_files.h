// File helpers of `imgfs build` (registry/builder.h): the context side (paths,
// .dockerignore) and the staging side (copies that keep modes and mtimes, owners,
// local tar extraction for ADD).
//
// Thread-safety: free functions and plain values.
#ifndef IMGFS_REGISTRY_BUILD_FILES_H_
#define IMGFS_REGISTRY_BUILD_FILES_H_

#include <sys/types.h>

#include <ctime>
#include <string>
#include <string_view>
#include <vector>

#include "index/status.h"

namespace imgfs::build_files {

// Lexically cleans an absolute path: no "", ".", ".." components ("/.." is "/").
std::string CleanAbs(std::string_view p);

// A directory removed with everything in it when this goes out of scope.
struct TempDir {
  std::string path;
  ~TempDir();
};

// A new directory under $TMPDIR (default /var/tmp).
Result<std::string> MakeTempDir();

// .dockerignore: patterns as filepath.Match sees them (`**` approximated by `*`), `!`
// re-includes, the last matching line decides, and a pattern matching a directory
// excludes what is below it.
struct Ignore {
  struct Rule {
    std::string pattern;
    bool negate;
  };
  std::vector<Rule> rules;

  static Ignore Load(const std::string& context);
  static bool Match(const std::string& pat, const std::string& rel);
  // `rel`: a context-relative path without a leading slash.
  bool Excluded(const std::string& rel) const;
};

// Sets owner, permission bits (not for symlinks) and mtime (atime = mtime) of `path`.
// Without root, an owner change is an error saying that build needs root.
Status ApplyMeta(const std::string& path, mode_t mode, uid_t uid, gid_t gid, struct timespec mtime,
                 bool symlink);

// Copies the bytes of regular file `src` to a new file `dst` (mode 0600).
Status CopyFile(const std::string& src, const std::string& dst);

// A tar archive (plain, gzip, bzip2, xz or zstd) is extracted into `dst`, as docker's
// ADD does. Returns false when `src` is not one (then it is copied as a file).
Result<bool> ExtractArchive(const std::string& src, const std::string& dst);

}  // namespace imgfs::build_files

#endif  // IMGFS_REGISTRY_BUILD_FILES_H_
