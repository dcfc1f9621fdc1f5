#include "registry/daemon_config.h"

#include <simdjson.h>

namespace imgfs {

void ApplyDaemonConfig(std::string_view json, RegistryOptions* o) {
  simdjson::dom::parser p;
  simdjson::dom::object obj;
  if (p.parse(json.data(), json.size()).get(obj)) return;
  simdjson::dom::array arr;
  if (!obj["registry-mirrors"].get(arr)) {
    for (auto v : arr) {
      std::string_view sv;
      if (!v.get(sv)) o->mirrors.emplace_back(sv);
    }
  }
  if (!obj["insecure-registries"].get(arr)) {
    for (auto v : arr) {
      std::string_view sv;
      if (!v.get(sv)) o->insecure_registries.emplace_back(sv);
    }
  }
}

}  // namespace imgfs
