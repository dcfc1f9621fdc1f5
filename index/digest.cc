#include "index/digest.h"

#include <array>
#include <cstdint>

namespace imgfs {

namespace {
// 1 for '0'-'9' and 'a'-'f': one load a character (every record decode checks three
// 64-digit ids; a listing of 10,000 images checks 30,000).
constexpr auto kLowerHex = [] {
  std::array<uint8_t, 256> t{};
  for (int c = '0'; c <= '9'; c++) t[c] = 1;
  for (int c = 'a'; c <= 'f'; c++) t[c] = 1;
  return t;
}();
}  // namespace

bool IsLowerHex(std::string_view s) {
  unsigned all = 1;
  for (char c : s) all &= kLowerHex[static_cast<unsigned char>(c)];
  return all != 0;
}

Result<Digest> Digest::FromHex(std::string_view hex) {
  if (hex.size() != 64 || !IsLowerHex(hex)) {
    return Status::InvalidArgument("invalid sha256 digest \"" + std::string(hex.substr(0, 80)) +
                                   "\": want 64 lowercase hex digits");
  }
  Digest d;
  d.hex_ = std::string(hex);
  return d;
}

Result<Digest> Digest::Parse(std::string_view s) {
  size_t colon = s.find(':');
  if (colon == std::string_view::npos) {
    return Status::InvalidArgument("invalid digest \"" + std::string(s.substr(0, 80)) +
                                   "\": want algorithm:hex");
  }
  std::string_view algo = s.substr(0, colon);
  if (algo != "sha256") {
    return Status::Unsupported("unsupported digest algorithm \"" + std::string(algo.substr(0, 32)) +
                               "\"");
  }
  return FromHex(s.substr(colon + 1));
}

Sha256::Sha256() : ctx_(EVP_MD_CTX_new()) {
  EVP_DigestInit_ex(ctx_.get(), EVP_sha256(), nullptr);
}

void Sha256::Update(const void* data, size_t n) {
  if (n) EVP_DigestUpdate(ctx_.get(), data, n);
}

Digest Sha256::Finish() {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_DigestFinal_ex(ctx_.get(), md, &len);
  static const char kHex[] = "0123456789abcdef";
  std::string hex(len * 2, '0');
  for (unsigned i = 0; i < len; i++) {
    hex[2 * i] = kHex[md[i] >> 4];
    hex[2 * i + 1] = kHex[md[i] & 15];
  }
  return Digest::FromHex(hex).value();
}

Digest Sha256Of(std::string_view data) {
  Sha256 h;
  h.Update(data.data(), data.size());
  return h.Finish();
}

}  // namespace imgfs
