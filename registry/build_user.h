// USER and COPY/ADD --chown of `imgfs build` (registry/builder.h): a user spec
// ("NAME|UID[:GROUP|GID]") resolved against an image's /etc/passwd and /etc/group text.
// Those files come from the image, which may come from a registry: the parser reads
// any bytes in one pass without keeping more than the text itself (no per-field
// copies), and bounds what it returns (at most kMaxRunGroups supplementary groups).
//
// Thread-safety: pure functions.
#ifndef IMGFS_REGISTRY_BUILD_USER_H_
#define IMGFS_REGISTRY_BUILD_USER_H_

#include <sys/types.h>

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

#include "index/status.h"

namespace imgfs {

// An /etc/passwd or /etc/group bigger than this is not one (a clear error, not a read).
inline constexpr size_t kMaxUserFileSize = 64u << 20;
// Linux's NGROUPS_MAX: more supplementary groups cannot be set.
inline constexpr size_t kMaxRunGroups = 65536;

// The numeric user of a USER value, names looked up in /etc/passwd and /etc/group (as
// docker: a name that is not there is an error; supplementary groups are the groups
// listing the user, each once).
struct RunUser {
  uid_t uid = 0;
  gid_t gid = 0;
  std::vector<gid_t> groups;
  std::string home = "/";
};

// From the two files' text (missing files: "").
Result<RunUser> ResolveUserIn(std::string_view passwd_text, std::string_view group_text,
                              const std::string& user);

}  // namespace imgfs

#endif  // IMGFS_REGISTRY_BUILD_USER_H_
