#include "registry/registry_client.h"

#include <simdjson.h>

#include <algorithm>
#include <cstring>

#include "index/pushed_source.h"
#include "registry/json.h"
#include "registry/printable.h"
#include "registry/registry_client_internal.h"

namespace imgfs {

namespace registry_detail {

std::string RegistryError(const HttpResponse& r) {
  simdjson::dom::parser p;
  simdjson::dom::object o;
  std::string out;
  if (!p.parse(r.body).get(o)) {
    simdjson::dom::array errs;
    if (!o["errors"].get(errs)) {
      for (auto e : errs) {
        std::string_view code, msg;
        if (!e["code"].get(code)) out += (out.empty() ? "" : "; ") + std::string(code);
        if (!e["message"].get(msg)) out += ": " + std::string(msg);
      }
    }
  }
  // The registry's words, but not its control bytes (terminal escapes) nor pages of them.
  out = Printable(out, 300);
  return "HTTP " + std::to_string(r.status) + (out.empty() ? "" : " (" + out + ")");
}

}  // namespace registry_detail

using registry_detail::RegistryError;

Result<ManifestResponse> RegistryClient::GetManifest(const std::string& repo,
                                                     const std::string& reference) {
  Request req;
  req.path_or_url = "/v2/" + repo + "/manifests/" + reference;
  req.scope = "repository:" + repo + ":pull";
  req.headers = {std::string("Accept: ") + media::kOciIndex + ", " + media::kDockerList + ", " +
                 media::kOciManifest + ", " + media::kDockerManifest +
                 ", application/vnd.docker.distribution.manifest.v1+prettyjws;q=0.1"};
  req.max_body = 4 << 20;
  IMGFS_ASSIGN_OR_RETURN(HttpResponse r, Do(req));
  if (r.status == 404)
    return Status::NotFound("manifest for " + host_ + "/" + repo + ":" + reference + " not found");
  if (r.status != 200)
    return Status::Unavailable("manifest " + reference + ": " + RegistryError(r));
  ManifestResponse m;
  m.bytes = std::move(r.body);
  m.content_type = r.Header("content-type");
  m.digest = Sha256Of(m.bytes);
  return m;
}

Result<std::string> RegistryClient::GetBlob(const std::string& repo, const Digest& digest,
                                            size_t max_size) {
  Request req;
  req.path_or_url = "/v2/" + repo + "/blobs/" + digest.str();
  req.scope = "repository:" + repo + ":pull";
  req.max_body = max_size;
  IMGFS_ASSIGN_OR_RETURN(HttpResponse r, Do(req));
  if (r.status == 404)
    return Status::NotFound("blob " + digest.str() + " not found in " + host_ + "/" + repo);
  if (r.status != 200) return Status::Unavailable("blob " + digest.str() + ": " + RegistryError(r));
  if (!(Sha256Of(r.body) == digest)) {
    return Status::Corruption("blob " + digest.str() + ": digest mismatch: content hashes to " +
                              Sha256Of(r.body).str());
  }
  return std::move(r.body);
}

Status RegistryClient::Ping(const Credentials& creds) {
  {
    std::lock_guard<std::mutex> l(mu_);
    creds_ = creds;
    creds_loaded_ = true;
    tokens_.clear();
    basic_.clear();
  }
  Request req;
  req.path_or_url = "/v2/";
  IMGFS_ASSIGN_OR_RETURN(HttpResponse r, Do(req));
  if (r.status == 401) return Status::Unavailable("login to " + host_ + " failed: unauthorized");
  if (r.status != 200) return Status::Unavailable("login to " + host_ + ": " + RegistryError(r));
  return Status::Ok();
}

namespace {

// The download loop of a streaming blob: each source in turn (foreign URLs, then the
// registry) until one answers 200/206, never another once bytes were delivered.
Status FetchBlob(RegistryClient* client, const std::vector<RegistryClient::Request>& tries,
                 const std::string& what, const PushedSource::Push& push) {
  Status st;
  for (size_t i = 0; i < tries.size(); i++) {
    RegistryClient::Request req = tries[i];
    uint64_t got = 0;
    req.on_body = [&](const char* p, size_t n) {
      got += n;
      return push(std::string_view(p, n));
    };
    // The reader went away (an early layer request of a pull whose config failed):
    // stop even a transfer that is sending nothing.
    req.cancelled = [&] { return !push(std::string_view()); };
    auto r = client->Do(req);
    if (r.ok() && (r->status == 200 || r->status == 206)) {
      st = Status::Ok();
      break;
    }
    // Transport errors name their URL; the caller names the layer.
    st = r.ok() ? Status::Unavailable(what + ": " + RegistryError(*r)) : r.status();
    if (r.ok() && r->status == 404) st = Status::NotFound(what + ": not found in the registry");
    if (got > 0) break;  // bytes already delivered: another source cannot continue them
  }
  ReportStageCpu("receive", ThreadCpuSeconds());
  return st;
}

}  // namespace

Result<std::unique_ptr<ByteSource>> RegistryClient::OpenBlob(const std::string& repo,
                                                             const Digest& digest,
                                                             const std::vector<std::string>& urls,
                                                             uint64_t size, uint64_t offset) {
  std::vector<Request> tries;
  for (const std::string& u : urls) {
    // Not http(s): skipped, the registry itself is asked (the OCI spec allows only
    // http and https here).
    if (!CheckFetchUrl(u, "foreign layer URL").ok()) continue;
    Request r;
    r.path_or_url = u;  // foreign layer: no registry credentials go there
    r.max_stream = size;
    r.range_start = offset;
    tries.push_back(r);
  }
  Request r;
  r.path_or_url = "/v2/" + repo + "/blobs/" + digest.str();
  r.scope = "repository:" + repo + ":pull";
  r.max_stream = size;
  r.range_start = offset;
  tries.push_back(r);
  // A download thread feeds a bounded queue (2 MiB) the reader takes from.
  std::string what = "blob " + digest.str();
  return std::unique_ptr<ByteSource>(new PushedSource(
      [this, tries = std::move(tries), what](const PushedSource::Push& push) {
        return FetchBlob(this, tries, what, push);
      },
      2 << 20));
}

}  // namespace imgfs
