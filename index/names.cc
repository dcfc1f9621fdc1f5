#include "index/names.h"

namespace imgfs {

RefParts SplitCanonicalRef(std::string_view ref) {
  RefParts p;
  size_t at = ref.find('@');
  if (at != std::string_view::npos) {
    p.name = std::string(ref.substr(0, at));
    p.leaf = std::string(ref.substr(at + 1));
    p.is_digest = true;
    return p;
  }
  size_t slash = ref.rfind('/');
  size_t colon = ref.find(':', slash == std::string_view::npos ? 0 : slash);
  if (colon == std::string_view::npos) {
    p.name = std::string(ref);
    p.leaf = "latest";
  } else {
    p.name = std::string(ref.substr(0, colon));
    p.leaf = std::string(ref.substr(colon + 1));
  }
  return p;
}

std::string FamiliarizeName(const std::string& canonical_name) {
  std::string_view n = canonical_name;
  constexpr std::string_view kPrefix = "docker.io/";
  if (n.substr(0, kPrefix.size()) != kPrefix) return canonical_name;
  std::string_view path = n.substr(kPrefix.size());
  if (path.substr(0, 8) == "library/" && path.find('/', 8) == std::string_view::npos) {
    return std::string(path.substr(8));
  }
  return std::string(path);
}

}  // namespace imgfs
