#include "registry/registry_client.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <dirent.h>
#include <fcntl.h>
#include <simdjson.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <deque>
#include <thread>

#include "index/file_util.h"
#include "registry/json.h"

namespace imgfs {
namespace {

std::once_flag g_curl_once;

struct CurlFree {
  void operator()(CURL* c) const { curl_easy_cleanup(c); }
};
struct SlistFree {
  void operator()(curl_slist* l) const { curl_slist_free_all(l); }
};

std::string Lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::tolower(c); });
  return s;
}

std::string Trim(std::string s) {
  while (!s.empty() && (s.back() == '\r' || s.back() == '\n' || s.back() == ' ')) s.pop_back();
  size_t i = 0;
  while (i < s.size() && s[i] == ' ') i++;
  return s.substr(i);
}

// Per-transfer state shared with curl's callbacks.
struct Transfer {
  HttpResponse response;
  const RegistryClient::Request* req = nullptr;
  uint64_t skip = 0;       // bytes of a 200 body to drop when a Range was ignored
  uint64_t delivered = 0;  // body bytes handed to on_body
  bool aborted = false;    // on_body asked to stop
  bool too_large = false;
};

// The request body of an upload: a string or a byte range of a file.
struct Upload {
  const RegistryClient::Request* req = nullptr;
  uint64_t sent = 0;
};

size_t ReadUploadCb(char* buf, size_t size, size_t n, void* self) {
  auto* u = static_cast<Upload*>(self);
  const auto& r = *u->req;
  uint64_t total = r.body_fd >= 0 ? r.body_size : r.body.size();
  size_t want = static_cast<size_t>(std::min<uint64_t>(size * n, total - u->sent));
  if (want == 0) return 0;
  if (r.body_fd < 0) {
    std::memcpy(buf, r.body.data() + u->sent, want);
  } else {
    ssize_t got;
    do {
      got = ::pread(r.body_fd, buf, want, static_cast<off_t>(r.body_offset + u->sent));
    } while (got < 0 && errno == EINTR);
    if (got <= 0) return CURL_READFUNC_ABORT;
    want = static_cast<size_t>(got);
  }
  u->sent += want;
  return want;
}

// Sets the method and body of `req` on a handle (nothing for a plain GET).
void ApplyMethod(CURL* e, const RegistryClient::Request& req, Upload* up, curl_slist** headers) {
  if (req.method.empty() || req.method == "GET") return;
  if (req.method == "HEAD") {
    curl_easy_setopt(e, CURLOPT_NOBODY, 1L);
    return;
  }
  up->req = &req;
  up->sent = 0;
  uint64_t total = req.body_fd >= 0 ? req.body_size : req.body.size();
  curl_easy_setopt(e, CURLOPT_UPLOAD, 1L);
  curl_easy_setopt(e, CURLOPT_READFUNCTION, ReadUploadCb);
  curl_easy_setopt(e, CURLOPT_READDATA, up);
  curl_easy_setopt(e, CURLOPT_INFILESIZE_LARGE, static_cast<curl_off_t>(total));
  if (req.method != "PUT") curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, req.method.c_str());
  // No "Expect: 100-continue" round trip: registries answer uploads directly.
  *headers = curl_slist_append(*headers, "Expect:");
}

size_t HeaderCb(char* buf, size_t size, size_t n, void* self) {
  auto* t = static_cast<Transfer*>(self);
  std::string line(buf, size * n);
  if (line.rfind("HTTP/", 0) == 0) {  // a new response (redirects, 100-continue)
    t->response.headers.clear();
    size_t sp = line.find(' ');
    t->response.status = sp == std::string::npos ? 0 : std::atol(line.c_str() + sp + 1);
    // A 200 to a Range request restarts the body at 0: drop what was delivered already.
    t->skip = t->response.status == 200 ? t->req->range_start : 0;
    return size * n;
  }
  size_t colon = line.find(':');
  if (colon != std::string::npos) {
    t->response.headers[Lower(line.substr(0, colon))] = Trim(line.substr(colon + 1));
  } else if (Trim(line).empty() && t->req && t->req->on_headers &&
             (t->response.status == 200 || t->response.status == 206)) {
    t->req->on_headers(t->response);
  }
  return size * n;
}

