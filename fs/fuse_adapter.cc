// The FUSE low-level adapter (with fs/fuse_loop.cc, the only files that include
// fuse_lowlevel.h). Each callback decodes one request, calls one MountFs method
// (fs/mount_fs.h) and sends exactly one reply; nothing here holds a lock while
// replying, and nothing throws.
#include "fs/fuse_adapter.h"

#include <fcntl.h>
#include <fuse_lowlevel.h>
#include <poll.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <climits>
#include <condition_variable>
#include <csignal>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <system_error>
#include <thread>
#include <vector>

#include "fs/auto_unmount.h"
#include "fs/code_prefault.h"
#include "fs/fuse_loop.h"
#include "fs/mount_fs.h"
#include "fs/mountinfo.h"
#include "fs/stop_signal.h"

namespace imgfs {
namespace {

struct Context {
  std::unique_ptr<MountFs> fs;
  FILE* log = stderr;
  bool want_no_open = true;  // use the kernel's no-open/no-opendir modes when offered
  bool no_open = false;      // set in init: answer open/opendir with ENOSYS once
  bool no_opendir = false;
  bool acl = true;  // ask for FUSE_POSIX_ACL (-o acl=off: no)
  // Tests only (IMGFS_TEST_NAME_REPLY_DELAY_MS, tests/e2e/names_race.sh): the first
  // LOOKUP and the first READDIRPLUS that hand the kernel an image root under a name
  // wait this long between building that entry and counting it (MountFs::HandOut), so
  // that a store change lands in between.
  int name_reply_delay_ms = 0;
  std::atomic<bool> lookup_delayed{false};
  std::atomic<bool> readdir_delayed{false};
  // Where READ and OPEN go while the session loop runs (fs/fuse_loop.h); null: inline.
  RequestPool* pool = nullptr;
};

Context* Ctx(fuse_req_t req) {
  return static_cast<Context*>(fuse_req_userdata(req));
}
MountFs& Fs(fuse_req_t req) {
  return *Ctx(req)->fs;
}

void Log(Context* c, const char* fmt, ...) {
  char when[32];
  time_t now = ::time(nullptr);
  struct tm tm;
  localtime_r(&now, &tm);
  strftime(when, sizeof when, "%Y-%m-%d %H:%M:%S", &tm);
  va_list ap;
  va_start(ap, fmt);
  std::fprintf(c->log, "%s imgfs[%d]: ", when, ::getpid());
  std::vfprintf(c->log, fmt, ap);
  std::fprintf(c->log, "\n");
  std::fflush(c->log);
  va_end(ap);
}

fuse_entry_param ToEntry(const MountFs::Entry& e) {
  fuse_entry_param p;
  std::memset(&p, 0, sizeof p);
  p.ino = e.ino;
  p.attr = e.attr;
  p.attr_timeout = e.attr_timeout;
  p.entry_timeout = e.entry_timeout;
  return p;
}

// Errors that mean "the data is bad" are logged: a reader only sees EIO.
void ReplyError(fuse_req_t req, const Status& st, const char* op, fuse_ino_t ino) {
  int err = st.ToErrno();
  if (err == EIO || st.code() == Status::Code::kCorruption) {
    Log(Ctx(req), "%s inode %llu: %s", op, static_cast<unsigned long long>(ino),
        st.message().c_str());
    err = EIO;
  }
  fuse_reply_err(req, err);
}

void OpInit(void* userdata, fuse_conn_info* conn) {
  auto* c = static_cast<Context*>(userdata);
  // Image content never changes. The kernel caches entries, attributes, symlinks,
  // listings and pages; AUTO_INVAL_DATA makes it re-check a directory's mtime before
  // using a cached listing (only name directories' mtimes ever move) and costs no
  // request while attributes are fresh, which for image content is always.
  if (conn->capable & FUSE_CAP_AUTO_INVAL_DATA) conn->want |= FUSE_CAP_AUTO_INVAL_DATA;
  if (conn->capable & FUSE_CAP_CACHE_SYMLINKS) conn->want |= FUSE_CAP_CACHE_SYMLINKS;
  if (conn->capable & FUSE_CAP_PARALLEL_DIROPS) conn->want |= FUSE_CAP_PARALLEL_DIROPS;
  if (conn->capable & FUSE_CAP_SPLICE_WRITE)
    conn->want |= FUSE_CAP_SPLICE_WRITE | FUSE_CAP_SPLICE_MOVE;
  if (conn->capable & FUSE_CAP_READDIRPLUS)
    conn->want |= FUSE_CAP_READDIRPLUS | FUSE_CAP_READDIRPLUS_AUTO;
  conn->want &= ~FUSE_CAP_WRITEBACK_CACHE;
  // ACLs in image files (system.posix_acl_* xattrs) are enforced by the kernel, as on
  // the overlayfs a runtime would unpack to, and cached per inode with their absence:
  // a cold `ls -l` then asks once per file, a repeated one once (an absent
  // security.selinux is ENOTSUP, which ls remembers: MountFs::GetXattr).
  // -o acl=off: not enforced; an absent ACL is then ENOTSUP, which ls also remembers.
  if (c->acl && (conn->capable & FUSE_CAP_POSIX_ACL)) conn->want |= FUSE_CAP_POSIX_ACL;
  // No open/opendir round trips: the kernel then opens every file with keep_cache
  // and every directory with cache_readdir by itself, which is what imgfs wants.
  if (c->want_no_open && (conn->capable & FUSE_CAP_NO_OPEN_SUPPORT)) {
    conn->want |= FUSE_CAP_NO_OPEN_SUPPORT;
    c->no_open = true;
  }
  if (c->want_no_open && (conn->capable & FUSE_CAP_NO_OPENDIR_SUPPORT)) {
    conn->want |= FUSE_CAP_NO_OPENDIR_SUPPORT;
    c->no_opendir = true;
  }
  // Without opens the daemon cannot know which files are open: a removed layer stays
  // pinned until the kernel has forgotten every inode of the instances that use it.
  c->fs->set_opens_tracked(!c->no_open);
  Log(c, "serving (kernel FUSE %u.%u%s%s%s)", conn->proto_major, conn->proto_minor,
      c->no_open ? ", no-open" : "", c->no_opendir ? ", no-opendir" : "",
      (conn->want & FUSE_CAP_POSIX_ACL) ? ", POSIX ACLs enforced" : ", POSIX ACLs not enforced");
}

// Runs `task` on the pool. Post runs it in place when no thread can be had: on the loop
// thread then, where it may wait all the same.
void OnPool(fuse_req_t req, std::function<void()> task) {
  Ctx(req)->pool->Post([task = std::move(task)] {
    MountFs::NoWait off(false);
    task();
  });
}

// On the session loop's thread (MountFs::NoWait) an operation that would wait says so
// before it has had any effect: the request is then run again, whole, on a pool thread,
// where it may wait. Arguments the kernel lent the callback must be copied into `again`.
bool Deferred(fuse_req_t req, const Status& st, std::function<void()> again) {
  if (!MountFs::IsWouldBlock(st)) return false;
  OnPool(req, std::move(again));
  return true;
}

// The test hook of Context::name_reply_delay_ms.
void TestNameDelay(Context* c, const MountFs::Entry& e, std::atomic<bool>* done) {
  if (e.name_root && c->name_reply_delay_ms > 0 && !done->exchange(true))
    std::this_thread::sleep_for(std::chrono::milliseconds(c->name_reply_delay_ms));
}

void OpLookup(fuse_req_t req, fuse_ino_t parent, const char* name) {
  auto r = Fs(req).Lookup(parent, name);
  if (!r.ok() && Deferred(req, r.status(), [req, parent, n = std::string(name)] {
        OpLookup(req, parent, n.c_str());
      }))
    return;
  if (!r.ok()) return ReplyError(req, r.status(), "lookup", parent);
  // Counted before the reply (a FORGET may follow it at once), taken back when the
  // kernel did not get it. HandOut may still shorten a name's timeout: it is encoded after.
  MountFs& fs = Fs(req);
  if (r->ino) {
    TestNameDelay(Ctx(req), *r, &Ctx(req)->lookup_delayed);
    fs.HandOut(&*r);
  }
  fuse_entry_param e = ToEntry(*r);
  if (fuse_reply_entry(req, &e) != 0 && e.ino) fs.KernelForget(e.ino, 1);
}

// Inode numbers are computed, not allocated; the counts tell the mount when the
// kernel holds nothing of a removed image any more (MountFs::KernelForget).
void OpForget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup) {
  Fs(req).KernelForget(ino, nlookup);
  fuse_reply_none(req);
}

void OpForgetMulti(fuse_req_t req, size_t count, fuse_forget_data* forgets) {
  for (size_t i = 0; i < count; i++) Fs(req).KernelForget(forgets[i].ino, forgets[i].nlookup);
  fuse_reply_none(req);
}

void OpGetattr(fuse_req_t req, fuse_ino_t ino, fuse_file_info*) {
  auto r = Fs(req).GetAttr(ino);
  if (!r.ok() && Deferred(req, r.status(), [req, ino] { OpGetattr(req, ino, nullptr); })) return;
  if (!r.ok()) return ReplyError(req, r.status(), "getattr", ino);
  fuse_reply_attr(req, &r->attr, r->timeout);
}

void OpSetattr(fuse_req_t req, fuse_ino_t, struct stat*, int, fuse_file_info*) {
  fuse_reply_err(req, EROFS);
}

void OpReadlink(fuse_req_t req, fuse_ino_t ino) {
  auto r = Fs(req).ReadLink(ino);
  if (!r.ok() && Deferred(req, r.status(), [req, ino] { OpReadlink(req, ino); })) return;
  if (!r.ok()) return ReplyError(req, r.status(), "readlink", ino);
  fuse_reply_readlink(req, r->c_str());
}

void OpOpendir(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
  // ENOSYS once tells the kernel to stop sending opendir (no-opendir mode).
  if (Ctx(req)->no_opendir) return (void)fuse_reply_err(req, ENOSYS);
  auto r = Fs(req).OpenDir(ino);
  if (!r.ok() &&
      Deferred(req, r.status(), [req, ino, info = *fi]() mutable { OpOpendir(req, ino, &info); }))
    return;
  if (!r.ok()) return ReplyError(req, r.status(), "opendir", ino);
  fi->fh = r->fh;
  fi->cache_readdir = r->cache_readdir;
  fi->keep_cache = r->keep_cache;
  if (fuse_reply_open(req, fi) != 0) Fs(req).ReleaseDir(r->fh);
}

void ReadDir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, fuse_file_info* fi,
             bool plus) {
  std::vector<char> buf(size);
  size_t used = 0;
  std::vector<uint64_t> counted;  // readdirplus entries the kernel takes a lookup on
  Status st = Fs(req).ReadDir(
      ino, fi->fh, static_cast<uint64_t>(off), plus,
      [&](const MountFs::DirEntry& d, uint64_t next) {
        size_t n;
        if (plus) {
          bool dot = d.name == "." || d.name == "..";  // no lookup taken
          // Measured first (a null buffer): only an entry that fits is
          // counted, and counted before it is encoded (MountFs::HandOut).
          if (fuse_add_direntry_plus(req, nullptr, 0, d.name.c_str(), nullptr, 0) > size - used)
            return false;
          MountFs::Entry entry = d.entry;
          if (!dot && entry.ino) {
            TestNameDelay(Ctx(req), entry, &Ctx(req)->readdir_delayed);
            Fs(req).HandOut(&entry);
            counted.push_back(entry.ino);
          }
          fuse_entry_param e = ToEntry(entry);
          if (dot) e.ino = 0;
          n = fuse_add_direntry_plus(req, buf.data() + used, size - used, d.name.c_str(), &e,
                                     static_cast<off_t>(next));
        } else {
          n = fuse_add_direntry(req, buf.data() + used, size - used, d.name.c_str(), &d.entry.attr,
                                static_cast<off_t>(next));
        }
        if (n > size - used) return false;
        used += n;
        return true;
      });
  if (MountFs::IsWouldBlock(st)) {  // run again whole: the entries counted are taken back
    for (uint64_t i : counted) Fs(req).KernelForget(i, 1);
    return OnPool(req, [req, ino, size, off, info = *fi, plus]() mutable {
      ReadDir(req, ino, size, off, &info, plus);
    });
  }
  // Once an entry is in the buffer an error can no longer be reported: send what we have.
  if (!st.ok() && used == 0) return ReplyError(req, st, "readdir", ino);
  if (fuse_reply_buf(req, buf.data(), used) != 0) {
    for (uint64_t i : counted) Fs(req).KernelForget(i, 1);
  }
}

