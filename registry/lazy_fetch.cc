#include "registry/lazy_fetch.h"

#include <algorithm>

#include "registry/multipart_ranges.h"

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
  req.cancelled = cancelled_;
  bool whole = false;  // a 200: the blob from `offset` on (the client drops the bytes before)
  Status bad;
  uint64_t pos = offset;  // the next byte wanted
  // A 206 reaches here only as "bytes START-END/TOTAL" of this blob (TOTAL = max_stream)
  // starting at the next byte wanted: `offset`, or where the previous attempt stopped
  // when RegistryClient::Do resumed after a transient error. The transport refuses any
  // other (registry_transport.cc, RangeAnswerFits; tests/range_resume_test.cc).
  req.on_headers = [&](const HttpResponse& r) { whole = r.status == 200; };
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
                                   uint64_t length, const std::function<bool()>& cancelled) {
  std::string out;
  RegistryRangeFetcher f(std::shared_ptr<RegistryClient>(&client, [](RegistryClient*) {}), repo,
                         blob, blob_size);
  f.SetCancelled(cancelled);
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
}

namespace {

// One multi-range request for `ranges`; what arrived is placed in `out` (sized to each
// range), `filled` counts each range's bytes placed (every byte is placed at most once).
void MultiRangeOnce(RegistryClient& client, const std::string& repo, const Digest& blob,
                    uint64_t blob_size, const std::vector<BlobRange>& ranges,
                    std::vector<std::string>& out, std::vector<uint64_t>& filled,
                    const std::function<bool()>& cancelled) {
  auto place = [&](uint64_t off, std::string_view b) {
    auto it = std::upper_bound(ranges.begin(), ranges.end(), off,
                               [](uint64_t v, const BlobRange& r) { return v < r.offset; });
    size_t i = it == ranges.begin() ? 0 : static_cast<size_t>(it - ranges.begin()) - 1;
    for (; i < ranges.size() && ranges[i].offset < off + b.size(); i++) {
      uint64_t lo = std::max(off, ranges[i].offset);
      uint64_t hi = std::min<uint64_t>(off + b.size(), ranges[i].offset + ranges[i].length);
      if (lo >= hi) continue;
      out[i].replace(lo - ranges[i].offset, hi - lo, b.substr(lo - off, hi - lo));
      filled[i] += hi - lo;
    }
  };
  uint64_t asked = 0;
  for (const BlobRange& r : ranges) asked += r.length;
  const uint64_t last_end = ranges.back().offset + ranges.back().length;
  // A multipart body: the asked bytes plus at most 1 KiB of boundary and headers a part.
  const uint64_t max_multipart = asked + 1024 * ranges.size() + 4096;
  RegistryClient::Request req;
  req.path_or_url = "/v2/" + repo + "/blobs/" + blob.str();
  req.scope = "repository:" + repo + ":pull";
  req.headers.push_back("Range: " + RangeHeaderValue(ranges));
  req.retry_transient = false;  // whatever fails is fetched range by range (with retries)
  req.cancelled = cancelled;
  enum { kNone, kMultipart, kSingle, kWhole } mode = kNone;
  std::string boundary, buf;
  uint64_t pos = 0, end = 0;
  req.on_headers = [&](const HttpResponse& r) {
    mode = kNone;
    if (r.status == 200) {
      mode = kWhole;
      pos = 0;
      end = blob_size;
    } else if (r.status == 206) {
      boundary = MultipartBoundary(r.Header("content-type"));
      if (!boundary.empty()) {
        mode = kMultipart;
      } else if (ParseContentRange(r.Header("content-range"), blob_size, &pos, &end)) {
        mode = kSingle;
      }
    }
  };
  req.on_body = [&](const char* p, size_t n) {
    if (mode == kMultipart) {
      if (buf.size() + n > max_multipart) return false;
      buf.append(p, n);
      return true;
    }
    if (mode == kNone || n > end - pos) return false;
    place(pos, std::string_view(p, n));
    pos += n;
    return pos < last_end;  // a 200 or a wide 206: stop after the last range
  };
  auto r = client.Do(req);
  if (mode != kMultipart || !r.ok() || r->status != 206) return;
  auto parts = ParseMultipartByteranges(boundary, buf, ranges, blob_size);
  if (!parts.ok()) return;  // not trusted at all: every range alone
  for (const RangePart& part : *parts) place(part.offset, part.bytes);
}

}  // namespace

Result<std::vector<std::string>> FetchBlobRanges(RegistryClient& client, const std::string& repo,
                                                 const Digest& blob, uint64_t blob_size,
                                                 const std::vector<BlobRange>& ranges,
                                                 size_t* requests,
                                                 const std::function<bool()>& cancelled) {
  std::vector<std::string> out(ranges.size());
  std::vector<uint64_t> filled(ranges.size(), 0);
  for (size_t i = 0; i < ranges.size(); i++) {
    const BlobRange& r = ranges[i];
    if (r.length == 0 || r.offset > blob_size || r.length > blob_size - r.offset ||
        (i && r.offset < ranges[i - 1].offset + ranges[i - 1].length))
      return Status::InvalidArgument("ranges not sorted, disjoint and inside the blob");
    out[i].assign(r.length, '\0');
  }
  if (ranges.empty()) return out;
  size_t n_req = 0;
  if (ranges.size() > 1) {
    MultiRangeOnce(client, repo, blob, blob_size, ranges, out, filled, cancelled);
    n_req++;
  }
  for (size_t i = 0; i < ranges.size(); i++) {
    if (filled[i] == ranges[i].length) continue;
    if (cancelled && cancelled()) return Status::Unavailable("range requests stopped");
    IMGFS_ASSIGN_OR_RETURN(out[i], FetchBlobRange(client, repo, blob, blob_size, ranges[i].offset,
                                                  ranges[i].length, cancelled));
    n_req++;
  }
  if (requests) *requests += n_req;
  return out;
}

Status RegistryRangeFetcher::FetchRanges(const std::vector<std::pair<uint64_t, uint64_t>>& ranges,
                                         const Sink& sink) {
  std::vector<BlobRange> asked;
  for (auto [off, len] : ranges) asked.push_back(BlobRange{off, len});
  IMGFS_ASSIGN_OR_RETURN(std::vector<std::string> got,
                         FetchBlobRanges(*client_, repo_, blob_, size_, asked));
  for (size_t i = 0; i < asked.size(); i++)
    IMGFS_RETURN_IF_ERROR(sink(asked[i].offset, got[i].data(), got[i].size()));
  return Status::Ok();
}

}  // namespace imgfs
