// Brings images that arrive as files into the store:
//   LoadImages  — a `docker save` tarball (manifest.json), an OCI archive (a tar of an
//                 OCI image layout) or an OCI image layout directory; the tarball may be
//                 gzip or zstd compressed.
//   ImportRootfs — a one-layer image from a rootfs tarball (plain, gzip or zstd).
//
// Every layer goes through the one-pass pipeline (stream.h): its bytes are copied into
// ingest/ while hashed, decompressed, checked against the config's diff_id and indexed.
// Nothing becomes visible until everything the input names has been verified: blobs
// stay in ingest/ until all layers of all images passed, then blobs are committed, then
// one LMDB transaction per image names them. On any error the temp files are removed
// and the store is exactly as it was.
//
// Thread-safety: call from one thread; internally a layer uses a reader thread.
// Processes: holds the store's GC lock shared, so prune/rmi never race a load.
#ifndef IMGFS_REGISTRY_IMAGE_LOADER_H_
#define IMGFS_REGISTRY_IMAGE_LOADER_H_

#include <functional>
#include <string>
#include <vector>

#include "index/store.h"
#include "registry/json.h"
#include "registry/reference.h"
#include "registry/stage.h"

namespace imgfs {

struct LoadOptions {
  // Repository used for OCI layout entries whose ref name is only a tag ("v1").
  std::string repository;
  // Progress lines ("Loading layer sha256:…"), or null.
  std::function<void(const std::string&)> progress;
};

Result<std::vector<LoadedImage>> LoadImages(Store& store, const std::string& path,
                                            const LoadOptions& options);
Result<LoadedImage> ImportRootfs(Store& store, const std::string& tarball, const Reference& ref,
                                 const LoadOptions& options);

// The host's platform in OCI terms (linux/amd64, linux/arm64/v8 → linux/arm64, …).

Platform HostPlatform();

// The entry of an image index (a registry's, or one in an OCI layout) for `want`, by
// the rules pull and load share: entries without a platform or with os "unknown"
// (attestation manifests) are never picked; an exact os/architecture/variant match
// wins, a variant-less request meaning docker's default variant (arm is arm/v7, arm64
// is arm64/v8); otherwise the first entry of that os/architecture whose variant is
// unset on either side. nullptr when none; `offered` lists the pickable entries
// ("linux/amd64, linux/arm64/v8"; the first 20, then "and N more"; control bytes
// shown as '?').
const Descriptor* PickPlatform(const std::vector<Descriptor>& entries, const Platform& want,
                               std::string* offered);

// Takes the store's GC lock: shared for writers that add, exclusive for removers.
class GcLock {
 public:
  static Result<GcLock> Acquire(const Store& store, bool exclusive);
  GcLock(GcLock&&) noexcept = default;
  ~GcLock() = default;

 private:
  explicit GcLock(UniqueFd fd) : fd_(std::move(fd)) {}
  UniqueFd fd_;
};

}  // namespace imgfs

#endif  // IMGFS_REGISTRY_IMAGE_LOADER_H_