void OpReaddir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, fuse_file_info* fi) {
  ReadDir(req, ino, size, off, fi, false);
}

void OpReaddirplus(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, fuse_file_info* fi) {
  ReadDir(req, ino, size, off, fi, true);
}

void OpReleasedir(fuse_req_t req, fuse_ino_t, fuse_file_info* fi) {
  Fs(req).ReleaseDir(fi->fh);
  fuse_reply_err(req, 0);
}

void DoOpen(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
  auto r = Fs(req).Open(ino, fi->flags);
  if (!r.ok()) return ReplyError(req, r.status(), "open", ino);
  fi->fh = r->fh;
  fi->keep_cache = r->keep_cache;
  fi->direct_io = r->direct_io;
  if (fuse_reply_open(req, fi) != 0) Fs(req).Release(r->fh);
}

void OpOpen(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
  if ((fi->flags & O_ACCMODE) != O_RDONLY) return (void)fuse_reply_err(req, EROFS);
  // ENOSYS once tells the kernel to stop sending open (no-open mode).
  if (Ctx(req)->no_open) return (void)fuse_reply_err(req, ENOSYS);
  // An open may wait (a lazy layer's first bytes): on the pool. `fi` lives only
  // until this returns.
  if (Ctx(req)->pool)
    return OnPool(req, [req, ino, info = *fi]() mutable { DoOpen(req, ino, &info); });
  DoOpen(req, ino, fi);
}

