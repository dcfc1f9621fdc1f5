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
#include <optional>
#include <string>
#include <string_view>

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

// What a registry answers during a push, read as untrusted bytes (docs/threat-model.md;
// exposed for tests and tests/fuzz/push_answers_fuzz.cc).
//
// An upload Location as RegistryClient::Do takes it: a path on the registry `base`
// ("https://host:port"; the registry's credentials go with it), or an absolute http(s)
// URL on another host (nothing but the blob goes there: no credentials). Empty, longer
// than kMaxUploadLocation, not http(s), or with control characters: an error.
inline constexpr size_t kMaxUploadLocation = 8192;
Result<std::string> ResolveUploadLocation(const std::string& base, std::string_view location);
// The Range header of an upload answer ("0-N", also "bytes=0-N"): the N+1 bytes the
// registry holds; nullopt when malformed (or not starting at 0).
std::optional<uint64_t> ParseUploadRange(std::string_view range);
// The Docker-Content-Digest answered to the manifest PUT: empty (not sent) or equal to
// `expected`; otherwise an error quoting it (control bytes replaced, cut at 100 bytes).
Status CheckManifestDigest(std::string_view answered, const Digest& expected);

}  // namespace imgfs

#endif  // IMGFS_REGISTRY_PUSHER_H_
