// Internal to the seek index's two files (seek_index.cc writes sidecars, seek_decode.cc
// reads them): the constants of the format (docs/store-format.md) and little-endian loads.
#ifndef IMGFS_INDEX_SEEK_FORMAT_H_
#define IMGFS_INDEX_SEEK_FORMAT_H_

#include <cstdint>
#include <cstring>

namespace imgfs::seek_format {

constexpr char kMagic[8] = {'I', 'M', 'G', 'F', 'S', 'E', 'E', 'K'};
constexpr uint32_t kWindow = 32768;  // the longest window (deflate's dictionary)

inline uint32_t Get32(const uint8_t* p) {
  uint32_t v;
  std::memcpy(&v, p, 4);
  return v;
}
inline uint64_t Get64(const uint8_t* p) {
  uint64_t v;
  std::memcpy(&v, p, 8);
  return v;
}

}  // namespace imgfs::seek_format

#endif  // IMGFS_INDEX_SEEK_FORMAT_H_