void ReplyRead(fuse_req_t req, fuse_ino_t ino, const Result<MountFs::ReadData>& r) {
  if (!r.ok()) {
    // read(2) of an open file has no "not found": whatever failed underneath (a layer
    // file gone, a short unpack, a store error) is EIO to the reader and a log line —
    // one line for the same failure repeated within 10 s (the kernel's readahead of a
    // file whose lazy layer is offline fails several reads at once).
    static std::mutex last_mu;
    static std::string last_msg;
    static time_t last_when = 0;
    bool repeat;
    {
      std::lock_guard<std::mutex> l(last_mu);
      time_t now = ::time(nullptr);
      repeat = r.status().message() == last_msg && now - last_when < 10;
      last_msg = r.status().message();
      last_when = now;
    }
    if (!repeat) {
      Log(Ctx(req), "read inode %llu: %s", static_cast<unsigned long long>(ino),
          r.status().message().c_str());
    }
    fuse_reply_err(req, EIO);
    return;
  }
  if (!r->fd) {
    fuse_reply_buf(req, r->bytes.data(), r->bytes.size());
    return;
  }
  // Splice straight from the layer's uncompressed stream (r->fd stays open meanwhile).
  fuse_bufvec bv = FUSE_BUFVEC_INIT(r->size);
  bv.buf[0].flags = static_cast<fuse_buf_flags>(FUSE_BUF_IS_FD | FUSE_BUF_FD_SEEK);
  bv.buf[0].fd = r->fd->get();
  bv.buf[0].pos = r->pos;
  fuse_reply_data(req, &bv, FUSE_BUF_SPLICE_MOVE);
}

