// Background completion of lazily pulled layers by the mount daemon (issue 9;
// `imgfs mount -o complete=on`, the default). A plain `imgfs pull REF` completes them
// in the foreground; the daemon does the same for every image with lazy layers, at low
// priority, in two steps per image:
//   1. fill: each lazy layer's missing blob bytes are fetched into lazy/<hex>/ through
//      the mount's own LazyBlob (fs/lazy_blob.h, LazyBlob::Complete), in pieces (the
//      gaps of a 1 MiB window, one multi-range request; 4 in flight), waiting before
//      each piece while on-demand reads fetch anywhere in the daemon (and 500 ms after
//      the last one ended). Reads see each piece once named; a stop or kill -9 leaves
//      lazy/ as it was plus the pieces that arrived (synced ones, after a power loss);
//   2. commit: an in-process pull of HOST/REPO@MANIFEST_DIGEST (registry/puller.h,
//      PullOptions::complete_only: no names added, an image removed meanwhile not
//      pulled again), which finds every byte local (OpenLazyCompletion) and does
//      what a plain pull does: blob digest, size, diff_id, CheckCompletedLayer, and
//      lazy/ removed or marked broken. Its commit moves the store's generation: the
//      mount's watcher then serves the layer from its blob (MountFs::DropCompletedLazy).
// HOST/REPO come from lazy/<hex>/source, the manifest digest from the image record.
// Registry requests carry the User-Agent "imgfs-background-completion".
//
// The thread scans the store (when lazy/ is not empty) when its generation moves (a
// new lazy pull) and after a failure (backoff 5 s, doubling to 5 min; one log line per
// failure).
#ifndef IMGFS_CLI_LAZY_COMPLETE_H_
#define IMGFS_CLI_LAZY_COMPLETE_H_

#include <string>

#include "fs/fuse_adapter.h"
#include "registry/registry_client.h"

namespace imgfs {

// The task for MountOptions::background. `registry`: the options pull would use (made
// in the calling process: nothing may exit the daemon later).
BackgroundTask LazyCompletionTask(const std::string& root, const RegistryOptions& registry);

}  // namespace imgfs

#endif  // IMGFS_CLI_LAZY_COMPLETE_H_
