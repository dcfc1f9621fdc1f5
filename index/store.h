// The local image store: blobs on disk plus the LMDB index that names them.
//
// On-disk layout under the root (--root, IMGFS_ROOT):
//
//   blobs/sha256/<hex>   verified blobs: manifests, configs, layers as fetched (read-only)
//   ingest/              partial writes; never content; cleared by prune
//   index/               the LMDB environment (data.mdb, lock.mdb), schema below
//   unpacked/<hex>.tar   on-demand uncompressed copies of compressed layers (evictable)
//
// LMDB schema (version 2; a version-1 store is upgraded in place when opened: its
// rows stay as they are, see `trees`). Every write goes through one write transaction and bumps
// meta/generation, so a reader (the mount) can see cheaply that names changed.
//
//   meta
//   ├── "schema"       → "1"
//   └── "generation"   → u64 (little-endian), +1 per committed write
//   refs               canonical reference → RefRecord
//   │                  "docker.io/library/ubuntu:16.04"         (a tag)
//   │                  "docker.io/library/ubuntu@sha256:<hex>"  (a repo digest)
//   │                  RefRecord = { image_id hex, manifest digest or "" }
//   images             image id (config digest hex) → ImageRecord
//   │                  { manifest digest, manifest media type, config size, created
//   │                    (RFC 3339 and unix), os, architecture, variant, diff_ids[],
//   │                    uncompressed size, time added }
//   layers             diff_id hex → LayerRecord
//   │                  { blob digest, media type, compression, blob size,
//   │                    uncompressed size, entry count }
//   entries            diff_id hex → the layer's entry table (layer_entry.h codec)
//   trees              image id hex → the image's root record (TreeRoot, merged_tree.h):
//                      the merged tree itself is not stored but built from the layers'
//                      entry tables (shared by every image that has the layer) when
//                      asked for. Rows written by schema 1 hold the whole encoded tree
//                      and are read as such (`imgfs prune --compact` replaces those that
//                      the current rules rebuild identically with root records).
//
// Invariants: every digest named by refs/images/layers is a committed blob (blobs are
// committed before the transaction that names them); every ref names an image; every
// image's diff_ids have layers and entries rows; every image has a tree.
//
// Thread-safety: a Store may be shared by threads (MDB_NOTLS: read transactions are
// not tied to threads). Every method opens its own short transaction and copies values
// out before it ends. Processes share the store through LMDB's own locking.
#ifndef IMGFS_INDEX_STORE_H_
#define IMGFS_INDEX_STORE_H_

#include <lmdb.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "index/blob_store.h"
#include "index/digest.h"
#include "index/layer_entry.h"
#include "index/merged_tree.h"
#include "index/status.h"
#include "index/stream.h"
#include "index/txn_gate.h"

namespace imgfs {

struct RefRecord {
  std::string image_id;         // hex
  std::string manifest_digest;  // "sha256:…" or ""
};

struct LayerRecord {
  Digest diff_id;
  Digest blob;
  std::string media_type;
  Compression compression = Compression::kNone;
  uint64_t blob_size = 0;
  uint64_t size = 0;  // uncompressed
  uint64_t entry_count = 0;
};

struct ImageRecord {
  Digest id;  // config digest
  std::string manifest_digest;
  std::string manifest_media_type;
  uint64_t config_size = 0;
  std::string created;  // RFC 3339, as in the config
  int64_t created_unix = 0;
  std::string os, architecture, variant;
  std::vector<Digest> diff_ids;
  uint64_t size = 0;  // sum of uncompressed layer sizes
  int64_t added_unix = 0;
};

// What a listing of many images shows of each (`imgfs images`): decoded from the same
// image record, without copying its strings out.
struct ImageSummary {
  Digest id;
  int64_t created_unix = 0;
  bool has_created = false;  // the record's `created` is not empty
  uint64_t size = 0;
  std::vector<Digest> diff_ids;  // only when listed with layers
};

class Store {
 public:
  static constexpr int kSchemaVersion = 2;
  // The most layers an image may have. Docker's layer store takes 125, containers/
  // storage's overlay driver 500; this bounds what one hostile manifest or config can
  // make a pull fetch, the index record and every mount's tree build and blob pins.
  static constexpr size_t kMaxImageLayers = 1000;
  // Ok, or the error for `n` layers over kMaxImageLayers: "WHAT N layers; imgfs takes at
  // most 1000 (docker 125)" (WHAT: "manifest lists", "image <id> has", …).
  static Status CheckLayerCount(std::string_view what, size_t n);

  // Opens (creating when missing) the store at `root`.
  static Result<std::unique_ptr<Store>> Open(const std::string& root);
  ~Store();
  Store(const Store&) = delete;
  Store& operator=(const Store&) = delete;

  const std::string& root() const { return root_; }
  const BlobStore& blobs() const { return blobs_; }
  std::string UnpackedPath(const Digest& diff_id) const {
    return root_ + "/unpacked/" + diff_id.hex() + ".tar";
  }

