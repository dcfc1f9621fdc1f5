// Recognising an image archive from its first bytes, before it is inflated to disk.
//
// `imgfs load` of a compressed archive inflates it into ingest/ (the archive reader
// needs random access). Without a check, any compressed file is inflated completely
// before "not a docker-archive" can be said: a 47 MB file wrote 9.8 GB. TarStreamCheck
// watches the inflated bytes as they are produced, header by header, and stops that:
//
//   - every tar header must be one (checksum, size field), so the first 512 bytes of
//     something that is not a tar are refused;
//   - every member name must fit a docker-archive or an OCI archive (with or without a
//     leading "./"): at the top level directories (<id>/), manifest.json, repositories,
//     index.json, oci-layout, and files named like configs and layers (.json, .tar,
//     .tar.gz, .tgz, .tar.zst, sha256:…); anything under blobs/; one level down only
//     layer.tar, json, VERSION and files named like configs and layers. A root
//     filesystem tarball (./bin/sh, ./etc/passwd, ./zero) given to `load` is refused
//     at its first such file. A pax or GNU long name is not checked (the short header
//     name is a placeholder);
//   - the end-of-archive marker ends the stream: trailing bytes are never written.
//
// The caller also bounds the inflate ratio (kMaxInflateRatio), which is what stops a
// real archive with a compression bomb inside a member.
//
// Thread-safety: one object per stream, one thread.
#ifndef IMGFS_REGISTRY_ARCHIVE_CHECK_H_
#define IMGFS_REGISTRY_ARCHIVE_CHECK_H_

#include <cstdint>
#include <string>
#include <string_view>

#include "index/status.h"

namespace imgfs {

// True for a member name a docker-archive or OCI archive may have.
bool IsImageArchiveMemberName(std::string_view name, bool is_dir);

class TarStreamCheck {
 public:
  // Inflated bytes may be at most this many times the compressed bytes read, plus
  // kInflateSlack (gzip's own limit is about 1032:1).
  static constexpr uint64_t kMaxInflateRatio = 1100;
  static constexpr uint64_t kInflateSlack = uint64_t{64} << 20;

  // Feeds the next bytes of the tar stream. Returns how many of them belong to the
  // archive (less than n only when the end marker is inside), or an error naming why
  // this is not an image archive.
  Result<size_t> Feed(const char* data, size_t n);
  bool ended() const { return ended_; }

 private:
  Status CheckHeader(const char* h);
  std::string block_;       // a partial header
  uint64_t skip_ = 0;       // member data (rounded to 512) still to pass over
  int members_ = 0;         // real (non-metadata) members seen
  int zero_blocks_ = 0;     // consecutive zero headers
  bool long_name_ = false;  // the next member's name came from a pax/GNU header
  bool ended_ = false;
};

}  // namespace imgfs

#endif  // IMGFS_REGISTRY_ARCHIVE_CHECK_H_
