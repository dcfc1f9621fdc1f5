// registry/config_fields.h.
#include "registry/config_fields.h"

#include <simdjson.h>

#include <cctype>

#include "index/json_writer.h"

namespace imgfs {

Result<Fields> ObjectFields(std::string_view json, const std::string& what) {
  Fields out;
  std::string_view trimmed = json;
  while (!trimmed.empty() && std::isspace(static_cast<unsigned char>(trimmed.front())))
    trimmed.remove_prefix(1);
  if (trimmed.empty() || trimmed == "null") return out;
  simdjson::dom::parser parser;
  simdjson::dom::element root;
  if (parser.parse(json.data(), json.size()).get(root) != simdjson::SUCCESS) {
    return Status::InvalidArgument(what + ": not valid JSON");
  }
  if (root.is_null()) return out;
  simdjson::dom::object obj;
  if (root.get(obj) != simdjson::SUCCESS) return Status::InvalidArgument(what + ": not an object");
  for (auto field : obj) {
    out.emplace_back(std::string(field.key), simdjson::minify(field.value));
  }
  return out;
}

std::string* FindField(Fields& f, std::string_view key) {
  for (auto& [k, v] : f)
    if (k == key) return &v;
  return nullptr;
}

void SetField(Fields& f, const std::string& key, std::string value) {
  if (std::string* v = FindField(f, key)) {
    *v = std::move(value);
  } else {
    f.emplace_back(key, std::move(value));
  }
}

std::string MapJson(const Fields& f) {
  JsonWriter w;
  w.BeginObject();
  for (const auto& [k, v] : f) w.Key(k).Raw(v);
  w.EndObject();
  return w.str();
}

std::string JsonString(std::string_view s) {
  JsonWriter w;
  w.String(s);
  return w.str();
}

}  // namespace imgfs
