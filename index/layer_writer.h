// Writes a directory as a layer tar: an overlayfs upper directory (`imgfs commit
// --base`) or a plain root filesystem directory (`imgfs commit` without a base).
//
// Conversion rules for an upper directory (docs/layer-rules.md, "Writing a layer"):
//   - a character device 0/0 is an overlay whiteout: it becomes an empty regular file
//     `D/.wh.NAME` (mode 0, the device's owner and mtime), as docker's overlay2 does;
//   - a directory whose `trusted.overlay.opaque` or `user.overlay.opaque` is "y" is an
//     opaque directory: its entry is written, then `D/.wh..wh..opq` (empty, the
//     directory's owner, permission bits and mtime);
//   - `*.overlay.redirect` (a renamed directory) and `*.overlay.metacopy` (metadata
//     copied up without the data) are refused: the upper directory alone does not hold
//     the change;
//   - no `trusted.overlay.*` or `user.overlay.*` xattr is written; every other xattr is
//     (pax SCHILY.xattr records);
//   - hard links: the first path of an inode (in the walk order below) holds the data,
//     later paths are hard links to it;
//   - owners (numeric), permission bits, set-id bits, mtimes (with nanoseconds),
//     symlink targets, block/character devices and FIFOs are kept; sockets are skipped
//     (as docker does); the directory itself (the image root) has no entry.
// For a plain directory (overlay = false) nothing is a whiteout: 0/0 character devices
// stay devices and opaque xattrs are ordinary xattrs (the overlay.* ones still never
// leak, and redirect/metacopy are still refused).
//
// Determinism: the walk is depth first with each directory's names sorted bytewise
// (a directory before its contents); uname/gname, atime and ctime are not written. The
// same directory therefore gives the same tar bytes, so the same diff_id.
//
// Thread-safety: free functions; each call owns its libarchive handle.
#ifndef IMGFS_INDEX_LAYER_WRITER_H_
#define IMGFS_INDEX_LAYER_WRITER_H_

#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "index/status.h"
#include "index/stream.h"

namespace imgfs {

struct LayerWriteOptions {
  bool overlay = true;  // apply the upper-directory rules above
};

// Receives the output in order; an error stops the writer, which returns it.
using ByteSink = std::function<Status(std::string_view)>;

// Writes the uncompressed tar of `dir` to `sink`.
Status WriteLayerTar(const std::string& dir, const LayerWriteOptions& options,
                     const ByteSink& sink);

// A gzip compressor (ISA-L level 1, a fixed gzip header: mtime 0, no name) feeding
// `sink`. Write, then Finish once.
class GzipSink {
 public:
  explicit GzipSink(ByteSink sink);
  ~GzipSink();
  Status Write(std::string_view data);
  Status Finish();

 private:
  Status Run(std::string_view data, bool last);
  struct Impl;
  std::unique_ptr<Impl> impl_;
  ByteSink sink_;
};

// The gzipped layer of `dir` as a ByteSource, produced on a thread of its own so the
// consumer (the load pipeline) reads it while it is written. Destroying the source
// before the end stops the producer. When given, *writer_error receives the writer's
// own error (not one caused by the reader stopping early); read it after the source is
// destroyed.
std::unique_ptr<ByteSource> GzipLayerSource(const std::string& dir,
                                            const LayerWriteOptions& options,
                                            Status* writer_error = nullptr);

}  // namespace imgfs

#endif  // IMGFS_INDEX_LAYER_WRITER_H_
