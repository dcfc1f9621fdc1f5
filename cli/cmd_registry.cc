// imgfs subcommands. Registries: pull, login, logout.
#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <functional>
#include <iostream>
#include <map>
#include <set>
#include <string>
#include <vector>

#include <simdjson.h>

#include "cli/cli_common.h"
#include "cli/ls_format.h"
#include "fs/fuse_adapter.h"
#include "fs/image_view.h"
#include "fs/unpack_cache.h"
#include "index/store.h"
#include "registry/credentials.h"
#include "registry/daemon_config.h"
#include "registry/image_loader.h"
#include "registry/json.h"
#include "registry/puller.h"
#include "registry/reference.h"

namespace imgfs {

// Registry options from flags and ROOT/config.json ({"registry-mirrors": [...],
// "insecure-registries": [...]}, the keys of docker's daemon.json).
RegistryOptions RegistryOptionsFor(const std::string& root, const Args& a) {
  RegistryOptions o;
  auto cfg = ReadFileToString(root + "/config.json", 1 << 20);
  if (cfg.ok()) ApplyDaemonConfig(*cfg, &o);
  // Flags before config.json's list, in the order given (the first is tried first).
  std::vector<std::string> flag_mirrors = a.Multi("--registry-mirror");
  o.mirrors.insert(o.mirrors.begin(), flag_mirrors.begin(), flag_mirrors.end());
  for (const std::string& h : a.Multi("--insecure-registry")) o.insecure_registries.push_back(h);
  // Stall and connect deadlines (docs/threat-model.md): a transfer slower than
  // IMGFS_LOW_SPEED_LIMIT bytes/s (1024) for IMGFS_LOW_SPEED_TIME s (30) fails and is
  // retried; a connection takes at most IMGFS_CONNECT_TIMEOUT s (30).
  auto env_long = [](const char* name, long* out) {
    const char* v = std::getenv(name);
    if (v && *v) {
      char* end = nullptr;
      long n = std::strtol(v, &end, 10);
      if (*end || n < 1) Die(std::string(name) + ": want a positive integer", 2);
      *out = n;
    }
  };
  env_long("IMGFS_LOW_SPEED_LIMIT", &o.low_speed_limit);
  env_long("IMGFS_LOW_SPEED_TIME", &o.low_speed_seconds);
  env_long("IMGFS_CONNECT_TIMEOUT", &o.connect_timeout);
  return o;
}

namespace {

// docker-style pull progress: on a terminal one line per layer, redrawn in place; in
// a pipe one line per status change.
class PullDisplay {
 public:
  explicit PullDisplay(bool tty) : tty_(tty) {}
  void Event(const PullEvent& e) {
    auto it = std::find_if(lines_.begin(), lines_.end(), [&](auto& l) { return l.first == e.id; });
    std::string text = e.id + ": " + e.status;
    if (e.status == "Downloading" && e.total) {
      int width = 50,
          done =
              static_cast<int>(width * std::min<double>(1.0, double(e.current) / double(e.total)));
      text += " [" + std::string(done > 0 ? done - 1 : 0, '=') + (done > 0 ? ">" : "") +
              std::string(width - done, ' ') + "] " + HumanSize(double(e.current)) + "/" +
              HumanSize(double(e.total));
    }
    if (!tty_) {
      if (e.status != "Downloading" && e.status != "Verifying Checksum")
        std::printf("%s\n", text.c_str());
      std::fflush(stdout);
      return;
    }
    if (it == lines_.end()) {
      lines_.emplace_back(e.id, text);
      std::printf("%s\n", text.c_str());
    } else {
      it->second = text;
      size_t up = lines_.end() - it;
      std::printf("\x1b[%zuA\x1b[2K%s\x1b[%zuB\r", up, text.c_str(), up);
    }
    std::fflush(stdout);
  }

