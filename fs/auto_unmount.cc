// The auto_unmount guard (see auto_unmount.h).
#include "fs/auto_unmount.h"

#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <spawn.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstdlib>
#include <cstring>
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

bool StartAutoUnmountGuard(int sock, std::string* why) {
  // The guard gets the socket as fd 3 and the write end of a pipe as fd 4 (it writes one
  // byte there once it watches the daemon), nothing else past stderr. Copies at 10 or
  // above keep the dup2s from meeting each other.
  int ready[2];
  if (::pipe2(ready, O_CLOEXEC) != 0) {
    *why = std::string("pipe: ") + std::strerror(errno);
    return false;
  }
  int copy = ::fcntl(sock, F_DUPFD_CLOEXEC, 10);
  int wcopy = ::fcntl(ready[1], F_DUPFD_CLOEXEC, 10);
  ::close(ready[1]);
  if (copy < 0 || wcopy < 0) {
    *why = std::string("fcntl: ") + std::strerror(errno);
    for (int fd : {copy, wcopy, ready[0]})
      if (fd >= 0) ::close(fd);
    return false;
  }
  std::string pid = std::to_string(::getpid());
  char* argv[] = {const_cast<char*>(kAutoUnmountGuardName), pid.data(), nullptr};
  posix_spawn_file_actions_t fa;
  posix_spawnattr_t attr;
  posix_spawn_file_actions_init(&fa);
  posix_spawnattr_init(&attr);
  posix_spawn_file_actions_adddup2(&fa, copy, 3);
  posix_spawn_file_actions_adddup2(&fa, wcopy, 4);
  posix_spawn_file_actions_addclosefrom_np(&fa, 5);
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
  ::close(wcopy);
  if (rc != 0) {
    ::close(ready[0]);
    *why = std::string("cannot start it: ") + std::strerror(rc);
    return false;
  }
  // Its byte (or EOF when it exits without one); 2 s is far more than an exec takes.
  pollfd p{ready[0], POLLIN, 0};
  char b = 0;
  bool up = ::poll(&p, 1, 2000) == 1 && ::read(ready[0], &b, 1) == 1 && b == 'y';
  ::close(ready[0]);
  if (!up) {
    int st = 0;
    ::waitpid(child, &st, WNOHANG);  // reaped if it is gone
    *why = "it did not start watching (pid " + std::to_string(child) + ")";
  }
  return up;
}

int RunAutoUnmountGuard(int argc, char** argv) {
  char* end = nullptr;
  long pid = argc == 2 ? std::strtol(argv[1], &end, 10) : 0;
  struct stat st;
  if (pid < 1 || !end || *end || ::fstat(3, &st) != 0 || !S_ISSOCK(st.st_mode)) {
    const char msg[] = "imgfs-auto-unmount: started by imgfs mount -o auto_unmount only\n";
    (void)!::write(2, msg, sizeof msg - 1);
    return 2;
  }
  ::prctl(PR_SET_NAME, "imgfs-autoumnt");  // not "exe" (exec'd as /proc/self/exe)
  for (int s : {SIGINT, SIGTERM, SIGHUP}) std::signal(s, SIG_IGN);
  // The daemon is our parent until its last thread is gone; then we are reparented.
  int pfd = static_cast<int>(::syscall(SYS_pidfd_open, static_cast<pid_t>(pid), 0));
  if (::getppid() != pid) return 0;  // gone already (the pidfd may name another process)
  (void)!::write(4, "y", 1);         // watching: the daemon may rely on us now
  ::close(4);
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
