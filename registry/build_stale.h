// Stale state of killed builds (registry/builder.h). A build's RUN directories and the
// directory of its own store mount ($TMPDIR/imgfs-build-XXXXXX) get an `owner` file:
// the build's pid and its start time (/proc/PID/stat field 22). A build killed by
// SIGKILL leaves such a directory behind, maybe with an overlay mounted in it, its
// own store mount and a runc container (imgfs-build-PID-N). CleanStaleBuilds finds the
// directories whose owner is provably dead (no such pid, or a pid with another start
// time), removes the runc containers, unmounts what is mounted under them and removes
// them, naming each on `log`. A directory without an owner file, or one this user did
// not make (not a 0700 directory owned by it, with an owner file of its own), is left
// alone.
//
// Thread-safety: plain functions; use from one thread.
#ifndef IMGFS_REGISTRY_BUILD_STALE_H_
#define IMGFS_REGISTRY_BUILD_STALE_H_

#include <cstdio>
#include <string>

#include "index/status.h"

namespace imgfs {

// Writes DIR/owner for this process.
Status MarkBuildDir(const std::string& dir);
// Cleans up after dead builds under $TMPDIR (or /var/tmp); returns how many.
int CleanStaleBuilds(std::FILE* log);

}  // namespace imgfs

#endif  // IMGFS_REGISTRY_BUILD_STALE_H_