void DoRead(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, uint64_t fh) {
  ReplyRead(req, ino, Fs(req).Read(ino, fh, size, static_cast<uint64_t>(off)));
}

// A read whose bytes are decoded already (the read-ahead's spans) is answered on the
// loop thread; one that would decode a span, fetch from a registry or open a layer goes
// to the pool, so the loop thread goes on answering names and attributes meanwhile.
void OpRead(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, fuse_file_info* fi) {
  if (Ctx(req)->pool) {
    if (auto now = Fs(req).ReadIfReady(ino, fi->fh, size, static_cast<uint64_t>(off)))
      return ReplyRead(req, ino, *now);
    return OnPool(req, [req, ino, size, off, fh = fi->fh] { DoRead(req, ino, size, off, fh); });
  }
  DoRead(req, ino, size, off, fi->fh);
}

void OpRelease(fuse_req_t req, fuse_ino_t, fuse_file_info* fi) {
  Fs(req).Release(fi->fh);
  fuse_reply_err(req, 0);
}

void OpStatfs(fuse_req_t req, fuse_ino_t ino) {
  auto r = Fs(req).StatFs();
  if (!r.ok()) return ReplyError(req, r.status(), "statfs", ino);
  fuse_reply_statfs(req, &*r);
}

void ReplyXattr(fuse_req_t req, const std::string& value, size_t size) {
  if (size == 0) {
    fuse_reply_xattr(req, value.size());
  } else if (size < value.size()) {
    fuse_reply_err(req, ERANGE);
  } else {
    fuse_reply_buf(req, value.data(), value.size());
  }
}

