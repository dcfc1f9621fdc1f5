// A token cache file (<store>/tokens/<hash>, registry/registry_client_internal.h) as
// arbitrary bytes: a damaged or foreign file must only be ignored. Properties: no
// crash; what is accepted is a "Bearer …" header without control characters (it goes
// into an Authorization header), and writing it back gives a file that reads the same.
#include <cstdint>
#include <string>

#include "registry/registry_client_internal.h"
#include "tests/fuzz/fuzz_check.h"

using namespace imgfs;
using namespace imgfs::registry_detail;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string in(reinterpret_cast<const char*>(data), size);
  auto got = ParseTokenCacheFile(in);
  if (!got) return 0;
  FUZZ_CHECK(got->header.rfind("Bearer ", 0) == 0 && got->header.size() > 7);
  for (char c : got->header) FUZZ_CHECK(static_cast<unsigned char>(c) >= 0x20 && c != 0x7f);
  auto again = ParseTokenCacheFile(FormatTokenCacheFile(got->expiry, got->header));
  FUZZ_CHECK(again && again->expiry == got->expiry && again->header == got->header);
  return 0;
}
