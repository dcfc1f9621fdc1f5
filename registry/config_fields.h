// An image config's JSON object as an ordered list of (key, raw JSON value) pairs, for
// the code that edits configs (registry/committer.cc, registry/builder.cc): a field
// changed keeps its place, fields nobody touched keep their bytes.
#ifndef IMGFS_REGISTRY_CONFIG_FIELDS_H_
#define IMGFS_REGISTRY_CONFIG_FIELDS_H_

#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "index/status.h"

namespace imgfs {

using Fields = std::vector<std::pair<std::string, std::string>>;  // key → raw JSON, in order

// The fields of a JSON object ("" and null are empty); `what` names it in errors.
Result<Fields> ObjectFields(std::string_view json, const std::string& what);
// The raw value of `key`, or null.
std::string* FindField(Fields& f, std::string_view key);
// Replaces `key`'s value in place, or appends it.
void SetField(Fields& f, const std::string& key, std::string value);
// The fields as one JSON object, in their order.
std::string MapJson(const Fields& f);
// `s` as a JSON string literal.
std::string JsonString(std::string_view s);

}  // namespace imgfs

#endif  // IMGFS_REGISTRY_CONFIG_FIELDS_H_
