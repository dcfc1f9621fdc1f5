// Indexes one layer in a single streaming pass: the uncompressed tar stream goes
// through SHA-256 (the diff_id) and libarchive's tar reader (no data is copied out);
// every entry is recorded with its attributes and the offset of its content in the
// uncompressed stream, so a later read is one pread on an unpacked copy.
//
// libarchive is confined to this file's implementation; each call owns its own
// archive handle, so concurrent calls on different threads are safe.
#ifndef IMGFS_INDEX_LAYER_INDEXER_H_
#define IMGFS_INDEX_LAYER_INDEXER_H_

#include <vector>

#include "index/digest.h"
#include "index/layer_entry.h"
#include "index/status.h"
#include "index/stream.h"

namespace imgfs {

struct LayerIndex {
  Digest diff_id;  // sha256 of the whole uncompressed stream
  uint64_t uncompressed_size = 0;
  std::vector<LayerEntry> entries;
};

// Reads `tar` (an uncompressed tar stream) to its end. Fails on malformed tar, unsafe
// paths (see layer_entry.h), sparse files, or a read error of the source.
// `hash` false: no diff_id (left empty), the same entries; for a stream whose digest
// means nothing (a lazy pull's headers with the contents zeroed, registry/lazy_pull.h).
Result<LayerIndex> IndexTarStream(ByteSource* tar, bool hash = true);

// A member of a plain tar file on disk (an image archive, not a layer): where its
// bytes are, for reading them in place.
struct TarMember {
  std::string path;  // normalised as in layer_entry.h
  EntryType type = EntryType::kFile;
  uint64_t offset = 0;
  uint64_t size = 0;
  std::string link;  // symlink target (verbatim) or hard-link target
};

// Lists the members of the uncompressed tar file open on `fd`, seeking over content.
Result<std::vector<TarMember>> ScanTarFile(int fd);

}  // namespace imgfs

#endif  // IMGFS_INDEX_LAYER_INDEXER_H_
