// `imgfs pull`: what docker pull does, plus the index that makes the image browsable
// at once (DESIGN.md §4):
//   resolve the reference to a manifest (OCI or Docker schema 2; from an index or a
//   manifest list, the requested or host platform) → the config digest is the image
//   ID: if it is local, only names are recorded → fetch and verify the config (while
//   the first layers' requests go out: their bytes wait in memory, unread, until the
//   config is verified) → every
//   layer whose diff_id is not local is downloaded (several at once) and streamed
//   through the one-pass pipeline (blob digest, size, diff_id, tar index) → the merged
//   tree → one transaction naming the image by tag and by repo digest.
// Each verified layer blob is committed at once: after Ctrl-C, kill -9 or power loss
// the next pull re-indexes those blobs from disk and downloads only the rest; a layer
// cut halfway is resumed from its partial file (ingest/partial-<hex>, kept under the
// blob's lock) with a Range request. Bearer tokens are kept in <store>/tokens/.
//
// Thread-safety: Pull may run in several threads or processes at once; two pulls of
// one image both succeed and store one copy (blobs are renamed atomically, index
// writes are idempotent).
#ifndef IMGFS_REGISTRY_PULLER_H_
#define IMGFS_REGISTRY_PULLER_H_

#include <functional>
#include <optional>
#include <string>

#include "index/store.h"
#include "registry/json.h"
#include "registry/reference.h"
#include "registry/registries_conf.h"
#include "registry/registry_client.h"

namespace imgfs {

struct PullEvent {
  std::string id;  // short layer digest, "" for image-level messages
  std::string
      status;  // "Waiting", "Downloading", "Verifying Checksum", "Pull complete", "Already exists"
  uint64_t current = 0, total = 0;
};

struct PullOptions {
  std::optional<Platform> platform;  // default: the host's
  int max_concurrent_downloads = 3;
  RegistryOptions registry;
  std::function<void(const PullEvent&)> on_event;  // called from several threads, serialised
  // Where to fetch from, in order (registries.conf mirrors, then the origin): the first
  // that serves the manifest serves the image; one that fails (404, unreachable, a
  // wrong digest) passes to the next. Empty: the reference's own registry.
  std::vector<PullSource> sources;
  // --lazy (registry/lazy_pull.h): zstd:chunked layers are recorded from their table of
  // contents; other layers are pulled in full, with one on_warning call saying so.
  bool lazy = false;
  std::function<void(const std::string&)> on_warning;
  // Background completion by the mount daemon (-o complete=on): only an image already
  // in the store is pulled (else NotFound), for its lazy layers; no name is added or
  // moved.
  bool complete_only = false;
  // Asked as layer bytes flow; true stops the pull (Unavailable "stopped"): a blob cut
  // so keeps its partial file, and lazy/ is untouched.
  std::function<bool()> stopping;
};

struct PullResult {
  Reference ref;  // normalised
  Digest image_id;
  std::string repo_digest;  // what the tag resolved to (manifest or index digest)
  bool up_to_date = false;
};

Result<Platform> ParsePlatform(const std::string& s);
Result<PullResult> Pull(Store& store, const Reference& ref, const PullOptions& options);

}  // namespace imgfs

#endif  // IMGFS_REGISTRY_PULLER_H_
