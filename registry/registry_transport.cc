// registry_client.h: curl handles, one request (Once), the ping and the scheme
// (BaseUrl), and Do (auth rounds and retries).
#include <arpa/inet.h>
#include <curl/curl.h>
#include <dirent.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <thread>

#include "index/file_util.h"
#include "registry/multipart_ranges.h"
#include "registry/printable.h"
#include "registry/registry_client.h"
#include "registry/registry_client_internal.h"

namespace imgfs {
using namespace registry_detail;
namespace {

std::once_flag g_curl_once;

// Per-transfer state shared with curl's callbacks.
struct Transfer {
  HttpResponse response;
  const RegistryClient::Request* req = nullptr;
  uint64_t skip = 0;       // bytes of a 200 body to drop when a Range was ignored
  uint64_t delivered = 0;  // body bytes handed to on_body
  bool aborted = false;    // on_body asked to stop
  bool too_large = false;
  size_t header_bytes = 0;  // of the current response
  bool headers_too_large = false;
  bool wrong_range = false;  // a 206 that is not the range asked (RangeAnswerFits)
};

// Whether a 206 to a request for a range (range_start/range_end, resumes included) is
// the range asked: it starts at range_start, or its bytes would land at the wrong
// offset; and when the blob's size is known (max_stream), it is that blob's range.
bool RangeAnswerFits(const RegistryClient::Request& req, const std::string& content_range) {
  uint64_t begin = 0, end = 0, total = 0;
  if (req.max_stream != UINT64_MAX)
    return ParseContentRange(content_range, req.max_stream, &begin, &end) &&
           begin == req.range_start;
  return ParseContentRangeAnyTotal(content_range, &begin, &end, &total) && begin == req.range_start;
}

// The headers of one response, all lines together (curl bounds each line at 100 KiB,
// not their number).
constexpr size_t kMaxHeaderBytes = 256 << 10;

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

// A redirected upload (307/308) sends its body again: back to its start.
int SeekUploadCb(void* self, curl_off_t offset, int origin) {
  auto* u = static_cast<Upload*>(self);
  if (origin != SEEK_SET || offset != 0) return CURL_SEEKFUNC_CANTSEEK;
  u->sent = 0;
  return CURL_SEEKFUNC_OK;
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
  curl_easy_setopt(e, CURLOPT_SEEKFUNCTION, SeekUploadCb);
  curl_easy_setopt(e, CURLOPT_SEEKDATA, up);
  curl_easy_setopt(e, CURLOPT_INFILESIZE_LARGE, static_cast<curl_off_t>(total));
  if (req.method != "PUT") curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, req.method.c_str());
  // No "Expect: 100-continue" round trip: registries answer uploads directly.
  *headers = curl_slist_append(*headers, "Expect:");
}

size_t HeaderCb(char* buf, size_t size, size_t n, void* self) {
  auto* t = static_cast<Transfer*>(self);
  t->header_bytes += size * n;
  if (t->header_bytes > kMaxHeaderBytes) {
    t->headers_too_large = true;
    return 0;  // fails the transfer
  }
  std::string line(buf, size * n);
  if (line.rfind("HTTP/", 0) == 0) {  // a new response (redirects, 100-continue)
    t->response.headers.clear();
    t->header_bytes = 0;
    size_t sp = line.find(' ');
    t->response.status = sp == std::string::npos ? 0 : std::atol(line.c_str() + sp + 1);
    // A 200 to a Range request restarts the body at 0: drop what was delivered already.
    t->skip = t->response.status == 200 ? t->req->range_start : 0;
    return size * n;
  }
  size_t colon = line.find(':');
  if (colon != std::string::npos) {
    t->response.headers[Lower(line.substr(0, colon))] = Trim(line.substr(colon + 1));
    return size * n;
  }
  if (!Trim(line).empty() || !t->req) return size * n;
  long st = t->response.status;
  if (st == 206 && (t->req->range_start || t->req->range_end) &&
      !RangeAnswerFits(*t->req, t->response.Header("content-range"))) {
    t->wrong_range = true;
    return 0;  // fails the transfer
  }
  if (t->req->on_headers && (st == 200 || st == 206)) t->req->on_headers(t->response);
  return size * n;
}

// curl's progress callback (about once a second, data or not): a request whose reader
// went away stops even when its server sends nothing.
int CancelCb(void* self, curl_off_t, curl_off_t, curl_off_t, curl_off_t) {
  auto* t = static_cast<Transfer*>(self);
  if (!t->req->cancelled || !t->req->cancelled()) return 0;
  t->aborted = true;
  return 1;
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
    return Status::InvalidArgument(what + " \"" + Printable(url, 200) + "\": " + why);
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
  curl_easy_setopt(e, CURLOPT_NOPROGRESS, req.cancelled ? 0L : 1L);
  curl_easy_setopt(e, CURLOPT_XFERINFOFUNCTION, &CancelCb);
  curl_easy_setopt(e, CURLOPT_XFERINFODATA, &t);
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
  long redirects = 0;
  curl_easy_getinfo(e, CURLINFO_REDIRECT_COUNT, &redirects);
  t.response.redirected = redirects > 0;
  if (rc != CURLE_OK) {
    // Errors name the request as it was sent: "PATCH https://host/v2/…: reason".
    std::string method = req.method.empty() ? (req.post_form.empty() ? "GET" : "POST") : req.method;
    if (t.aborted) return Status::Unavailable("download stopped");
    if (t.headers_too_large)
      return Status::InvalidArgument(method + " " + url +
                                     ": the response headers are larger than " +
                                     std::to_string(kMaxHeaderBytes) + " bytes");
    // curl fails a header line over its own 100 KiB limit as "out of memory" (7.88;
    // CURLE_TOO_LARGE from 8.6), after the status line and before any body: say what
    // it is.
    bool too_large = rc == CURLE_OUT_OF_MEMORY;
#if CURL_AT_LEAST_VERSION(8, 6, 0)
    too_large = too_large || rc == CURLE_TOO_LARGE;
#endif
    if (too_large && t.response.status != 0 && t.delivered == 0 && t.response.body.empty()) {
      return Status::InvalidArgument(method + " " + url + ": the HTTP " +
                                     std::to_string(t.response.status) +
                                     " response has a header line longer than 100 KiB");
    }
    if (t.wrong_range) {
      std::string shown = Printable(t.response.Header("content-range"), 100);
      return Status::Corruption(
          method + " " + url + ": asked for bytes from " + std::to_string(req.range_start) +
          ", answered 206 with Content-Range \"" + shown + "\"" +
          (req.max_stream != UINT64_MAX
               ? " (the blob has " + std::to_string(req.max_stream) + " bytes)"
               : ""));
    }
    if (t.too_large || rc == CURLE_FILESIZE_EXCEEDED) {
      return Status::InvalidArgument(
          method + " " + url + ": the response is larger than " +
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
    Status st = Status::Unavailable(method + " " + url + ": " + why);
    if (t.delivered) {
      // Partial body delivered: tell the caller where to resume.
      t.response.headers["x-imgfs-delivered"] = std::to_string(t.delivered);
      *transient = true;
    }
    return st;
  }
  return t.response;
}

namespace {
// The waits between a request's attempts: `initial` seconds, doubled after each wait up
// to 8 s. A caller's `cancelled` (polled every 50 ms) ends a wait at once.
class RetryWait {
 public:
  explicit RetryWait(double initial) : next_(initial) {}
  // Waits `seconds` (a Retry-After), or the next backoff when negative. False when
  // cancelled.
  bool Wait(const std::function<bool()>& cancelled, double seconds = -1) {
    double s = seconds >= 0 ? seconds : next_;
    next_ = std::min(next_ * 2, 8.0);
    auto until = std::chrono::steady_clock::now() +
                 std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                     std::chrono::duration<double>(s));
    for (;;) {
      if (cancelled && cancelled()) return false;
      auto now = std::chrono::steady_clock::now();
      if (now >= until) return true;
      std::this_thread::sleep_for(std::min<std::chrono::steady_clock::duration>(
          until - now, std::chrono::milliseconds(50)));
    }
  }

 private:
  double next_;
};
Status Stopped() {
  return Status::Unavailable("download stopped");
}
}  // namespace

// GET BASE/v2/ with 5xx and 429 retried (a load balancer's one 500 is not "no registry
// here"). `answered`: an HTTP server answered on this scheme (any status), so another
// scheme is not worth trying. `transient`: no answer, but a reset or timeout that
// another round may not meet ("nothing listens" is not one).
Result<HttpResponse> RegistryClient::PingBase(const std::string& base, bool* answered,
                                              bool* transient, int* attempts,
                                              const std::function<bool()>& cancelled) {
  *answered = false;
  *transient = false;
  Request ping;
  ping.cancelled = cancelled;
  auto start = std::chrono::steady_clock::now();
  RetryWait retry(options_.initial_backoff);
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
      if (!retry.Wait(cancelled)) return Stopped();
      continue;
    }
    *attempts = attempt;
    return r;
  }
}