size_t WriteCb(char* buf, size_t size, size_t n, void* self) {
  auto* t = static_cast<Transfer*>(self);
  size_t len = size * n;
  long st = t->response.status;
  if (t->req->on_body && (st == 200 || st == 206)) {
    const char* p = buf;
    size_t k = len;
    if (t->skip) {
      size_t drop = static_cast<size_t>(std::min<uint64_t>(t->skip, k));
      t->skip -= drop;
      p += drop;
      k -= drop;
    }
    // Past the declared size: stop now, before a byte of it is handed on.
    if (k && t->req->range_start + t->delivered + k > t->req->max_stream) {
      t->too_large = true;
      return 0;
    }
    if (k && !t->req->on_body(p, k)) {
      t->aborted = true;
      return 0;
    }
    t->delivered += k;
    return len;
  }
  size_t max = t->req->on_body ? 64 << 10 : t->req->max_body;  // error bodies stay small
  if (t->response.body.size() + len > max) {
    t->too_large = true;
    return 0;
  }
  t->response.body.append(buf, len);
  return len;
}

// Every curl handle imgfs makes goes through here: what a URL may be, how long a
// connection may take to open and how slow a transfer may become.
void ApplySafetyOptions(CURL* e, const RegistryOptions& o) {
  // Only http and https, for the first URL and for every redirect: a registry must not
  // be able to make imgfs speak gopher, dict or file (protocol smuggling to a local
  // port, reading local files).
  curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(e, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 1L);
  curl_easy_setopt(e, CURLOPT_MAXREDIRS, 10L);
  // No credentials for a redirect's host (this also covers the Authorization header
  // set through CURLOPT_HTTPHEADER).
  curl_easy_setopt(e, CURLOPT_UNRESTRICTED_AUTH, 0L);
  curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT, std::max(1L, o.connect_timeout));
  // A registry that trickles keeps a pull (and its locks) alive forever otherwise.
  curl_easy_setopt(e, CURLOPT_LOW_SPEED_LIMIT, std::max(1L, o.low_speed_limit));
  curl_easy_setopt(e, CURLOPT_LOW_SPEED_TIME, std::max(1L, o.low_speed_seconds));
}

bool TransientCurl(CURLcode rc) {
  switch (rc) {
    case CURLE_COULDNT_CONNECT:
    case CURLE_RECV_ERROR:
    case CURLE_SEND_ERROR:
    case CURLE_PARTIAL_FILE:
    case CURLE_OPERATION_TIMEDOUT:
    case CURLE_GOT_NOTHING:
    case CURLE_HTTP2:
    case CURLE_HTTP2_STREAM:
    case CURLE_COULDNT_RESOLVE_HOST:
      return true;
    default:
      return false;
  }
}

// "Bearer realm="…",service="…",scope="…"" → scheme + params.
void ParseChallenge(const std::string& h, std::string* scheme,
                    std::map<std::string, std::string>* params) {
  size_t sp = h.find(' ');
  *scheme = Lower(h.substr(0, sp));
  if (sp == std::string::npos) return;
  size_t i = sp + 1;
  while (i < h.size()) {
    while (i < h.size() && (h[i] == ' ' || h[i] == ',')) i++;
    size_t eq = h.find('=', i);
    if (eq == std::string::npos) break;
    std::string key = Lower(Trim(h.substr(i, eq - i)));
    std::string val;
    i = eq + 1;
    if (i < h.size() && h[i] == '"') {
      i++;
      while (i < h.size() && h[i] != '"') {
        if (h[i] == '\\' && i + 1 < h.size()) i++;
        val.push_back(h[i++]);
      }
      i++;
    } else {
      size_t end = h.find(',', i);
      val = h.substr(i, end == std::string::npos ? std::string::npos : end - i);
      i = end == std::string::npos ? h.size() : end;
    }
    (*params)[key] = Trim(val);
  }
}

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

}  // namespace

std::string UrlHost(const std::string& url) {
  size_t p = url.find("://");
  if (p == std::string::npos) return "";
  p += 3;
  size_t end = url.find_first_of("/?#", p);
  std::string auth = url.substr(p, end == std::string::npos ? std::string::npos : end - p);
  size_t at = auth.rfind('@');
  return at == std::string::npos ? auth : auth.substr(at + 1);
}

