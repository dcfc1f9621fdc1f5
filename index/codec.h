// A minimal binary codec for LMDB values: little-endian varints and length-prefixed
// byte strings. Decoding never trusts its input: every read is bounds-checked and a
// short or malformed value makes the Decoder fail (ok() == false), which callers turn
// into Status::Corruption.
//
// Thread-safety: single-thread values.
#ifndef IMGFS_INDEX_CODEC_H_
#define IMGFS_INDEX_CODEC_H_

#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>

namespace imgfs {

class Encoder {
 public:
  void PutVarint(uint64_t v) {
    while (v >= 0x80) {
      buf_.push_back(static_cast<char>(v | 0x80));
      v >>= 7;
    }
    buf_.push_back(static_cast<char>(v));
  }
  void PutSigned(int64_t v) {
    PutVarint((static_cast<uint64_t>(v) << 1) ^ static_cast<uint64_t>(v >> 63));
  }
  void PutBytes(std::string_view s) {
    PutVarint(s.size());
    buf_.append(s);
  }
  void PutRaw(const void* p, size_t n) { buf_.append(static_cast<const char*>(p), n); }
  std::string& buffer() { return buf_; }
  std::string Take() { return std::move(buf_); }

 private:
  std::string buf_;
};

class Decoder {
 public:
  explicit Decoder(std::string_view in) : in_(in) {}
  uint64_t Varint() {
    uint64_t v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
      if (pos_ >= in_.size()) return Fail();
      uint8_t b = static_cast<uint8_t>(in_[pos_++]);
      v |= static_cast<uint64_t>(b & 0x7f) << shift;
      if (!(b & 0x80)) return v;
    }
    return Fail();
  }
  int64_t Signed() {
    uint64_t u = Varint();
    return static_cast<int64_t>((u >> 1) ^ (~(u & 1) + 1));
  }
  std::string_view Bytes() {
    uint64_t n = Varint();
    if (!ok_ || n > in_.size() - pos_) {
      Fail();
      return {};
    }
    std::string_view s = in_.substr(pos_, n);
    pos_ += n;
    return s;
  }
  bool Raw(void* out, size_t n) {
    if (n > in_.size() - pos_) return Fail() == 0 && false;
    std::memcpy(out, in_.data() + pos_, n);
    pos_ += n;
    return true;
  }
  std::string_view Rest() const { return in_.substr(pos_); }
  bool ok() const { return ok_; }
  bool done() const { return ok_ && pos_ == in_.size(); }

 private:
  uint64_t Fail() {
    ok_ = false;
    pos_ = in_.size();
    return 0;
  }
  std::string_view in_;
  size_t pos_ = 0;
  bool ok_ = true;
};

}  // namespace imgfs

#endif  // IMGFS_INDEX_CODEC_H_
