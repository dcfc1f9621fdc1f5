// ImageStage: everything one load or pull will add to the store, verified before it
// becomes visible.
//
// AddLayer streams one layer through the one-pass pipeline (copy into ingest/ +
// SHA-256 of the blob on a reader thread; inflate, SHA-256 of the tar = diff_id, and
// tar indexing on the caller's thread) and checks digest, size and diff_id. AddImage
// builds the merged tree at once, so a bad image fails before anything is committed.
// Commit publishes the layer blobs, then per image its config and manifest blobs, then
// one LMDB transaction for all the images (nothing is written when an image and its
// names are already there). The index keeps each image's root record, not its tree.
//
// With commit_layers_early, each layer blob is committed as soon as it is verified (a
// pull killed halfway keeps what it verified; the next pull re-indexes those blobs from
// disk instead of downloading them again).
//
// Thread-safety: AddLayer may run on several threads at once (parallel downloads);
// AddImage and Commit are called from one thread after the layers.
#ifndef IMGFS_REGISTRY_STAGE_H_
#define IMGFS_REGISTRY_STAGE_H_

#include <functional>
#include <future>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "index/store.h"
#include "index/stream.h"
#include "registry/json.h"

namespace imgfs {

struct StagedImage {
  ImageRecord record;
  std::string config;              // its bytes (the image ID is their digest)
  std::string manifest;            // empty for docker-archive and import
  std::vector<std::string> names;  // canonical references
  // The digest a name@digest reference records (a pull through a manifest list: the
  // list's); "" = the manifest's (record.manifest_digest).
  std::string repo_digest;
};

struct LoadedImage {
  Digest id;
  std::vector<std::string> names;  // canonical references now naming it
};

class ImageStage {
 public:
  ImageStage(Store& store, std::function<void(const std::string&)> progress = nullptr,
             bool commit_layers_early = false);
  ~ImageStage();

  // True when the layer with this diff_id is indexed and its blob present.
  bool HaveLayer(const Digest& diff_id);
  // Drops staged layers whose blob, committed early or found in the store, is no
  // longer there (removed by prune between AddLayer and Commit), so that HaveLayer
  // answers false and the caller fetches them again. Call under the GC lock.
  void ForgetMissingBlobs();
  // Reads `src` to its end. With no expected diff_id (import), whatever the content
  // hashes to is its diff_id. Returns the diff_id. `resume`: the blob's resumable
  // ingest (BlobStore::OpenPartial), whose bytes `src` starts with; it is discarded
  // when the layer fails verification, kept when the transfer failed.
  // `tar_bytes`, when given, sees the uncompressed tar in order, on the indexing thread
  // (a completing pull checks a lazy layer's chunks with it); not called for a layer
  // held already.
  using TarBytes = std::function<void(const char* p, size_t n)>;
  Result<Digest> AddLayer(ByteSource* src, const std::optional<Digest>& expected,
                          const Descriptor* desc, Compression hint,
                          std::unique_ptr<BlobStore::Writer> resume = nullptr,
                          const TarBytes& tar_bytes = nullptr);
  // A lazily pulled layer (registry/lazy_pull.h): its record and entry table, with no
  // blob (its partial state is in lazy/ already). The diff_id is the config's, checked
  // only when the layer is completed.
  Status AddLazyLayer(const Digest& diff_id, const Descriptor& desc,
                      std::vector<LayerEntry> entries, uint64_t tar_size);
  Status AddImage(StagedImage image);
  // The encoded entry table of a layer this stage indexed or recorded ("" when none).
  std::string StagedEntries(const Digest& diff_id);
  // Writes a small blob of an image to come (its config or manifest, verified by the
  // caller) into ingest/ and fsyncs it, on a thread of its own, so that Commit only
  // renames it. Nothing is left if the stage is dropped without a Commit.
  void Prewrite(std::string bytes, const Digest& digest);
  // From this many images on, Commit syncs the blobs once (syncfs) instead of per blob.
  static constexpr size_t kBatchSyncImages = 8;
  // Publishes every staged blob and sidecar (each file fsynced and renamed, a blob
  // found in the store fsynced, then one fsync of blobs/sha256; from kBatchSyncImages
  // images on, one syncfs instead), then names the images in one index transaction.
  Result<std::vector<LoadedImage>> Commit();

 private:
  struct StagedLayer {
    std::unique_ptr<BlobStore::Writer> writer;  // null once committed or already stored
    Store::NewLayer layer;
    std::vector<LayerEntry> entries;
    std::string seek_index;   // sidecar bytes, written at commit (index/seek_index.h)
    bool lazy = false;        // no blob: lazy/<blob hex>/ holds what is local
    bool blob_found = false;  // its blob was in the store already (read, not written)
  };
  Store& store_;
  std::function<void(const std::string&)> progress_;
  bool commit_early_;
  std::mutex mu_;  // guards layers_
  std::map<std::string, StagedLayer> layers_;
  std::vector<StagedImage> images_;
  std::vector<std::string> trees_;  // root records, per image
  LowerTreeCache lower_trees_;      // merge states after shared lower layers
  // Prewrite's writers, by digest hex (the caller's thread only: Prewrite and Commit).
  std::map<std::string, std::future<Result<std::unique_ptr<BlobStore::Writer>>>> prewritten_;

  Status PutSmall(const std::string& bytes, const Digest& digest, Durability durability);
};

// An ImageRecord from a config's bytes (id = their digest).
Result<ImageRecord> RecordFromConfig(const std::string& config_bytes, const Digest& config_digest);

}  // namespace imgfs

#endif  // IMGFS_REGISTRY_STAGE_H_
