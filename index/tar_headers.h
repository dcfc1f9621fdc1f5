// Reads the raw bytes of a tar stream's headers, beside libarchive, so that names,
// link targets and mtimes reach the index exactly as the layer wrote them.
//
// Why: libarchive converts pax `path`/`linkpath` records from UTF-8 to the current
// locale, and in a UTF-8 locale it normalises them to NFC on the way (two files named
// "café" in NFC and in NFD become one). It also reads a pax mtime of -1.5 as -0.5, and
// a NUL inside a pax record silently truncates the value. Go's archive/tar (what
// docker, containerd and umoci use) keeps names as bytes; so does this reader.
//
// The walker is fed every byte of the uncompressed stream in order (it sees a chunk
// before libarchive parses it) and queues one RawHeader per real entry, in tar order.
// The indexer pairs each libarchive entry with the next RawHeader and checks that both
// readers put the entry's header end at the same offset, so the two can never drift
// apart silently.
//
// Rules (those of Go's archive/tar reader):
//   name     : GNU 'L' long name > pax `path` (per-entry 'x' header) > ustar
//              prefix + "/" + name (prefix only with the POSIX "ustar\0" magic);
//   link     : GNU 'K' long link > pax `linkpath` > the header's linkname field;
//   mtime    : pax `mtime` (decimal seconds, fraction, sign as Go's parsePAXTime) >
//              the header's octal or base-256 field;
//   data     : pax `size` > the header's size; header-only types (hard link, symlink,
//              devices, directory, FIFO) are followed by no data whatever their size;
//   fields end at their first NUL; a pax `path` or `linkpath` value that holds a NUL
//   is an error (Go refuses it too); pax global headers ('g') are not applied to later
//   entries (Go returns them as entries and docker ignores them).
//
// Thread-safety: a value owned by one reader.
#ifndef IMGFS_INDEX_TAR_HEADERS_H_
#define IMGFS_INDEX_TAR_HEADERS_H_

#include <cstdint>
#include <deque>
#include <string>
#include <string_view>

#include "index/status.h"

namespace imgfs {

struct RawHeader {
  uint64_t header_end = 0;  // offset of the first byte after the entry's header blocks
  char typeflag = '0';
  std::string name;  // raw bytes, before any path cleaning
  std::string link;  // raw bytes
  int64_t mtime_sec = 0;
  uint32_t mtime_nsec = 0;
};

class TarHeaderWalker {
 public:
  // Consumes the next bytes of the stream. After an error every call returns it.
  Status Feed(std::string_view bytes);
  // The oldest queued header, if any.
  bool Pop(RawHeader* out);
  // Bytes seen so far.
  uint64_t offset() const { return offset_; }

 private:
  Status Header(std::string_view block);
  Status PaxRecords(std::string_view data);

  enum class State { kHeader, kExtData, kSkip, kDone } state_ = State::kHeader;
  uint64_t offset_ = 0;
  std::string pending_;  // a partial header block or extension data
  uint64_t need_ = 0;    // kExtData: bytes of data still to collect; kSkip: bytes to skip
  uint64_t pad_ = 0;     // kExtData: padding after the data
  char ext_type_ = 0;
  // Extension state for the next real entry.
  bool has_path_ = false, has_link_ = false, has_mtime_ = false, has_size_ = false;
  bool has_gnu_name_ = false, has_gnu_link_ = false;
  std::string path_, link_, gnu_name_, gnu_link_;
  int64_t mtime_sec_ = 0;
  uint32_t mtime_nsec_ = 0;
  uint64_t size_ = 0;
  Status error_;
  std::deque<RawHeader> queue_;
};

// Parses a pax time value ("-1.5") the way Go's archive/tar does. Exposed for tests.
Result<std::pair<int64_t, uint32_t>> ParsePaxTime(std::string_view s);

}  // namespace imgfs

#endif  // IMGFS_INDEX_TAR_HEADERS_H_