void OpGetxattr(fuse_req_t req, fuse_ino_t ino, const char* name, size_t size) {
  auto r = Fs(req).GetXattr(ino, name);
  if (!r.ok() && Deferred(req, r.status(), [req, ino, n = std::string(name), size] {
        OpGetxattr(req, ino, n.c_str(), size);
      }))
    return;
  if (!r.ok()) {
    if (r.status().IsNotFound()) return (void)fuse_reply_err(req, ENODATA);
    return ReplyError(req, r.status(), "getxattr", ino);
  }
  ReplyXattr(req, *r, size);
}

void OpListxattr(fuse_req_t req, fuse_ino_t ino, size_t size) {
  auto r = Fs(req).ListXattr(ino);
  if (!r.ok() && Deferred(req, r.status(), [req, ino, size] { OpListxattr(req, ino, size); }))
    return;
  if (!r.ok()) return ReplyError(req, r.status(), "listxattr", ino);
  ReplyXattr(req, *r, size);
}

std::string Absolute(const std::string& p) {
  char buf[PATH_MAX];
  if (::realpath(p.c_str(), buf)) return buf;
  return p;
}

// Detaches a mount: umount2 as root, fusermount3 -u [-z] otherwise. Returns the exit
// code (0 on success); errors are printed as "imgfs: WHAT: …".
int Detach(const std::string& mp, bool lazy, const char* what) {
  if (::geteuid() == 0) {
    if (::umount2(mp.c_str(), lazy ? MNT_DETACH : 0) != 0) {
      std::fprintf(stderr, "imgfs: %s: %s: %s\n", what, mp.c_str(), std::strerror(errno));
      return 1;
    }
    return 0;
  }
  pid_t pid = ::fork();
  if (pid == 0) {
    if (lazy) {
      ::execlp("fusermount3", "fusermount3", "-u", "-z", mp.c_str(), static_cast<char*>(nullptr));
    } else {
      ::execlp("fusermount3", "fusermount3", "-u", mp.c_str(), static_cast<char*>(nullptr));
    }
    std::fprintf(stderr, "imgfs: %s: cannot run fusermount3: %s\n", what, std::strerror(errno));
    _exit(127);
  }
  if (pid < 0) {
    std::fprintf(stderr, "imgfs: %s: fork: %s\n", what, std::strerror(errno));
    return 1;
  }
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  return WIFEXITED(status) ? WEXITSTATUS(status) : 1;
}

}  // namespace

bool IsDeadFuseMount(const std::string& path) {
  // stat alone is not enough: the kernel answers it from cached attributes for a
  // while after the daemon died. statfs is never cached: it asks the daemon, and an
  // aborted connection answers ENOTCONN at once.
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) return errno == ENOTCONN;
  struct statfs sf;
  return ::statfs(path.c_str(), &sf) != 0 && errno == ENOTCONN;
}