Status CheckFetchUrl(const std::string& url, const std::string& what) {
  auto bad = [&](const std::string& why) {
    std::string shown = url.size() > 200 ? url.substr(0, 200) + "…" : url;
    for (char& c : shown)
      if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) c = '?';
    return Status::InvalidArgument(what + " \"" + shown + "\": " + why);
  };
  std::string lower = Lower(url.substr(0, 8));
  if (lower.rfind("http://", 0) != 0 && lower.rfind("https://", 0) != 0)
    return bad("only http and https URLs are allowed");
  for (char c : url) {
    if (static_cast<unsigned char>(c) <= 0x20 || c == 0x7f)
      return bad("control character or space");
  }
  if (UrlHost(url).empty()) return bad("no host");
  return Status::Ok();
}

bool IsLoopbackHost(const std::string& host) {
  std::string h = host;
  if (!h.empty() && h[0] == '[') {
    h = h.substr(1, h.find(']') - 1);
  } else if (size_t c = h.rfind(':'); c != std::string::npos && h.find(':') == c) {
    h = h.substr(0, c);
  }
  if (h == "localhost" || h == "::1") return true;
  in_addr a;
  return ::inet_pton(AF_INET, h.c_str(), &a) == 1 && (ntohl(a.s_addr) >> 24) == 127;
}

