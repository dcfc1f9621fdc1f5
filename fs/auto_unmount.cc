// The auto_unmount guard (see auto_unmount.h).
#include "fs/auto_unmount.h"

#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstdlib>
#include <string>

extern char** environ;

namespace imgfs {

std::set<int> OpenSockets() {
  std::set<int> out;
  DIR* d = ::opendir("/proc/self/fd");
  if (!d) return out;
  int self = ::dirfd(d);
  while (dirent* e = ::readdir(d)) {
    char* end = nullptr;
    long fd = std::strtol(e->d_name, &end, 10);
    if (end == e->d_name || *end || fd == self || fd < 0 || fd > INT32_MAX) continue;
    struct stat st;
    if (::fstat(static_cast<int>(fd), &st) == 0 && S_ISSOCK(st.st_mode))
      out.insert(static_cast<int>(fd));
  }
  ::closedir(d);
  return out;
}

bool StartAutoUnmountGuard(int sock) {
  // The guard gets the socket as fd 3 and nothing else past stderr. The copy at 10 or
  // above keeps dup2 from meeting itself when `sock` is 3.
  int copy = ::fcntl(sock, F_DUPFD_CLOEXEC, 10);
  if (copy < 0) return false;
  std::string pid = std::to_string(::getpid());
  char* argv[] = {const_cast<char*>(kAutoUnmountGuardName), pid.data(), nullptr};
  posix_spawn_file_actions_t fa;
  posix_spawnattr_t attr;
  posix_spawn_file_actions_init(&fa);
  posix_spawnattr_init(&attr);
  posix_spawn_file_actions_adddup2(&fa, copy, 3);
  posix_spawn_file_actions_addclosefrom_np(&fa, 4);
  posix_spawn_file_actions_addchdir_np(&fa, "/");  // pins no file system
  sigset_t none, dflt;
  sigemptyset(&none);
  sigemptyset(&dflt);
  for (int s : {SIGINT, SIGTERM, SIGHUP, SIGPIPE, SIGCHLD}) sigaddset(&dflt, s);
  posix_spawnattr_setsigmask(&attr, &none);
  posix_spawnattr_setsigdefault(&attr, &dflt);
  // Its own session: a terminal's ^C (imgfs mount -f) reaches the daemon, which then
  // unmounts cleanly, and not the guard.
  posix_spawnattr_setflags(&attr,
                           POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSID);
  pid_t child = -1;
  int rc = ::posix_spawn(&child, "/proc/self/exe", &fa, &attr, argv, environ);
  posix_spawn_file_actions_destroy(&fa);
  posix_spawnattr_destroy(&attr);
  ::close(copy);
  return rc == 0;
}

int RunAutoUnmountGuard(int argc, char** argv) {
  char* end = nullptr;
  long pid = argc == 2 ? std::strtol(argv[1], &end, 10) : 0;
  struct stat st;
  if (pid <= 1 || !end || *end || ::fstat(3, &st) != 0 || !S_ISSOCK(st.st_mode)) {
    const char msg[] = "imgfs-auto-unmount: started by imgfs mount -o auto_unmount only\n";
    (void)!::write(2, msg, sizeof msg - 1);
    return 2;
  }
  for (int s : {SIGINT, SIGTERM, SIGHUP}) std::signal(s, SIG_IGN);
  // The daemon is our parent until its last thread is gone; then we are reparented.
  int pfd = static_cast<int>(::syscall(SYS_pidfd_open, static_cast<pid_t>(pid), 0));
  if (::getppid() != pid) return 0;  // gone already (the pidfd may name another process)
  if (pfd >= 0) {
    // Readable once the whole thread group has exited, its files released.
    pollfd p{pfd, POLLIN, 0};
    while (::poll(&p, 1, -1) < 0 && errno == EINTR) {
    }
  } else {
    while (::getppid() == pid) ::usleep(20000);  // no pidfd (Linux < 5.3)
  }
  return 0;  // exiting closes fd 3: fusermount3 reads EOF and unmounts the dead mount
}

}  // namespace imgfs
