// The registry HTTP API v2 client (libcurl).
//
//   - Scheme: HTTPS with the system CAs plus every *.crt of the host's certificate
//     directory: --cert-dir DIR itself, else the first of
//     ${XDG_CONFIG_HOME:-~/.config}/containers/certs.d/HOST[:PORT],
//     /etc/containers/certs.d/HOST[:PORT], /etc/docker/certs.d/HOST[:PORT] that exists
//     (containers/image's order), read once per client. A client certificate there: the
//     first NAME.cert, by name, that has its NAME.key (mutual TLS). tls_verify=false
//     (--tls-verify=false) checks no certificate at all. Plain HTTP only for localhost,
//     127.0.0.0/8, ::1 or hosts given with --insecure-registry: those try HTTPS first and
//     fall back.
//   - Auth: on 401 the WWW-Authenticate challenge decides: Bearer (realm, service,
//     scope; a token per scope, cached, fetched with the user's credentials when there
//     are any, refreshed on the next 401) or Basic. Credentials go only to the
//     registry host and its token realm, never to a redirect target (curl drops the
//     Authorization header when a redirect changes host). Credentials: options.creds
//     (--creds) when set, else LookupCredentials(host, options.authfile). An identity
//     token is an OAuth2 refresh token: POSTed to the realm (grant_type=refresh_token).
//   - Blobs stream through OpenBlob's ByteSource: a download thread feeds a bounded
//     queue; connection resets, 5xx and 429 (honouring Retry-After) are retried with
//     backoff, resuming with an HTTP Range request from the last byte delivered, and
//     given up after a bounded number of attempts and time.
//   - What a registry may send is bounded (docs/threat-model.md): every URL fetched
//     (registry, mirror, token realm, redirect, foreign layer) is http or https only,
//     checked before use and enforced by curl on every handle; a blob stops at its
//     descriptor's size, manifests at 4 MiB, configs at their size, token and error
//     bodies at 1 MiB and 64 KiB; a transfer slower than low_speed_limit bytes/s for
//     low_speed_seconds fails like a reset (and is retried); every request (ping,
//     token, manifest, blob) retries 5xx, 429 and resets with backoff.
//
// Connections: each request takes an idle curl handle (or makes one) and gives it back
// afterwards; a handle keeps its connections open, so a pull makes one connection per
// concurrent download rather than one per request. HTTPS negotiates HTTP/2 when the
// registry offers it.
//
// Thread-safety: a RegistryClient may be shared by threads; a curl handle serves one
// request at a time; the token cache and the handle pool have their own mutexes.
#ifndef IMGFS_REGISTRY_REGISTRY_CLIENT_H_
#define IMGFS_REGISTRY_REGISTRY_CLIENT_H_

#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "index/digest.h"
#include "index/status.h"
#include "index/stream.h"
#include "registry/credentials.h"

namespace imgfs {

struct RegistryOptions {
  std::vector<std::string> insecure_registries;  // host[:port] allowed over plain HTTP
  std::vector<std::string> mirrors;              // URLs tried first for docker.io
  std::string certs_dir = "/etc/docker/certs.d";
  int max_attempts = 6;           // per request
  double max_retry_seconds = 60;  // total backoff per request
  double initial_backoff = 0.25;  // seconds, doubled each attempt
  long low_speed_limit = 1024;    // bytes/s: a transfer slower than this…
  long low_speed_seconds = 30;    // …for this long fails (and is retried like a reset)
  long connect_timeout = 30;      // seconds
  std::string user_agent = "imgfs";
  std::string authfile;    // --authfile ("" = the usual search, registry/credentials.h)
  Credentials creds;       // --creds: used instead of any file when not empty
  std::string cert_dir;    // --cert-dir: this directory instead of certs.d/HOST
  bool tls_verify = true;  // false: no certificate is checked (--tls-verify=false)
  // Bearer tokens are kept here, one 0600 file per registry and scope, until they
  // expire, so the next process starts without a token round trip ("": this process
  // only). Pull sets it to <store>/tokens.
  std::string token_cache_dir;
};

struct HttpResponse {
  long status = 0;
  bool redirected = false;                     // the answer came from a URL a redirect led to
  std::map<std::string, std::string> headers;  // lower-case names
  std::string body;
  std::string Header(const std::string& name) const {
    auto it = headers.find(name);
    return it == headers.end() ? "" : it->second;
  }
};

struct ManifestResponse {
  std::string bytes;
  std::string content_type;
  Digest digest;  // sha256 of bytes
};

class RegistryClient {
 public:
  // `host` is a reference's domain ("docker.io", "localhost:5000", "quay.io").
  RegistryClient(std::string host, RegistryOptions options);
  ~RegistryClient();

