// The registries.conf reader (registry/registries_conf.h, toml++ underneath) on
// arbitrary text. Properties: no crash and no exception out of it; what it accepts is
// usable: aliases name qualified references, [[registry]] prefixes are set, merging the
// same file twice changes nothing (a drop-in with the same prefixes replaces them), and
// for a few references the pull sources are valid hosts ending with a non-mirror (or the
// registry is blocked).
#include <cstdint>
#include <string>
#include <string_view>

#include "registry/registries_conf.h"
#include "tests/fuzz/fuzz_check.h"

using namespace imgfs;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view in(reinterpret_cast<const char*>(data), size);
  RegistriesConf conf;
  if (!ParseRegistriesConf(in, "fuzz.conf", &conf).ok()) return 0;
  for (auto& [k, v] : conf.aliases) {
    FUZZ_CHECK(IsShortName(k));
    FUZZ_CHECK(!IsShortName(v) && ParseReference(v).ok());
  }
  for (const RegistryEntry& r : conf.registries) FUZZ_CHECK(!r.prefix.empty());
  RegistriesConf twice = conf;
  FUZZ_CHECK(ParseRegistriesConf(in, "fuzz.conf", &twice).ok());
  FUZZ_CHECK(twice.registries.size() == conf.registries.size() && twice.aliases == conf.aliases &&
             twice.search == conf.search);
  for (const char* typed : {"app", "team/app:1", "example.com/foo/bar:2", "docker.io/library/x",
                            "localhost:5000/a@sha256:"
                            "0000000000000000000000000000000000000000000000000000000000000000"}) {
    auto cands = CandidateReferences(conf, typed);
    if (!cands.ok()) continue;
    FUZZ_CHECK(!cands->empty());
    for (const Reference& ref : *cands) {
      auto src = PullSources(conf, ref.Normalized(), {"http://127.0.0.1:5000"});
      if (!src.ok()) continue;
      FUZZ_CHECK(!src->empty() && !src->back().mirror);
      for (const PullSource& s : *src) FUZZ_CHECK(IsValidDomain(s.host));
    }
  }
  return 0;
}
