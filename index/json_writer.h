// A small writer of compact JSON for imgfs's own output (inspect, images --format json,
// the mount's .repositories.json).
//
// Thread-safety: a single-thread value.
#ifndef IMGFS_INDEX_JSON_WRITER_H_
#define IMGFS_INDEX_JSON_WRITER_H_

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace imgfs {

// Writes compact JSON. Strings are escaped; bytes that are not valid UTF-8 are
// written as \u00XX of each byte (so the output is always valid JSON).
class JsonWriter {
 public:
  JsonWriter& BeginObject();
  JsonWriter& EndObject();
  JsonWriter& BeginArray();
  JsonWriter& EndArray();
  JsonWriter& Key(std::string_view k);
  JsonWriter& String(std::string_view s);
  JsonWriter& Int(int64_t v);
  JsonWriter& Uint(uint64_t v);
  JsonWriter& Bool(bool v);
  JsonWriter& Null();
  JsonWriter& Raw(std::string_view json);  // a value that is already JSON
  const std::string& str() const { return out_; }

 private:
  void Sep();
  std::string out_;
  std::vector<bool> first_;  // per open container: no element written yet
  bool after_key_ = false;
};

}  // namespace imgfs

#endif  // IMGFS_INDEX_JSON_WRITER_H_
