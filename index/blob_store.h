// The content-addressed blob store: <root>/blobs/sha256/<hex>, fed through <root>/ingest/.
//
// Ingestion (the containerd order): a Writer streams into a fresh file in ingest/ and
// hashes while writing; Commit checks size and digest, fsyncs the file, renames it to
// blobs/sha256/<hex> (read-only), and fsyncs blobs/sha256. A blob that is already
// present is success. Two processes ingesting the same blob each write their own temp
// file; rename is atomic and both name identical bytes, so both succeed safely.
// A crash leaves at most a stray file in ingest/, which is never visible as content
// and is removed by `imgfs prune`.
//
// Thread-safety: BlobStore is immutable after construction and may be shared; a Writer
// belongs to one thread.
#ifndef IMGFS_INDEX_BLOB_STORE_H_
#define IMGFS_INDEX_BLOB_STORE_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "index/digest.h"
#include "index/file_util.h"
#include "index/status.h"

namespace imgfs {

class BlobStore {
 public:
  class Writer {
   public:
    Writer(const Writer&) = delete;
    Writer& operator=(const Writer&) = delete;
    ~Writer();  // removes the temp file unless committed
    Status Write(const void* data, size_t n);
    uint64_t size() const { return size_; }
    // Verifies (when given) and publishes the blob. Returns its digest. With
    // durable = false the fsyncs are left to one BlobStore::SyncAll (a load of many
    // images: one file-system sync instead of two fsyncs per blob).
    Result<Digest> Commit(const std::optional<Digest>& expected,
                          std::optional<uint64_t> expected_size = std::nullopt,
                          bool durable = true);

   private:
    friend class BlobStore;
    Writer(const BlobStore* store, std::string tmp, UniqueFd fd)
        : store_(store), tmp_(std::move(tmp)), fd_(std::move(fd)) {}
    const BlobStore* store_;
    std::string tmp_;
    UniqueFd fd_;
    Sha256 hash_;
    uint64_t size_ = 0;
    bool done_ = false;
  };

  explicit BlobStore(std::string root) : root_(std::move(root)) {}
  // Creates blobs/sha256 and ingest/ when missing.
  Status Init() const;

  std::string BlobPath(const Digest& d) const { return root_ + "/blobs/sha256/" + d.hex(); }
  std::string IngestDir() const { return root_ + "/ingest"; }
  bool Has(const Digest& d) const;
  Result<uint64_t> Size(const Digest& d) const;
  Result<std::unique_ptr<Writer>> NewWriter() const;
  // Stores bytes held in memory (manifests, configs).
  Result<Digest> Put(std::string_view data, const std::optional<Digest>& expected,
                     bool durable = true) const;
  // Makes every blob committed with durable = false durable (syncfs of the store's file
  // system); call it before the index names them.
  Status SyncAll() const;
  Result<std::string> Read(const Digest& d, size_t max_size = 16 << 20) const;
  Status Delete(const Digest& d) const;
  // Every blob present, for verify and prune.
  Result<std::vector<Digest>> List() const;

 private:
  std::string root_;
};

}  // namespace imgfs

#endif  // IMGFS_INDEX_BLOB_STORE_H_
