// containers-registries.conf(5), version 2, as podman, skopeo and buildah read it:
//
//   unqualified-search-registries = ["registry.example.com", "docker.io"]
//   [aliases]
//   "app" = "registry.example.com/team/app"
//   [[registry]]
//   prefix = "example.com/foo"          # what a reference must start with (default: location)
//   location = "internal.example.com/bar"  # where it is pulled from instead
//   insecure = false                    # plain HTTP allowed, certificates not checked
//   blocked = false                     # pulls refused
//   [[registry.mirror]]
//   location = "mirror.example.com/bar"
//   insecure = false
//   pull-from-mirror = "all"            # or "digest-only", "tag-only"
//
// Files: $CONTAINERS_REGISTRIES_CONF alone when set; otherwise
// ${XDG_CONFIG_HOME:-~/.config}/containers/registries.conf when it exists, else
// /etc/containers/registries.conf, then the drop-ins /etc/containers/registries.conf.d/*.conf
// and ${XDG_CONFIG_HOME:-~/.config}/containers/registries.conf.d/*.conf in name order.
// A later file replaces unqualified-search-registries when it sets it, adds or replaces
// aliases one by one, and replaces a [[registry]] with the same prefix.
// Parsed with toml++; a file that is not valid TOML, or a field of the wrong type, is an
// error naming the file (a registries.conf that means something else than it says must
// not be half-applied). Version 1 files ([registries.search] …) are not read.
//
// Thread-safety: values and pure functions, except LoadRegistriesConf (reads files).
#ifndef IMGFS_REGISTRY_REGISTRIES_CONF_H_
#define IMGFS_REGISTRY_REGISTRIES_CONF_H_

#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "index/status.h"
#include "registry/reference.h"

namespace imgfs {

struct RegistryMirror {
  std::string location;
  bool insecure = false;
  std::string pull_from_mirror = "all";  // "all", "digest-only", "tag-only"
};

struct RegistryEntry {
  std::string prefix;  // "example.com/foo", or "*.example.com"
  std::string location;
  bool insecure = false;
  bool blocked = false;
  std::vector<RegistryMirror> mirrors;
};

struct RegistriesConf {
  bool search_set = false;
  std::vector<std::string> search;  // unqualified-search-registries
  std::map<std::string, std::string> aliases;
  std::vector<RegistryEntry> registries;
  std::vector<std::string> files;  // the files read, in order
};

// Where a pull may fetch a reference from, in order (mirrors first, then the origin).
struct PullSource {
  std::string host;  // "mirror.example.com:5000"
  std::string path;  // the repository there
  bool insecure = false;
  bool mirror = false;
};

// Merges one file's text into `conf` (`name` is used in errors).
Status ParseRegistriesConf(std::string_view text, const std::string& name, RegistriesConf* conf);
// Reads the files above. A missing file is no error; an unreadable or invalid one is.
Result<RegistriesConf> LoadRegistriesConf();

// True when `typed` (what the user wrote) has no registry host: "app", "org/app:1".
bool IsShortName(std::string_view typed);
// The references a short name may mean, in the order to try: its alias, else each
// unqualified-search-registries entry, else docker.io (docker's default). A qualified
// name gives itself.
Result<std::vector<Reference>> CandidateReferences(const RegistriesConf& conf,
                                                   std::string_view typed);
// The [[registry]] whose prefix matches the name "host/path" best (longest), or null.
const RegistryEntry* MatchRegistry(const RegistriesConf& conf, const std::string& name);
// Where to pull `ref` (normalised) from: its [[registry]]'s mirrors (as pull-from-mirror
// allows) then its location; `docker_mirrors` (ROOT/config.json's, --registry-mirror URLs)
// come first for docker.io. PermissionDenied when the registry is blocked.
Result<std::vector<PullSource>> PullSources(const RegistriesConf& conf, const Reference& ref,
                                            const std::vector<std::string>& docker_mirrors);

}  // namespace imgfs

#endif  // IMGFS_REGISTRY_REGISTRIES_CONF_H_
