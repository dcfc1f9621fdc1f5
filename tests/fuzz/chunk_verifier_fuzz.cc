// ChunkVerifier (index/lazy_layer.h): a completing pull's check of a lazy layer's chunks
// against the layer's tar as its bytes go by, and the chunk map file it reads
// (lazy/<hex>/chunks, DecodeChunkMap).
//
// Input, first byte even: byte 1 = number of chunks (mod 17); 5 bytes per chunk (2: gap
// after the previous chunk, 2: size - 1, 1: bit 0 set = a wrong digest); 1 byte seeding
// how the tar is cut into Feed calls; the rest is the tar. The map's tar size is the
// larger of the tar's and the last chunk's end (a TOC may name content past the real
// end). The map goes through EncodeChunkMap and DecodeChunkMap, so it keeps the map's
// contract. Properties: Finish's verdict is that of checking each chunk directly, in
// order (the first chunk that does not hash to its digest, named by its tar offset and
// size; else a chunk past the end; else ok), fed whole and fed in pieces of 0–4,096
// bytes; fed() is the tar's length.
//
// First byte odd: the rest is a chunk map file. One that decodes encodes to bytes that
// decode to the same map.
#include <algorithm>
#include <cstdint>
#include <string>
#include <string_view>

#include "index/digest.h"
#include "index/lazy_layer.h"
#include "tests/fuzz/fuzz_check.h"

using namespace imgfs;

namespace {

std::string Verdict(const Status& st) {
  return st.ok() ? "ok" : std::to_string(static_cast<int>(st.code())) + " " + st.message();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 2) return 0;
  std::string_view in(reinterpret_cast<const char*>(data) + 1, size - 1);
  if (data[0] & 1) {
    auto m = DecodeChunkMap(in);
    if (m.ok()) {
      auto back = DecodeChunkMap(EncodeChunkMap(*m));
      FUZZ_CHECK(back.ok() && *back == *m);
    }
    return 0;
  }
  size_t n = static_cast<uint8_t>(in[0]) % 17;
  size_t at = 1;
  if (in.size() < at + 5 * n + 1) return 0;
  struct Planned {
    uint64_t off, size;
    bool wrong;
  };
  std::vector<Planned> plan;
  uint64_t end = 0;
  for (size_t i = 0; i < n; i++, at += 5) {
    auto b = [&](size_t k) { return static_cast<uint64_t>(static_cast<uint8_t>(in[at + k])); };
    uint64_t gap = b(0) | b(1) << 8;
    uint64_t len = (b(2) | b(3) << 8) + 1;
    plan.push_back({end + gap, len, (b(4) & 1) != 0});
    end += gap + len;
  }
  uint8_t cut_seed = static_cast<uint8_t>(in[at++]);
  std::string tar(in.substr(at));

  ChunkMap map;
  map.tar_size = std::max<uint64_t>(tar.size(), end);
  uint64_t blob_pos = 0;
  for (const Planned& p : plan) {
    LazyChunk c;
    c.tar_offset = p.off;
    c.size = p.size;
    c.blob_offset = blob_pos;
    c.blob_length = p.size;
    blob_pos += p.size;
    std::string_view content;
    if (p.off < tar.size()) content = std::string_view(tar).substr(p.off, p.size);
    c.digest = p.wrong ? Sha256Of(std::string(content) + "x") : Sha256Of(content);
    map.chunks.push_back(c);
  }
  map.blob_size = blob_pos;
  auto decoded = DecodeChunkMap(EncodeChunkMap(map));
  FUZZ_CHECK(decoded.ok() && *decoded == map);

  // The direct check: each chunk in order.
  Status want;
  for (const Planned& p : plan) {
    if (p.off + p.size > tar.size()) {
      want = Status::Corruption("the table of contents names content past the tar's end");
      break;
    }
    if (p.wrong) {
      want = Status::Corruption("tar offset " + std::to_string(p.off) + " (" +
                                std::to_string(p.size) + " bytes)");
      break;
    }
  }

  ChunkVerifier whole(*decoded);
  whole.Feed(tar.data(), tar.size());
  FUZZ_CHECK(whole.fed() == tar.size());
  Status got = whole.Finish();
  FUZZ_CHECK(got.ok() == want.ok());
  if (!want.ok()) {
    FUZZ_CHECK(got.code() == Status::Code::kCorruption);
    FUZZ_CHECK(got.message().find(want.message()) != std::string::npos);
  }

  ChunkVerifier pieces(*decoded);
  uint32_t x = cut_seed * 2654435761u + 1;
  for (size_t pos = 0; pos < tar.size();) {
    x = x * 1103515245u + 12345u;
    size_t k = std::min<size_t>(tar.size() - pos, (x >> 8) % 4097);
    pieces.Feed(tar.data() + pos, k);
    pos += k;
  }
  FUZZ_CHECK(pieces.fed() == tar.size());
  FUZZ_CHECK(Verdict(pieces.Finish()) == Verdict(got));
  return 0;
}
