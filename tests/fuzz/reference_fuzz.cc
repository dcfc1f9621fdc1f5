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
  // Two familiar forms are ambiguous in docker too (distribution's familiarizeName):
  // docker.io/a.b/c shortens to "a.b/c", which names the registry a.b, and
  // docker.io/library/<64 hex> to "<64 hex>", which is an image ID. Elsewhere the
  // familiar form must round-trip.
  std::string fam = r->FamiliarString();
  std::string first = fam.substr(0, fam.find('/'));
  bool names_a_host = fam.find('/') != std::string::npos &&
                      (first.find_first_of(".:") != std::string::npos || first == "localhost");
  bool is_an_id =
      fam.size() == 64 && fam.find_first_not_of("0123456789abcdef") == std::string::npos;
  if (!names_a_host && !is_an_id) {
    auto familiar = ParseReference(fam);
    FUZZ_CHECK(familiar.ok() && familiar->String() == r->String());
  }
  Reference n = r->Normalized();
  FUZZ_CHECK(!n.tag.empty() || !n.digest.empty());
  (void)r->FamiliarName();
  return 0;
}
