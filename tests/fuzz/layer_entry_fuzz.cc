// The per-layer entry table codec and tar path normalisation (index/layer_entry.h).
// Properties: no crash; a table that decodes re-encodes to one that decodes equal; a
// normalised path is a fixed point with no "..", "." or empty component; the view
// decoder (EntryTable) accepts what DecodeEntries accepts, views only bytes of its
// input, and gives the views that EntryTable::Assign of the decoded entries gives.
#include <cstdint>
#include <string_view>
#include <vector>

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

bool Inside(std::string_view v, std::string_view in) {
  return v.empty() || (v.data() >= in.data() && v.data() + v.size() <= in.data() + in.size());
}

void CheckViews(std::string_view in, const std::vector<LayerEntry>* entries) {
  EntryTable views;
  Status st = views.Decode(in);
  FUZZ_CHECK(st.ok() == (entries != nullptr));
  if (!entries) return;
  EntryTable owned;
  owned.Assign(*entries);
  FUZZ_CHECK(views.size() == entries->size() && owned.size() == entries->size());
  for (size_t i = 0; i < views.size(); i++) {
    const LayerEntryView &a = views[i], &b = owned[i];
    FUZZ_CHECK(Inside(a.path, in) && Inside(a.link, in));
    FUZZ_CHECK(a.path == b.path && a.type == b.type && a.mode == b.mode && a.uid == b.uid &&
               a.gid == b.gid && a.size == b.size && a.mtime_sec == b.mtime_sec &&
               a.mtime_nsec == b.mtime_nsec && a.dev_major == b.dev_major &&
               a.dev_minor == b.dev_minor && a.link == b.link && a.data_offset == b.data_offset &&
               a.xattr_count == b.xattr_count);
    for (uint32_t k = 0; k < a.xattr_count; k++) {
      const XattrView &x = views.XattrsBegin(a)[k], &y = owned.XattrsBegin(b)[k];
      FUZZ_CHECK(Inside(x.name, in) && Inside(x.value, in));
      FUZZ_CHECK(x.name == y.name && x.value == y.value);
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view in(reinterpret_cast<const char*>(data), size);
  CheckNormalized(in, true);
  CheckNormalized(in, false);
  auto entries = DecodeEntries(in);
  CheckViews(in, entries.ok() ? &*entries : nullptr);
  if (!entries.ok()) return 0;
  auto again = DecodeEntries(EncodeEntries(*entries));
  FUZZ_CHECK(again.ok() && again->size() == entries->size());
  for (size_t i = 0; i < entries->size(); i++) FUZZ_CHECK(Same((*entries)[i], (*again)[i]));
  return 0;
}
