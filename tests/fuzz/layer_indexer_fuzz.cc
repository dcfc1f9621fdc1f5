// The layer pipeline on arbitrary bytes (index/stream.h, index/layer_indexer.h): the
// first byte picks how the rest is read, as a layer blob (none, gzip, zstd or by its
// magic bytes) through DecompressingSource into IndexTarStream, or as an image
// archive through ScanTarFile. An indexed layer is also merged into a tree.
// Properties: no crash; an uncompressed layer's diff_id and size are those of its
// bytes; every file's content lies inside the stream; the merged tree encodes to
// bytes that decode.
#include <sys/mman.h>
#include <unistd.h>

#include <cstdint>
#include <string_view>

#include "index/digest.h"
#include "index/file_util.h"
#include "index/layer_indexer.h"
#include "index/merged_tree.h"
#include "index/stream.h"
#include "tests/fuzz/fuzz_check.h"

using namespace imgfs;

namespace {

void Scan(std::string_view tar) {
  int fd = ::memfd_create("fuzz-tar", MFD_CLOEXEC);
  if (fd < 0) return;
  UniqueFd owner(fd);
  if (!WriteAll(fd, tar.data(), tar.size()).ok()) return;
  auto members = ScanTarFile(fd);
  if (!members.ok()) return;
  for (const TarMember& m : *members) {
    if (m.type == EntryType::kFile) FUZZ_CHECK(m.offset + m.size <= tar.size());
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  std::string_view in(reinterpret_cast<const char*>(data) + 1, size - 1);
  static constexpr Compression kModes[] = {Compression::kNone, Compression::kGzip,
                                           Compression::kZstd, Compression::kAuto};
  unsigned mode = data[0] % 5;
  if (mode == 4) {
    Scan(in);
    return 0;
  }
  StringSource raw(in);
  DecompressingSource src(&raw, kModes[mode]);
  auto index = IndexTarStream(&src);
  if (!index.ok()) return 0;
  if (kModes[mode] == Compression::kNone) {
    FUZZ_CHECK(index->uncompressed_size == in.size());
    Sha256 h;
    h.Update(in.data(), in.size());
    FUZZ_CHECK(index->diff_id == h.Finish());
  }
  for (const LayerEntry& e : index->entries) {
    if (e.type == EntryType::kFile) {
      FUZZ_CHECK(e.data_offset <= index->uncompressed_size &&
                 e.size <= index->uncompressed_size - e.data_offset);
    }
  }
  auto tree = MergedTree::Build({&index->entries});
  if (tree.ok()) FUZZ_CHECK(MergedTree::Decode(tree->Encode()).ok());
  return 0;
}