RegistryClient::RegistryClient(std::string host, RegistryOptions options)
    : host_(std::move(host)), options_(std::move(options)) {
  std::call_once(g_curl_once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
  LoadTlsDir();
}

// The host's certificate directory (registry_client.h), read once: every *.crt (in
// name order) as extra CAs, and the first NAME.cert that has its NAME.key.
void RegistryClient::LoadTlsDir() {
  std::vector<std::string> dirs;
  if (!options_.cert_dir.empty()) {
    dirs.push_back(options_.cert_dir);
  } else {
    const char* home = std::getenv("HOME");
    const char* x = std::getenv("XDG_CONFIG_HOME");
    std::string cfg = x && *x ? x : std::string(home ? home : "/root") + "/.config";
    dirs = {cfg + "/containers/certs.d/" + host_, "/etc/containers/certs.d/" + host_,
            options_.certs_dir + "/" + host_};
  }
  for (const std::string& dir : dirs) {
    DIR* d = ::opendir(dir.c_str());
    if (!d) continue;
    std::vector<std::string> names;
    while (dirent* de = ::readdir(d)) names.push_back(de->d_name);
    ::closedir(d);
    std::sort(names.begin(), names.end());
    tls_dir_ = dir;
    auto ends = [](const std::string& n, const char* suf) {
      size_t k = std::strlen(suf);
      return n.size() > k && n.compare(n.size() - k, k, suf) == 0;
    };
    for (const std::string& n : names) {
      if (ends(n, ".crt")) {
        auto pem = ReadFileToString(dir + "/" + n, 4 << 20);
        if (pem.ok()) ca_blob_ += *pem + "\n";
      } else if (ends(n, ".cert") && client_cert_.empty()) {
        std::string base = n.substr(0, n.size() - 5);
        if (PathExists(dir + "/" + base + ".key")) {
          client_cert_ = dir + "/" + n;
          client_key_ = dir + "/" + base + ".key";
        }
      }
    }
    break;  // the first directory that exists, as containers/image
  }
}

RegistryClient::~RegistryClient() {
  for (void* h : idle_) curl_easy_cleanup(static_cast<CURL*>(h));
}

void* RegistryClient::TakeHandle() {
  {
    std::lock_guard<std::mutex> l(pool_mu_);
    if (!idle_.empty()) {
      void* h = idle_.back();
      idle_.pop_back();
      return h;
    }
  }
  return curl_easy_init();
}

void RegistryClient::GiveBack(void* h) {
  // Reset now: the handle must not keep pointers into a finished request's state. A
  // reset handle keeps its connection cache, DNS cache and TLS session IDs.
  curl_easy_reset(static_cast<CURL*>(h));
  std::lock_guard<std::mutex> l(pool_mu_);
  if (idle_.size() < 8) {
    idle_.push_back(h);
    return;
  }
  curl_easy_cleanup(static_cast<CURL*>(h));
}

std::string RegistryClient::ApiHost() const {
  return host_ == "docker.io" || host_ == "index.docker.io" ? "registry-1.docker.io" : host_;
}

Result<HttpResponse> RegistryClient::Once(const Request& req, const std::string& url,
                                          const std::string& auth, bool* transient,
                                          bool* no_connection) {
  *transient = false;
  if (no_connection) *no_connection = false;
  IMGFS_RETURN_IF_ERROR(CheckFetchUrl(url, "URL"));
  // A pooled handle (its open connection reused), given back when this request ends.
  struct Pooled {
    RegistryClient* client;
    CURL* h;
    CURL* get() const { return h; }
    ~Pooled() {
      if (h) client->GiveBack(h);
    }
  } c{this, static_cast<CURL*>(TakeHandle())};
  if (!c.h) return Status::Exhausted("curl: out of memory");
  Transfer t;
  t.req = &req;
  t.skip = 0;
  std::unique_ptr<curl_slist, SlistFree> headers;
  curl_slist* h = nullptr;
  for (const std::string& x : req.headers) h = curl_slist_append(h, x.c_str());
  if (!auth.empty()) h = curl_slist_append(h, ("Authorization: " + auth).c_str());
  Upload upload;
  ApplyMethod(c.get(), req, &upload, &h);
  headers.reset(h);
  CURL* e = c.get();
  ApplySafetyOptions(e, options_);
  char errbuf[CURL_ERROR_SIZE] = "";
  curl_easy_setopt(e, CURLOPT_ERRORBUFFER, errbuf);
  curl_easy_setopt(e, CURLOPT_URL, url.c_str());
  curl_easy_setopt(e, CURLOPT_HTTPHEADER, headers.get());
  curl_easy_setopt(e, CURLOPT_USERAGENT, options_.user_agent.c_str());
  // A Content-Length past the limit fails before the body is read.
  uint64_t limit = req.on_body ? req.max_stream : req.max_body;
  if (req.range_start == 0 && limit != UINT64_MAX) {
    curl_easy_setopt(e, CURLOPT_MAXFILESIZE_LARGE, static_cast<curl_off_t>(limit));
  }
  curl_easy_setopt(e, CURLOPT_HTTP_VERSION, CURL_HTTP_VERSION_2TLS);
  curl_easy_setopt(e, CURLOPT_BUFFERSIZE, 512L << 10);
  curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, HeaderCb);
  curl_easy_setopt(e, CURLOPT_HEADERDATA, &t);
  curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, WriteCb);
  curl_easy_setopt(e, CURLOPT_WRITEDATA, &t);
  std::string range;
  if (req.range_start || req.range_end) {
    range = std::to_string(req.range_start) + "-" +
            (req.range_end > req.range_start ? std::to_string(req.range_end - 1) : "");
    curl_easy_setopt(e, CURLOPT_RANGE, range.c_str());
  }
  if (!req.post_form.empty()) {
    curl_easy_setopt(e, CURLOPT_POSTFIELDS, req.post_form.c_str());
    curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE, static_cast<long>(req.post_form.size()));
  }
  // certs.d (read once, in the constructor): its *.crt added to the system CAs, and a
  // client certificate and key.
  if (url.rfind("https://", 0) == 0) {
    if (!ca_blob_.empty()) {
      curl_blob blob{ca_blob_.data(), ca_blob_.size(), CURL_BLOB_COPY};
      curl_easy_setopt(e, CURLOPT_CAINFO_BLOB, &blob);
      curl_easy_setopt(e, CURLOPT_CAPATH, "/etc/ssl/certs");
    }
    if (!client_cert_.empty()) {
      curl_easy_setopt(e, CURLOPT_SSLCERT, client_cert_.c_str());
      curl_easy_setopt(e, CURLOPT_SSLKEY, client_key_.c_str());
    }
    if (!options_.tls_verify) {
      curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 0L);
      curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 0L);
    }
  }
  CURLcode rc = curl_easy_perform(e);
  curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &t.response.status);
  if (rc != CURLE_OK) {
    if (t.aborted) return Status::Unavailable("download stopped");
    if (t.too_large || rc == CURLE_FILESIZE_EXCEEDED) {
      return Status::InvalidArgument(
          "GET " + url + ": the response is larger than " +
          (req.on_body ? "the " + std::to_string(limit) + " bytes its descriptor declares"
                       : "the " + std::to_string(limit) + "-byte limit"));
    }
    *transient = TransientCurl(rc);
    if (no_connection)
      *no_connection = rc == CURLE_COULDNT_CONNECT || rc == CURLE_COULDNT_RESOLVE_HOST;
    std::string why = errbuf[0] ? std::string(errbuf) : curl_easy_strerror(rc);
    if (rc == CURLE_OPERATION_TIMEDOUT && why.find("too slow") != std::string::npos) {
      why = "stalled: " + why + " (limit: " + std::to_string(options_.low_speed_limit) +
            " bytes/s over " + std::to_string(options_.low_speed_seconds) + " s)";
    }
    Status st = Status::Unavailable("GET " + url + ": " + why);
    if (t.delivered) {
      // Partial body delivered: tell the caller where to resume.
      t.response.headers["x-imgfs-delivered"] = std::to_string(t.delivered);
      *transient = true;
    }
    return st;
  }
  return t.response;
}

