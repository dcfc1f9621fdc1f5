// Internal to the registry client's files (registry_client.cc: the API calls;
// registry_transport.cc: curl handles, one request, retries, the ping; registry_auth.cc:
// challenges, tokens and their cache on disk). Not for other callers.
#ifndef IMGFS_REGISTRY_REGISTRY_CLIENT_INTERNAL_H_
#define IMGFS_REGISTRY_REGISTRY_CLIENT_INTERNAL_H_

#include <curl/curl.h>

#include <algorithm>
#include <cctype>
#include <optional>
#include <string>

#include "registry/registry_client.h"

namespace imgfs {
namespace registry_detail {

struct CurlFree {
  void operator()(CURL* c) const { curl_easy_cleanup(c); }
};
struct SlistFree {
  void operator()(curl_slist* l) const { curl_slist_free_all(l); }
};

inline std::string Lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::tolower(c); });
  return s;
}

inline std::string Trim(std::string s) {
  while (!s.empty() && (s.back() == '\r' || s.back() == '\n' || s.back() == ' ')) s.pop_back();
  size_t i = 0;
  while (i < s.size() && s[i] == ' ') i++;
  return s.substr(i);
}

// "HTTP 404 (MANIFEST_UNKNOWN: …)": the status and the registry's own error codes and
// messages, without control bytes, at most 300 characters of them.
std::string RegistryError(const HttpResponse& r);

// A token cache file (<store>/tokens/<hash>): "imgfs-token 1 EXPIRY_UNIX\nBearer …\n".
// The file is imgfs's own, but a damaged or foreign one must only be ignored.
struct CachedToken {
  long long expiry = 0;  // unix seconds
  std::string header;    // "Bearer …", no control characters
};
std::optional<CachedToken> ParseTokenCacheFile(const std::string& text);
std::string FormatTokenCacheFile(long long expiry, const std::string& header);

}  // namespace registry_detail
}  // namespace imgfs

#endif  // IMGFS_REGISTRY_REGISTRY_CLIENT_INTERNAL_H_
