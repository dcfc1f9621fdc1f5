#include "registry/lazy_fetch.h"

#include <algorithm>
#include <cstdlib>

namespace imgfs {

Status RegistryRangeFetcher::Fetch(uint64_t offset, uint64_t length, const Sink& sink) {
  if (offset > size_ || length > size_ - offset || length == 0)
    return Status::InvalidArgument("range outside the blob");
  RegistryClient::Request req;
  req.path_or_url = "/v2/" + repo_ + "/blobs/" + blob_.str();
  req.scope = "repository:" + repo_ + ":pull";
  req.range_start = offset;
  req.range_end = offset + length;
  req.max_stream = size_;
  bool whole = false;  // a 200: the blob from `offset` on (the client drops the bytes before)
  Status bad;
  req.on_headers = [&](const HttpResponse& r) {
    whole = r.status == 200;
    if (r.status == 206) {
      // "bytes START-END/TOTAL": a server that starts elsewhere is not trusted.
      std::string cr = r.Header("content-range");
      size_t sp = cr.find(' ');
      uint64_t start =
          sp == std::string::npos ? UINT64_MAX : std::strtoull(cr.c_str() + sp + 1, nullptr, 10);
      if (start != offset) bad = Status::Corruption("registry answered range \"" + cr + "\"");
    }
  };
  uint64_t pos = offset;
  req.on_body = [&](const char* p, size_t n) {
    if (!bad.ok()) return false;
    uint64_t limit = whole ? size_ : offset + length;
    if (pos + n > limit) {
      bad = Status::Corruption("registry sent more than the range asked for");
      return false;
    }
    Status st = sink(pos, p, n);
    if (!st.ok()) {
      bad = st;
      return false;
    }
    pos += n;
    return true;
  };
  auto r = client_->Do(req);
  if (!bad.ok()) return bad;
  if (!r.ok()) return r.status();
  if (r->status != 200 && r->status != 206)
    return Status::Unavailable("HTTP " + std::to_string(r->status));
  if (pos < offset + length)
    return Status::Unavailable("registry sent " + std::to_string(pos - offset) + " of " +
                               std::to_string(length) + " bytes");
  return Status::Ok();
}

Result<std::string> FetchBlobRange(RegistryClient& client, const std::string& repo,
                                   const Digest& blob, uint64_t blob_size, uint64_t offset,
                                   uint64_t length) {
  std::string out;
  RegistryRangeFetcher f(std::shared_ptr<RegistryClient>(&client, [](RegistryClient*) {}), repo,
                         blob, blob_size);
  Status st = f.Fetch(offset, length, [&](uint64_t pos, const char* p, size_t n) {
    // A 200 streams the rest of the blob: keep only the asked range, then stop.
    uint64_t end = offset + length;
    if (pos >= end) return Status::Unavailable("enough");
    size_t k = static_cast<size_t>(std::min<uint64_t>(n, end - pos));
    out.append(p, k);
    return Status::Ok();
  });
  if (out.size() == length) return out;
  if (st.ok()) st = Status::Unavailable("short read");
  return st.WithContext("blob " + blob.str() + " bytes " + std::to_string(offset) + "+" +
                        std::to_string(length));
  return out;
}

}  // namespace imgfs
