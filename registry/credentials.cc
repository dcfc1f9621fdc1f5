#include "registry/credentials.h"

#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <simdjson.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <map>

#include "index/file_util.h"
#include "index/json_writer.h"

namespace imgfs {
namespace {

constexpr char kB64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

// Writes `data` to a helper's stdin. A helper that is not installed, or exits without
// reading, closes the pipe: that must be an error of the helper (its exit status says
// which), not SIGPIPE killing imgfs. SIGPIPE is blocked for this thread during the
// write, and the one the write raised, if any, is consumed before it is unblocked.
void WriteToHelper(int fd, const std::string& data) {
  sigset_t pipe_only, old, pending;
  sigemptyset(&pipe_only);
  sigaddset(&pipe_only, SIGPIPE);
  ::pthread_sigmask(SIG_BLOCK, &pipe_only, &old);
  sigpending(&pending);
  bool was_pending = sigismember(&pending, SIGPIPE);
  Status st = WriteAll(fd, data.data(), data.size());
  if (!st.ok() && st.sys_errno() == EPIPE && !was_pending) {
    struct timespec zero = {0, 0};
    while (::sigtimedwait(&pipe_only, nullptr, &zero) < 0 && errno == EINTR) {
    }
  }
  ::pthread_sigmask(SIG_SETMASK, &old, nullptr);
}

// Runs `docker-credential-NAME ACTION` with `input` on stdin; returns stdout.
Result<std::string> RunHelper(const std::string& name, const std::string& action,
                              const std::string& input) {
  std::string prog = "docker-credential-" + name;
  int in[2], out[2];
  if (::pipe(in) != 0 || ::pipe(out) != 0) return Status::FromErrno("pipe");
  pid_t pid = ::fork();
  if (pid < 0) return Status::FromErrno("fork");
  if (pid == 0) {
    ::dup2(in[0], 0);
    ::dup2(out[1], 1);
    ::close(in[1]);
    ::close(out[0]);
    ::execlp(prog.c_str(), prog.c_str(), action.c_str(), static_cast<char*>(nullptr));
    _exit(127);
  }
  ::close(in[0]);
  ::close(out[1]);
  WriteToHelper(in[1], input);
  ::close(in[1]);
  std::string result;
  char buf[4096];
  for (;;) {
    ssize_t n = ::read(out[0], buf, sizeof buf);
    if (n <= 0) break;
    result.append(buf, static_cast<size_t>(n));
  }
  ::close(out[0]);
  int status = 0;
  ::waitpid(pid, &status, 0);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    if (WIFEXITED(status) && WEXITSTATUS(status) == 127) {
      return Status::NotFound("credential helper " + prog + " is not installed");
    }
    // Helpers print "credentials not found in native keychain" and exit 1.
    if (result.find("not found") != std::string::npos)
      return Status::NotFound("no credentials in " + prog);
    return Status::Unavailable("credential helper " + prog + " " + action + " failed");
  }
  return result;
}

struct ConfigFile {
  std::string raw;
  bool exists = false;
};

Result<ConfigFile> ReadConfig(const std::string& path) {
  ConfigFile f;
  auto data = ReadFileToString(path, 4 << 20);
  if (!data.ok()) {
    if (data.status().sys_errno() == ENOENT || data.status().sys_errno() == ENOTDIR) return f;
    return data.status().WithContext(path);
  }
  f.raw = std::move(*data);
  f.exists = true;
  return f;
}

// The credential helper docker would use for `host`: credHelpers[key or host], else
// credsStore; "" when none is configured.
std::string HelperFor(const simdjson::dom::object& root, const std::string& host,
                      const std::string& key) {
  simdjson::dom::object helpers;
  if (!root["credHelpers"].get(helpers)) {
    std::string_view h;
    if ((!helpers[key].get(h) || !helpers[host].get(h)) && !h.empty()) return std::string(h);
  }
  std::string_view store;
  if (!root["credsStore"].get(store) && !store.empty()) return std::string(store);
  return "";
}

// The helper configured in `path` for `host` ("" when none, or no file).
Result<std::string> ConfiguredHelper(const std::string& path, const std::string& host) {
  IMGFS_ASSIGN_OR_RETURN(ConfigFile f, ReadConfig(path));
  if (!f.exists || f.raw.empty()) return std::string();
  simdjson::dom::parser p;
  simdjson::dom::object root;
  if (p.parse(f.raw).get(root)) return Status::InvalidArgument(path + " is not valid JSON");
  return HelperFor(root, host, CredentialKey(host));
}

bool SameHost(const std::string& a, const std::string& b) {
  return a == b || (CredentialKey(a) == CredentialKey(b) && CredentialKey(a) != a);
}

// One file's credentials for `host`; `found` says whether the file had any.
Result<Credentials> LookupIn(const std::string& path, const std::string& host, bool* found) {
  *found = false;
  IMGFS_ASSIGN_OR_RETURN(ConfigFile f, ReadConfig(path));
  Credentials c;
  if (!f.exists || f.raw.empty()) return c;
  simdjson::dom::parser p;
  simdjson::dom::object root;
  if (p.parse(f.raw).get(root)) return Status::InvalidArgument(path + " is not valid JSON");
  std::string key = CredentialKey(host);
  std::string helper = HelperFor(root, host, key);
  if (!helper.empty()) {
    auto out = RunHelper(helper, "get", key);
    if (out.ok()) {
      simdjson::dom::parser hp;
      simdjson::dom::object o;
      std::string_view u, s;
      if (!hp.parse(*out).get(o) && !o["Username"].get(u) && !o["Secret"].get(s)) {
        *found = true;
        // docker's convention: an identity token is stored with the user "<token>".
        if (u == "<token>") return Credentials{"", "", std::string(s)};
        return Credentials{std::string(u), std::string(s), ""};
      }
      return Status::InvalidArgument("credential helper " + helper + " returned malformed output");
    }
    if (!out.status().IsNotFound()) return out.status();
  }
  simdjson::dom::object auths;
  if (root["auths"].get(auths)) return c;
  // The exact key first, then any key that names the same host (docker writes
  // "https://index.docker.io/v1/", podman "docker.io", older tools "https://host/v2/").
  simdjson::dom::object entry;
  bool have = !auths[key].get(entry) || !auths[host].get(entry);
  if (!have) {
    for (auto e : auths) {
      if (SameHost(NormalizeServer(std::string(e.key)), host) && !e.value.get(entry)) {
        have = true;
        break;
      }
    }
  }
  if (!have) return c;
  std::string_view auth, user, pass, idtok;
  if (!entry["identitytoken"].get(idtok) && !idtok.empty()) c.identity_token = std::string(idtok);
  if (!entry["auth"].get(auth) && !auth.empty()) {
    IMGFS_ASSIGN_OR_RETURN(std::string decoded, Base64Decode(auth));
    size_t colon = decoded.find(':');
    if (colon == std::string::npos)
      return Status::InvalidArgument("malformed auth entry for " + host + " in " + path);
    c.username = decoded.substr(0, colon);
    c.secret = decoded.substr(colon + 1);
  } else if (!entry["username"].get(user) && !entry["password"].get(pass)) {
    c.username = std::string(user);
    c.secret = std::string(pass);
  }
  *found = !c.empty();
  return c;
}

}  // namespace

