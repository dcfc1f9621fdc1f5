#include "registry/registry_client.h"

#include <simdjson.h>

#include <algorithm>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <thread>

#include "registry/json.h"
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
  if (out.size() > 300) out = out.substr(0, 300) + "…";
  for (char& c : out)
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) c = '?';
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

// A blob body streamed from a download thread through a bounded queue.
class BlobSource : public ByteSource {
 public:
  BlobSource(RegistryClient* client, std::vector<RegistryClient::Request> tries, std::string what)
      : client_(client), tries_(std::move(tries)), what_(std::move(what)) {
    thread_ = std::thread([this] { Run(); });
  }
  ~BlobSource() override {
    {
      std::lock_guard<std::mutex> l(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    thread_.join();
  }
  Result<size_t> Read(void* buf, size_t n) override {
    std::unique_lock<std::mutex> l(mu_);
    cv_.wait(l, [&] { return !queue_.empty() || done_; });
    if (queue_.empty()) {
      if (!error_.ok()) return error_;
      return size_t{0};
    }
    std::string& front = queue_.front();
    size_t k = std::min(n, front.size() - front_pos_);
    std::memcpy(buf, front.data() + front_pos_, k);
    front_pos_ += k;
    queued_ -= k;
    if (front_pos_ == front.size()) {
      queue_.pop_front();
      front_pos_ = 0;
    }
    cv_.notify_all();
    return k;
  }

 private:
  static constexpr size_t kMaxQueued = 2 << 20;
  bool Push(const char* p, size_t n) {
    std::unique_lock<std::mutex> l(mu_);
    cv_.wait(l, [&] { return stop_ || queued_ < kMaxQueued; });
    if (stop_) return false;
    if (!queue_.empty() && queue_.back().size() < (1 << 20) && queue_.size() > 1) {
      queue_.back().append(p, n);
    } else {
      queue_.emplace_back(p, n);
    }
    queued_ += n;
    cv_.notify_all();
    return true;
  }
  void Run() {
    Status st;
    for (size_t i = 0; i < tries_.size(); i++) {
      RegistryClient::Request req = tries_[i];
      uint64_t got = 0;
      req.on_body = [&](const char* p, size_t n) {
        got += n;
        return Push(p, n);
      };
      auto r = client_->Do(req);
      if (r.ok() && (r->status == 200 || r->status == 206)) {
        st = Status::Ok();
        break;
      }
      // Transport errors name their URL; the caller names the layer.
      st = r.ok() ? Status::Unavailable(what_ + ": " + RegistryError(*r)) : r.status();
      if (r.ok() && r->status == 404) st = Status::NotFound(what_ + ": not found in the registry");
      if (got > 0) break;  // bytes already delivered: another source cannot continue them
    }
    ReportStageCpu("receive", ThreadCpuSeconds());
    std::lock_guard<std::mutex> l(mu_);
    error_ = st;
    done_ = true;
    cv_.notify_all();
  }
  RegistryClient* client_;
  std::vector<RegistryClient::Request> tries_;
  std::string what_;
  std::mutex mu_;  // guards everything below
  std::condition_variable cv_;
  std::deque<std::string> queue_;
  size_t front_pos_ = 0;
  size_t queued_ = 0;
  bool stop_ = false;
  bool done_ = false;
  Status error_;
  std::thread thread_;
};

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
  return std::unique_ptr<ByteSource>(
      new BlobSource(this, std::move(tries), "blob " + digest.str()));
}

}  // namespace imgfs
