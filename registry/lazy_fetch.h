// RangeFetcher (index/lazy_layer.h) over the registry API: GET /v2/REPO/blobs/DIGEST
// with "Range: bytes=A-B", through RegistryClient (credentials, TLS, certs.d, retries
// with backoff, redirects as for pull). A 206 must start where asked and name the blob's
// size (the transport checks it); a registry that ignores Range and answers 200 streams
// the blob: what arrives from the asked offset on is handed to the sink, to the blob's
// end (so it becomes local once).
//
// Thread-safety: Fetch may be called from several threads at once.
#ifndef IMGFS_REGISTRY_LAZY_FETCH_H_
#define IMGFS_REGISTRY_LAZY_FETCH_H_

#include <functional>
#include <memory>
#include <string>

#include "index/lazy_layer.h"
#include "registry/registry_client.h"
#include "registry/zstd_chunked.h"

namespace imgfs {

class RegistryRangeFetcher : public RangeFetcher {
 public:
  RegistryRangeFetcher(std::shared_ptr<RegistryClient> client, std::string repo, Digest blob,
                       uint64_t blob_size)
      : client_(std::move(client)), repo_(std::move(repo)), blob_(blob), size_(blob_size) {}
  Status Fetch(uint64_t offset, uint64_t length, const Sink& sink) override;
  // One multi-range request (FetchBlobRanges below, with its fallbacks).
  Status FetchRanges(const std::vector<std::pair<uint64_t, uint64_t>>& ranges,
                     const Sink& sink) override;
  std::string Where() const override { return client_->host() + "/" + repo_; }
  // Polled while a request runs (about once a second): true stops it.
  void SetCancelled(std::function<bool()> c) { cancelled_ = std::move(c); }

 private:
  std::shared_ptr<RegistryClient> client_;
  std::string repo_;
  Digest blob_;
  uint64_t size_;
  std::function<bool()> cancelled_;
};

// Reads [offset, offset+length) of a blob into memory (the TOC and tar-split of a lazy
// pull). `cancelled` (optional), polled about once a second, stops the request.
Result<std::string> FetchBlobRange(RegistryClient& client, const std::string& repo,
                                   const Digest& blob, uint64_t blob_size, uint64_t offset,
                                   uint64_t length, const std::function<bool()>& cancelled = {});

// Several ranges of a blob (sorted, disjoint, none empty): one multi-range request
// ("Range: bytes=a-b,c-d,…", registry/multipart_ranges.h) per batch of them; each
// range's bytes, in order. Fallbacks, each keeping only the asked bytes: a 200 (the
// whole blob; the download stops after the last range), a single 206 (a server that
// does not do multi-range or coalesced everything into one part). A range still not
// complete after that (a single 206 that covers part of them, a malformed multipart
// body, any other status or a transport error) is fetched alone with FetchBlobRange.
// `requests`, when not null, counts the HTTP requests made (for tests and benchmarks).
Result<std::vector<std::string>> FetchBlobRanges(RegistryClient& client, const std::string& repo,
                                                 const Digest& blob, uint64_t blob_size,
                                                 const std::vector<BlobRange>& ranges,
                                                 size_t* requests = nullptr,
                                                 const std::function<bool()>& cancelled = {});

}  // namespace imgfs

#endif  // IMGFS_REGISTRY_LAZY_FETCH_H_
