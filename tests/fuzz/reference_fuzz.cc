// The reference parser (registry/reference.h) on arbitrary strings. Properties: no
// crash; a parsed reference prints (canonical, and familiar where that is unambiguous)
// to strings that parse back to the same reference.
#include <cstdint>
#include <string_view>

#include "registry/reference.h"
#include "tests/fuzz/fuzz_check.h"

using namespace imgfs;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view in(reinterpret_cast<const char*>(data), size);
  (void)IsValidTag(in);
  (void)IsValidPathComponent(in);
  (void)IsValidDomain(in);
  (void)ParseDockerRef(in);
  auto r = ParseReference(in);
  if (!r.ok()) return 0;
  auto canonical = ParseReference(r->String());
  FUZZ_CHECK(canonical.ok() && canonical->String() == r->String());
  // docker.io/a.b/c shortens to "a.b/c", which names the registry a.b: docker's
  // familiar names are ambiguous there (distribution's familiarizeName does the same),
  // so the familiar form must round-trip only when its first component is no host.
  std::string fam = r->FamiliarString();
  std::string first = fam.substr(0, fam.find('/'));
  if (fam.find('/') == std::string::npos ||
      (first.find_first_of(".:") == std::string::npos && first != "localhost")) {
    auto familiar = ParseReference(fam);
    FUZZ_CHECK(familiar.ok() && familiar->String() == r->String());
  }
  Reference n = r->Normalized();
  FUZZ_CHECK(!n.tag.empty() || !n.digest.empty());
  (void)r->FamiliarName();
  return 0;
}
