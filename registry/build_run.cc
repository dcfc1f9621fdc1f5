#include "registry/build_run.h"

#include <fcntl.h>
#include <limits.h>
#include <spawn.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string_view>

#include <linux/openat2.h>
#include <sys/syscall.h>

#include <cctype>

#include "fs/mountinfo.h"
#include "index/file_util.h"
#include "index/json_writer.h"
#include "registry/dockerfile.h"
#include "registry/json.h"

extern char** environ;

namespace imgfs {
namespace {

// A mount option value for overlayfs: ',', ':' and '\' escaped with '\'.
std::string OverlayEscape(const std::string& p) {
  std::string out;
  for (char c : p) {
    if (c == ',' || c == ':' || c == '\\') out.push_back('\\');
    out.push_back(c);
  }
  return out;
}

bool IsNumber(const std::string& s) {
  return !s.empty() && s.size() < 10 && std::all_of(s.begin(), s.end(), ::isdigit);
}

// Opens `rel` below the directory `root_fd`, every symlink and ".." resolved inside it
// (openat2 RESOLVE_IN_ROOT): an image's link "/etc/passwd -> /dev/zero" or
// "/w -> ../../../tmp" names the image's file, never the host's.
// (-1 and errno on failure.)
UniqueFd OpenInRoot(int root_fd, const std::string& rel, uint64_t flags) {
  struct open_how how {};
  how.flags = flags | O_CLOEXEC;
  how.resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS;
  return UniqueFd(static_cast<int>(::syscall(SYS_openat2, root_fd, rel.c_str(), &how, sizeof how)));
}

// A regular file of the root `root_fd` ("" when missing or not a regular file; never
// opened when it is a device or FIFO), at most kMaxUserFileSize bytes.
Result<std::string> ReadFileInRoot(int root_fd, const std::string& rel) {
  UniqueFd path = OpenInRoot(root_fd, rel, O_PATH);
  if (!path.valid()) {
    if (errno == ENOENT || errno == ENOTDIR || errno == ELOOP) return std::string();
    return Status::FromErrno("openat2 " + rel);
  }
  struct stat st;
  if (::fstat(path.get(), &st) != 0 || !S_ISREG(st.st_mode)) return std::string();
  if (static_cast<uint64_t>(st.st_size) > kMaxUserFileSize) {
    return Status::InvalidArgument(rel + ": larger than " + std::to_string(kMaxUserFileSize >> 20) +
                                   " MiB");
  }
  // Reopened for reading through the O_PATH descriptor (not the name again).
  auto r = ReadFileToString("/proc/self/fd/" + std::to_string(path.get()), kMaxUserFileSize);
  if (!r.ok()) return Status::InvalidArgument(rel + ": " + r.status().message());
  return r;
}

}  // namespace

std::string SelfExe() {
  char buf[PATH_MAX];
  ssize_t n = ::readlink("/proc/self/exe", buf, sizeof buf - 1);
  if (n <= 0) return "/proc/self/exe";
  return std::string(buf, n);
}

Result<int> Spawn(const std::vector<std::string>& argv, bool quiet, const std::string& err_file) {
  std::vector<char*> av;
  for (const auto& s : argv) av.push_back(const_cast<char*>(s.c_str()));
  av.push_back(nullptr);
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
  if (quiet) {
    posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
    posix_spawn_file_actions_adddup2(&fa, 1, 2);
  }
  if (!err_file.empty()) {
    posix_spawn_file_actions_addopen(&fa, 2, err_file.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
  }
  std::fflush(stdout);
  std::fflush(stderr);
  pid_t pid;
  int rc = ::posix_spawnp(&pid, av[0], &fa, nullptr, av.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  if (rc != 0) {
    errno = rc;
    return Status::FromErrno(argv[0]);
  }
  int st = 0;
  while (::waitpid(pid, &st, 0) < 0) {
    if (errno != EINTR) return Status::FromErrno("waitpid " + argv[0]);
  }
  if (WIFEXITED(st)) return WEXITSTATUS(st);
  if (WIFSIGNALED(st)) return 128 + WTERMSIG(st);
  return 255;
}

Result<std::unique_ptr<StoreMount>> StoreMount::Ensure(const std::string& store_root,
                                                       const std::string& tmp) {
  char* real = ::realpath(store_root.c_str(), nullptr);
  if (!real) return Status::FromErrno(store_root);
  std::string root = real;
  std::free(real);
  auto m = std::make_unique<StoreMount>();
  if (auto table = ReadMountInfo(); table.ok()) {
    for (const auto& e : *table) {
      struct stat st;
      if (e.fstype == kImgfsFsType && e.source == root &&
          ::stat((e.mount_point + "/.id").c_str(), &st) == 0) {
        m->path_ = e.mount_point;
        return m;
      }
    }
  }
  std::string dir = tmp + "/mnt";
  if (::mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST) return Status::FromErrno(dir);
  IMGFS_ASSIGN_OR_RETURN(int rc, Spawn({SelfExe(), "--root", root, "mount", dir}, false));
  if (rc != 0) {
    ::rmdir(dir.c_str());
    return Status::Unavailable("cannot mount the store for RUN (imgfs mount exited with " +
                               std::to_string(rc) + ")");
  }
  m->path_ = dir;
  m->ours_ = true;
  return m;
}

StoreMount::~StoreMount() {
  if (!ours_) return;
  auto rc = Spawn({SelfExe(), "umount", path_}, false);
  if (!rc.ok() || *rc != 0) {
    ::umount2(path_.c_str(), MNT_DETACH);  // never leave it behind
  }
  ::rmdir(path_.c_str());
}

namespace {

std::string RuncConfig(const RunSpec& spec, const RunUser& u, const std::string& rootfs) {
  static const char* kCaps[] = {
      "CAP_CHOWN",   "CAP_DAC_OVERRIDE", "CAP_FSETID",           "CAP_FOWNER",
      "CAP_MKNOD",   "CAP_NET_RAW",      "CAP_SETGID",           "CAP_SETUID",
      "CAP_SETFCAP", "CAP_SETPCAP",      "CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT",
      "CAP_KILL",    "CAP_AUDIT_WRITE"};
  JsonWriter w;
  auto caps = [&] {
    w.BeginArray();
    for (const char* c : kCaps) w.String(c);
    w.EndArray();
  };
  auto strings = [&](const std::vector<std::string>& v) {
    w.BeginArray();
    for (const auto& s : v) w.String(s);
    w.EndArray();
  };
  auto mount = [&](const char* dest, const char* type, const char* src,
                   const std::vector<std::string>& opts) {
    w.BeginObject().Key("destination").String(dest).Key("type").String(type);
    w.Key("source").String(src).Key("options");
    strings(opts);
    w.EndObject();
  };
  w.BeginObject().Key("ociVersion").String("1.0.2");
  w.Key("process").BeginObject().Key("terminal").Bool(false);
  w.Key("user").BeginObject().Key("uid").Uint(u.uid).Key("gid").Uint(u.gid);
  if (!u.groups.empty()) {
    w.Key("additionalGids").BeginArray();
    for (gid_t g : u.groups) w.Uint(g);
    w.EndArray();
  }
  w.EndObject();
  w.Key("args");
  strings(spec.args);
  w.Key("env");
  strings(spec.env);
  w.Key("cwd").String(spec.cwd);
  w.Key("capabilities").BeginObject();
  for (const char* set : {"bounding", "effective", "permitted"}) {
    w.Key(set);
    caps();
  }
  w.EndObject();
  w.Key("noNewPrivileges").Bool(false).EndObject();
  w.Key("root").BeginObject().Key("path").String(rootfs).Key("readonly").Bool(false).EndObject();
  w.Key("hostname").String("imgfs-build");
  w.Key("mounts").BeginArray();
  mount("/proc", "proc", "proc", {});
  mount("/dev", "tmpfs", "tmpfs", {"nosuid", "strictatime", "mode=755", "size=65536k"});
  mount("/dev/pts", "devpts", "devpts",
        {"nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"});
  mount("/dev/shm", "tmpfs", "shm", {"nosuid", "noexec", "nodev", "mode=1777", "size=65536k"});
  mount("/dev/mqueue", "mqueue", "mqueue", {"nosuid", "noexec", "nodev"});
  mount("/sys", "sysfs", "sysfs", {"nosuid", "noexec", "nodev", "ro"});
  w.EndArray();
  w.Key("linux").BeginObject();
  w.Key("resources").BeginObject().Key("devices").BeginArray();
  w.BeginObject().Key("allow").Bool(false).Key("access").String("rwm").EndObject();
  w.EndArray().EndObject();
  w.Key("namespaces").BeginArray();
  std::vector<std::string> ns = {"pid", "ipc", "uts", "mount"};
  if (!spec.host_network) ns.push_back("network");
  for (const auto& n : ns) w.BeginObject().Key("type").String(n).EndObject();
  w.EndArray();
  w.Key("maskedPaths");
  strings({"/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
           "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/sys/firmware",
           "/proc/scsi"});
  w.Key("readonlyPaths");
  strings({"/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"});
  w.EndObject();
  w.EndObject();
  return w.str();
}

}  // namespace

Result<std::string> HealthcheckJson(const std::string& args,
                                    const std::vector<std::string>& flags) {
  size_t sp = args.find_first_of(" \t");
  std::string type = args.substr(0, sp);
  for (auto& c : type) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  std::string rest = sp == std::string::npos ? "" : args.substr(args.find_first_not_of(" \t", sp));
  JsonWriter w;
  w.BeginObject().Key("Test").BeginArray();
  if (type == "NONE") {
    if (!rest.empty() || !flags.empty())
      return Status::InvalidArgument("HEALTHCHECK NONE takes no arguments");
    w.String("NONE").EndArray().EndObject();
    return w.str();
  }
  if (type != "CMD") {
    return Status::InvalidArgument("Unknown type \"" + type + "\" in HEALTHCHECK (try CMD)");
  }
  if (rest.empty()) return Status::InvalidArgument("Missing command after HEALTHCHECK CMD");
  std::vector<std::string> exec;
  if (ParseExecForm(rest, &exec)) {
    w.String("CMD");
    for (const auto& e : exec) w.String(e);
  } else {
    w.String("CMD-SHELL").String(rest);
  }
  w.EndArray();
  int64_t vals[3] = {0, 0, 0};
  int64_t retries = 0;
  static const char* kNames[3] = {"--interval=", "--timeout=", "--start-period="};
  for (const auto& f : flags) {
    bool done = false;
    for (int i = 0; i < 3; i++) {
      std::string pre = kNames[i];
      if (f.rfind(pre, 0) == 0) {
        IMGFS_ASSIGN_OR_RETURN(vals[i], ParseGoDurationNs(f.substr(pre.size())));
        if (vals[i] != 0 && vals[i] < 1000000) {
          return Status::InvalidArgument(f.substr(2, pre.size() - 3) + " \"" +
                                         f.substr(pre.size()) + "\" cannot be less than 1ms");
        }
        done = true;
      }
    }
    if (!done && f.rfind("--retries=", 0) == 0) {
      std::string v = f.substr(10);
      if (!IsNumber(v)) return Status::InvalidArgument("--retries: want a non-negative number");
      retries = std::stoll(v);
      done = true;
    }
    if (!done) return Status::InvalidArgument("flag " + f + " is not supported");
  }
  static const char* kKeys[3] = {"Interval", "Timeout", "StartPeriod"};
  for (int i = 0; i < 3; i++) {
    if (vals[i] != 0) w.Key(kKeys[i]).Int(vals[i]);
  }
  if (retries != 0) w.Key("Retries").Int(retries);
  w.EndObject();
  return w.str();
}

Result<int> RunInContainer(const RunSpec& spec) {
  const std::string upper = spec.dir + "/upper", work = spec.dir + "/work",
                    merged = spec.dir + "/merged", bundle = spec.dir + "/bundle";
  for (const auto& d : {upper, work, merged, bundle}) {
    if (::mkdir(d.c_str(), 0755) != 0) return Status::FromErrno(d);
  }
  // Mount points runc creates when the image lacks them are not the command's doing.
  std::vector<std::string> made_by_runc;
  for (const char* p : {"/proc", "/dev", "/sys"}) {
    struct stat st;
    if (::lstat((spec.lower + p).c_str(), &st) != 0) made_by_runc.push_back(p);
  }
  std::string opts = "lowerdir=" + OverlayEscape(spec.lower) + ",upperdir=" + OverlayEscape(upper) +
                     ",workdir=" + OverlayEscape(work) + ",index=off,redirect_dir=off,metacopy=off";
  if (::mount("overlay", merged.c_str(), "overlay", 0, opts.c_str()) != 0) {
    return Status::FromErrno("mount overlay on " + merged);
  }
  struct Unmount {
    std::string path;
    void Now() {
      if (!path.empty() && ::umount2(path.c_str(), 0) != 0) ::umount2(path.c_str(), MNT_DETACH);
      path.clear();
    }
    ~Unmount() { Now(); }
  } unmount{merged};

  // /etc/passwd, /etc/group and the working directory are the image's: every path
  // below is resolved inside `merged` (a link in the image never reaches the host).
  UniqueFd root(::open(merged.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
  if (!root.valid()) return Status::FromErrno(merged);
  RunUser u;
  if (!spec.user.empty()) {
    IMGFS_ASSIGN_OR_RETURN(std::string passwd, ReadFileInRoot(root.get(), "etc/passwd"));
    IMGFS_ASSIGN_OR_RETURN(std::string group, ReadFileInRoot(root.get(), "etc/group"));
    IMGFS_ASSIGN_OR_RETURN(u, ResolveUserIn(passwd, group, spec.user));
  }
  std::vector<std::string> env = spec.env;
  bool have_path = false, have_home = false;
  for (const auto& e : env) {
    have_path = have_path || e.rfind("PATH=", 0) == 0;
    have_home = have_home || e.rfind("HOME=", 0) == 0;
  }
  if (!have_path)
    env.push_back("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
  if (!have_home) env.push_back("HOME=" + u.home);
  RunSpec s = spec;
  s.env = env;
  {
    // The working directory exists before the command starts (docker creates it too).
    std::string cur;
    for (std::string_view part : SplitPath(spec.cwd)) {
      std::string parent = cur.empty() ? "." : cur;
      cur += (cur.empty() ? "" : "/") + std::string(part);
      if (OpenInRoot(root.get(), cur, O_PATH | O_DIRECTORY).valid()) continue;
      UniqueFd at = OpenInRoot(root.get(), parent, O_PATH | O_DIRECTORY);
      if (!at.valid() || ::mkdirat(at.get(), std::string(part).c_str(), 0755) != 0 ||
          !OpenInRoot(root.get(), cur, O_PATH | O_DIRECTORY).valid()) {
        return Status::FromErrno("WORKDIR " + spec.cwd);
      }
    }
  }
  {
    std::string cfg = bundle + "/config.json";
    std::ofstream f(cfg, std::ios::trunc);
    f << RuncConfig(s, u, merged);
    f.close();
    if (!f) return Status::FromErrno(cfg);
  }
  auto rc = Spawn({"runc", "run", "--bundle", bundle, spec.id}, false);
  (void)Spawn({"runc", "delete", "-f", spec.id}, true);
  unmount.Now();
  if (!rc.ok()) return rc.status().WithContext("runc");
  for (const auto& p : made_by_runc) ::rmdir((upper + p).c_str());
  return *rc;
}

}  // namespace imgfs