Result<std::string> RegistryClient::BaseUrl(const std::function<bool()>& cancelled) {
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
  RetryWait retry(options_.initial_backoff);
  std::string refused;  // an answer imgfs refuses (a header line over curl's limit)
  for (int round = 1;; round++) {
    std::string last_error;
    bool retry_round = false;
    for (const std::string& base : candidates) {
      bool answered = false, transient = false;
      int attempts = 1;
      bool https = base.rfind("https://", 0) == 0;
      auto r = PingBase(base, &answered, &transient, &attempts, cancelled);
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
      // A server answered on this scheme with headers imgfs refuses: unless another
      // candidate (HTTPS, the next mirror) works, that is the error to report (another
      // scheme would only say that it does not speak it).
      if (r.status().code() == Status::Code::kInvalidArgument) {
        if (refused.empty()) refused = r.status().message();
        continue;
      }
      // A reset or timeout (not "nothing listens") is worth another round.
      retry_round = retry_round || transient;
      // The HTTPS failure says most (a certificate problem, say); otherwise the first one.
      if (last_error.empty() || https) last_error = r.status().message();
    }
    double waited = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    if (retry_round && round < options_.max_attempts && waited < options_.max_retry_seconds) {
      if (!retry.Wait(cancelled)) return Stopped();
      continue;
    }
    if (!refused.empty()) return Status::InvalidArgument("registry " + host_ + ": " + refused);
    std::string hint =
        insecure ? ""
                 : " (if it serves plain HTTP, allow it with --insecure-registry " + host_ + ")";
    return Status::Unavailable("registry " + host_ + " is not reachable: " + last_error + hint +
                               (round > 1 ? " (" + std::to_string(round) + " attempts)" : ""));
  }
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
    IMGFS_ASSIGN_OR_RETURN(std::string base, BaseUrl(req.cancelled));
    url = base + url;
  }
  auto start = std::chrono::steady_clock::now();
  RetryWait retry(options_.initial_backoff);
  bool reauthed = false, reresolved = false;
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
        if (!retry.Wait(req.cancelled)) return Stopped();
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
      IMGFS_RETURN_IF_ERROR(Authenticate(*r, req.scope, req.cancelled));
      attempt--;  // an auth round is not a failed attempt
      continue;
    }
    // A 403 from where the registry redirected a blob to is, in practice, a signed URL
    // (S3, GCS, Azure SAS) that expired between the redirect and its use, or on a
    // resumed range: ask the registry once more, for a fresh one.
    if (r->status == 403 && r->redirected && !reresolved && !foreign) {
      reresolved = true;
      attempt--;  // a re-resolve is not a failed attempt
      continue;
    }
    if ((r->status == 429 || r->status >= 500) && can_retry) {
      double wait = -1;  // the backoff, unless the server names a wait (at most 30 s)
      std::string ra = r->Header("retry-after");
      if (!ra.empty() && std::isdigit(static_cast<unsigned char>(ra[0])))
        wait = std::min(std::atof(ra.c_str()), 30.0);
      if (!retry.Wait(req.cancelled, wait)) return Stopped();
      continue;
    }
    return r;
  }
}

Result<std::string> RegistryClient::Base() {
  return BaseUrl();
}

}  // namespace imgfs
