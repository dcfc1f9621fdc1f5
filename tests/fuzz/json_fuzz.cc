// Image documents (registry/json.h): manifests, indexes, configs, media types and
// RFC 3339 times from arbitrary bytes. Properties: no crash; a time that parses prints
// to one that parses back to the same second.
#include <cstdint>
#include <cstring>
#include <string_view>

#include "registry/json.h"
#include "tests/fuzz/fuzz_check.h"

using namespace imgfs;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view in(reinterpret_cast<const char*>(data), size);
  for (const char* ct : {"", media::kOciManifest, media::kDockerList, "application/json"})
    (void)DetectDocKind(in, ct);
  if (auto m = ParseManifest(in); m.ok()) {
    for (const Descriptor& l : m->layers) (void)LayerCompression(l.media_type);
  }
  (void)ParseIndex(in);
  if (auto c = ParseConfig(in); c.ok()) (void)c->platform.String();
  (void)LayerCompression(in);
  int64_t t = ParseRfc3339(in);
  if (t != 0) FUZZ_CHECK(ParseRfc3339(FormatRfc3339(t)) == t);
  if (size >= 8) {
    int64_t any;
    std::memcpy(&any, data, 8);
    (void)FormatRfc3339(any);
  }
  return 0;
}
