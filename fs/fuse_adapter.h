// Serving a store over FUSE. RunMount mounts the store read-only at a mount point and
// answers requests (fs/fuse_loop.h's session loop, or libfuse's with -o spin=0)
// until it is unmounted or receives SIGTERM/SIGINT/SIGHUP, then unmounts cleanly.
//
// In the background (the default), the mount is in place before the calling process
// exits with 0; the daemon logs to <root>/mount.log. In the foreground (-f), it logs to
// stderr. This header is FUSE-free; only fuse_adapter.cc includes fuse_lowlevel.h.
#ifndef IMGFS_FS_FUSE_ADAPTER_H_
#define IMGFS_FS_FUSE_ADAPTER_H_

#include <cstdint>
#include <functional>
#include <string>

namespace imgfs {

class MountFs;
class StopSignal;
// A task the daemon runs on a thread of its own while it serves (-o complete=on: the
// background completion of lazy layers, cli/lazy_complete.h). It starts once the
// daemon has forked and its MountFs exists, and is stopped (StopSignal) and joined
// when the mount ends (unmount, SIGTERM): it must return soon after. `log` writes one
// line to the daemon's log.
using BackgroundTask = std::function<void(MountFs& fs, StopSignal& stop,
                                          const std::function<void(const std::string&)>& log)>;

struct MountOptions {
  std::string root;        // the store (made absolute by RunMount)
  std::string mountpoint;  // made absolute by RunMount
  bool foreground = false;
  bool debug = false;        // libfuse's request trace (foreground only)
  bool allow_other = false;  // other users may enter the mount
  bool allow_root = false;
  bool suid = false;  // honour setuid bits (default nosuid)
  bool dev = false;   // allow device nodes (default nodev)
  bool noexec = false;
  uint64_t cache_size = 0;  // span cache budget (0 = 64 MiB) and unpack cache limit (0 = none)
  uint64_t tree_cache = uint64_t{64} << 20;  // bytes of built image trees kept
  double name_timeout = 0.5;
  // Use the kernel's no-open/no-opendir modes when it offers them (-o open=kernel is
  // the default; -o open=daemon sends every open to the daemon, for comparison).
  bool kernel_open_free = true;
  // libfuse's auto_unmount: fusermount3 unmounts when the daemon dies (fstab option).
  bool auto_unmount = false;
  // -o whole_layers: ignore seek indexes, unpack compressed layers whole (comparisons).
  bool whole_layers = false;
  // -o readahead=off: no read-ahead of a listed directory's files and no warm-up of an
  // image's layers (LayerReader::Warm; also IMGFS_READAHEAD=0 in the environment).
  bool readahead = true;
  // -o acl=off: no FUSE_POSIX_ACL (ACLs in images are served as xattrs, not enforced by
  // the kernel) and an absent ACL is "not supported": a cold `ls -l` then asks for no
  // ACLs (MountFs::Options::acl).
  bool acl = true;
  // -o spin=US: fs/fuse_loop.h's session loop, which after each request reads on
  // without sleeping this long (50, the default); 0: libfuse's multithreaded loop.
  static constexpr int kDefaultSpinUs = 50;
  int spin_us = kDefaultSpinUs;
  // Run beside the session (see BackgroundTask); empty: none.
  BackgroundTask background;
};

// Returns the process exit code. On errors before the mount exists, prints one line.
// A mount point that already has an imgfs mount on top is refused (no stacking). The
// mount's source (/proc/mounts, findmnt) is the store directory, its type fuse.imgfs.
int RunMount(const MountOptions& options);
// Unmounts a mount point (umount2 as root, fusermount3 -u otherwise). Only an imgfs
// mount (fuse.imgfs in /proc/self/mountinfo) is touched, also as root. `mountpoint`
// may also be a store directory mounted exactly once. A dead FUSE mount (its daemon
// killed) is detached lazily, with a note on stderr.
int RunUnmount(const std::string& mountpoint, bool lazy);
// True when `path` is a FUSE mount whose daemon is gone (stat fails with ENOTCONN).
// RunMount clears such a mount (saying so on stderr) and mounts in its place.
bool IsDeadFuseMount(const std::string& path);

}  // namespace imgfs

#endif  // IMGFS_FS_FUSE_ADAPTER_H_