std::string Base64Encode(std::string_view in) {
  std::string out;
  size_t i = 0;
  while (i + 2 < in.size()) {
    uint32_t v = (uint8_t(in[i]) << 16) | (uint8_t(in[i + 1]) << 8) | uint8_t(in[i + 2]);
    out += {kB64[v >> 18], kB64[(v >> 12) & 63], kB64[(v >> 6) & 63], kB64[v & 63]};
    i += 3;
  }
  if (i + 1 == in.size()) {
    uint32_t v = uint8_t(in[i]) << 16;
    out += {kB64[v >> 18], kB64[(v >> 12) & 63], '=', '='};
  } else if (i + 2 == in.size()) {
    uint32_t v = (uint8_t(in[i]) << 16) | (uint8_t(in[i + 1]) << 8);
    out += {kB64[v >> 18], kB64[(v >> 12) & 63], kB64[(v >> 6) & 63], '='};
  }
  return out;
}

Result<std::string> Base64Decode(std::string_view in) {
  std::string out;
  uint32_t v = 0;
  int bits = 0;
  for (char c : in) {
    if (c == '=' || c == '\n' || c == '\r') continue;
    const char* p = std::strchr(kB64, c);
    if (!p || c == '\0') return Status::InvalidArgument("invalid base64");
    v = (v << 6) | static_cast<uint32_t>(p - kB64);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out.push_back(static_cast<char>((v >> bits) & 0xff));
    }
  }
  return out;
}

