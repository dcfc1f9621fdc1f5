// eStargz TOC reading (registry/estargz_toc.h) on arbitrary bytes.
// The input is used three ways: as a TOC JSON (the parser behind the digest check), as
// a TOC member (inflate, tar header, bounds) and as a whole blob (footer and all, with
// the digest of whatever JSON its TOC member holds, so the parser is reached).
// Properties: no crash, no unbounded allocation; an accepted TOC keeps its promises:
// paths normalised, every file's chunks cover it in order, data offsets strictly
// increasing and before the TOC, each member's end after its start.
#include <cstdint>
#include <string>
#include <string_view>

#include "index/layer_entry.h"
#include "registry/estargz_toc.h"
#include "tests/fuzz/fuzz_check.h"

using namespace imgfs;
using namespace imgfs::estargz;

namespace {

// `end`: where data may end (the TOC offset for a bare TOC, the footer for a blob).
void CheckToc(const LayerToc& toc, uint64_t end) {
  uint64_t prev = 0, prev_inner = 0;
  bool any = false;
  for (const TocEntry& te : toc.entries) {
    auto again = NormalizeTarPath(te.path, true);
    FUZZ_CHECK(again.ok() && *again == te.path);
    if (te.type != EntryType::kFile || te.size == 0) {
      FUZZ_CHECK(te.chunks.empty());
      continue;
    }
    uint64_t covered = 0;
    for (const TocChunk& c : te.chunks) {
      FUZZ_CHECK(c.file_offset == covered && c.size > 0);
      covered += c.size;
      FUZZ_CHECK(c.blob_offset < end && c.blob_length > 0);
      FUZZ_CHECK(c.blob_length <= end - c.blob_offset);
      FUZZ_CHECK(!any || c.blob_offset > prev || (c.blob_offset == prev && c.skip > prev_inner));
      any = true;
      prev = c.blob_offset;
      prev_inner = c.skip;
    }
    FUZZ_CHECK(covered == te.size);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view in(reinterpret_cast<const char*>(data), size);
  TocLimits lim;
  lim.max_toc_json = 4u << 20;
  lim.max_toc_member = 1u << 20;
  auto toc = ParseTocJson(in, 1u << 30, lim);
  if (toc.ok()) CheckToc(*toc, 1u << 30);
  auto json = ExtractTocJson(in, lim);
  if (json.ok()) FUZZ_CHECK(json->size() <= lim.max_toc_json);
  if (size >= kFooterSize) {
    std::string blob(in);
    BlobReader read = [&](uint64_t off, uint64_t len) -> Result<std::string> {
      FUZZ_CHECK(off <= blob.size() && len <= blob.size() - off);
      return blob.substr(off, len);
    };
    auto off = ParseFooter(in.substr(size - kFooterSize), size);
    Digest want = Sha256Of("");
    if (off.ok()) {
      FUZZ_CHECK(*off < size - kFooterSize);
      auto j = ExtractTocJson(in.substr(*off, size - kFooterSize - *off), lim);
      if (j.ok()) want = Sha256Of(*j);
    }
    auto t = ReadEstargzToc(Sha256Of(in), size, read, want, lim);
    if (t.ok()) CheckToc(*t, size - kFooterSize);
  }
  return 0;
}