 private:
  bool tty_;
  std::vector<std::pair<std::string, std::string>> lines_;
};

int CmdPull(const std::string& root, const Args& a) {
  if (a.pos.size() != 1) Die("pull: want exactly one NAME[:TAG|@DIGEST]", 2);
  auto ref = ParseReference(a.pos[0]);
  if (!ref.ok()) return Fail(ref.status(), "pull");
  PullOptions opt;
  opt.registry = RegistryOptionsFor(root, a);
  if (a.Has("--platform")) {
    auto p = ParsePlatform(a.Get("--platform"));
    if (!p.ok()) return Fail(p.status(), "pull");
    opt.platform = *p;
  }
  if (a.Has("--max-concurrent-downloads")) {
    opt.max_concurrent_downloads = std::atoi(a.Get("--max-concurrent-downloads").c_str());
    if (opt.max_concurrent_downloads < 1)
      Die("pull: --max-concurrent-downloads must be at least 1", 2);
  }
  bool quiet = a.Has("--quiet");
  std::string format = a.Get("--format", "text");
  if (format != "text" && format != "json") Die("pull: --format is text or json", 2);
  Reference norm = ref->Normalized();
  PullDisplay display(::isatty(STDOUT_FILENO));
  if (!quiet && format == "text") {
    std::printf(
        "%s: Pulling from %s\n", norm.digest.empty() ? norm.tag.c_str() : norm.digest.c_str(),
        norm.path.substr(0, norm.domain == "docker.io" ? std::string::npos : std::string::npos)
            .c_str());
    std::fflush(stdout);
    opt.on_event = [&](const PullEvent& e) { display.Event(e); };
  }
  auto store = OpenStore(root);
  auto r = Pull(*store, *ref, opt);
  if (!r.ok()) return Fail(r.status(), "pull");
  std::string status = r->up_to_date ? "Image is up to date for " : "Downloaded newer image for ";
  if (format == "json") {
    JsonWriter w;
    w.BeginObject().Key("Reference").String(r->ref.String()).Key("Digest").String(r->repo_digest);
    w.Key("ImageID")
        .String(r->image_id.str())
        .Key("Status")
        .String(r->up_to_date ? "up to date" : "downloaded");
    w.EndObject();
    std::printf("%s\n", w.str().c_str());
  } else if (quiet) {
    std::printf("%s\n", r->ref.String().c_str());
  } else {
    std::printf("Digest: %s\nStatus: %s%s\n%s\n", r->repo_digest.c_str(), status.c_str(),
                r->ref.FamiliarString().c_str(), r->ref.String().c_str());
  }
  return 0;
}

int CmdLogin(const std::string& root, const Args& a) {
  std::string host = a.pos.empty() ? "docker.io" : a.pos[0];
  if (a.pos.size() > 1) Die("login: want at most one SERVER", 2);
  for (const char* scheme : {"https://", "http://"}) {
    if (host.rfind(scheme, 0) == 0) host = host.substr(std::strlen(scheme));
  }
  while (!host.empty() && host.back() == '/') host.pop_back();
  if (host == "index.docker.io" || host == "registry-1.docker.io") host = "docker.io";
  Credentials c;
  c.username = a.Get("--username");
  if (a.Has("--password-stdin")) {
    std::getline(std::cin, c.secret);
  } else {
    c.secret = a.Get("--password");
  }
  if (c.username.empty() || c.secret.empty()) {
    Die("login: want --username and --password or --password-stdin (credentials are never prompted "
        "for here)",
        2);
  }
  RegistryClient client(host, RegistryOptionsFor(root, a));
  Status st = client.Ping(c);
  if (!st.ok()) return Fail(st, "login");
  st = StoreCredentials(host, c);
  if (!st.ok()) return Fail(st, "login");
  std::printf("Login Succeeded\n");
  return 0;
}

int CmdLogout(const std::string&, const Args& a) {
  std::string host = a.pos.empty() ? "docker.io" : a.pos[0];
  Status st = EraseCredentials(host);
  if (st.IsNotFound()) {
    std::printf("Not logged in to %s\n", host.c_str());
    return 0;
  }
  if (!st.ok()) return Fail(st, "logout");
  std::printf("Removing login credentials for %s\n", CredentialKey(host).c_str());
  return 0;
}

}  // namespace

std::vector<Command> RegistryCommands() {
  return {
      {"pull",
       "imgfs pull [--platform OS/ARCH[/VARIANT]] [-q] [--format text|json] NAME[:TAG|@DIGEST]",
       "Pull an image from a registry, verify it and index it (nothing is unpacked).\n"
       "  --platform P                  pick P from a multi-platform image (default: this host)\n"
       "  --max-concurrent-downloads N  layers downloaded at once (default 3)\n"
       "  --insecure-registry HOST      allow plain HTTP for HOST (localhost and 127.0.0.0/8 "
       "always may)\n"
       "  --registry-mirror URL         try URL first for docker.io (also ROOT/config.json "
       "\"registry-mirrors\")\n"
       "  -q, --quiet                   print only the reference\n"
       "  --format json                 one JSON object at the end\n"
       "Credentials: imgfs login, or docker's config.json ($DOCKER_CONFIG, ~/.docker).\n"
       "A transfer slower than $IMGFS_LOW_SPEED_LIMIT bytes/s (1024) for $IMGFS_LOW_SPEED_TIME s\n"
       "(30) fails and is retried; connecting takes at most $IMGFS_CONNECT_TIMEOUT s (30).",
       {"--platform", "--max-concurrent-downloads", "--insecure-registry", "--registry-mirror",
        "--format"},
       {{"-q", "--quiet"}},
       CmdPull},
      {"login",
       "imgfs login [-u USER] [-p PASSWORD | --password-stdin] [SERVER]",
       "Check credentials against a registry and store them in docker's config.json (mode 0600),\n"
       "or through its credential helper when credsStore or credHelpers names one.\n"
       "  -u, --username USER\n  -p, --password PASSWORD\n  --password-stdin   read the password "
       "from stdin\n"
       "  --insecure-registry HOST",
       {"--username", "--password", "--insecure-registry"},
       {{"-u", "--username"}, {"-p", "--password"}},
       CmdLogin},
      {"logout",
       "imgfs logout [SERVER]",
       "Remove stored credentials for a registry.",
       {},
       {},
       CmdLogout},
  };
}

}  // namespace imgfs
