// Registry credentials the way docker and podman keep them. Files, in the order they
// are searched (containers/image's order; the first file with an entry wins):
//   1. --authfile FILE, else $REGISTRY_AUTH_FILE: that file only;
//   2. otherwise ${XDG_RUNTIME_DIR}/containers/auth.json,
//      ${XDG_CONFIG_HOME:-~/.config}/containers/auth.json, then docker's
//      $DOCKER_CONFIG/config.json or ~/.docker/config.json.
// Each file has the same format: `auths` (base64 "user:password" in "auth", or
// "username"/"password", and "identitytoken": an OAuth2 refresh token), `credHelpers`
// (per host) and `credsStore` (default), the helpers being
// `docker-credential-NAME get|store|erase` speaking JSON on stdin/stdout. Keys of
// `auths` may be any form docker writes ("https://index.docker.io/v1/", "host:port",
// "https://host/v2/"): they are compared by host.
// Credentials are never printed or logged; files are written with mode 0600.
//
// Thread-safety: free functions; the files are read on each call.
#ifndef IMGFS_REGISTRY_CREDENTIALS_H_
#define IMGFS_REGISTRY_CREDENTIALS_H_

#include <string>
#include <vector>

#include "index/status.h"

namespace imgfs {

struct Credentials {
  std::string username;
  std::string secret;  // password or identity token
  // An OAuth2 refresh token (auth.json's "identitytoken", a helper's Secret when its
  // Username is "<token>"): sent to the token endpoint with grant_type=refresh_token.
  std::string identity_token = {};
  bool empty() const { return username.empty() && secret.empty() && identity_token.empty(); }
};

// The key docker uses for a registry host in config.json ("https://index.docker.io/v1/"
// for docker.io, the host[:port] otherwise).
std::string CredentialKey(const std::string& host);
std::string DockerConfigPath();
// The files searched for `authfile` ("" = none given on the command line), in order.
std::vector<std::string> AuthFilePaths(const std::string& authfile = "");
// The file login writes and logout edits: `authfile`, else $REGISTRY_AUTH_FILE, else
// docker's config.json (imgfs keeps docker's default).
std::string LoginAuthFile(const std::string& authfile = "");
// The registry host a server as docker accepts it names: "https://index.docker.io/v1/"
// → "docker.io", "http://host:5000/v2/" → "host:5000".
std::string NormalizeServer(std::string server);
// Empty credentials when none are configured.
Result<Credentials> LookupCredentials(const std::string& host, const std::string& authfile = "");
Status StoreCredentials(const std::string& host, const Credentials& c,
                        const std::string& authfile = "");
// NotFound when there was nothing to remove.
Status EraseCredentials(const std::string& host, const std::string& authfile = "");
// "USER[:PASS]" as --creds takes it (PASS may be empty: the caller asks for it).
Result<Credentials> ParseCreds(const std::string& s);

std::string Base64Encode(std::string_view in);
Result<std::string> Base64Decode(std::string_view in);

}  // namespace imgfs

#endif  // IMGFS_REGISTRY_CREDENTIALS_H_