// GET BASE/v2/ with 5xx and 429 retried (a load balancer's one 500 is not "no registry
// here"). `answered`: an HTTP server answered on this scheme (any status), so another
// scheme is not worth trying. `transient`: no answer, but a reset or timeout that
// another round may not meet ("nothing listens" is not one).
Result<HttpResponse> RegistryClient::PingBase(const std::string& base, bool* answered,
                                              bool* transient, int* attempts) {
  *answered = false;
  *transient = false;
  Request ping;
  auto start = std::chrono::steady_clock::now();
  double backoff = options_.initial_backoff;
  for (int attempt = 1;; attempt++) {
    bool no_connection = false;
    auto r = Once(ping, base + "/v2/", "", transient, &no_connection);
    if (!r.ok()) {
      *transient = *transient && !no_connection;
      return r;
    }
    *transient = false;
    *answered = true;
    double waited = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    if ((r->status == 429 || r->status >= 500) && attempt < options_.max_attempts &&
        waited < options_.max_retry_seconds) {
      std::this_thread::sleep_for(std::chrono::duration<double>(backoff));
      backoff = std::min(backoff * 2, 8.0);
      continue;
    }
    *attempts = attempt;
    return r;
  }
}

Result<std::string> RegistryClient::BaseUrl() {
  {
    std::lock_guard<std::mutex> l(mu_);
    if (!base_url_.empty()) return base_url_;
  }
  std::vector<std::string> candidates;
  if (host_ == "docker.io" || host_ == "index.docker.io") {
    for (std::string m : options_.mirrors) {
      while (!m.empty() && m.back() == '/') m.pop_back();
      IMGFS_RETURN_IF_ERROR(CheckFetchUrl(m, "registry mirror"));
      candidates.push_back(m);
    }
  }
  bool insecure =
      !options_.tls_verify || IsLoopbackHost(host_) ||
      std::find(options_.insecure_registries.begin(), options_.insecure_registries.end(), host_) !=
          options_.insecure_registries.end();
  // Loopback: plain HTTP first (the usual case for a local registry, and it spares the
  // TLS set-up, ~20 ms of loading the CA bundle); an HTTPS-only local registry answers
  // HTTP with 400, which is not taken for a registry, and HTTPS is tried next. Other
  // insecure registries try HTTPS first, as docker does.
  if (IsLoopbackHost(host_)) candidates.push_back("http://" + ApiHost());
  candidates.push_back("https://" + ApiHost());
  if (insecure && !IsLoopbackHost(host_)) candidates.push_back("http://" + ApiHost());
  auto start = std::chrono::steady_clock::now();
  double backoff = options_.initial_backoff;
  for (int round = 1;; round++) {
    std::string last_error;
    bool retry_round = false;
    for (const std::string& base : candidates) {
      bool answered = false, transient = false;
      int attempts = 1;
      bool https = base.rfind("https://", 0) == 0;
      auto r = PingBase(base, &answered, &transient, &attempts);
      if (r.ok() && (r->status == 200 || r->status == 401)) {
        std::lock_guard<std::mutex> l(mu_);
        base_url_ = base;
        return base_url_;
      }
      if (r.ok() && (r->status == 429 || r->status >= 500)) {
        // An HTTP server answered on this scheme and kept failing: that is the error,
        // not whatever another scheme would say.
        return Status::Unavailable(
            "registry " + host_ + ": GET " + base + "/v2/: " + RegistryError(*r) +
            (attempts > 1 ? " after " + std::to_string(attempts) + " attempts" : ""));
      }
      // 400 from an HTTPS port asked in plain HTTP, 404 from some web server: not a
      // registry endpoint.
      if (r.ok()) {
        if (last_error.empty() || https)
          last_error = "GET " + base + "/v2/: HTTP " + std::to_string(r->status);
        continue;
      }
      // A reset or timeout (not "nothing listens") is worth another round.
      retry_round = retry_round || transient;
      // The HTTPS failure says most (a certificate problem, say); otherwise the first one.
      if (last_error.empty() || https) last_error = r.status().message();
    }
    double waited = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    if (retry_round && round < options_.max_attempts && waited < options_.max_retry_seconds) {
      std::this_thread::sleep_for(std::chrono::duration<double>(backoff));
      backoff = std::min(backoff * 2, 8.0);
      continue;
    }
    std::string hint =
        insecure ? ""
                 : " (if it serves plain HTTP, allow it with --insecure-registry " + host_ + ")";
    return Status::Unavailable("registry " + host_ + " is not reachable: " + last_error + hint +
                               (round > 1 ? " (" + std::to_string(round) + " attempts)" : ""));
  }
}

