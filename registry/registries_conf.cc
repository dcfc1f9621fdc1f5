#include "registry/registries_conf.h"

#include <dirent.h>

#include <toml++/toml.h>
#include <algorithm>
#include <cstdlib>

#include "index/file_util.h"
#include "registry/registry_client.h"

namespace imgfs {
namespace {

// "host[/path]": a location as registries.conf writes it (no scheme, no tag).
Status CheckLocation(const std::string& loc, const std::string& what) {
  std::string host = loc.substr(0, loc.find('/'));
  bool ok = !host.empty() && IsValidDomain(host);
  if (ok && loc.find('/') != std::string::npos) {
    std::string path = loc.substr(loc.find('/') + 1);
    size_t start = 0;
    while (ok) {
      size_t slash = path.find('/', start);
      ok = IsValidPathComponent(path.substr(start, slash - start));
      if (slash == std::string::npos) break;
      start = slash + 1;
    }
  }
  if (!ok) return Status::InvalidArgument(what + ": \"" + loc + "\" is not HOST[:PORT][/PATH]");
  return Status::Ok();
}

// A prefix matches a name at a component boundary: "example.com/foo" matches
// "example.com/foo" and "example.com/foo/bar", not "example.com/foobar";
// "*.example.com" matches any host under example.com.
bool PrefixMatches(const std::string& prefix, const std::string& name) {
  if (prefix.rfind("*.", 0) == 0) {
    std::string host = name.substr(0, name.find('/'));
    std::string suffix = prefix.substr(1);  // ".example.com"
    return host.size() > suffix.size() &&
           host.compare(host.size() - suffix.size(), suffix.size(), suffix) == 0;
  }
  if (name.rfind(prefix, 0) != 0) return false;
  return name.size() == prefix.size() || name[prefix.size()] == '/';
}

// Splits "host/path" into a source; `rest` is appended to the path.
PullSource SourceAt(const std::string& location, const std::string& rest, bool insecure,
                    bool mirror) {
  PullSource s;
  size_t slash = location.find('/');
  s.host = location.substr(0, slash);
  std::string path = slash == std::string::npos ? "" : location.substr(slash + 1);
  std::string r = rest;
  if (!r.empty() && r[0] == '/') r = r.substr(1);
  s.path = path.empty() ? r : (r.empty() ? path : path + "/" + r);
  s.insecure = insecure;
  s.mirror = mirror;
  return s;
}

// The keys a table may hold; another key is an error (a misspelt "mirrors" must not
// be silently ignored).
Status OnlyKeys(const toml::table& t, std::initializer_list<std::string_view> keys,
                const std::string& where) {
  for (auto&& [k, v] : t) {
    (void)v;
    if (std::find(keys.begin(), keys.end(), k.str()) == keys.end())
      return Status::InvalidArgument(where + ": unknown key \"" + std::string(k.str()) + "\"");
  }
  return Status::Ok();
}

Status GetString(const toml::table& t, std::string_view key, const std::string& where,
                 std::string* out) {
  const toml::node* n = t.get(key);
  if (!n) return Status::Ok();
  auto v = n->value<std::string>();
  if (!n->is_string() || !v)
    return Status::InvalidArgument(where + ": \"" + std::string(key) + "\" must be a string");
  *out = *v;
  return Status::Ok();
}

Status GetBool(const toml::table& t, std::string_view key, const std::string& where, bool* out) {
  const toml::node* n = t.get(key);
  if (!n) return Status::Ok();
  if (!n->is_boolean())
    return Status::InvalidArgument(where + ": \"" + std::string(key) + "\" must be true or false");
  *out = *n->value<bool>();
  return Status::Ok();
}

Status ParseTable(const toml::table& root, const std::string& name, RegistriesConf* conf) {
  // Keys containers/image knows that imgfs has nothing to do with are accepted.
  IMGFS_RETURN_IF_ERROR(OnlyKeys(root,
                                 {"unqualified-search-registries", "aliases", "registry",
                                  "short-name-mode", "credential-helpers"},
                                 name));
  if (const toml::node* n = root.get("unqualified-search-registries")) {
    const toml::array* a = n->as_array();
    if (!a)
      return Status::InvalidArgument(name + ": unqualified-search-registries must be an array");
    std::vector<std::string> search;
    for (const toml::node& e : *a) {
      auto v = e.value<std::string>();
      if (!e.is_string() || !v)
        return Status::InvalidArgument(name + ": unqualified-search-registries: want strings");
      IMGFS_RETURN_IF_ERROR(CheckLocation(*v, name + ": unqualified-search-registries"));
      if (v->find('/') != std::string::npos)
        return Status::InvalidArgument(name + ": unqualified-search-registries: \"" + *v +
                                       "\" is not a registry host");
      search.push_back(*v);
    }
    conf->search = std::move(search);
    conf->search_set = true;
  }
  if (const toml::node* n = root.get("aliases")) {
    const toml::table* t = n->as_table();
    if (!t) return Status::InvalidArgument(name + ": [aliases] must be a table");
    for (auto&& [k, v] : *t) {
      std::string key(k.str());
      auto val = v.value<std::string>();
      if (!v.is_string() || !val)
        return Status::InvalidArgument(name + ": alias \"" + key + "\" must be a string");
      if (!IsShortName(key) || key.find_first_of(":@") != std::string::npos)
        return Status::InvalidArgument(name + ": alias \"" + key +
                                       "\" is not a short name without tag");
      if (IsShortName(*val) || val->find('@') != std::string::npos)
        return Status::InvalidArgument(name + ": alias \"" + key + "\" = \"" + *val +
                                       "\" is not a fully qualified name");
      IMGFS_RETURN_IF_ERROR(ParseReference(*val).status().WithContext(name + ": alias " + key));
      conf->aliases[key] = *val;
    }
  }
  if (const toml::node* n = root.get("registry")) {
    const toml::array* a = n->as_array();
    if (!a) return Status::InvalidArgument(name + ": [[registry]] must be an array of tables");
    for (const toml::node& e : *a) {
      const toml::table* t = e.as_table();
      if (!t) return Status::InvalidArgument(name + ": [[registry]] must be an array of tables");
      std::string where = name + ": [[registry]]";
      IMGFS_RETURN_IF_ERROR(OnlyKeys(
          *t, {"prefix", "location", "insecure", "blocked", "mirror", "mirror-by-digest-only"},
          where));
      RegistryEntry r;
      IMGFS_RETURN_IF_ERROR(GetString(*t, "prefix", where, &r.prefix));
      IMGFS_RETURN_IF_ERROR(GetString(*t, "location", where, &r.location));
      IMGFS_RETURN_IF_ERROR(GetBool(*t, "insecure", where, &r.insecure));
      IMGFS_RETURN_IF_ERROR(GetBool(*t, "blocked", where, &r.blocked));
      bool by_digest = false;
      IMGFS_RETURN_IF_ERROR(GetBool(*t, "mirror-by-digest-only", where, &by_digest));
      if (r.prefix.empty()) r.prefix = r.location;
      if (r.prefix.empty())
        return Status::InvalidArgument(where + ": neither prefix nor location is set");
      where += " " + r.prefix;
      if (r.prefix.rfind("*.", 0) == 0) {
        if (r.prefix.find('/') != std::string::npos || !r.location.empty())
          return Status::InvalidArgument(where +
                                         ": a wildcard prefix is a host only, with no location");
      } else {
        IMGFS_RETURN_IF_ERROR(CheckLocation(r.prefix, where + ": prefix"));
      }
      if (r.location.empty() && r.prefix.rfind("*.", 0) != 0) r.location = r.prefix;
      if (!r.location.empty()) IMGFS_RETURN_IF_ERROR(CheckLocation(r.location, where));
      if (const toml::node* m = t->get("mirror")) {
        const toml::array* ma = m->as_array();
        if (!ma)
          return Status::InvalidArgument(where +
                                         ": [[registry.mirror]] must be an array of tables");
        for (const toml::node& me : *ma) {
          const toml::table* mt = me.as_table();
          if (!mt)
            return Status::InvalidArgument(where +
                                           ": [[registry.mirror]] must be an array of tables");
          std::string mw = where + ": [[registry.mirror]]";
          IMGFS_RETURN_IF_ERROR(OnlyKeys(*mt, {"location", "insecure", "pull-from-mirror"}, mw));
          RegistryMirror mirror;
          if (by_digest) mirror.pull_from_mirror = "digest-only";
          IMGFS_RETURN_IF_ERROR(GetString(*mt, "location", mw, &mirror.location));
          IMGFS_RETURN_IF_ERROR(GetBool(*mt, "insecure", mw, &mirror.insecure));
          IMGFS_RETURN_IF_ERROR(GetString(*mt, "pull-from-mirror", mw, &mirror.pull_from_mirror));
          IMGFS_RETURN_IF_ERROR(CheckLocation(mirror.location, mw + " location"));
          const std::string& p = mirror.pull_from_mirror;
          if (p != "all" && p != "digest-only" && p != "tag-only")
            return Status::InvalidArgument(mw + ": pull-from-mirror \"" + p +
                                           "\": want all, digest-only or tag-only");
          r.mirrors.push_back(std::move(mirror));
        }
      }
      auto same = std::find_if(conf->registries.begin(), conf->registries.end(),
                               [&](const RegistryEntry& x) { return x.prefix == r.prefix; });
      if (same != conf->registries.end()) {
        *same = std::move(r);
      } else {
        conf->registries.push_back(std::move(r));
      }
    }
  }
  return Status::Ok();
}

std::string ConfigHome() {
  if (const char* x = std::getenv("XDG_CONFIG_HOME"); x && *x) return x;
  const char* home = std::getenv("HOME");
  return std::string(home ? home : "/root") + "/.config";
}

// Reads one file into `conf`; false in `*found` when it does not exist.
Status ReadInto(const std::string& path, RegistriesConf* conf, bool* found = nullptr) {
  if (found) *found = false;
  auto text = ReadFileToString(path, 4 << 20);
  if (!text.ok()) {
    int e = text.status().sys_errno();
    if (e == ENOENT || e == ENOTDIR) return Status::Ok();
    return text.status().WithContext(path);
  }
  if (found) *found = true;
  conf->files.push_back(path);
  return ParseRegistriesConf(*text, path, conf);
}

Status ReadDropIns(const std::string& dir, RegistriesConf* conf) {
  DIR* d = ::opendir(dir.c_str());
  if (!d) return Status::Ok();
  std::vector<std::string> names;
  while (dirent* de = ::readdir(d)) {
    std::string n = de->d_name;
    if (n.size() > 5 && n.compare(n.size() - 5, 5, ".conf") == 0 && n[0] != '.') names.push_back(n);
  }
  ::closedir(d);
  std::sort(names.begin(), names.end());
  for (const std::string& n : names) IMGFS_RETURN_IF_ERROR(ReadInto(dir + "/" + n, conf));
  return Status::Ok();
}

}  // namespace

Status ParseRegistriesConf(std::string_view text, const std::string& name, RegistriesConf* conf) {
  // toml++ reports errors by exception; none leaves this function.
  try {
    toml::table root = toml::parse(text, std::string_view(name));
    return ParseTable(root, name, conf);
  } catch (const toml::parse_error& e) {
    const auto& at = e.source().begin;
    return Status::InvalidArgument(name + ":" + std::to_string(at.line) + ":" +
                                   std::to_string(at.column) + ": " + std::string(e.description()));
  } catch (const std::exception& e) {
    return Status::InvalidArgument(name + ": " + e.what());
  } catch (...) {
    return Status::InvalidArgument(name + ": cannot be parsed");
  }
}

Result<RegistriesConf> LoadRegistriesConf() {
  RegistriesConf conf;
  if (const char* env = std::getenv("CONTAINERS_REGISTRIES_CONF"); env && *env) {
    bool found = false;
    IMGFS_RETURN_IF_ERROR(ReadInto(env, &conf, &found));
    if (!found) return Status::NotFound(std::string("CONTAINERS_REGISTRIES_CONF: no file ") + env);
    return conf;
  }
  std::string user = ConfigHome() + "/containers/registries.conf";
  bool found = false;
  IMGFS_RETURN_IF_ERROR(ReadInto(user, &conf, &found));
  if (!found) IMGFS_RETURN_IF_ERROR(ReadInto("/etc/containers/registries.conf", &conf));
  IMGFS_RETURN_IF_ERROR(ReadDropIns("/etc/containers/registries.conf.d", &conf));
  IMGFS_RETURN_IF_ERROR(ReadDropIns(ConfigHome() + "/containers/registries.conf.d", &conf));
  return conf;
}

bool IsShortName(std::string_view typed) {
  size_t slash = typed.find('/');
  if (slash == std::string_view::npos) return true;
  std::string_view first = typed.substr(0, slash);
  return first.find_first_of(".:") == std::string_view::npos && first != "localhost" &&
         std::none_of(first.begin(), first.end(), [](char c) { return c >= 'A' && c <= 'Z'; });
}

Result<std::vector<Reference>> CandidateReferences(const RegistriesConf& conf,
                                                   std::string_view typed) {
  if (!IsShortName(typed)) {
    IMGFS_ASSIGN_OR_RETURN(Reference r, ParseReference(typed));
    return std::vector<Reference>{r};
  }
  // The name without tag or digest ("app" of "app:1"), and what follows it.
  std::string s(typed);
  size_t at = s.find('@');
  size_t colon = s.rfind(':', at == std::string::npos ? std::string::npos : at);
  size_t cut = std::min(at, colon == std::string::npos ? std::string::npos : colon);
  std::string name = s.substr(0, cut), suffix = cut == std::string::npos ? "" : s.substr(cut);
  // Checked as docker would check it first (upper case, bad tags: its own messages).
  IMGFS_RETURN_IF_ERROR(ParseReference(typed).status());
  if (auto it = conf.aliases.find(name); it != conf.aliases.end()) {
    IMGFS_ASSIGN_OR_RETURN(Reference r, ParseReference(it->second + suffix));
    return std::vector<Reference>{r};
  }
  std::vector<std::string> hosts = conf.search;
  if (hosts.empty()) hosts = {"docker.io"};
  std::vector<Reference> out;
  for (const std::string& h : hosts) {
    IMGFS_ASSIGN_OR_RETURN(Reference r, ParseReference(h + "/" + s));
    out.push_back(r);
  }
  return out;
}

const RegistryEntry* MatchRegistry(const RegistriesConf& conf, const std::string& name) {
  const RegistryEntry* best = nullptr;
  for (const RegistryEntry& r : conf.registries) {
    if (!PrefixMatches(r.prefix, name)) continue;
    // An exact prefix beats a wildcard; a longer one beats a shorter one.
    auto rank = [](const RegistryEntry& e) {
      return e.prefix.rfind("*.", 0) == 0 ? e.prefix.size() : e.prefix.size() + 100000;
    };
    if (!best || rank(r) > rank(*best)) best = &r;
  }
  return best;
}

Result<std::vector<PullSource>> PullSources(const RegistriesConf& conf, const Reference& ref,
                                            const std::vector<std::string>& docker_mirrors) {
  std::string name = ref.Name();
  std::vector<PullSource> out;
  const RegistryEntry* r = MatchRegistry(conf, name);
  if (r && r->blocked) {
    return Status::InvalidArgument("registry " + r->prefix + " is blocked in " +
                                   (conf.files.empty() ? "registries.conf" : conf.files.back()) +
                                   ": refusing to pull " + ref.FamiliarString());
  }
  if (ref.domain == "docker.io") {
    for (const std::string& m : docker_mirrors) {
      // A daemon.json-style URL: its host; http:// allows plain HTTP for it.
      IMGFS_RETURN_IF_ERROR(CheckFetchUrl(m, "registry mirror"));
      std::string lower = m.substr(0, 8);
      std::transform(lower.begin(), lower.end(), lower.begin(),
                     [](unsigned char c) { return std::tolower(c); });
      bool http = lower.rfind("http://", 0) == 0;
      std::string host = UrlHost(m);
      if (!IsValidDomain(host))
        return Status::InvalidArgument("registry mirror \"" + m + "\": no valid host");
      out.push_back(PullSource{host, ref.path, http, true});
    }
  }
  std::string rest = r && r->prefix.rfind("*.", 0) != 0 ? name.substr(r->prefix.size()) : "";
  if (r) {
    for (const RegistryMirror& m : r->mirrors) {
      if (m.pull_from_mirror == "digest-only" && ref.digest.empty()) continue;
      if (m.pull_from_mirror == "tag-only" && !ref.digest.empty()) continue;
      if (r->prefix.rfind("*.", 0) == 0) {
        out.push_back(SourceAt(m.location, ref.path, m.insecure, true));
      } else {
        out.push_back(SourceAt(m.location, rest, m.insecure, true));
      }
    }
  }
  if (r && !r->location.empty()) {
    out.push_back(SourceAt(r->location, rest, r->insecure, false));
  } else {
    out.push_back(PullSource{ref.domain, ref.path, r && r->insecure, false});
  }
  return out;
}

}  // namespace imgfs