std::string CredentialKey(const std::string& host) {
  if (host == "docker.io" || host == "index.docker.io" || host == "registry-1.docker.io") {
    return "https://index.docker.io/v1/";
  }
  return host;
}

std::string DockerConfigPath() {
  if (const char* d = std::getenv("DOCKER_CONFIG"); d && *d) return std::string(d) + "/config.json";
  const char* home = std::getenv("HOME");
  return std::string(home ? home : "/root") + "/.docker/config.json";
}

std::string NormalizeServer(std::string server) {
  for (const char* scheme : {"https://", "http://"}) {
    if (server.rfind(scheme, 0) == 0) server = server.substr(std::strlen(scheme));
  }
  server = server.substr(0, server.find('/'));
  if (server == "index.docker.io" || server == "registry-1.docker.io") server = "docker.io";
  return server;
}

std::vector<std::string> AuthFilePaths(const std::string& authfile) {
  if (!authfile.empty()) return {authfile};
  if (const char* f = std::getenv("REGISTRY_AUTH_FILE"); f && *f) return {f};
  std::vector<std::string> out;
  if (const char* r = std::getenv("XDG_RUNTIME_DIR"); r && *r)
    out.push_back(std::string(r) + "/containers/auth.json");
  const char* home = std::getenv("HOME");
  std::string h = home ? home : "/root";
  const char* x = std::getenv("XDG_CONFIG_HOME");
  out.push_back((x && *x ? std::string(x) : h + "/.config") + "/containers/auth.json");
  out.push_back(DockerConfigPath());
  return out;
}

std::string LoginAuthFile(const std::string& authfile) {
  if (!authfile.empty()) return authfile;
  if (const char* f = std::getenv("REGISTRY_AUTH_FILE"); f && *f) return f;
  return DockerConfigPath();
}

Result<Credentials> LookupCredentials(const std::string& host, const std::string& authfile) {
  for (const std::string& path : AuthFilePaths(authfile)) {
    bool found = false;
    IMGFS_ASSIGN_OR_RETURN(Credentials c, LookupIn(path, host, &found));
    if (found) return c;
  }
  return Credentials{};
}

Result<Credentials> ParseCreds(const std::string& s) {
  size_t colon = s.find(':');
  Credentials c;
  c.username = s.substr(0, colon);
  if (colon != std::string::npos) c.secret = s.substr(colon + 1);
  if (c.username.empty()) return Status::InvalidArgument("--creds: want USER[:PASSWORD]");
  return c;
}