Result<std::string> RegistryClient::AuthHeader(const std::string& scope) {
  std::lock_guard<std::mutex> l(mu_);
  auto it = tokens_.find(scope);
  if (it != tokens_.end()) return it->second;
  LoadCachedToken(scope);
  it = tokens_.find(scope);
  if (it != tokens_.end()) return it->second;
  return basic_;
}

std::string RegistryClient::TokenFile(const std::string& scope) const {
  // Named by a hash: a scope holds characters a file name must not.
  return options_.token_cache_dir + "/" + Sha256Of(ApiHost() + "\n" + scope).hex();
}

void RegistryClient::LoadCachedToken(const std::string& scope) {
  if (options_.token_cache_dir.empty() || scope.empty() || disk_checked_[scope]) return;
  disk_checked_[scope] = true;
  auto text = ReadFileToString(TokenFile(scope), 64 << 10);
  if (!text.ok()) return;
  // "imgfs-token 1 EXPIRY_UNIX\nBearer …\n"; anything else is ignored (and replaced).
  long long expiry = 0;
  char header_start[16] = "";
  if (std::sscanf(text->c_str(), "imgfs-token 1 %lld\n%15s", &expiry, header_start) != 2 ||
      std::string(header_start) != "Bearer")
    return;
  if (expiry <= static_cast<long long>(::time(nullptr))) return;
  size_t nl = text->find('\n');
  std::string header = Trim(text->substr(nl + 1));
  if (header.size() <= 7) return;
  for (char ch : header)
    if (static_cast<unsigned char>(ch) < 0x20 || ch == 0x7f) return;  // no header injection
  tokens_[scope] = header;
}

void RegistryClient::SaveToken(const std::string& scope, const std::string& header,
                               double expires_in) {
  if (options_.token_cache_dir.empty() || scope.empty()) return;
  // Expire early: a token that lapses between the check and the request costs a 401
  // and a fresh token, not a failure, but the margin spares that round trip.
  double margin = std::min(30.0, expires_in / 2);
  long long expiry =
      static_cast<long long>(::time(nullptr)) + static_cast<long long>(expires_in - margin);
  if (!MakeDirs(options_.token_cache_dir, 0700).ok()) return;
  std::string path = TokenFile(scope);
  std::string tmp = path + "." + std::to_string(::getpid()) + ".tmp";
  auto fd = OpenFile(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0600);
  if (!fd.ok()) return;
  std::string text = "imgfs-token 1 " + std::to_string(expiry) + "\n" + header + "\n";
  // Best effort: a token that cannot be kept is fetched again next time.
  if (::fchmod(fd->get(), 0600) != 0 || !WriteAll(fd->get(), text.data(), text.size()).ok() ||
      ::rename(tmp.c_str(), path.c_str()) != 0) {
    ::unlink(tmp.c_str());
  }
}

