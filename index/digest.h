// Content digests ("sha256:<64 lowercase hex>") and a streaming SHA-256.
//
// A digest string from the network, an archive or the index is validated by
// ParseDigest before it is used anywhere, in particular before it becomes a path
// under blobs/ (so "sha256:../../etc" can never name a file).
//
// Thread-safety: Sha256 is a single-thread object; Digest is a value.
#ifndef IMGFS_INDEX_DIGEST_H_
#define IMGFS_INDEX_DIGEST_H_

#include <openssl/evp.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "index/status.h"

namespace imgfs {

// A validated sha256 digest. Only sha256 is supported (as by docker and the OCI spec's
// registered algorithms in practice); other algorithms are rejected as unsupported.
class Digest {
 public:
  Digest() = default;
  // Validates "sha256:<64 lowercase hex>".
  static Result<Digest> Parse(std::string_view s);
  // Validates a bare 64-hex string.
  static Result<Digest> FromHex(std::string_view hex);

  const std::string& hex() const { return hex_; }
  std::string str() const { return "sha256:" + hex_; }
  std::string Short() const { return hex_.substr(0, 12); }
  bool empty() const { return hex_.empty(); }
  bool operator==(const Digest& o) const { return hex_ == o.hex_; }
  bool operator<(const Digest& o) const { return hex_ < o.hex_; }

 private:
  std::string hex_;
};

bool IsLowerHex(std::string_view s);

// Streaming SHA-256 over OpenSSL's EVP interface (uses SHA-NI where present).
class Sha256 {
 public:
  Sha256();
  Sha256(const Sha256&) = delete;
  Sha256& operator=(const Sha256&) = delete;
  void Update(const void* data, size_t n);
  // Finishes the hash; the object must not be updated afterwards.
  Digest Finish();

 private:
  struct CtxFree {
    void operator()(EVP_MD_CTX* c) const { EVP_MD_CTX_free(c); }
  };
  std::unique_ptr<EVP_MD_CTX, CtxFree> ctx_;
};

Digest Sha256Of(std::string_view data);

}  // namespace imgfs

#endif  // IMGFS_INDEX_DIGEST_H_
