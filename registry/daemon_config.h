// ROOT/config.json: the registry keys of docker's daemon.json that imgfs honours
// ({"registry-mirrors": [URL...], "insecure-registries": [HOST...]}). The file is the
// store owner's, but it is still data: malformed JSON or fields of the wrong type are
// ignored, never trusted.
//
// Thread-safety: a free, reentrant function.
#ifndef IMGFS_REGISTRY_DAEMON_CONFIG_H_
#define IMGFS_REGISTRY_DAEMON_CONFIG_H_

#include <string_view>

#include "registry/registry_client.h"

namespace imgfs {

// Appends the mirrors and insecure registries `json` names to `o`.
void ApplyDaemonConfig(std::string_view json, RegistryOptions* o);

}  // namespace imgfs

#endif  // IMGFS_REGISTRY_DAEMON_CONFIG_H_