Status RegistryClient::Authenticate(const HttpResponse& challenge, const std::string& scope) {
  std::string header = challenge.Header("www-authenticate");
  std::string scheme;
  std::map<std::string, std::string> params;
  ParseChallenge(header, &scheme, &params);
  Credentials creds;
  {
    std::lock_guard<std::mutex> l(mu_);
    if (!creds_loaded_) {
      if (!options_.creds.empty()) {
        creds_ = options_.creds;
      } else {
        auto c = LookupCredentials(host_, options_.authfile);
        if (!c.ok()) return c.status();
        creds_ = *c;
      }
      creds_loaded_ = true;
    }
    creds = creds_;
  }
  std::string basic = creds.username.empty() && creds.secret.empty()
                          ? ""
                          : "Basic " + Base64Encode(creds.username + ":" + creds.secret);
  if (scheme == "basic") {
    if (basic.empty()) {
      return Status::Unavailable("registry " + host_ +
                                 " requires authentication: run imgfs login " + host_);
    }
    std::lock_guard<std::mutex> l(mu_);
    basic_ = basic;
    tokens_[scope] = basic;
    return Status::Ok();
  }
  if (scheme != "bearer" || params["realm"].empty()) {
    return Status::Unsupported("registry " + host_ + " asks for unsupported authentication \"" +
                               scheme + "\"");
  }
  // The realm is the registry's choice and may name another host (auth.docker.io for
  // registry-1.docker.io). Like docker, imgfs sends the user's credentials for this
  // registry there: a registry could as well ask for them with a Basic challenge. But
  // only over http(s) (no gopher:// or file:// smuggling), and never in clear text to a
  // realm when the registry itself was reached over HTTPS.
  std::string url = params["realm"];
  IMGFS_RETURN_IF_ERROR(CheckFetchUrl(url, "registry " + host_ + ": token realm"));
  std::string base;
  {
    std::lock_guard<std::mutex> l(mu_);
    base = base_url_;
  }
  std::string realm_host = UrlHost(url);
  if (!basic.empty() && Lower(url.substr(0, 7)) == "http://" && base.rfind("https://", 0) == 0 &&
      !IsLoopbackHost(realm_host) &&
      std::find(options_.insecure_registries.begin(), options_.insecure_registries.end(),
                realm_host) == options_.insecure_registries.end()) {
    return Status::InvalidArgument("registry " + host_ + ": token realm \"" + url +
                                   "\" is plain HTTP: refusing to send credentials in clear text");
  }
  std::unique_ptr<CURL, CurlFree> esc(curl_easy_init());
  if (!esc) return Status::Exhausted("curl: out of memory");
  std::string sep = url.find('?') == std::string::npos ? "?" : "&";
  auto escape = [&](const std::string& v) {
    char* e = curl_easy_escape(esc.get(), v.c_str(), static_cast<int>(v.size()));
    std::string out = e ? e : "";
    curl_free(e);
    return out;
  };
  std::string realm = url;
  auto add = [&](const std::string& k, const std::string& v) {
    if (v.empty()) return;
    url += sep + k + "=" + escape(v);
    sep = "&";
  };
  add("service", params["service"]);
  add("scope", scope.empty() ? params["scope"] : scope);
  Request tr;
  tr.path_or_url = url;
  tr.headers = {"Accept: application/json"};
  tr.auth = basic;
  tr.max_body = 1 << 20;  // tokens are a few KB
  if (!creds.identity_token.empty()) {
    // An identity token (docker login's OAuth2 refresh token): POST it to the realm,
    // as docker does; no Basic header then. A realm without OAuth2 (404/405) gets the
    // usual GET when there is a user and password.
    if (Lower(realm.substr(0, 7)) == "http://" && base.rfind("https://", 0) == 0 &&
        !IsLoopbackHost(realm_host)) {
      return Status::InvalidArgument("registry " + host_ + ": token realm \"" + realm +
                                     "\" is plain HTTP: refusing to send an identity token");
    }
    Request post;
    post.path_or_url = realm;
    post.headers = {"Accept: application/json", "Content-Type: application/x-www-form-urlencoded"};
    post.max_body = 1 << 20;
    std::string sc = scope.empty() ? params["scope"] : scope;
    post.post_form =
        "grant_type=refresh_token&client_id=imgfs&refresh_token=" + escape(creds.identity_token) +
        "&service=" + escape(params["service"]) + (sc.empty() ? "" : "&scope=" + escape(sc));
    auto pr = Do(post);
    if (!pr.ok()) return pr.status().WithContext("token service");
    if (pr->status == 200 || basic.empty() || (pr->status != 404 && pr->status != 405)) {
      if (pr->status == 401 || pr->status == 403)
        return Status::Unavailable("registry " + host_ +
                                   ": authentication failed (identity token refused)");
      if (pr->status != 200)
        return Status::Unavailable("token service: POST " + realm + ": " + RegistryError(*pr));
      simdjson::dom::parser p;
      simdjson::dom::object o;
      std::string_view token;
      if (p.parse(pr->body).get(o) || (o["access_token"].get(token) && o["token"].get(token)) ||
          token.empty()) {
        return Status::Unavailable("token service returned no access token");
      }
      std::lock_guard<std::mutex> l(mu_);
      tokens_[scope] = "Bearer " + std::string(token);
      return Status::Ok();
    }
  }
  auto r = Do(tr);
  if (!r.ok()) return r.status().WithContext("token service");
  if (r->status == 401 || r->status == 403) {
    return Status::Unavailable(
        "registry " + host_ + ": authentication failed" +
        (creds.empty() ? " (no credentials: run imgfs login " + host_ + ")" : ""));
  }
  if (r->status != 200)
    return Status::Unavailable("token service: GET " + url + ": " + RegistryError(*r));
  simdjson::dom::parser p;
  simdjson::dom::object o;
  std::string_view token;
  if (p.parse(r->body).get(o) || (o["token"].get(token) && o["access_token"].get(token))) {
    return Status::Unavailable("token service returned no token");
  }
  // Registries that omit expires_in mean 60 s (the distribution token spec).
  double expires_in = 60;
  double ei = 0;
  int64_t eii = 0;
  if (!o["expires_in"].get(ei)) {
    expires_in = ei;
  } else if (!o["expires_in"].get(eii)) {
    expires_in = static_cast<double>(eii);
  }
  std::lock_guard<std::mutex> l(mu_);
  tokens_[scope] = "Bearer " + std::string(token);
  SaveToken(scope, tokens_[scope], expires_in);
  return Status::Ok();
}

