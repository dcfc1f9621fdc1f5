// The content-addressed blob store: <root>/blobs/sha256/<hex>, fed through <root>/ingest/.
//
// Ingestion (the containerd order): a Writer streams into a fresh file in ingest/ and
// hashes while writing; Commit checks size and digest, fsyncs the file, renames it to
// blobs/sha256/<hex> (read-only), and fsyncs blobs/sha256 (an image's stage does that
// last fsync once for all its blobs, before its index transaction). A blob that is already
// present is success. Two processes ingesting the same blob each write their own temp
// file; rename is atomic and both name identical bytes, so both succeed safely.
// A crash leaves at most a stray file in ingest/, which is never visible as content
// and is removed by `imgfs prune`.
//
// A resumable ingest (OpenPartial, used by pull) writes ingest/partial-<hex> for one
// expected blob, under the caller's lock on that blob. It survives a failed or killed
// transfer, so the next attempt feeds the bytes already there back through the
// pipeline (hashed, not written again) and fetches only the rest; a partial file that
// fails verification is removed (Discard). `imgfs prune` removes partial files whose
// blob lock nobody holds.
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

// How far a blob's Commit goes before it returns (see Writer::Commit).
enum class Durability { kNow, kFile, kLater };

class BlobStore {
 public:
  class Writer {
   public:
    Writer(const Writer&) = delete;
    Writer& operator=(const Writer&) = delete;
    ~Writer();  // removes the temp file unless committed
    // Hashes the bytes and writes them; of a resumed partial file, the first
    // resumed() bytes are already there and are only hashed.
    Status Write(const void* data, size_t n);
    uint64_t size() const { return size_; }
    // The SHA-256 of everything written (finishes the hash: no Write afterwards).
    Digest Sum();
    // The caller hashes these very bytes itself (an uncompressed layer: its diff_id is
    // its blob digest), so the writer does not hash them a second time; Commit then
    // trusts `expected`, which the caller must have checked against its own hash.
    void SkipHashing() { hashing_ = false; }
    // Bytes a resumable ingest found already written (0 for a fresh file).
    uint64_t resumed() const { return have_; }
    const std::string& path() const { return tmp_; }
    // Removes the file now, even a resumable one (its bytes proved bad).
    void Discard();
    // Flushes what was written so far to disk now (fsync), so that a Commit that
    // follows with nothing more written has no file data left to wait for: a small
    // blob is written and synced on another thread while the layers download.
    Status Sync();
    // Verifies (when given) and publishes the blob. Returns its digest. `durability`:
    // kNow fsyncs the file, renames it and fsyncs blobs/sha256; kFile fsyncs the file
    // and renames it, the caller fsyncs blobs/sha256 (BlobStore::SyncDir) once for
    // every blob of an image before the index names them; kLater leaves both to one
    // BlobStore::SyncAll (a load of many images: one file-system sync instead of two
    // fsyncs per blob).
    Result<Digest> Commit(const std::optional<Digest>& expected,
                          std::optional<uint64_t> expected_size = std::nullopt,
                          Durability durability = Durability::kNow);

   private:
    friend class BlobStore;
    Writer(const BlobStore* store, std::string tmp, UniqueFd fd)
        : store_(store), tmp_(std::move(tmp)), fd_(std::move(fd)) {}
    const BlobStore* store_;
    std::string tmp_;
    UniqueFd fd_;
    Sha256 hash_;
    std::optional<Digest> sum_;
    uint64_t size_ = 0;
    uint64_t have_ = 0;             // bytes already in a resumed partial file
    uint64_t flushed_ = 0;          // bytes whose writeback has been started
    uint64_t synced_ = UINT64_MAX;  // size_ at the last Sync (none yet: UINT64_MAX)
    bool keep_ = false;             // a resumable ingest stays when not committed
    bool hashing_ = true;
    bool done_ = false;
  };

  explicit BlobStore(std::string root) : root_(std::move(root)) {}
  // Creates blobs/sha256 and ingest/ when missing.
  Status Init() const;

  std::string BlobPath(const Digest& d) const { return root_ + "/blobs/sha256/" + d.hex(); }
  std::string IngestDir() const { return root_ + "/ingest"; }
  bool Has(const Digest& d) const;
  // Present, and of this size (not a file a crash left short).
  bool HasWhole(const Digest& d, uint64_t size) const;
  Result<uint64_t> Size(const Digest& d) const;
  Result<std::unique_ptr<Writer>> NewWriter() const;
  // The resumable ingest of blob `d` (see above). The caller must hold the blob's
  // lock. A partial file longer than `max_size` is garbage and starts again from 0.
  Result<std::unique_ptr<Writer>> OpenPartial(const Digest& d, uint64_t max_size) const;
  std::string PartialPath(const Digest& d) const { return IngestDir() + "/partial-" + d.hex(); }
  // Stores bytes held in memory (manifests, configs).
  Result<Digest> Put(std::string_view data, const std::optional<Digest>& expected,
                     Durability durability = Durability::kNow) const;
  // Makes the names of blobs committed with Durability::kFile durable (fsync of
  // blobs/sha256); call it before the index names them.
  Status SyncDir() const;
  // fsyncs one stored blob: one this process found present rather than wrote, whose
  // writer may not have synced it yet (Durability::kLater) when an index names it.
  Status SyncBlob(const Digest& d) const;
  // Makes every blob committed with Durability::kLater durable (syncfs of the store's
  // file system); call it before the index names them.
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
