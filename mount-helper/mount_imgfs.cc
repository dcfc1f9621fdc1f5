// mount.imgfs (also installed as mount.fuse.imgfs): the entry point for mount(8) and
// /etc/fstab. mount(8) runs it as
//
//   mount.imgfs SOURCE MOUNTPOINT [-sfnv] [-o OPTIONS] [-t TYPE]
//
// where SOURCE is an imgfs store directory (e.g. /var/lib/imgfs). It drops the options
// that only mean something to mount(8) and fstab (defaults, auto, noauto, user, users,
// nofail, _netdev, x-*, comment=*, access-time flags, rw/ro: imgfs is always
// read-only) and runs `imgfs --root SOURCE mount -o OPTIONS MOUNTPOINT` (with --sloppy
// for -s), which returns once the mount is in place; auto_unmount passes through. The imgfs binary
// is looked up beside this helper, then in /usr/local/bin and /usr/bin, then in PATH ($IMGFS_BIN
// overrides all of them).
#include <limits.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

namespace {

bool MountOnly(const std::string& o) {
  static const char* kDrop[] = {
      "defaults",    "auto",          "noauto",   "user",       "users",    "nouser",
      "owner",       "group",         "nofail",   "_netdev",    "rw",       "ro",
      "sync",        "async",         "atime",    "noatime",    "relatime", "norelatime",
      "strictatime", "nostrictatime", "diratime", "nodiratime", "lazytime", "nolazytime",
      "silent",      "loud"};
  for (const char* d : kDrop) {
    if (o == d) return true;
  }
  return o.rfind("x-", 0) == 0 || o.rfind("comment=", 0) == 0;
}

std::string FindImgfs(const char* argv0) {
  if (const char* e = std::getenv("IMGFS_BIN"); e && *e) return e;
  char self[PATH_MAX];
  ssize_t n = ::readlink("/proc/self/exe", self, sizeof self - 1);
  if (n > 0) {
    self[n] = '\0';
    std::string dir(self);
    dir = dir.substr(0, dir.rfind('/'));
    for (const char* rel : {"/imgfs", "/../bin/imgfs"}) {
      std::string p = dir + rel;
      if (::access(p.c_str(), X_OK) == 0) return p;
    }
  }
  for (const char* p :
       {"/usr/local/bin/imgfs", "/usr/bin/imgfs"}) {  // where `cmake --install` puts it
    if (::access(p, X_OK) == 0) return p;
  }
  return "imgfs";  // execvp searches PATH
}

int Usage() {
  std::fprintf(stderr, "usage: mount.imgfs STORE_DIR MOUNTPOINT [-sfnv] [-o OPTIONS]\n");
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> pos;
  std::string opts;
  bool fake = false;
  bool sloppy = false;
  for (int i = 1; i < argc; i++) {
    std::string a = argv[i];
    if (a == "-o" && i + 1 < argc) {
      opts += (opts.empty() ? "" : ",") + std::string(argv[++i]);
    } else if (a.rfind("-o", 0) == 0 && a.size() > 2) {
      opts += (opts.empty() ? "" : ",") + a.substr(2);
    } else if (a == "-t" && i + 1 < argc) {
      ++i;  // the type (imgfs or fuse.imgfs): nothing to do with it
    } else if (a == "-N") {
      std::fprintf(stderr, "mount.imgfs: mount namespaces (-N) are not supported\n");
      return 1;
    } else if (a == "-h" || a == "--help") {
      Usage();
      return 0;
    } else if (a.size() > 1 && a[0] == '-') {
      for (char c : a.substr(1)) {
        if (c == 'f') fake = true;    // -f: do everything but the mount
        if (c == 's') sloppy = true;  // -s: unknown options are warned about, not refused
        // -n (no mtab), -v (verbose): nothing to do
      }
    } else {
      pos.push_back(a);
    }
  }
  if (pos.size() != 2) return Usage();
  std::string kept;
  size_t i = 0;
  while (i <= opts.size()) {
    size_t j = opts.find(',', i);
    if (j == std::string::npos) j = opts.size();
    std::string o = opts.substr(i, j - i);
    i = j + 1;
    if (o.empty() || MountOnly(o)) continue;
    kept += (kept.empty() ? "" : ",") + o;
  }
  if (fake) return 0;
  std::string imgfs = FindImgfs(argv[0]);
  std::vector<std::string> args = {"imgfs", "--root", pos[0], "mount"};
  if (sloppy) args.push_back("--sloppy");
  if (!kept.empty()) {
    args.push_back("-o");
    args.push_back(kept);
  }
  args.push_back(pos[1]);
  std::vector<char*> cargs;
  for (auto& s : args) cargs.push_back(s.data());
  cargs.push_back(nullptr);
  ::execvp(imgfs.c_str(), cargs.data());
  std::fprintf(stderr, "mount.imgfs: cannot run %s: %s\n", imgfs.c_str(), std::strerror(errno));
  return 1;
}
