// The per-layer entry table codec and tar path normalisation (index/layer_entry.h).
// Properties: no crash; a table that decodes re-encodes to one that decodes equal; a
// normalised path is a fixed point with no "..", "." or empty component.
#include <cstdint>
#include <string_view>

#include "index/layer_entry.h"
#include "tests/fuzz/fuzz_check.h"

using namespace imgfs;

namespace {

bool Same(const LayerEntry& a, const LayerEntry& b) {
  return a.path == b.path && a.type == b.type && a.mode == b.mode && a.uid == b.uid &&
         a.gid == b.gid && a.size == b.size && a.mtime_sec == b.mtime_sec &&
         a.mtime_nsec == b.mtime_nsec && a.dev_major == b.dev_major && a.dev_minor == b.dev_minor &&
         a.link == b.link && a.data_offset == b.data_offset && a.xattrs == b.xattrs;
}

void CheckNormalized(std::string_view in, bool allow_root) {
  auto p = NormalizeTarPath(in, allow_root);
  if (!p.ok()) return;
  FUZZ_CHECK(allow_root || !p->empty());
  FUZZ_CHECK(p->empty() || ((*p)[0] != '/' && p->back() != '/'));
  size_t start = 0;
  while (!p->empty() && start <= p->size()) {
    size_t end = p->find('/', start);
    if (end == std::string::npos) end = p->size();
    std::string_view c(p->data() + start, end - start);
    FUZZ_CHECK(!c.empty() && c != "." && c != "..");
    start = end + 1;
  }
  auto again = NormalizeTarPath(*p, allow_root);
  FUZZ_CHECK(again.ok() && *again == *p);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view in(reinterpret_cast<const char*>(data), size);
  CheckNormalized(in, true);
  CheckNormalized(in, false);
  auto entries = DecodeEntries(in);
  if (!entries.ok()) return 0;
  auto again = DecodeEntries(EncodeEntries(*entries));
  FUZZ_CHECK(again.ok() && again->size() == entries->size());
  for (size_t i = 0; i < entries->size(); i++) FUZZ_CHECK(Same((*entries)[i], (*again)[i]));
  return 0;
}
