// Builds small tar streams in memory for tests, with libarchive's writer: every entry
// type, PAX or GNU headers, xattrs, optional gzip/zstd compression.
#ifndef IMGFS_TESTS_TAR_BUILDER_H_
#define IMGFS_TESTS_TAR_BUILDER_H_

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace imgfs::test {

struct Spec {
  enum Kind { kFile, kDir, kSymlink, kHardlink, kFifo, kChar, kBlock } kind = kFile;
  std::string path;
  std::string content;  // file content
  std::string link;     // symlink or hard-link target
  unsigned mode = 0644;
  int64_t uid = 0, gid = 0;
  int64_t mtime = 1700000000;
  unsigned dev_major = 0, dev_minor = 0;
  std::vector<std::pair<std::string, std::string>> xattrs;
};

class TarBuilder {
 public:
  enum class Format { kPax, kGnu, kUstar };
  TarBuilder& File(const std::string& path, const std::string& content, unsigned mode = 0644);
  TarBuilder& Dir(const std::string& path, unsigned mode = 0755);
  TarBuilder& Symlink(const std::string& path, const std::string& target);
  TarBuilder& Hardlink(const std::string& path, const std::string& target);
  TarBuilder& Fifo(const std::string& path);
  TarBuilder& Char(const std::string& path, unsigned major, unsigned minor);
  TarBuilder& Whiteout(const std::string& dir, const std::string& name);  // dir/.wh.name
  TarBuilder& Opaque(const std::string& dir);                             // dir/.wh..wh..opq
  TarBuilder& Add(Spec s);
  Spec& last() { return specs_.back(); }
  // "none", "gzip" or "zstd".
  std::string Build(const std::string& compression = "none", Format f = Format::kPax) const;

 private:
  std::vector<Spec> specs_;
};

// Writes tar headers byte by byte, for what a library writer will not produce: raw
// (non-UTF-8, NFD) names in pax records, GNU 'L'/'K' long names, ustar prefixes,
// negative or fractional pax times, NULs inside records.
class RawTar {
 public:
  struct Header {
    std::string name;      // the 100-byte name field (truncated to fit)
    std::string prefix;    // the 155-byte ustar prefix field
    std::string linkname;  // the 100-byte linkname field
    char type = '0';
    uint64_t size = 0;
    unsigned mode = 0644;
    int64_t mtime = 1700000000;  // octal
    std::string mtime_field;     // when set: the 12 raw bytes of the mtime field
    bool gnu_magic = false;      // "ustar  \0" instead of "ustar\0" "00"
  };
  RawTar& Entry(const Header& h, const std::string& data = "");
  // A pax extended header ('x', or 'g' for global) with these records, in order.
  RawTar& Pax(const std::vector<std::pair<std::string, std::string>>& records, char type = 'x');
  // A GNU long name ('L') or long link ('K') header; the data is NUL-terminated.
  RawTar& GnuLong(char type, const std::string& value);
  // The stream with its two zero end blocks.
  std::string Finish() const { return out_ + std::string(1024, '\0'); }

 private:
  std::string out_;
};

std::string Sha256Hex(const std::string& data);
// A fresh temporary directory (removed by the caller with RemoveTree).
std::string MakeTempDir();
void RemoveTree(const std::string& dir);
void WriteFile(const std::string& path, const std::string& data);
// A listing of every file under dir with size and content hash, to compare stores.
std::string SnapshotTree(const std::string& dir);

}  // namespace imgfs::test

#endif  // IMGFS_TESTS_TAR_BUILDER_H_
