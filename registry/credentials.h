// Registry credentials the way docker keeps them: $DOCKER_CONFIG/config.json or
// ~/.docker/config.json, with `auths` (base64 "user:password" in "auth"),
// `credHelpers` (per host) and `credsStore` (default), the helpers being
// `docker-credential-NAME get|store|erase` speaking JSON on stdin/stdout.
// Credentials are never printed or logged; the file is written with mode 0600.
//
// Thread-safety: free functions; the config file is read on each call.
#ifndef IMGFS_REGISTRY_CREDENTIALS_H_
#define IMGFS_REGISTRY_CREDENTIALS_H_

#include <string>

#include "index/status.h"

namespace imgfs {

struct Credentials {
  std::string username;
  std::string secret;  // password or identity token
  bool empty() const { return username.empty() && secret.empty(); }
};

// The key docker uses for a registry host in config.json ("https://index.docker.io/v1/"
// for docker.io, the host[:port] otherwise).
std::string CredentialKey(const std::string& host);
std::string DockerConfigPath();
// Empty credentials when none are configured.
Result<Credentials> LookupCredentials(const std::string& host);
Status StoreCredentials(const std::string& host, const Credentials& c);
// NotFound when there was nothing to remove.
Status EraseCredentials(const std::string& host);

std::string Base64Encode(std::string_view in);
Result<std::string> Base64Decode(std::string_view in);

}  // namespace imgfs

#endif  // IMGFS_REGISTRY_CREDENTIALS_H_
