// RUN of `imgfs build` (registry/builder.h): a command in a runc container whose root
// is a kernel overlayfs over an image directory of an imgfs mount.
//
//   STORE mount  ── lowerdir = MOUNT/.id/<image id hex>   (the intermediate image)
//   TMP/upper    ── upperdir: what the command changed, later one layer written by the
//                   same code as `imgfs commit` (index/layer_writer.h: 0/0 character
//                   devices → .wh. files, opaque directories → .wh..wh..opq)
//   TMP/work     ── workdir; TMP/merged the container's root; TMP/bundle/config.json
//
// The overlay is mounted with index=off,redirect_dir=off,metacopy=off so the upper
// directory alone holds every change (a renamed lower directory is copied, as
// without redirect_dir). The container gets new pid, ipc, uts and mount namespaces
// and, unless host_network, a network namespace with only loopback; /proc, /dev
// (tmpfs, devpts, shm, mqueue) and a read-only /sys; docker's default capability set.
// Mount points runc had to create (/proc, /dev, /sys missing in the image) are
// removed from the upper directory again, so they are not part of the layer.
//
// StoreMount finds a running imgfs mount of the store (mountinfo: fuse.imgfs, source =
// the store) or mounts one itself (`imgfs mount` in the background), unmounted when
// the StoreMount goes away.
//
// Thread-safety: plain values and blocking calls; use from one thread.
#ifndef IMGFS_REGISTRY_BUILD_RUN_H_
#define IMGFS_REGISTRY_BUILD_RUN_H_

#include <sys/types.h>

#include <memory>
#include <string>
#include <vector>

#include "index/status.h"
#include "registry/build_user.h"

namespace imgfs {

class StoreMount {
 public:
  // `store_root`: the store directory; `tmp`: where a mount point of its own goes.
  static Result<std::unique_ptr<StoreMount>> Ensure(const std::string& store_root,
                                                    const std::string& tmp);
  ~StoreMount();
  const std::string& path() const { return path_; }
  bool ours() const { return ours_; }

 private:
  std::string path_;
  bool ours_ = false;
};

struct RunSpec {
  std::string lower;              // the image's directory (in an imgfs mount)
  std::string dir;                // an empty work directory (upper, work, merged, bundle)
  std::vector<std::string> args;  // the process
  std::vector<std::string> env;   // KEY=VALUE
  std::string cwd = "/";
  std::string user;  // USER as the Dockerfile says it ("" = root), looked up in the image
  bool host_network = false;
  std::string id;  // runc container id
};

// Runs the command; returns its exit code (128+N when killed by signal N). The upper
// directory, SPEC.dir + "/upper", holds the changes afterwards. Every mount it made is
// gone when it returns.
Result<int> RunInContainer(const RunSpec& spec);

// HEALTHCHECK's config field as docker writes it: {"Test":["NONE"]}, ["CMD-SHELL", s]
// or ["CMD", args...], then Interval, Timeout, StartPeriod (nanoseconds) and Retries
// when their flag is given. `args`: what follows HEALTHCHECK and its flags.
Result<std::string> HealthcheckJson(const std::string& args, const std::vector<std::string>& flags);

// Runs argv (no shell), stdin from /dev/null; returns the exit status (128+N on a
// signal). `quiet`: stdout and stderr to /dev/null; `err_file`: stderr to that file.
Result<int> Spawn(const std::vector<std::string>& argv, bool quiet,
                  const std::string& err_file = "");
// This executable's path (for `imgfs mount`, `umount`, `pull` in a child).
std::string SelfExe();

}  // namespace imgfs

#endif  // IMGFS_REGISTRY_BUILD_RUN_H_
