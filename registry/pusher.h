// Uploading an image from the store to a registry (`imgfs push`), the distribution
// spec's push flow:
//
//   for the config and each layer blob:
//     HEAD /v2/NAME/blobs/DIGEST                 200: already there, nothing to send
//     POST /v2/NAME/blobs/uploads/?mount=D&from=OTHER
//                                                201: mounted from another repository
//                                                of the same registry (one the store
//                                                knows holds D: a name it was pulled as)
//     POST /v2/NAME/blobs/uploads/               202 + Location: an upload session
//     PUT  LOCATION?digest=D  (the whole blob)   monolithic (default), or
//     PATCH LOCATION (Content-Range) … then PUT LOCATION?digest=D   chunked
//   PUT /v2/NAME/manifests/TAG                   the manifest, byte for byte as stored
//                                                (registry/image_export.h), so the
//                                                registry's digest equals the local one
//
// Credentials, TLS and plain-HTTP rules are the RegistryClient's (the same as pull).
// A blob whose upload fails with a transient error is started again from the POST, up
// to three times. Blobs are sent as they are stored (compressed or not) from the blob
// files, never held in memory.
//
// Thread-safety: one push per call; one thread.
#ifndef IMGFS_REGISTRY_PUSHER_H_
#define IMGFS_REGISTRY_PUSHER_H_

#include <functional>
#include <string>

#include "index/store.h"
#include "registry/reference.h"
#include "registry/registry_client.h"

namespace imgfs {

struct PushOptions {
  uint64_t chunk_size = 0;  // 0: one PUT per blob; else PATCH chunks of this many bytes
  bool cross_mount = true;  // try mounting blobs from other repositories of the registry
  // "ID: STATUS" lines (docker's: "Pushed", "Layer already exists", "Mounted from R").
  std::function<void(const std::string& id, const std::string& status)> progress;
};

struct PushResult {
  Digest manifest_digest;
  uint64_t manifest_size = 0;
  std::string media_type;
};

// Pushes image `id` as `dest` (a tagged reference; its domain is the client's host).
Result<PushResult> PushImage(const Store& store, const Digest& id, const Reference& dest,
                             RegistryClient& client, const PushOptions& options);

}  // namespace imgfs

#endif  // IMGFS_REGISTRY_PUSHER_H_
