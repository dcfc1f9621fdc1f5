// `imgfs commit`: a directory becomes a new image. With a base image the directory is
// an overlayfs upper directory over that image (index/layer_writer.h gives the
// conversion rules) and the new image is the base plus one layer; without one it is a
// plain root filesystem and the image has that one layer.
//
// The layer is written once: the tar is produced and gzipped on a thread of its own
// and read by the same verified load path as `load`/`import` (registry/stage.h), which
// copies it into ingest/ while hashing it, inflates it again, checks and indexes it,
// and commits blob, config and names together (nothing is visible on error).
//
// The new config is the base's config with `created` set to now, the new diff_id
// appended to rootfs.diff_ids, one history entry appended (created_by "imgfs commit",
// comment = the message), `container`/`container_config` dropped (there is no
// container), and docker's `--change` instructions applied to its `config` object.
//
// Thread-safety: call from one thread. Holds the store's GC lock shared while it runs.
#ifndef IMGFS_REGISTRY_COMMITTER_H_
#define IMGFS_REGISTRY_COMMITTER_H_

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "index/store.h"
#include "registry/stage.h"

namespace imgfs {

struct CommitRequest {
  std::string dir;                   // the upper directory (or a plain rootfs directory)
  std::optional<Digest> base;        // the image it lies on
  std::string name;                  // canonical reference for the new image
  std::string message;               // history comment
  std::vector<std::string> changes;  // docker --change instructions
  std::function<void(const std::string&)> progress;
};

Result<LoadedImage> CommitDirectory(Store& store, const CommitRequest& request);

// Applies docker `--change` instructions (CMD, ENTRYPOINT, ENV, EXPOSE, LABEL, USER,
// WORKDIR, VOLUME) to a config's `config` object (JSON; "" or "null" for none).
// Returns the new object, keys in their old order, new keys appended. Any other
// instruction is InvalidArgument naming it.
Result<std::string> ApplyChanges(std::string_view config_object,
                                 const std::vector<std::string>& changes);

// The new image's config: `parent` (a config document, or "" for none: then os and
// architecture are the host's) with the changes above, `diff_id` appended, and a
// history entry created at `now`.
Result<std::string> ChildConfig(std::string_view parent, const Digest& diff_id,
                                const std::vector<std::string>& changes, const std::string& message,
                                int64_t now);

}  // namespace imgfs

#endif  // IMGFS_REGISTRY_COMMITTER_H_