  const std::string& host() const { return host_; }
  // GET /v2/<repo>/manifests/<reference> with every manifest type accepted.
  Result<ManifestResponse> GetManifest(const std::string& repo, const std::string& reference);
  // A small blob (config), verified against `digest`; more than `max_size` bytes is an
  // error as soon as they arrive.
  Result<std::string> GetBlob(const std::string& repo, const Digest& digest, size_t max_size);
  // A streaming blob source (see above). `urls`: foreign-layer locations tried first
  // (those that are not http or https are skipped). `size`: the descriptor's size; a
  // registry that sends more fails the download as soon as byte size+1 arrives.
  // `offset`: the bytes before it are held already (a partial file): the source
  // starts there, asking with a Range request (a registry that ignores Range and
  // answers 200 has its first `offset` bytes dropped).
  Result<std::unique_ptr<ByteSource>> OpenBlob(const std::string& repo, const Digest& digest,
                                               const std::vector<std::string>& urls = {},
                                               uint64_t size = UINT64_MAX, uint64_t offset = 0);
  // Checks that the registry accepts `creds` (GET /v2/ through the auth flow).
  Status Ping(const Credentials& creds);

  // Internal: one request with auth and retries. `on_body` streams (nullptr buffers).
  struct Request {
    std::string path_or_url;  // "/v2/…" or an absolute URL
    std::vector<std::string> headers;
    std::string scope;  // "repository:NAME:pull"
    uint64_t range_start = 0;
    std::function<bool(const char*, size_t)> on_body;  // false aborts
    // Polled about once a second while the request runs: true aborts it (as on_body's
    // false), even when no byte arrives.
    std::function<bool()> cancelled;
    std::function<void(const HttpResponse&)> on_headers;
    bool retry_transient = true;
    size_t max_body = 1 << 20;  // a buffered body larger than this is an error
    // The blob's size when known: a streamed body may not go past this offset, and a 206
    // to a Range must give it as its Content-Range total.
    uint64_t max_stream = UINT64_MAX;
    std::string auth;  // Authorization for an absolute URL (token realm)
    // Uploads (push, registry/pusher.h): the method ("" is GET; HEAD, POST, PUT, PATCH)
    // and the body: `body`, or else `body_size` bytes of `body_fd` from `body_offset`,
    // read again from the start by every retry.
    std::string method;
    std::string body;
    int body_fd = -1;
    uint64_t body_offset = 0;
    uint64_t body_size = 0;
    std::string post_form;  // not empty: POST this form body (OAuth2 refresh)
    // Not 0: the Range asked for ends here (exclusive): "bytes=range_start-(range_end-1)"
    // (lazy reads, registry/lazy_fetch.h). A 200 answer still streams the whole rest.
    uint64_t range_end = 0;
  };
  Result<HttpResponse> Do(const Request& req);
  // The base URL the registry answers on ("https://host:port"), pinging it the first
  // time: push resolves upload Locations against it.
  Result<std::string> Base();

 private:
  struct Endpoint;
  // `cancelled` (optional): the asking request's; its retry waits stop when it says so.
  Result<std::string> BaseUrl(const std::function<bool()>& cancelled = {});
  // `transient`: worth retrying; `no_connection`: nothing answered at all (refused,
  // unresolvable), which retrying the same address does not change.
  Result<HttpResponse> Once(const Request& req, const std::string& url,
                            const std::string& auth_header, bool* transient,
                            bool* no_connection = nullptr);
  Result<HttpResponse> PingBase(const std::string& base, bool* answered, bool* transient,
                                int* attempts, const std::function<bool()>& cancelled);
  Result<std::string> AuthHeader(const std::string& scope);
  Status Authenticate(const HttpResponse& challenge, const std::string& scope,
                      const std::function<bool()>& cancelled = {});
  std::string ApiHost() const;
  void LoadTlsDir();
  // Idle curl handles. A handle keeps its open connections (and TLS sessions) when
  // reset, so the next request to the same host reuses one instead of connecting.
  void* TakeHandle();
  void GiveBack(void* handle);
  // The token cache on disk (options_.token_cache_dir); callers hold mu_.
  std::string TokenFile(const std::string& scope) const;
  void LoadCachedToken(const std::string& scope);
  void SaveToken(const std::string& scope, const std::string& header, double expires_in);

  std::string host_;
  RegistryOptions options_;
  std::mutex mu_;  // guards everything below
  std::string base_url_;
  bool creds_loaded_ = false;
  Credentials creds_;
  std::map<std::string, std::string> tokens_;  // scope → "Bearer …" / "Basic …"
  std::string basic_;                          // set when the registry asked for Basic
  // The host's certificate directory, read once by the constructor (see above).
  std::string tls_dir_;      // "" when none exists
  std::string ca_blob_;      // every *.crt there, concatenated (PEM)
  std::string client_cert_;  // NAME.cert and NAME.key, or ""
  std::string client_key_;
  std::map<std::string, bool> disk_checked_;  // scopes looked up in the token cache
  std::mutex pool_mu_;                        // guards idle_
  std::vector<void*> idle_;                   // CURL* not in use
};

bool IsLoopbackHost(const std::string& host);
// Ok when `url` is an absolute http:// or https:// URL with a host and no control
// characters or spaces; otherwise an InvalidArgument naming `what` and the URL.
Status CheckFetchUrl(const std::string& url, const std::string& what);
// The host[:port] of an absolute URL ("" when there is none).
std::string UrlHost(const std::string& url);

}  // namespace imgfs

#endif  // IMGFS_REGISTRY_REGISTRY_CLIENT_H_
