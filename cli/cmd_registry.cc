// imgfs subcommands. Registries: pull, login, logout.
#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <termios.h>
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
#include "registry/lazy_fetch.h"
#include "registry/puller.h"
#include "registry/reference.h"
#include "registry/registries_conf.h"

namespace imgfs {

namespace {

// Reads one line from the terminal (stdin when it is one), echo off when `secret`.
// Empty with ok=false when there is no terminal to ask.
std::string Prompt(const std::string& what, bool secret, bool* ok) {
  *ok = false;
  if (!::isatty(STDIN_FILENO)) return "";
  std::fprintf(stderr, "%s", what.c_str());
  std::fflush(stderr);
  termios old{};
  bool restore = false;
  if (secret && ::tcgetattr(STDIN_FILENO, &old) == 0) {
    termios quiet = old;
    quiet.c_lflag &= ~static_cast<tcflag_t>(ECHO);
    restore = ::tcsetattr(STDIN_FILENO, TCSAFLUSH, &quiet) == 0;
  }
  std::string line;
  *ok = static_cast<bool>(std::getline(std::cin, line));
  if (restore) {
    ::tcsetattr(STDIN_FILENO, TCSAFLUSH, &old);
    std::fprintf(stderr, "\n");
  }
  if (!line.empty() && line.back() == '\r') line.pop_back();
  return line;
}

}  // namespace

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
  // podman's and skopeo's flags: --authfile, --creds USER[:PASS], --cert-dir,
  // --tls-verify=false.
  o.authfile = a.Get("--authfile");
  if (a.Has("--creds")) {
    auto c = ParseCreds(a.Get("--creds"));
    if (!c.ok()) Die(c.status().message(), 2);
    if (a.Get("--creds").find(':') == std::string::npos) {
      bool ok = false;
      c->secret = Prompt("Password: ", true, &ok);
      if (!ok) Die("--creds " + c->username + ": no password given and no terminal to ask", 2);
    }
    o.creds = *c;
  }
  o.cert_dir = a.Get("--cert-dir");
  // A boolean flag (cli/flags.h): --tls-verify and --tls-verify=true keep the check.
  if (!a.On("--tls-verify")) {
    o.tls_verify = false;
    std::fprintf(stderr,
                 "imgfs: WARNING: --tls-verify=false: registry certificates are not checked "
                 "and plain HTTP is allowed\n");
  }
  return o;
}

void InstallLazyFetcher(const std::string& root) {
  SetRangeFetcherFactory([root](const LazySource& src, const Digest& blob,
                                uint64_t size) -> Result<std::unique_ptr<RangeFetcher>> {
    // As pull: ROOT/config.json, certs.d, the usual credentials, tokens in ROOT/tokens.
    // A bounded wait: a read in the mount must fail (EIO) soon when offline.
    RegistryOptions o = RegistryOptionsFor(root, Args());
    if (src.insecure) {
      o.insecure_registries.push_back(src.host);
      o.tls_verify = false;
    }
    o.token_cache_dir = root + "/tokens";
    o.max_attempts = 3;
    o.max_retry_seconds = 5;
    o.connect_timeout = 5;
    o.low_speed_seconds = 15;
    auto client = std::make_shared<RegistryClient>(src.host, o);
    return std::unique_ptr<RangeFetcher>(new RegistryRangeFetcher(client, src.repo, blob, size));
  });
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
  // registries.conf: a short name's alias or search registries, then per reference its
  // mirrors, location, insecure and blocked (registry/registries_conf.h).
  auto conf = LoadRegistriesConf();
  if (!conf.ok()) return Fail(conf.status(), "pull");
  auto candidates = CandidateReferences(*conf, a.pos[0]);
  if (!candidates.ok()) return Fail(candidates.status(), "pull");
  auto ref = Result<Reference>((*candidates)[0]);
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
  opt.lazy = a.Has("--lazy");
  opt.on_warning = [](const std::string& w) {
    std::fprintf(stderr, "imgfs: pull: %s\n", w.c_str());
  };
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
  // Docker-style mirrors (--registry-mirror, ROOT/config.json) become sources too, so
  // that one lacking the image passes to the next and then to docker.io.
  std::vector<std::string> docker_mirrors = opt.registry.mirrors;
  opt.registry.mirrors.clear();
  Result<PullResult> r = Status::NotFound("no candidate");
  std::string tried;
  for (size_t i = 0; i < candidates->size(); i++) {
    const Reference& cand = (*candidates)[i];
    auto sources = PullSources(*conf, cand.Normalized(), docker_mirrors);
    if (!sources.ok()) {
      r = sources.status();
    } else {
      opt.sources = *sources;
      r = Pull(*store, cand, opt);
    }
    // A short name: the next search registry when this one lacks it or is unreachable.
    if (r.ok() || i + 1 == candidates->size()) break;
    tried += cand.Normalized().Name() + " (" + r.status().message() + "), ";
  }
  if (!r.ok() && !tried.empty())
    return Fail(r.status().WithContext("tried " + tried + "then " +
                                       (*candidates).back().Normalized().Name()),
                "pull");
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
  if (a.pos.size() > 1) Die("login: want at most one SERVER", 2);
  // docker's forms: "docker.io", "https://index.docker.io/v1/", "http://host:5000/v2/".
  std::string host = NormalizeServer(a.pos.empty() ? "docker.io" : a.pos[0]);
  if (host.empty()) Die("login: no registry host in \"" + a.pos[0] + "\"", 2);
  Credentials c;
  c.username = a.Get("--username");
  if (a.Has("--password-stdin")) {
    if (a.Has("--password")) Die("login: --password and --password-stdin are exclusive", 2);
    std::getline(std::cin, c.secret);
    if (!c.secret.empty() && c.secret.back() == '\r') c.secret.pop_back();
  } else if (a.Has("--password")) {
    std::fprintf(stderr,
                 "WARNING! Using --password via the CLI is insecure. Use --password-stdin.\n");
    c.secret = a.Get("--password");
  }
  // Asked for on the terminal (the password without echo), as docker and podman do.
  bool ok = true;
  if (c.username.empty() && !a.Has("--password-stdin"))
    c.username = Prompt("Username: ", false, &ok);
  if (ok && c.secret.empty() && !a.Has("--password-stdin"))
    c.secret = Prompt("Password: ", true, &ok);
  if (c.username.empty() || c.secret.empty()) {
    Die("login: want a username and a password (-u USER with -p, --password-stdin, or a "
        "terminal to ask on)",
        2);
  }
  RegistryClient client(host, RegistryOptionsFor(root, a));
  Status st = client.Ping(c);
  if (!st.ok()) return Fail(st, "login");
  std::string authfile = a.Get("--authfile");
  st = StoreCredentials(host, c, authfile);
  if (!st.ok()) return Fail(st, "login");
  std::printf("Login Succeeded\n");
  return 0;
}

