// Image documents (OCI and Docker schema 2) parsed with simdjson. imgfs's own JSON
// output uses index/json_writer.h.
//
// Parsers validate what imgfs relies on (digests, sizes, media types) and return
// InvalidArgument/Unsupported with a message naming the field; they never trust a
// document. `mediaType` is optional in OCI documents: the caller's content type or
// the document's shape decides.
//
// Thread-safety: free functions, reentrant (each call owns its parser).
#ifndef IMGFS_REGISTRY_JSON_H_
#define IMGFS_REGISTRY_JSON_H_

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "index/digest.h"
#include "index/json_writer.h"
#include "index/status.h"
#include "index/stream.h"

namespace imgfs {

namespace media {
inline constexpr char kOciManifest[] = "application/vnd.oci.image.manifest.v1+json";
inline constexpr char kOciIndex[] = "application/vnd.oci.image.index.v1+json";
inline constexpr char kOciConfig[] = "application/vnd.oci.image.config.v1+json";
inline constexpr char kOciLayer[] = "application/vnd.oci.image.layer.v1.tar";
inline constexpr char kOciLayerGzip[] = "application/vnd.oci.image.layer.v1.tar+gzip";
inline constexpr char kOciLayerZstd[] = "application/vnd.oci.image.layer.v1.tar+zstd";
inline constexpr char kDockerManifest[] = "application/vnd.docker.distribution.manifest.v2+json";
inline constexpr char kDockerList[] = "application/vnd.docker.distribution.manifest.list.v2+json";
inline constexpr char kDockerConfig[] = "application/vnd.docker.container.image.v1+json";
inline constexpr char kDockerLayerGzip[] = "application/vnd.docker.image.rootfs.diff.tar.gzip";
inline constexpr char kDockerLayer[] = "application/vnd.docker.image.rootfs.diff.tar";
inline constexpr char kDockerForeignGzip[] =
    "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip";
}  // namespace media

struct Platform {
  std::string os, architecture, variant;
  std::string String() const;
};

struct Descriptor {
  std::string media_type;
  Digest digest;
  uint64_t size = 0;
  std::vector<std::string> urls;
  std::map<std::string, std::string> annotations;
  Platform platform;
  bool has_platform = false;
};

enum class DocKind { kManifest, kIndex, kSchema1, kUnknown };

struct Manifest {
  std::string media_type;
  Descriptor config;
  std::vector<Descriptor> layers;
};

struct ImageIndexDoc {
  std::string media_type;
  std::vector<Descriptor> manifests;
};

struct ImageConfig {
  std::string created;
  int64_t created_unix = 0;
  Platform platform;
  std::vector<Digest> diff_ids;
  std::string config_json;  // the "config" object, minified ("{}" when absent)
};

DocKind DetectDocKind(std::string_view json, std::string_view content_type);
Result<Manifest> ParseManifest(std::string_view json);
Result<ImageIndexDoc> ParseIndex(std::string_view json);
Result<ImageConfig> ParseConfig(std::string_view json);
// The compression a layer media type implies; Unsupported for unknown types.
Result<Compression> LayerCompression(std::string_view media_type);
// Seconds since the epoch for an RFC 3339 time; 0 when empty or malformed.
int64_t ParseRfc3339(std::string_view s);
std::string FormatRfc3339(int64_t unix_seconds);
// Go's time.ParseDuration ("1h30m", "500ms", "-2h", "0") in nanoseconds, as image
// configs (HEALTHCHECK) and docker's filters write them; Go's errors, and one past
// Go's range (about 292 years) is "invalid duration", not an overflow.
Result<int64_t> ParseGoDurationNs(std::string_view s);

}  // namespace imgfs

#endif  // IMGFS_REGISTRY_JSON_H_
