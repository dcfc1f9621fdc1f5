#include "index/json_writer.h"

#include <cstdio>

namespace imgfs {

void JsonWriter::Sep() {
  if (after_key_) {
    after_key_ = false;
    return;
  }
  if (!first_.empty()) {
    if (!first_.back()) out_.push_back(',');
    first_.back() = false;
  }
}

JsonWriter& JsonWriter::BeginObject() {
  Sep();
  out_.push_back('{');
  first_.push_back(true);
  return *this;
}
JsonWriter& JsonWriter::EndObject() {
  out_.push_back('}');
  first_.pop_back();
  return *this;
}
JsonWriter& JsonWriter::BeginArray() {
  Sep();
  out_.push_back('[');
  first_.push_back(true);
  return *this;
}
JsonWriter& JsonWriter::EndArray() {
  out_.push_back(']');
  first_.pop_back();
  return *this;
}
JsonWriter& JsonWriter::Key(std::string_view k) {
  String(k);
  out_.push_back(':');
  after_key_ = true;
  return *this;
}

JsonWriter& JsonWriter::String(std::string_view s) {
  Sep();
  out_.push_back('"');
  for (size_t i = 0; i < s.size(); i++) {
    unsigned char c = static_cast<unsigned char>(s[i]);
    char buf[8];
    switch (c) {
      case '"':
        out_ += "\\\"";
        continue;
      case '\\':
        out_ += "\\\\";
        continue;
      case '\n':
        out_ += "\\n";
        continue;
      case '\r':
        out_ += "\\r";
        continue;
      case '\t':
        out_ += "\\t";
        continue;
      default:
        break;
    }
    if (c < 0x20) {
      snprintf(buf, sizeof buf, "\\u%04x", c);
      out_ += buf;
      continue;
    }
    if (c < 0x80) {
      out_.push_back(static_cast<char>(c));
      continue;
    }
    // Pass valid UTF-8 sequences through; escape stray bytes. Valid means what JSON
    // parsers (simdjson) accept: no overlong forms, no surrogates, nothing above
    // U+10FFFF (RFC 3629), so the second byte's range depends on the first.
    size_t len = c >= 0xc2 && c <= 0xdf ? 2 : (c >> 4) == 14 ? 3 : c >= 0xf0 && c <= 0xf4 ? 4 : 0;
    bool valid = len && i + len <= s.size();
    for (size_t k = 1; valid && k < len; k++) {
      valid = (static_cast<unsigned char>(s[i + k]) >> 6) == 2;
    }
    if (valid && len > 2) {
      unsigned char c1 = static_cast<unsigned char>(s[i + 1]);
      valid = !((c == 0xe0 && c1 < 0xa0) || (c == 0xed && c1 >= 0xa0) || (c == 0xf0 && c1 < 0x90) ||
                (c == 0xf4 && c1 >= 0x90));
    }
    if (valid) {
      out_.append(s.substr(i, len));
      i += len - 1;
    } else {
      snprintf(buf, sizeof buf, "\\u%04x", c);
      out_ += buf;
    }
  }
  out_.push_back('"');
  return *this;
}

JsonWriter& JsonWriter::Int(int64_t v) {
  Sep();
  out_ += std::to_string(v);
  return *this;
}
JsonWriter& JsonWriter::Uint(uint64_t v) {
  Sep();
  out_ += std::to_string(v);
  return *this;
}
JsonWriter& JsonWriter::Bool(bool v) {
  Sep();
  out_ += v ? "true" : "false";
  return *this;
}
JsonWriter& JsonWriter::Null() {
  Sep();
  out_ += "null";
  return *this;
}
JsonWriter& JsonWriter::Raw(std::string_view json) {
  Sep();
  out_.append(json);
  return *this;
}

}  // namespace imgfs