int CmdLogout(const std::string&, const Args& a) {
  if (a.pos.size() > 1) Die("logout: want at most one SERVER", 2);
  std::string host = NormalizeServer(a.pos.empty() ? "docker.io" : a.pos[0]);
  Status st = EraseCredentials(host, a.Get("--authfile"));
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
       "imgfs pull [--lazy] [--platform OS/ARCH[/VARIANT]] [-q] [--format text|json] "
       "NAME[:TAG|@DIGEST]",
       "Pull an image from a registry, verify it and index it (nothing is unpacked).\n"
       "  --platform P                  pick P from a multi-platform image (default: this host)\n"
       "  --max-concurrent-downloads N  layers downloaded at once (default 3)\n"
       "  --insecure-registry HOST      allow plain HTTP for HOST (localhost and 127.0.0.0/8 "
       "always may)\n"
       "  --registry-mirror URL         try URL first for docker.io (also ROOT/config.json "
       "\"registry-mirrors\")\n"
       "  -q, --quiet                   print only the reference\n"
       "  --format json                 one JSON object at the end\n"
       "  --authfile FILE               credentials from FILE only (also $REGISTRY_AUTH_FILE)\n"
       "  --creds USER[:PASSWORD]       these credentials (the password is asked for when left "
       "out)\n"
       "  --cert-dir DIR                CAs (*.crt) and client certificate (NAME.cert, NAME.key)\n"
       "  --tls-verify=false            check no certificate, allow plain HTTP (a warning)\n"
       "  --lazy                        record the image from the layers' tables of contents\n"
       "                                and return: zstd:chunked layers are fetched (range by\n"
       "                                range, each chunk verified) as they are read; other\n"
       "                                layers are pulled in full (one line on stderr says so).\n"
       "                                `imgfs images` marks the image partial. A later pull\n"
       "                                without --lazy completes it and checks the layers.\n"
       "Credentials: --creds, --authfile or $REGISTRY_AUTH_FILE, else the first of\n"
       "${XDG_RUNTIME_DIR}/containers/auth.json, ~/.config/containers/auth.json and docker's\n"
       "config.json ($DOCKER_CONFIG, ~/.docker) with an entry for the registry.\n"
       "Short names, aliases, mirrors, blocked registries: registries.conf\n"
       "($CONTAINERS_REGISTRIES_CONF, else /etc/containers/registries.conf and .d/*.conf).\n"
       "A transfer slower than $IMGFS_LOW_SPEED_LIMIT bytes/s (1024) for $IMGFS_LOW_SPEED_TIME s\n"
       "(30) fails and is retried; connecting takes at most $IMGFS_CONNECT_TIMEOUT s (30).",
       {"--platform", "--max-concurrent-downloads", "--insecure-registry", "--registry-mirror",
        "--format", "--authfile", "--creds", "--cert-dir"},
       {{"-q", "--quiet"}},
       CmdPull,
       {"--quiet", "--tls-verify", "--lazy"}},
      {"login",
       "imgfs login [-u USER] [-p PASSWORD | --password-stdin] [--authfile FILE] [SERVER]",
       "Check credentials against a registry and store them in docker's config.json (mode 0600),\n"
       "or --authfile FILE ($REGISTRY_AUTH_FILE), or through the credential helper that file's\n"
       "credsStore or credHelpers names (then no secret is written to the file).\n"
       "SERVER as docker takes it: HOST[:PORT], https://HOST/v2/, https://index.docker.io/v1/.\n"
       "  -u, --username USER   (asked for on a terminal when left out)\n"
       "  -p, --password PASSWORD   (insecure: a warning; asked for without echo when left out)\n"
       "  --password-stdin   read the password from stdin\n"
       "  --authfile FILE\n  --insecure-registry HOST\n  --cert-dir DIR\n  --tls-verify=false",
       {"--username", "--password", "--insecure-registry", "--authfile", "--cert-dir"},
       {{"-u", "--username"}, {"-p", "--password"}},
       CmdLogin,
       {"--password-stdin", "--tls-verify"}},
      {"logout",
       "imgfs logout [--authfile FILE] [SERVER]",
       "Remove stored credentials for a registry (from docker's config.json, or --authfile FILE).",
       {"--authfile"},
       {},
       CmdLogout},
  };
}

}  // namespace imgfs
