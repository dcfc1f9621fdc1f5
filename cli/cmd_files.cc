// imgfs subcommands. Files: ls, cat, mount, umount.
#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <functional>
#include <iostream>
#include <map>
#include <set>
#include <string>
#include <vector>

#include <simdjson.h>

#include "cli/cli_common.h"
#include "cli/lazy_complete.h"
#include "cli/ls_format.h"
#include "fs/fuse_adapter.h"
#include "fs/image_view.h"
#include "fs/span_cache.h"
#include "index/store.h"
#include "registry/credentials.h"
#include "registry/daemon_config.h"
#include "registry/image_loader.h"
#include "registry/json.h"
#include "registry/puller.h"
#include "registry/reference.h"

namespace imgfs {
namespace {

int CmdLs(const std::string& root, const Args& a) {
  if (a.pos.empty() || a.pos.size() > 2) Die("ls: want IMAGE [PATH]", 2);
  auto store = OpenStore(root);
  InstallLazyFetcher(root);  // --sha256 reads contents
  auto id = ResolveImage(*store, a.pos[0]);
  if (!id.ok()) return Fail(id.status(), "ls");
  auto view = ImageView::Open(*store, *id);
  if (!view.ok()) return Fail(view.status(), "ls");
  std::string path = a.pos.size() > 1 ? a.pos[1] : "/";
  std::string format = a.Get("--format", "ls");
  if (format != "ls" && format != "tsv") Die("ls: --format is ls or tsv", 2);
  LayerReader cache(*store);
  LsOptions o;
  o.longfmt = a.Has("--long");
  o.recursive = a.Has("--recursive");
  o.tsv = format == "tsv";
  o.sha = a.Has("--sha256");
  // Quoted as GNU ls does: shell-escape on a terminal, backslash escapes otherwise.
  o.quoting = ::isatty(STDOUT_FILENO) ? NameQuoting::kShellEscape : NameQuoting::kEscape;
  bool follow = !o.longfmt || (!path.empty() && path.back() == '/');
  auto n = (*view)->tree().Resolve(path, follow);
  if (!n.ok()) return Fail(n.status(), "ls " + path);
  if (*n == 0) return Fail(Status::NotFound("no such file or directory"), "ls " + path);
  Status st = ListTree(**view, cache, *n, path, o, stdout);
  if (!st.ok()) return Fail(st, "ls");
  return 0;
}

int CmdCat(const std::string& root, const Args& a) {
  if (a.pos.size() < 2) Die("cat: want IMAGE PATH...", 2);
  auto store = OpenStore(root);
  InstallLazyFetcher(root);  // a lazily pulled layer fetches what it lacks
  auto id = ResolveImage(*store, a.pos[0]);
  if (!id.ok()) return Fail(id.status(), "cat");
  LayerReader cache(*store);
  // The layers are opened on a helper thread while the tree is built.
  auto view = ImageView::Open(
      *store, *id, [&cache](const std::vector<LayerRecord>& layers) { cache.Warm(layers); });
  if (!view.ok()) return Fail(view.status(), "cat");
  std::vector<char> buf(1 << 20);
  for (size_t i = 1; i < a.pos.size(); i++) {
    auto n = (*view)->tree().Resolve(a.pos[i], true);
    if (!n.ok()) return Fail(n.status(), "cat " + a.pos[i]);
    if (*n == 0) return Fail(Status::NotFound("no such file or directory"), "cat " + a.pos[i]);
    if (!S_ISREG((*view)->tree().node(*n).mode))
      return Fail(Status::InvalidArgument("not a regular file"), "cat " + a.pos[i]);
    uint64_t off = 0;
    for (;;) {
      auto got = (*view)->Read(cache, *n, buf.data(), buf.size(), off);
      if (!got.ok()) return Fail(got.status(), "cat " + a.pos[i]);
      if (*got == 0) break;
      if (std::fwrite(buf.data(), 1, *got, stdout) != *got)
        return Fail(Status::FromErrno("write"), "cat");
      off += *got;
    }
  }
  return 0;
}

// Options an fstab line or mount(8) may carry that mean nothing to a read-only FUSE
// mount: they are accepted and ignored (auto_unmount is honoured, see CmdMount).
bool IsFstabOnlyOption(const std::string& o) {
  static const char* kIgnored[] = {
      "defaults", "auto",        "noauto",   "user",       "users",       "nouser",
      "owner",    "group",       "nofail",   "_netdev",    "sync",        "async",
      "atime",    "noatime",     "relatime", "norelatime", "strictatime", "nostrictatime",
      "diratime", "nodiratime",  "lazytime", "nolazytime", "silent",      "loud",
      "dirsync",  "nosymfollow", "nomand",   "iversion",   "noiversion"};
  for (const char* k : kIgnored) {
    if (o == k) return true;
  }
  return o.rfind("x-", 0) == 0 || o.rfind("comment=", 0) == 0;
}

int CmdMount(const std::string& root, const Args& a) {
  if (a.pos.size() != 1) Die("mount: want MOUNTPOINT (see imgfs mount --help)", 2);
  InstallLazyFetcher(root);  // lazily pulled layers fetch what reads need
  MountOptions o;
  o.root = root;
  o.mountpoint = a.pos[0];
  o.foreground = a.Has("--foreground");
  std::string opts = a.Get("--options");
  bool complete = true;  // -o complete: lazy layers completed in the background
  size_t i = 0;
  while (i < opts.size()) {
    size_t j = opts.find(',', i);
    if (j == std::string::npos) j = opts.size();
    std::string opt = opts.substr(i, j - i);
    i = j + 1;
    std::string key = opt.substr(0, opt.find('='));
    std::string val = opt.find('=') == std::string::npos ? "" : opt.substr(opt.find('=') + 1);
    if (opt.empty() || opt == "ro" || opt == "default_permissions" || opt == "nosuid" ||
        opt == "nodev" || opt == "exec") {
      continue;
    } else if (IsFstabOnlyOption(opt)) {
      continue;  // fstab's and mount(8)'s own, or access-time flags (nothing is written)
    } else if (opt == "auto_unmount") {
      o.auto_unmount = true;
    } else if (opt == "rw") {
      Die("mount: imgfs mounts are read-only (option rw)");
    } else if (opt == "allow_other") {
      o.allow_other = true;
    } else if (opt == "allow_root") {
      o.allow_root = true;
    } else if (opt == "suid") {
      o.suid = true;
    } else if (opt == "dev") {
      o.dev = true;
    } else if (opt == "noexec") {
      o.noexec = true;
    } else if (opt == "debug") {
      o.debug = o.foreground = true;
    } else if (key == "cache_size") {
      auto n = ParseSize(val);
      if (!n.ok()) Die("mount: cache_size: " + n.status().message(), 2);
      o.cache_size = *n;
    } else if (key == "tree_cache") {
      auto n = ParseSize(val);
      if (!n.ok()) Die("mount: tree_cache: " + n.status().message(), 2);
      o.tree_cache = *n;
    } else if (opt == "whole_layers") {
      o.whole_layers = true;
    } else if (opt == "acl" || opt == "noacl") {  // fstab's spelling (ext4's options)
      o.acl = opt == "acl";
    } else if (key == "acl") {
      if (val != "on" && val != "off") Die("mount: acl is on or off", 2);
      o.acl = val == "on";
    } else if (key == "readahead") {
      if (val != "on" && val != "off") Die("mount: readahead is on or off", 2);
      o.readahead = val == "on";
    } else if (key == "open") {
      if (val != "kernel" && val != "daemon") Die("mount: open is kernel or daemon", 2);
      o.kernel_open_free = val == "kernel";
    } else if (key == "complete") {
      if (val != "on" && val != "off") Die("mount: complete is on or off", 2);
      complete = val == "on";
    } else if (key == "spin") {
      char* end = nullptr;
      long us = std::strtol(val.c_str(), &end, 10);
      if (val.empty() || !std::isdigit(static_cast<unsigned char>(val[0])) || *end || us > 10000)
        Die("mount: spin is a number of microseconds, 0 to 10000", 2);
      o.spin_us = static_cast<int>(us);
    } else if (key == "name_timeout") {
      o.name_timeout = std::atof(val.c_str());
    } else if (a.Has("--sloppy")) {
      std::fprintf(stderr, "imgfs: mount: ignoring unknown option \"%s\" (sloppy)\n", opt.c_str());
    } else {
      Die("mount: unknown option \"" + opt + "\" (see imgfs mount --help)", 2);
    }
  }
  if (!IsDirectory(o.mountpoint) && !IsDeadFuseMount(o.mountpoint))  // RunMount clears it
    Die("mount: " + o.mountpoint + ": not a directory");
  // Registry options made here: the daemon must not exit later on a bad setting.
  if (complete) o.background = LazyCompletionTask(root, RegistryOptionsFor(root, Args()));
  return RunMount(o);
}

int CmdUmount(const std::string&, const Args& a) {
  if (a.pos.size() != 1) Die("umount: want MOUNTPOINT or STORE", 2);
  return RunUnmount(a.pos[0], a.Has("--lazy"));
}

}  // namespace

std::vector<Command> FileCommands() {
  return {
      {"ls",
       "imgfs ls [-l] [-R] [--format ls|tsv] [--sha256] IMAGE [PATH]",
       "List a directory of an image's merged tree without mounting it.\n"
       "  -l, --long         long format (mode, links, uid, gid, size, mtime UTC)\n"
       "  -R, --recursive    list subdirectories recursively\n"
       "  --format tsv       one line per entry: type mode uid gid size mtime nlink inode dev link "
       "sha256 xattrs path\n"
       "  --sha256           with tsv: the SHA-256 of each regular file's content (reads "
       "every file)\n"
       "Names: on a terminal, names that need it are quoted for the shell as GNU ls does\n"
       "('a b', 'a'$'\\n''b'); otherwise (and in tsv) bytes below 0x20, DEL and backslash are\n"
       "C-escaped (\\\\ \\t \\n \\r \\a \\b \\f \\v, else \\NNN octal): a tab or newline in the\n"
       "output is always a separator.",
       {"--format"},
       {{"-l", "--long"}, {"-R", "--recursive"}},
       CmdLs},
      {"cat",
       "imgfs cat IMAGE PATH...",
       "Print files of an image (compressed layers are read span by span through their seek "
       "index).",
       {},
       {},
       CmdCat},
      {"mount",
       "imgfs mount [-f] [-o OPTIONS] MOUNTPOINT",
       "Show every image of the store as a read-only directory tree (FUSE).\n"
       "  -f, --foreground   stay in the foreground and log to stderr (default: daemon, log in "
       "ROOT/mount.log)\n"
       "  -o OPTIONS         comma-separated: allow_other, allow_root, suid, dev, noexec, debug,\n"
       "                     cache_size=SIZE (decoded-span cache, default 64M; also the limit of\n"
       "                     whole-layer unpacks, e.g. 2G), name_timeout=SECONDS,\n"
       "                     tree_cache=SIZE (built image trees kept in memory, default 64M),\n"
       "                     open=kernel|daemon (kernel: no open round trips, the default),\n"
       "                     whole_layers (unpack compressed layers whole, ignoring seek "
       "indexes),\n"
       "                     acl=on|off (on: the kernel enforces POSIX ACLs in images, as\n"
       "                     overlayfs does; off, also noacl: ACLs are only read back as\n"
       "                     xattrs, an absent one is \"not supported\", and ls -l asks for\n"
       "                     them once per mount, not per file, so it shows no + for an ACL;\n"
       "                     much faster on large directories),\n"
       "                     readahead=on|off (decode a listed directory's files ahead, open an\n"
       "                     image's layers while its tree is built; on),\n"
       "                     complete=on|off (fetch the rest of lazily pulled layers in the\n"
       "                     background at low priority, pausing for reads, then verify and\n"
       "                     store them as a plain pull does; on),\n"
       "                     spin=MICROSECONDS (1 to 10000: one loop thread answers names,\n"
       "                     attributes, listings and decoded reads, a pool what would wait,\n"
       "                     and it polls for the next request this long before it sleeps;\n"
       "                     50; 0: libfuse's multithreaded loop),\n"
       "                     auto_unmount (unmount when the daemon dies); fstab's generic options\n"
       "                     (defaults, noatime, nofail, _netdev, noauto, user, x-systemd.*, …)\n"
       "                     are accepted and ignored\n"
       "  -s, --sloppy       warn about unknown options instead of refusing them (mount -s)\n"
       "A directory that already has an imgfs mount is refused. The mount's source is the store.\n"
       "Defaults: ro,nosuid,nodev,default_permissions. Layout: REPO/TAG/, REPO/sha256:DIGEST/,\n"
       ".id/IMAGE_ID/ (12+ hex digit prefixes resolve), .repositories.json.",
       {"--options"},
       {{"-f", "--foreground"}, {"-o", "--options"}, {"-s", "--sloppy"}},
       CmdMount},
      {"umount",
       "imgfs umount [-z] MOUNTPOINT|STORE",
       "Unmount an imgfs mount (never another file system, also as root). STORE: the store\n"
       "directory, when it is mounted at one place.\n"
       "  -z, --lazy         detach now, clean up when no longer busy",
       {},
       {{"-z", "--lazy"}},
       CmdUmount},
  };
}

}  // namespace imgfs