Result<HttpResponse> RegistryClient::Do(const Request& in) {
  Request req = in;
  std::string url = req.path_or_url;
  // An absolute URL is not the registry (a foreign layer's location, a token realm):
  // only the credentials the caller names in `auth`.
  bool foreign = url.find("://") != std::string::npos;
  if (foreign) {
    IMGFS_RETURN_IF_ERROR(CheckFetchUrl(url, "URL"));
  } else {
    IMGFS_ASSIGN_OR_RETURN(std::string base, BaseUrl());
    url = base + url;
  }
  auto start = std::chrono::steady_clock::now();
  double backoff = options_.initial_backoff;
  bool reauthed = false;
  uint64_t delivered_total = 0;
  // Count what reaches the caller, so a retry resumes after it.
  auto user_body = in.on_body;
  if (user_body) {
    req.on_body = [&](const char* p, size_t n) {
      if (!user_body(p, n)) return false;
      delivered_total += n;
      return true;
    };
  }
  for (int attempt = 1;; attempt++) {
    req.range_start = in.range_start + delivered_total;
    std::string auth = req.auth;
    if (!foreign) {
      IMGFS_ASSIGN_OR_RETURN(auth, AuthHeader(req.scope));
    }
    bool transient = false;
    auto r = Once(req, url, auth, &transient);
    double waited = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    bool can_retry = req.retry_transient && attempt < options_.max_attempts &&
                     waited < options_.max_retry_seconds;
    if (!r.ok()) {
      if (transient && can_retry) {
        std::this_thread::sleep_for(std::chrono::duration<double>(backoff));
        backoff = std::min(backoff * 2, 8.0);
        continue;
      }
      if (attempt == 1) return r.status();
      return r.status().WithContext("after " + std::to_string(attempt) + " attempts");
    }
    if (r->status == 401 && !reauthed && !foreign) {
      reauthed = true;
      {
        std::lock_guard<std::mutex> l(mu_);
        tokens_.erase(req.scope);  // expired or missing: fetch a fresh one
      }
      IMGFS_RETURN_IF_ERROR(Authenticate(*r, req.scope));
      attempt--;  // an auth round is not a failed attempt
      continue;
    }
    if ((r->status == 429 || r->status >= 500) && can_retry) {
      double wait = backoff;
      std::string ra = r->Header("retry-after");
      if (!ra.empty() && std::isdigit(static_cast<unsigned char>(ra[0])))
        wait = std::min(std::atof(ra.c_str()), 30.0);
      std::this_thread::sleep_for(std::chrono::duration<double>(wait));
      backoff = std::min(backoff * 2, 8.0);
      continue;
    }
    return r;
  }
}

Result<std::string> RegistryClient::Base() {
  return BaseUrl();
}

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
