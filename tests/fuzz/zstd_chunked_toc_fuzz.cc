// zstd:chunked tables of contents (registry/zstd_chunked.h) from arbitrary bytes, and
// what a lazy pull derives from them (index/lazy_layer.h). Properties: no crash; a TOC
// that parses keeps the LayerToc contract (normalised paths, every regular file's
// chunks contiguous, covering it exactly, inside the blob); its chunk map, once tar
// offsets are given, survives an encode/decode round trip; header gaps are in blob
// order and end before the TOC. The input is split at the first NUL: TOC JSON, then
// tar-split JSON lines (also fed to the range map decoder).
#include <cstdint>
#include <cstring>
#include <string_view>

#include "index/lazy_layer.h"
#include "registry/zstd_chunked.h"
#include "tests/fuzz/fuzz_check.h"

using namespace imgfs;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view in(reinterpret_cast<const char*>(data), size);
  size_t nul = in.find('\0');
  std::string_view toc_json = in.substr(0, nul);
  std::string_view rest = nul == std::string_view::npos ? std::string_view() : in.substr(nul + 1);
  const uint64_t blob_size = 1 << 20;
  Digest d = Sha256Of("fuzz");
  (void)RangeMap::Decode(rest, blob_size);
  auto segs = ParseTarSplit(rest);
  auto p = ParseZstdChunkedToc(toc_json, d, blob_size, d);
  if (!p.ok()) return 0;
  LayerToc& toc = p->toc;
  for (const TocEntry& e : toc.entries) {
    auto again = NormalizeTarPath(e.path, true);
    FUZZ_CHECK(again.ok() && *again == e.path);
    if (e.type != EntryType::kFile || e.size == 0) {
      FUZZ_CHECK(e.chunks.empty());
      continue;
    }
    uint64_t covered = 0;
    for (const TocChunk& c : e.chunks) {
      FUZZ_CHECK(c.file_offset == covered && c.size > 0);
      FUZZ_CHECK(c.blob_offset <= blob_size && c.blob_length <= blob_size - c.blob_offset);
      FUZZ_CHECK(c.codec == ChunkCodec::kZeros || c.blob_length > 0);
      covered += c.size;
    }
    FUZZ_CHECK(covered == e.size);
  }
  auto gaps = HeaderGaps(toc, blob_size - 100);
  if (gaps.ok()) {
    uint64_t pos = 0;
    for (const BlobRange& g : *gaps) {
      FUZZ_CHECK(g.offset >= pos);
      pos = g.offset + g.length;
    }
    FUZZ_CHECK(pos <= blob_size - 100);
  }
  if (segs.ok()) {
    LayerToc t2 = toc;
    if (ApplyTarSplit(t2, *segs).ok()) {
      auto map = ChunkMapFromToc(t2);
      if (map.ok()) {
        auto back = DecodeChunkMap(EncodeChunkMap(*map));
        FUZZ_CHECK(back.ok() && back->chunks.size() == map->chunks.size());
        FUZZ_CHECK(*back == *map);
      }
    }
  }
  return 0;
}
