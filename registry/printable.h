// Text from the network (a registry's error body, a header value, a URL, an index's
// platform strings) as an error line shows it: control bytes (below 0x20, and DEL) as
// '?', so no terminal escape or forged line gets through, and at most `max` bytes of it,
// then "…". Bytes from 0x80 up are kept (UTF-8).
#ifndef IMGFS_REGISTRY_PRINTABLE_H_
#define IMGFS_REGISTRY_PRINTABLE_H_

#include <string>
#include <string_view>

namespace imgfs {

inline std::string Printable(std::string_view v, size_t max) {
  std::string out(v.substr(0, max));
  for (char& c : out)
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) c = '?';
  return v.size() > max ? out + "…" : out;
}

}  // namespace imgfs

#endif  // IMGFS_REGISTRY_PRINTABLE_H_
