// The store's names: canonical reference strings as kept in the `refs` database
// ("docker.io/library/ubuntu:16.04", "localhost:5000/app@sha256:<hex>") split into
// repository and tag-or-digest, and shown in docker's familiar form ("ubuntu").
// Parsing what users type is registry/reference.h's job; these only read strings the
// store itself wrote.
//
// Thread-safety: pure functions.
#ifndef IMGFS_INDEX_NAMES_H_
#define IMGFS_INDEX_NAMES_H_

#include <string>
#include <string_view>

namespace imgfs {

struct RefParts {
  std::string name;  // "docker.io/library/ubuntu"
  std::string leaf;  // "16.04" or "sha256:<hex>"
  bool is_digest = false;
};

RefParts SplitCanonicalRef(std::string_view ref);
// "docker.io/library/x" → "x", "docker.io/u/x" → "u/x", other hosts unchanged.
std::string FamiliarizeName(const std::string& canonical_name);

}  // namespace imgfs

#endif  // IMGFS_INDEX_NAMES_H_
