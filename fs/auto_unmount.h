// -o auto_unmount without libfuse's race.
//
// With auto_unmount, fusermount3 stays behind holding one end of a socket whose other
// end the daemon holds; when it reads EOF (the daemon died) it opens the mount point
// and unmounts only if that fails with ENOTCONN. But a killed daemon releases its file
// descriptors one by one: when the socket goes before /dev/fuse, fusermount3's open
// reaches a connection that is still up, waits in it, fails with ECONNABORTED when
// /dev/fuse goes, and fusermount3 leaves a dead mount behind (seen under load: about
// one kill -9 in six with a busy machine; Linux 6.18 releases the higher descriptor
// first, and /dev/fuse has the lower one).
//
// The guard closes that window: a small process (this binary, exec'd under the name
// kAutoUnmountGuardName, so `pkill -f "imgfs mount"` does not reach it) holds a copy of
// the daemon's end of the socket until the daemon has wholly exited (a pidfd becomes
// readable only after the last thread has released its files, /dev/fuse included).
// Then it exits, fusermount3 reads EOF, finds ENOTCONN and unmounts. The daemon keeps
// its own copy too (libfuse may own and close that descriptor), so a guard that dies
// or never starts only brings back libfuse's behaviour; the daemon logs when the guard
// does not confirm that it is watching.
#ifndef IMGFS_FS_AUTO_UNMOUNT_H_
#define IMGFS_FS_AUTO_UNMOUNT_H_

#include <set>
#include <string>

namespace imgfs {

inline constexpr char kAutoUnmountGuardName[] = "imgfs-auto-unmount";

// The process's open socket descriptors.
std::set<int> OpenSockets();
// Starts the guard for this process (the daemon) with a copy of `sock`, the daemon's
// end of fusermount3's socket, and waits (at most 2 s) until it says it is watching.
// False, with the reason in `why`, when it is not.
bool StartAutoUnmountGuard(int sock, std::string* why);
// The guard's main (argv: kAutoUnmountGuardName, the daemon's pid; the socket is fd 3,
// fd 4 the pipe on which it says it is watching).
int RunAutoUnmountGuard(int argc, char** argv);

}  // namespace imgfs

#endif  // IMGFS_FS_AUTO_UNMOUNT_H_