namespace {

// Rewrites config.json with `auths` changed for one key, keeping every other field.
Status RewriteAuths(const std::string& path, const std::string& key, const Credentials* creds,
                    bool* removed) {
  IMGFS_ASSIGN_OR_RETURN(ConfigFile f, ReadConfig(path));
  simdjson::dom::parser p;
  simdjson::dom::object root;
  std::map<std::string, std::string> others;  // top-level fields, minified
  std::map<std::string, std::string> auths;   // key → entry, minified
  if (f.exists && !f.raw.empty()) {
    if (p.parse(f.raw).get(root)) return Status::InvalidArgument(path + " is not valid JSON");
    for (auto field : root) {
      std::string k(field.key);
      if (k == "auths") {
        simdjson::dom::object a;
        if (!field.value.get(a)) {
          for (auto e : a) auths[std::string(e.key)] = simdjson::minify(e.value);
        }
      } else {
        others[k] = simdjson::minify(field.value);
      }
    }
  }
  if (removed) *removed = auths.erase(key) > 0;
  if (creds && creds->empty()) {
    auths[key] = "{}";  // kept by a credential helper: only the server's name here, as docker
  } else if (creds) {
    JsonWriter e;
    e.BeginObject()
        .Key("auth")
        .String(Base64Encode(creds->username + ":" + creds->secret))
        .EndObject();
    auths[key] = e.str();
  }
  JsonWriter w;
  w.BeginObject();
  w.Key("auths").BeginObject();
  for (auto& [k, v] : auths) w.Key(k).Raw(v);
  w.EndObject();
  for (auto& [k, v] : others) w.Key(k).Raw(v);
  w.EndObject();
  IMGFS_RETURN_IF_ERROR(MakeDirs(path.substr(0, path.rfind('/')), 0700));
  return WriteFileAtomic(path, w.str() + "\n", 0600);
}

}  // namespace

// With a credential helper configured (credHelpers[host] or credsStore), docker hands
// the secret to the helper and config.json keeps only an empty entry for the server;
// so does imgfs. Without one, the secret goes base64-encoded into config.json (0600).
Status StoreCredentials(const std::string& host, const Credentials& c,
                        const std::string& authfile) {
  std::string path = LoginAuthFile(authfile);
  // A registry host is printable ASCII (IDNs are punycode); a key with other bytes
  // could not be found again in config.json, whose keys are escaped as JSON.
  if (host.empty() || std::any_of(host.begin(), host.end(), [](char ch) {
        return static_cast<unsigned char>(ch) <= 0x20 || static_cast<unsigned char>(ch) >= 0x7f;
      })) {
    return Status::InvalidArgument("not a registry host (empty, or not printable ASCII)");
  }
  std::string key = CredentialKey(host);
  IMGFS_ASSIGN_OR_RETURN(std::string helper, ConfiguredHelper(path, host));
  if (helper.empty()) return RewriteAuths(path, key, &c, nullptr);
  JsonWriter w;
  w.BeginObject()
      .Key("ServerURL")
      .String(key)
      .Key("Username")
      .String(c.username)
      .Key("Secret")
      .String(c.secret)
      .EndObject();
  auto out = RunHelper(helper, "store", w.str());
  if (!out.ok()) return out.status().WithContext("store credentials for " + host);
  Credentials none;
  return RewriteAuths(path, key, &none, nullptr);
}

Status EraseCredentials(const std::string& host, const std::string& authfile) {
  std::string path = LoginAuthFile(authfile);
  std::string key = CredentialKey(host);
  IMGFS_ASSIGN_OR_RETURN(std::string helper, ConfiguredHelper(path, host));
  bool erased_in_helper = false;
  if (!helper.empty()) {
    auto out = RunHelper(helper, "erase", key);
    if (!out.ok() && !out.status().IsNotFound()) {
      return out.status().WithContext("erase credentials for " + host);
    }
    erased_in_helper = out.ok();
  }
  bool removed = false;
  IMGFS_RETURN_IF_ERROR(RewriteAuths(path, key, nullptr, &removed));
  if (!removed && !erased_in_helper) return Status::NotFound("not logged in to " + host);
  return Status::Ok();
}

}  // namespace imgfs
