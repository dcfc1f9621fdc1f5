// What a registry answers during a push (registry/pusher.h): upload Locations, upload
// Range headers, the manifest's Docker-Content-Digest. Input: a selector byte, then the
// header value. Properties: no crash; a resolved Location is either a path whose URL
// stays on the registry's host and passes CheckFetchUrl, or an http(s) URL that is not
// under the registry's base; a parsed Range formats back to itself; a digest error
// shows no control bytes and stays short.
#include <cstdint>
#include <string>
#include <string_view>

#include "registry/pusher.h"
#include "tests/fuzz/fuzz_check.h"

using namespace imgfs;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  std::string_view v(reinterpret_cast<const char*>(data + 1), size - 1);
  switch (data[0] % 3) {
    case 0: {
      for (const std::string base : {"https://registry.example:5000", "http://127.0.0.1:5000"}) {
        auto r = ResolveUploadLocation(base, v);
        if (!r.ok()) continue;
        FUZZ_CHECK(!r->empty() && v.size() <= kMaxUploadLocation);
        if ((*r)[0] == '/') {
          FUZZ_CHECK(CheckFetchUrl(base + *r, "x").ok());
          FUZZ_CHECK(UrlHost(base + *r) == UrlHost(base));
        } else {
          FUZZ_CHECK(CheckFetchUrl(*r, "x").ok());
          FUZZ_CHECK(r->rfind(base + "/", 0) != 0);
        }
      }
      break;
    }
    case 1: {
      auto n = ParseUploadRange(v);
      if (!n) break;
      FUZZ_CHECK(*n >= 1);
      auto again = ParseUploadRange("0-" + std::to_string(*n - 1));
      FUZZ_CHECK(again && *again == *n);
      break;
    }
    case 2: {
      Digest d = Sha256Of("manifest");
      Status st = CheckManifestDigest(v, d);
      FUZZ_CHECK(st.ok() == (v.empty() || v == d.str()));
      if (!st.ok()) {
        FUZZ_CHECK(st.message().size() < 300);
        for (char c : st.message()) FUZZ_CHECK(static_cast<unsigned char>(c) >= 0x20 && c != 0x7f);
      }
      break;
    }
  }
  return 0;
}
