// The LMDB record decoders (index/store.h, index/codec.h): ref, image and layer
// records from arbitrary bytes. Properties: no crash; a record that decodes re-encodes
// to one that decodes equal.
#include <cstdint>
#include <string_view>

#include "index/codec.h"
#include "index/store.h"
#include "tests/fuzz/fuzz_check.h"

using namespace imgfs;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view in(reinterpret_cast<const char*>(data), size);
  if (auto r = DecodeRef(in); r.ok()) {
    auto a = DecodeRef(EncodeRef(*r));
    FUZZ_CHECK(a.ok() && a->image_id == r->image_id && a->manifest_digest == r->manifest_digest);
  }
  {  // without the diff_ids (a listing): the same records decode, to the same fields
    auto full = DecodeImage(in);
    auto brief = DecodeImage(in, /*layers=*/false);
    FUZZ_CHECK(full.ok() == brief.ok());
    if (full.ok() && brief.ok()) {
      FUZZ_CHECK(brief->diff_ids.empty() && brief->id == full->id &&
                 brief->manifest_digest == full->manifest_digest && brief->size == full->size &&
                 brief->created == full->created && brief->added_unix == full->added_unix);
    }
  }
  {  // a listing's summary: the same records decode, to the same fields
    auto full = DecodeImage(in);
    auto brief = DecodeImageSummary(in, /*layers=*/true);
    FUZZ_CHECK(full.ok() == brief.ok());
    if (full.ok() && brief.ok()) {
      FUZZ_CHECK(brief->id == full->id && brief->diff_ids == full->diff_ids &&
                 brief->size == full->size && brief->created_unix == full->created_unix &&
                 brief->has_created == !full->created.empty());
    }
    FUZZ_CHECK(DecodeImageSummary(in).ok() == full.ok());
  }
  if (auto r = DecodeImage(in); r.ok()) {
    auto a = DecodeImage(EncodeImage(*r));
    FUZZ_CHECK(a.ok() && a->id == r->id && a->manifest_digest == r->manifest_digest &&
               a->manifest_media_type == r->manifest_media_type &&
               a->config_size == r->config_size && a->created == r->created &&
               a->created_unix == r->created_unix && a->os == r->os &&
               a->architecture == r->architecture && a->variant == r->variant &&
               a->diff_ids == r->diff_ids && a->size == r->size && a->added_unix == r->added_unix);
  }
  if (auto r = DecodeLayer(in); r.ok()) {
    auto a = DecodeLayer(EncodeLayer(*r));
    FUZZ_CHECK(a.ok() && a->diff_id == r->diff_id && a->blob == r->blob &&
               a->media_type == r->media_type && a->compression == r->compression &&
               a->blob_size == r->blob_size && a->size == r->size &&
               a->entry_count == r->entry_count);
  }
  // The primitives on their own: a failed read leaves the decoder failed and empty.
  Decoder d(in);
  while (d.ok() && !d.done()) {
    (void)d.Signed();
    (void)d.Bytes();
  }
  FUZZ_CHECK(d.Rest().empty());
  return 0;
}
