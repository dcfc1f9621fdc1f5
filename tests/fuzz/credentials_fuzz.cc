// The JSON configuration readers: docker's config.json (registry/credentials.h) and
// ROOT/config.json (registry/daemon_config.h), plus base64. The input's first line is
// a registry host, the rest a config.json in a private $DOCKER_CONFIG; PATH is an empty
// directory, so a named credential helper is never found (no process runs but the
// failed exec). Properties: no crash; base64 round-trips; after StoreCredentials,
// LookupCredentials gives back what was stored; ROOT/config.json is read without error
// whatever it holds.
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <string>
#include <string_view>

#include "index/file_util.h"
#include "registry/credentials.h"
#include "registry/daemon_config.h"
#include "tests/fuzz/fuzz_check.h"

using namespace imgfs;

namespace {
std::string g_dir;     // $DOCKER_CONFIG, removed at exit
std::string g_config;  // $DOCKER_CONFIG/config.json

void RemoveDir() {
  ::unlink(g_config.c_str());
  ::rmdir((g_dir + "/empty-path").c_str());
  ::rmdir(g_dir.c_str());
}
}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  const char* tmp = std::getenv("TMPDIR");
  std::string dir = std::string(tmp && *tmp ? tmp : "/tmp") + "/imgfs-cred-fuzz.XXXXXX";
  if (!::mkdtemp(dir.data())) std::abort();
  ::mkdir((dir + "/empty-path").c_str(), 0700);
  ::setenv("DOCKER_CONFIG", dir.c_str(), 1);
  ::setenv("PATH", (dir + "/empty-path").c_str(), 1);
  g_dir = dir;
  g_config = dir + "/config.json";
  std::atexit(RemoveDir);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view in(reinterpret_cast<const char*>(data), size);
  size_t nl = in.find('\n');
  std::string host(nl == std::string_view::npos ? std::string_view("localhost:5000")
                                                : in.substr(0, std::min<size_t>(nl, 64)));
  std::string_view json = nl == std::string_view::npos ? in : in.substr(nl + 1);

  RegistryOptions o;
  ApplyDaemonConfig(json, &o);
  (void)CredentialKey(host);
  auto decoded = Base64Decode(json);
  if (decoded.ok()) (void)Base64Encode(*decoded);
  auto round = Base64Decode(Base64Encode(json));
  FUZZ_CHECK(round.ok() && *round == json);

  FUZZ_CHECK(WriteFileAtomic(g_config, std::string(json), 0600).ok());
  (void)LookupCredentials(host);
  Credentials c{"user", std::string(json.substr(0, 32))};
  if (StoreCredentials(host, c).ok()) {
    auto back = LookupCredentials(host);
    // A credential helper named in the file is tried first; with none installed the
    // lookup falls back to what was just stored.
    FUZZ_CHECK(back.ok() && back->username == c.username && back->secret == c.secret);
    (void)EraseCredentials(host);
  }
  ::unlink(g_config.c_str());
  return 0;
}
