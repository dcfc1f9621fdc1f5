// Taking images back out of the store: `imgfs save` writes a docker-archive or an OCI
// archive, `imgfs push` (registry/pusher.h) uploads blobs and a manifest. Both need the
// same two things this file provides:
//
//   ManifestFor  — the image's manifest: the bytes it was pulled or loaded with (so its
//                  digest survives a round trip), or, for an image that never had one
//                  (docker-archive load, import), an OCI manifest generated from the
//                  config and the stored layer blobs (deterministic: the same image
//                  always gets the same manifest and digest).
//   SaveImages   — streams an archive to a file descriptor (a pipe is fine: nothing is
//                  seeked, memory is bounded by one 1 MiB buffer). docker-archive layers
//                  are written uncompressed (`layer.tar`, as docker save does), each
//                  checked to inflate to exactly the size the index recorded; OCI
//                  archives carry the stored blobs as they are.
//
// The tar is deterministic: ustar headers, owner 0:0, mtime 0, members in a fixed order,
// manifest.json / index.json last (as docker writes them).
//
// Thread-safety: free functions; the store's own rules apply (read-only use).
#ifndef IMGFS_REGISTRY_IMAGE_EXPORT_H_
#define IMGFS_REGISTRY_IMAGE_EXPORT_H_

#include <string>
#include <vector>

#include "index/store.h"
#include "registry/json.h"
#include "registry/reference.h"

namespace imgfs {

struct ExportManifest {
  std::string bytes;
  std::string media_type;
  Digest digest;
  Manifest parsed;  // config and layer descriptors, in order
};
Result<ExportManifest> ManifestFor(const Store& store, const ImageRecord& image);

enum class ArchiveFormat { kDockerArchive, kOciArchive };

struct SaveItem {
  Digest id;
  std::vector<Reference> names;  // tagged references to record (may be empty)
};

// Writes one archive of all `items` to `fd`.
Status SaveImages(const Store& store, const std::vector<SaveItem>& items, ArchiveFormat format,
                  int fd);

}  // namespace imgfs

#endif  // IMGFS_REGISTRY_IMAGE_EXPORT_H_
