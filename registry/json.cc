#include "registry/json.h"

#include <simdjson.h>

#include <cctype>
#include <cstdio>
#include <cstdlib>
#include <ctime>

#include "index/store.h"

namespace imgfs {
namespace {

using simdjson::dom::element;
using simdjson::dom::object;

Status JsonError(const std::string& what, simdjson::error_code e) {
  return Status::InvalidArgument(what + ": " + simdjson::error_message(e));
}

std::string GetString(object o, const char* key) {
  std::string_view s;
  if (o[key].get(s) == simdjson::SUCCESS) return std::string(s);
  return "";
}

Result<Descriptor> ParseDescriptor(element el, const std::string& where) {
  object o;
  if (el.get(o) != simdjson::SUCCESS) return Status::InvalidArgument(where + ": not an object");
  Descriptor d;
  d.media_type = GetString(o, "mediaType");
  std::string_view dg;
  if (o["digest"].get(dg) != simdjson::SUCCESS)
    return Status::InvalidArgument(where + ": no digest");
  auto parsed = Digest::Parse(dg);
  if (!parsed.ok()) return parsed.status().WithContext(where);
  d.digest = *parsed;
  int64_t size = -1;
  if (o["size"].get(size) != simdjson::SUCCESS || size < 0) {
    return Status::InvalidArgument(where + ": missing or negative size");
  }
  d.size = static_cast<uint64_t>(size);
  simdjson::dom::array urls;
  if (o["urls"].get(urls) == simdjson::SUCCESS) {
    for (element u : urls) {
      std::string_view s;
      if (u.get(s) == simdjson::SUCCESS) d.urls.emplace_back(s);
    }
  }
  object ann;
  if (o["annotations"].get(ann) == simdjson::SUCCESS) {
    for (auto field : ann) {
      std::string_view v;
      if (field.value.get(v) == simdjson::SUCCESS)
        d.annotations[std::string(field.key)] = std::string(v);
    }
  }
  object plat;
  if (o["platform"].get(plat) == simdjson::SUCCESS) {
    d.has_platform = true;
    d.platform.os = GetString(plat, "os");
    d.platform.architecture = GetString(plat, "architecture");
    d.platform.variant = GetString(plat, "variant");
  }
  return d;
}

}  // namespace

std::string Platform::String() const {
  std::string s = os + "/" + architecture;
  if (!variant.empty()) s += "/" + variant;
  return s;
}

DocKind DetectDocKind(std::string_view json, std::string_view content_type) {
  std::string_view ct = content_type.substr(0, content_type.find(';'));
  if (ct == media::kOciManifest || ct == media::kDockerManifest) return DocKind::kManifest;
  if (ct == media::kOciIndex || ct == media::kDockerList) return DocKind::kIndex;
  if (ct.find("manifest.v1") != std::string_view::npos) return DocKind::kSchema1;
  simdjson::dom::parser p;
  object o;
  if (p.parse(json.data(), json.size()).get(o) != simdjson::SUCCESS) return DocKind::kUnknown;
  std::string mt = GetString(o, "mediaType");
  if (mt == media::kOciManifest || mt == media::kDockerManifest) return DocKind::kManifest;
  if (mt == media::kOciIndex || mt == media::kDockerList) return DocKind::kIndex;
  int64_t sv = 0;
  if (o["schemaVersion"].get(sv) == simdjson::SUCCESS && sv == 1) return DocKind::kSchema1;
  if (o["manifests"].error() == simdjson::SUCCESS) return DocKind::kIndex;
  if (o["config"].error() == simdjson::SUCCESS && o["layers"].error() == simdjson::SUCCESS) {
    return DocKind::kManifest;
  }
  return DocKind::kUnknown;
}

Result<Manifest> ParseManifest(std::string_view json) {
  simdjson::dom::parser p;
  object o;
  auto err = p.parse(json.data(), json.size()).get(o);
  if (err) return JsonError("manifest is not valid JSON", err);
  int64_t sv = 0;
  if (o["schemaVersion"].get(sv) != simdjson::SUCCESS) {
    return Status::InvalidArgument("manifest has no schemaVersion");
  }
  if (sv == 1) return Status::Unsupported("Docker schema 1 manifests are not supported");
  if (sv != 2)
    return Status::Unsupported("manifest schemaVersion " + std::to_string(sv) +
                               " is not supported");
  Manifest m;
  m.media_type = GetString(o, "mediaType");
  element cfg;
  if (o["config"].get(cfg) != simdjson::SUCCESS)
    return Status::InvalidArgument("manifest has no config");
  IMGFS_ASSIGN_OR_RETURN(m.config, ParseDescriptor(cfg, "manifest config"));
  if (!m.config.media_type.empty() && m.config.media_type != media::kOciConfig &&
      m.config.media_type != media::kDockerConfig) {
    return Status::Unsupported("not a container image: config media type \"" + m.config.media_type +
                               "\"");
  }
  simdjson::dom::array layers;
  if (o["layers"].get(layers) != simdjson::SUCCESS)
    return Status::InvalidArgument("manifest has no layers array");
  // Before a pull fetches anything.
  IMGFS_RETURN_IF_ERROR(Store::CheckLayerCount("manifest lists", layers.size()));
  size_t i = 0;
  for (element l : layers) {
    IMGFS_ASSIGN_OR_RETURN(Descriptor d,
                           ParseDescriptor(l, "manifest layer " + std::to_string(++i)));
    IMGFS_RETURN_IF_ERROR(
        LayerCompression(d.media_type).status().WithContext("layer " + d.digest.str()));
    m.layers.push_back(std::move(d));
  }
  return m;
}

Result<ImageIndexDoc> ParseIndex(std::string_view json) {
  simdjson::dom::parser p;
  object o;
  auto err = p.parse(json.data(), json.size()).get(o);
  if (err) return JsonError("image index is not valid JSON", err);
  ImageIndexDoc idx;
  idx.media_type = GetString(o, "mediaType");
  simdjson::dom::array ms;
  if (o["manifests"].get(ms) != simdjson::SUCCESS)
    return Status::InvalidArgument("image index has no manifests");
  size_t i = 0;
  for (element m : ms) {
    IMGFS_ASSIGN_OR_RETURN(Descriptor d, ParseDescriptor(m, "index entry " + std::to_string(++i)));
    idx.manifests.push_back(std::move(d));
  }
  return idx;
}

Result<ImageConfig> ParseConfig(std::string_view json) {
  simdjson::dom::parser p;
  object o;
  auto err = p.parse(json.data(), json.size()).get(o);
  if (err) return JsonError("image config is not valid JSON", err);
  ImageConfig c;
  c.created = GetString(o, "created");
  c.created_unix = ParseRfc3339(c.created);
  c.platform.os = GetString(o, "os");
  c.platform.architecture = GetString(o, "architecture");
  c.platform.variant = GetString(o, "variant");
  object rootfs;
  if (o["rootfs"].get(rootfs) != simdjson::SUCCESS)
    return Status::InvalidArgument("image config has no rootfs");
  simdjson::dom::array ids;
  if (rootfs["diff_ids"].get(ids) != simdjson::SUCCESS) {
    return Status::InvalidArgument("image config has no rootfs.diff_ids");
  }
  IMGFS_RETURN_IF_ERROR(Store::CheckLayerCount("image config lists", ids.size()));
  for (element e : ids) {
    std::string_view s;
    if (e.get(s) != simdjson::SUCCESS)
      return Status::InvalidArgument("image config: diff_id is not a string");
    auto d = Digest::Parse(s);
    if (!d.ok()) return d.status().WithContext("image config diff_id");
    c.diff_ids.push_back(*d);
  }
  element cfg;
  if (o["config"].get(cfg) == simdjson::SUCCESS && !cfg.is_null()) {
    c.config_json = simdjson::minify(cfg);
  } else {
    c.config_json = "{}";
  }
  return c;
}

Result<Compression> LayerCompression(std::string_view mt) {
  if (mt == media::kOciLayerGzip || mt == media::kDockerLayerGzip ||
      mt == media::kDockerForeignGzip ||
      mt == "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip") {
    return Compression::kGzip;
  }
  if (mt == media::kOciLayerZstd ||
      mt == "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd") {
    return Compression::kZstd;
  }
  if (mt == media::kOciLayer || mt == media::kDockerLayer ||
      mt == "application/vnd.oci.image.layer.nondistributable.v1.tar") {
    return Compression::kNone;
  }
  return Status::Unsupported("unknown layer media type \"" + std::string(mt.substr(0, 200)) + "\"");
}

int64_t ParseRfc3339(std::string_view s) {
  std::string str(s);
  struct tm tm {};
  int consumed = 0;
  if (sscanf(str.c_str(), "%4d-%2d-%2dT%2d:%2d:%2d%n", &tm.tm_year, &tm.tm_mon, &tm.tm_mday,
             &tm.tm_hour, &tm.tm_min, &tm.tm_sec, &consumed) != 6) {
    return 0;
  }
  tm.tm_year -= 1900;
  tm.tm_mon -= 1;
  int64_t t = timegm(&tm);
  const char* rest = str.c_str() + consumed;
  if (*rest == '.') {
    rest++;
    while (*rest >= '0' && *rest <= '9') rest++;
  }
  int oh = 0, om = 0;
  if ((*rest == '+' || *rest == '-') && sscanf(rest + 1, "%2d:%2d", &oh, &om) == 2) {
    int64_t off = oh * 3600 + om * 60;
    t += *rest == '+' ? -off : off;
  }
  return t;
}

std::string FormatRfc3339(int64_t unix_seconds) {
  time_t t = static_cast<time_t>(unix_seconds);
  struct tm tm {};
  gmtime_r(&t, &tm);
  char buf[64];
  strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

Result<int64_t> ParseGoDurationNs(std::string_view s) {
  auto invalid = [&] {
    return Status::InvalidArgument("time: invalid duration \"" + std::string(s) + "\"");
  };
  std::string_view r = s;
  bool neg = false;
  if (!r.empty() && (r[0] == '-' || r[0] == '+')) {
    neg = r[0] == '-';
    r.remove_prefix(1);
  }
  if (r == "0") return 0;
  if (r.empty()) return invalid();
  static const std::pair<std::string_view, long double> kUnits[] = {
      {"ns", 1},   {"us", 1e3}, {"\xC2\xB5s", 1e3}, {"\xCE\xBCs", 1e3},
      {"ms", 1e6}, {"s", 1e9},  {"m", 60e9},        {"h", 3600e9}};
  long double total = 0;
  while (!r.empty()) {
    size_t j = 0;
    bool digits = false;
    for (; j < r.size() && (std::isdigit(static_cast<unsigned char>(r[j])) || r[j] == '.'); j++) {
      digits = digits || r[j] != '.';
    }
    std::string num(r.substr(0, j));
    char* end = nullptr;
    long double v = std::strtold(num.c_str(), &end);
    if (!digits || end != num.c_str() + num.size()) return invalid();  // "", ".", "1.2.3"
    size_t k = j;  // the unit: up to the next digit or '.'
    while (k < r.size() && r[k] != '.' && !std::isdigit(static_cast<unsigned char>(r[k]))) k++;
    std::string_view unit = r.substr(j, k - j);
    if (unit.empty()) {
      return Status::InvalidArgument("time: missing unit in duration \"" + std::string(s) + "\"");
    }
    long double mul = 0;
    for (const auto& [name, m] : kUnits) {
      if (unit == name) mul = m;
    }
    if (mul == 0) {
      return Status::InvalidArgument("time: unknown unit \"" + std::string(unit) +
                                     "\" in duration \"" + std::string(s) + "\"");
    }
    total += v * mul;
    if (total > 9223372036854775807.0L) return invalid();
    r.remove_prefix(k);
  }
  auto ns = static_cast<int64_t>(total);
  return neg ? -ns : ns;
}

}  // namespace imgfs
