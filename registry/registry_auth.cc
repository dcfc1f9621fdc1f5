// registry_client.h: WWW-Authenticate challenges, Basic and Bearer tokens, and the
// token cache on disk (<store>/tokens/).
#include <fcntl.h>
#include <simdjson.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <ctime>
#include <memory>
#include <string_view>

#include "index/file_util.h"
#include "registry/registry_client.h"
#include "registry/registry_client_internal.h"

namespace imgfs {
using namespace registry_detail;
namespace {

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

// A token service's JSON answer: the token ("token" or "access_token", `first` looked
// up first) and its lifetime in seconds. Everything in it is the service's word: the
// token goes into an Authorization header and a cache file, so it must be a short line,
// and expires_in (any JSON number, even 2^63 or negative) is clamped.
constexpr size_t kMaxToken = 32 << 10;
constexpr double kMaxTokenLifetime = 365 * 24 * 3600.0;
struct TokenAnswer {
  std::string token;
  double expires_in = 60;  // the distribution token spec's default
};
Result<TokenAnswer> ParseTokenAnswer(const std::string& body, const char* first,
                                     const char* second) {
  simdjson::dom::parser p;
  simdjson::dom::object o;
  std::string_view token;
  if (p.parse(body).get(o) || (o[first].get(token) && o[second].get(token)) || token.empty())
    return Status::Unavailable("token service returned no token");
  if (token.size() > kMaxToken)
    return Status::InvalidArgument("token service returned a token of " +
                                   std::to_string(token.size()) + " bytes (more than " +
                                   std::to_string(kMaxToken) + ")");
  for (char c : token)
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f)
      return Status::InvalidArgument("token service returned a token with control characters");
  TokenAnswer out;
  out.token = std::string(token);
  double ei = 0;
  if (!o["expires_in"].get(ei)) out.expires_in = std::clamp(ei, 0.0, kMaxTokenLifetime);
  return out;
}

}  // namespace

namespace registry_detail {

std::optional<CachedToken> ParseTokenCacheFile(const std::string& text) {
  // "imgfs-token 1 EXPIRY_UNIX\nBearer …\n"; anything else is ignored (and replaced).
  // Read strictly: sscanf's "%lld\n%15s" once took a file without its newline whole
  // (magic line and all) as the Authorization header.
  static constexpr std::string_view kMagic = "imgfs-token 1 ";
  if (text.compare(0, kMagic.size(), kMagic) != 0) return std::nullopt;
  size_t nl = text.find('\n', kMagic.size());
  if (nl == std::string::npos) return std::nullopt;
  std::string_view num(text.data() + kMagic.size(), nl - kMagic.size());
  if (num.empty() || num.size() > 18) return std::nullopt;
  long long expiry = 0;
  for (char c : num) {
    if (c < '0' || c > '9') return std::nullopt;
    expiry = expiry * 10 + (c - '0');
  }
  std::string header = Trim(text.substr(nl + 1));
  if (header.rfind("Bearer ", 0) != 0 || header.size() <= 7) return std::nullopt;
  for (char ch : header)
    if (static_cast<unsigned char>(ch) < 0x20 || ch == 0x7f)
      return std::nullopt;  // no header injection
  return CachedToken{expiry, header};
}

std::string FormatTokenCacheFile(long long expiry, const std::string& header) {
  return "imgfs-token 1 " + std::to_string(expiry) + "\n" + header + "\n";
}

}  // namespace registry_detail

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
  auto cached = ParseTokenCacheFile(*text);
  if (!cached || cached->expiry <= static_cast<long long>(::time(nullptr))) return;
  std::string header = cached->header;
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
  std::string text = FormatTokenCacheFile(expiry, header);
  // Best effort: a token that cannot be kept is fetched again next time.
  if (::fchmod(fd->get(), 0600) != 0 || !WriteAll(fd->get(), text.data(), text.size()).ok() ||
      ::rename(tmp.c_str(), path.c_str()) != 0) {
    ::unlink(tmp.c_str());
  }
}

Status RegistryClient::Authenticate(const HttpResponse& challenge, const std::string& scope,
                                    const std::function<bool()>& cancelled) {
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
  tr.cancelled = cancelled;
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
    post.cancelled = cancelled;
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
      auto answer = ParseTokenAnswer(pr->body, "access_token", "token");
      if (!answer.ok()) return answer.status().WithContext("POST " + realm);
      std::lock_guard<std::mutex> l(mu_);
      tokens_[scope] = "Bearer " + answer->token;
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
  auto answer = ParseTokenAnswer(r->body, "token", "access_token");
  if (!answer.ok()) return answer.status().WithContext("GET " + url);
  std::lock_guard<std::mutex> l(mu_);
  tokens_[scope] = "Bearer " + answer->token;
  SaveToken(scope, tokens_[scope], answer->expires_in);
  return Status::Ok();
}

}  // namespace imgfs