namespace {

// Answers at most one request, waiting up to 100 ms for it: on the main thread once
// the session loop has returned (EntryInvalidator::Stop).
void ServeOnce(fuse_session* se) {
  struct pollfd p = {fuse_session_fd(se), POLLIN, 0};
  int n = ::poll(&p, 1, 100);
  if (n > 0 && (p.revents & POLLIN)) {
    fuse_buf buf;
    std::memset(&buf, 0, sizeof buf);
    if (fuse_session_receive_buf(se, &buf) > 0) fuse_session_process_buf(se, &buf);
    std::free(buf.mem);
  } else if (n != 0) {
    // The connection is gone (POLLERR) or poll failed: nothing to answer; the
    // notification in flight fails at once.
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
}

}  // namespace

int RunMount(const MountOptions& in) {
  MountOptions o = in;
  // A mount whose daemon died (kill -9, OOM) leaves its endpoint behind: every access
  // to the directory gives ENOTCONN until it is detached. Clear it, and say so.
  if (IsDeadFuseMount(o.mountpoint)) {
    std::fprintf(stderr,
                 "imgfs: mount: %s: clearing a dead FUSE mount left by a daemon that is gone\n",
                 o.mountpoint.c_str());
    if (Detach(o.mountpoint, /*lazy=*/true, "mount") != 0) return 1;
  }
  o.root = Absolute(o.root);
  o.mountpoint = Absolute(o.mountpoint);
  // No stacking: a second imgfs mount on the same directory would hide the first
  // (which keeps running, unreachable) and make umount ambiguous.
  if (auto table = ReadMountInfo(); table.ok()) {
    auto top = MountAt(*table, o.mountpoint);
    if (top && top->fstype == kImgfsFsType) {
      std::fprintf(stderr,
                   "imgfs: mount: %s: already an imgfs mount (of %s); unmount it first (imgfs "
                   "umount %s)\n",
                   o.mountpoint.c_str(), top->source.c_str(), o.mountpoint.c_str());
      return 1;
    }
  }
  MountFs::Options fo;
  fo.root = o.root;
  fo.cache_size = o.cache_size;
  fo.tree_cache = o.tree_cache;
  fo.whole_layers = o.whole_layers;
  fo.readahead = o.readahead;
  fo.acl = o.acl;
  fo.name_timeout = o.name_timeout;
  {
    // Check the store now, in the caller's process, so errors reach the terminal.
    // (It is closed again: an LMDB environment must not cross the fork below.)
    auto probe = MountFs::Create(fo);
    if (!probe.ok()) {
      std::fprintf(stderr, "imgfs: mount: %s\n", probe.status().message().c_str());
      return 1;
    }
  }
  // fsname: the store, so /proc/mounts, findmnt and `umount STORE` tell stores apart.
  std::string opts = "ro,default_permissions,fsname=" + EscapeFuseOption(o.root) + ",subtype=imgfs";
  if (o.auto_unmount) opts += ",auto_unmount";
  opts += o.suid ? ",suid" : ",nosuid";
  opts += o.dev ? ",dev" : ",nodev";
  if (o.noexec) opts += ",noexec";
  if (o.allow_other) opts += ",allow_other";
  if (o.allow_root) opts += ",allow_root";
  std::vector<std::string> argv_s = {"imgfs", "-o", opts};
  if (o.debug) argv_s.push_back("-d");
  std::vector<char*> argv;
  for (auto& s : argv_s) argv.push_back(s.data());
  fuse_args args = FUSE_ARGS_INIT(static_cast<int>(argv.size()), argv.data());

  fuse_lowlevel_ops ops;
  std::memset(&ops, 0, sizeof ops);
  ops.init = OpInit;
  ops.lookup = OpLookup;
  ops.forget = OpForget;
  ops.forget_multi = OpForgetMulti;
  ops.getattr = OpGetattr;
  ops.setattr = OpSetattr;
  ops.readlink = OpReadlink;
  ops.opendir = OpOpendir;
  ops.readdir = OpReaddir;
  ops.readdirplus = OpReaddirplus;
  ops.releasedir = OpReleasedir;
  ops.open = OpOpen;
  ops.read = OpRead;
  ops.release = OpRelease;
  ops.statfs = OpStatfs;
  ops.getxattr = OpGetxattr;
  ops.listxattr = OpListxattr;

  Context ctx;
  ctx.want_no_open = o.kernel_open_free;
  ctx.acl = o.acl;
  if (const char* e = std::getenv("IMGFS_TEST_NAME_REPLY_DELAY_MS"))
    ctx.name_reply_delay_ms = std::atoi(e);
  fuse_session* se = fuse_session_new(&args, &ops, sizeof ops, &ctx);
  fuse_opt_free_args(&args);
  if (!se) {
    std::fprintf(stderr, "imgfs: mount: cannot create a FUSE session\n");
    return 1;
  }
  if (fuse_set_signal_handlers(se) != 0) {
    fuse_session_destroy(se);
    std::fprintf(stderr, "imgfs: mount: cannot install signal handlers\n");
    return 1;
  }
  // auto_unmount: the daemon's end of fusermount3's socket is the one socket the mount
  // opens; the guard (fs/auto_unmount.h) gets a copy once the daemon exists.
  std::set<int> sockets_before;
  if (o.auto_unmount) sockets_before = OpenSockets();
  int mounted = fuse_session_mount(se, o.mountpoint.c_str());
  if (mounted != 0 && IsDeadFuseMount(o.mountpoint)) {
    // The old daemon was still exiting when we looked above: a killed multithreaded
    // process releases /dev/fuse (and the kernel aborts the connection) only when its
    // last thread is gone. Now the endpoint is dead: clear it and mount once more.
    std::fprintf(stderr,
                 "imgfs: mount: %s: clearing a dead FUSE mount left by a daemon that is gone\n",
                 o.mountpoint.c_str());
    if (Detach(o.mountpoint, /*lazy=*/true, "mount") == 0) {
      if (o.auto_unmount) sockets_before = OpenSockets();
      mounted = fuse_session_mount(se, o.mountpoint.c_str());
    }
  }
  if (mounted != 0) {
    fuse_remove_signal_handlers(se);
    fuse_session_destroy(se);
    std::fprintf(stderr, "imgfs: mount: cannot mount on %s (see the message above)\n",
                 o.mountpoint.c_str());
    return 1;
  }
  if (!o.foreground) {
    std::string log_path = o.root + "/mount.log";
    // 0600: the log names paths inside images (like the store, private to its owner).
    int log_fd = ::open(log_path.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
    FILE* log = log_fd >= 0 ? ::fdopen(log_fd, "a") : nullptr;
    if (!log && log_fd >= 0) ::close(log_fd);
    // The mount exists now; the caller's process exits 0 inside fuse_daemonize.
    fuse_daemonize(0);
    ctx.log = log ? log : stderr;
  }
  if (o.auto_unmount) {
    std::vector<int> fresh;
    for (int fd : OpenSockets())
      if (!sockets_before.count(fd)) fresh.push_back(fd);
    std::string why = std::to_string(fresh.size()) + " new sockets";
    if (fresh.size() != 1 || !StartAutoUnmountGuard(fresh[0], &why)) {
      Log(&ctx,
          "auto_unmount: no guard process (%s): a kill -9 of this daemon may leave a dead "
          "mount (clear it with imgfs umount)",
          why.c_str());
    }
  }
  fo.names_watched = true;  // GenerationWatcher and EntryInvalidator below
  auto fs = MountFs::Create(fo);
  int rc = 1;
  if (!fs.ok()) {
    Log(&ctx, "cannot open the store: %s", fs.status().message().c_str());
  } else {
    ctx.fs = std::move(*fs);
    std::string loop_kind = o.spin_us > 0 ? "one thread polling " + std::to_string(o.spin_us) +
                                                " us, a pool for reads (spin)"
                                          : "libfuse's multithreaded";
    Log(&ctx, "mounted %s on %s (session loop: %s)", o.root.c_str(), o.mountpoint.c_str(),
        loop_kind.c_str());
    auto invalidator = std::make_unique<EntryInvalidator>(se, o.debug ? ctx.log : nullptr);
    ctx.fs->set_invalidator(
        [inv = invalidator.get()](const MountFs::StaleName& n) { inv->Push(n); });
    auto watcher = std::make_unique<GenerationWatcher>(ctx.fs.get());
    // The code of the read path, in before the first request comes (a first read after
    // dropped caches waited on the disk for the decoders' pages: 11 major faults, now 2).
    // Only a speed-up: no thread (a process limit), no mapping in.
    std::thread code_in;
    try {
      code_in = std::thread([] { MapCodeIn(); });
    } catch (const std::system_error&) {
    }
    StopSignal bg_stop;
    std::thread bg;
    if (o.background) {
      bg = std::thread([&] {
        o.background(*ctx.fs, bg_stop,
                     [&](const std::string& line) { Log(&ctx, "%s", line.c_str()); });
      });
    }
    fuse_loop_config* cfg = fuse_loop_cfg_create();
    fuse_loop_cfg_set_clone_fd(cfg, 0);
    fuse_loop_cfg_set_idle_threads(cfg, 8);
    fuse_loop_cfg_set_max_threads(cfg, 32);
    // libfuse ends the loop with the signal's number after SIGTERM, SIGINT or SIGHUP:
    // a stop asked for, and the mount is cleanly undone below (exit 0, as systemd and
    // a shell expect of a stopped service).
    int loop;
    if (o.spin_us > 0) {
      RequestPool pool(32);
      ctx.pool = &pool;
      ctx.fs->set_background([&pool](std::function<void()> work) { pool.Post(std::move(work)); });
      {
        MountFs::NoWait nowait;  // this thread reads the device: it never waits
        loop = ServeSession(se, o.spin_us);
      }
      // What the pool runs may still answer, and it runs no NoWait work: it ends first.
      ctx.pool = nullptr;
    } else {
      // -o spin=0: libfuse's multithreaded loop (every request on a worker thread), as
      // before fs/fuse_loop.h.
      loop = fuse_session_loop_mt(se, cfg);
    }
    ctx.fs->set_background(nullptr);  // the pool is gone
    rc = loop == 0 || loop == SIGTERM || loop == SIGINT || loop == SIGHUP ? 0 : 1;
    fuse_loop_cfg_destroy(cfg);
    bg_stop.Stop();  // it stops within a transfer's next bytes (fs/stop_signal.h)
    if (bg.joinable()) bg.join();
    if (code_in.joinable()) code_in.join();
    watcher.reset();  // before the invalidator goes: it may still report names
    ctx.fs->set_invalidator(nullptr);
    invalidator->Stop([se] { ServeOnce(se); });
    Log(&ctx, "names: %llu entry invalidations sent, %llu dropped a dentry",
        static_cast<unsigned long long>(invalidator->sent()),
        static_cast<unsigned long long>(invalidator->dropped()));
    invalidator.reset();
    Log(&ctx, "unmounting %s", o.mountpoint.c_str());
    if (ctx.fs) {
      LayerReader& r = ctx.fs->layer_reader();
      Log(&ctx,
          "spans: %llu decoded (%llu by read-ahead), %llu waited for a decode, %llu cache hits, "
          "%llu evicted",
          static_cast<unsigned long long>(r.spans_decoded()),
          static_cast<unsigned long long>(r.spans_prefetched()),
          static_cast<unsigned long long>(r.decode_waits()),
          static_cast<unsigned long long>(r.span_cache().hits()),
          static_cast<unsigned long long>(r.span_cache().evictions()));
    }
  }
  fuse_session_unmount(se);
  fuse_remove_signal_handlers(se);
  fuse_session_destroy(se);
  ctx.fs.reset();
  if (ctx.log != stderr) std::fclose(ctx.log);
  return rc;
}

int RunUnmount(const std::string& mountpoint, bool lazy) {
  std::string mp = Absolute(mountpoint);
  if (!mp.empty() && mp[0] != '/') {  // realpath fails on a dead mount: resolve its parent
    std::string base = BaseName(mp),
                parent = mp.size() > base.size() ? mp.substr(0, mp.size() - base.size()) : ".";
    mp = Absolute(parent) + "/" + base;
  }
  // Only imgfs mounts: as root umount2 would detach anything (a tmpfs, /home).
  auto table = ReadMountInfo();
  if (!table.ok()) {
    std::fprintf(stderr, "imgfs: umount: %s\n", table.status().message().c_str());
    return 1;
  }
  auto top = MountAt(*table, mp);
  if (!top) {
    // Not a mount point: maybe a store, named by its source as `umount SOURCE` does.
    std::vector<std::string> at;
    for (const MountEntry& e : *table) {
      if (e.fstype == kImgfsFsType && e.source == mp) at.push_back(e.mount_point);
    }
    if (at.empty()) {
      std::fprintf(stderr, "imgfs: umount: %s: not mounted\n", mp.c_str());
      return 1;
    }
    if (at.size() > 1) {
      std::string list;
      for (const std::string& p : at) list += (list.empty() ? "" : ", ") + p;
      std::fprintf(stderr, "imgfs: umount: store %s is mounted at %s: name the mount point\n",
                   mp.c_str(), list.c_str());
      return 1;
    }
    mp = at[0];
  } else if (top->fstype != kImgfsFsType) {
    std::fprintf(stderr,
                 "imgfs: umount: %s: not an imgfs mount (it is %s); refusing to unmount it\n",
                 mp.c_str(), top->fstype.c_str());
    return 1;
  }
  if (IsDeadFuseMount(mp)) {
    // Nothing answers behind it: a plain unmount would fail with "not connected" or
    // "busy"; a lazy detach always clears it.
    std::fprintf(stderr, "imgfs: umount: %s: its daemon is gone; detaching the dead mount\n",
                 mp.c_str());
    return Detach(mp, /*lazy=*/true, "umount");
  }
  return Detach(mp, lazy, "umount");
}

}  // namespace imgfs