  // --- reads (each its own short read transaction) ---
  Result<std::optional<RefRecord>> GetRef(const std::string& ref) const;
  Result<std::vector<std::pair<std::string, RefRecord>>> ListRefs() const;
  Result<std::optional<ImageRecord>> GetImage(const Digest& id) const;
  // With layers = false, diff_ids are left empty (not decoded): a listing of many
  // images (`imgfs images`) needs the rest only.
  Result<std::vector<ImageRecord>> ListImages(bool layers = true) const;
  // Every image as ImageSummary (diff_ids with layers only): the records ListImages
  // decodes, no strings copied.
  Result<std::vector<ImageSummary>> ListImageSummaries(bool layers = false) const;
  Result<std::optional<LayerRecord>> GetLayer(const Digest& diff_id) const;
  Result<std::vector<LayerEntry>> GetEntries(const Digest& diff_id) const;
  // The image's merged tree: built from its layers' entry tables (a root record) or
  // decoded (a whole tree stored by schema 1).
  Result<MergedTree> GetTree(const Digest& image_id) const;
  // The image root's attributes, without building the tree (from a whole stored tree,
  // by decoding it).
  Result<TreeRoot> GetTreeRoot(const Digest& image_id) const;
  Result<uint64_t> Generation() const;
  // Image ids starting with `prefix` (hex).
  Result<std::vector<Digest>> FindImagesByPrefix(const std::string& prefix) const;

  // --- writes (the one writer path: each is one write transaction) ---
  struct NewLayer {
    LayerRecord record;
    std::string encoded_entries;
  };
  // Records an image, the layers it adds, its merged tree and names. Blobs named
  // must already be committed.
  // `tree_record` is EncodeTreeRoot of the image's tree (or a whole encoded tree).
  Status AddImage(const ImageRecord& image, const std::vector<NewLayer>& layers,
                  const std::string& tree_record,
                  const std::vector<std::pair<std::string, RefRecord>>& refs);
  struct NewImage {
    ImageRecord image;
    std::vector<NewLayer> layers;
    std::string tree_record;
    std::vector<std::pair<std::string, RefRecord>> refs;
  };
  // Several images in one write transaction (one `load` of many images): all or none.
  Status AddImages(const std::vector<NewImage>& images);
  // Replaces whole stored trees (schema 1 rows) that the current merge rules rebuild
  // byte for byte with root records. Returns how many were replaced.
  Result<size_t> ShrinkTrees();
  // Drops the cached lower-layer tree states (a completed lazy eStargz layer's entry
  // table was replaced by the tar's: index/lazy_virtual.h).
  void ForgetLowerTrees() const { lower_trees_.Clear(); }
  // Rewrites the index without its free pages (LMDB never shrinks its file by itself)
  // and reopens it. Refused (Unavailable) while another process has the store open (a
  // mount, a load): LMDB's lock file says so. Returns the bytes the index file shrank.
  Result<uint64_t> Compact();
  // The map size stores opened from now on start with (tests: a small one to fill).
  static void SetInitialMapSizeForTest(size_t bytes);
  Status SetRef(const std::string& ref, const RefRecord& rec);
  // Removes a name. Returns NotFound when absent.
  Status DeleteRef(const std::string& ref);
  // Removes an image, its names, its tree, and layers no other image uses. Returns
  // the blobs nothing references any more (the caller unlinks them after commit).
  Result<std::vector<Digest>> DeleteImage(const Digest& id);
  // Moves the generation once more after the blobs DeleteImage freed were unlinked: a
  // running mount notices removed layers only when the generation moves (its pins of
  // them are released then, MountFs::ReleaseRemoved), and the move of DeleteImage
  // itself may have been seen before the unlink.
  Status NoteBlobsDeleted();
  // Every blob the index references.
  Result<std::set<Digest>> LiveBlobs() const;

 private:
  Store() = default;
  Status Init();
  // Doubles the map, once no transaction of this process is open (TxnGate). Writes that fail with
  // MDB_MAP_FULL (Status kExhausted) call it and retry.
  Status GrowMap();
  Status AddImagesOnce(const std::vector<NewImage>& images);
  std::string root_;
  BlobStore blobs_{""};
  MDB_env* env_ = nullptr;
  // Every transaction is open inside it; map resizes run alone (see txn_gate.h).
  mutable TxnGate gate_;
  MDB_dbi meta_ = 0, refs_ = 0, images_ = 0, layers_ = 0, entries_ = 0, trees_ = 0;
  // Merge states after shared lower layers, for GetTree (images on one base).
  mutable LowerTreeCache lower_trees_;
  friend class Txn;
};

// The record codecs of the refs, images and layers databases (exposed for tests and
// fuzzing; decoding never trusts its input).
std::string EncodeRef(const RefRecord& r);
Result<RefRecord> DecodeRef(std::string_view data);
std::string EncodeImage(const ImageRecord& r);
Result<ImageRecord> DecodeImage(std::string_view data, bool layers = true);
// The same record's listing fields: accepts and refuses exactly what DecodeImage does.
Result<ImageSummary> DecodeImageSummary(std::string_view data, bool layers = false);
std::string EncodeLayer(const LayerRecord& r);
Result<LayerRecord> DecodeLayer(std::string_view data);

}  // namespace imgfs

#endif  // IMGFS_INDEX_STORE_H_
