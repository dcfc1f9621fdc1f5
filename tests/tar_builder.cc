#include "tests/tar_builder.h"

#include <archive.h>
#include <archive_entry.h>
#include <ftw.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <sstream>
#include <stdexcept>

#include "index/digest.h"
#include "index/file_util.h"

namespace imgfs::test {

TarBuilder& TarBuilder::Add(Spec s) {
  specs_.push_back(std::move(s));
  return *this;
}
TarBuilder& TarBuilder::File(const std::string& p, const std::string& c, unsigned mode) {
  Spec s;
  s.path = p;
  s.content = c;
  s.mode = mode;
  return Add(s);
}
TarBuilder& TarBuilder::Dir(const std::string& p, unsigned mode) {
  Spec s;
  s.kind = Spec::kDir;
  s.path = p;
  s.mode = mode;
  return Add(s);
}
TarBuilder& TarBuilder::Symlink(const std::string& p, const std::string& t) {
  Spec s;
  s.kind = Spec::kSymlink;
  s.path = p;
  s.link = t;
  s.mode = 0777;
  return Add(s);
}
TarBuilder& TarBuilder::Hardlink(const std::string& p, const std::string& t) {
  Spec s;
  s.kind = Spec::kHardlink;
  s.path = p;
  s.link = t;
  return Add(s);
}
TarBuilder& TarBuilder::Fifo(const std::string& p) {
  Spec s;
  s.kind = Spec::kFifo;
  s.path = p;
  return Add(s);
}
TarBuilder& TarBuilder::Char(const std::string& p, unsigned ma, unsigned mi) {
  Spec s;
  s.kind = Spec::kChar;
  s.path = p;
  s.dev_major = ma;
  s.dev_minor = mi;
  return Add(s);
}
TarBuilder& TarBuilder::Whiteout(const std::string& dir, const std::string& name) {
  return File(dir.empty() ? ".wh." + name : dir + "/.wh." + name, "");
}
TarBuilder& TarBuilder::Opaque(const std::string& dir) {
  return File(dir.empty() ? ".wh..wh..opq" : dir + "/.wh..wh..opq", "");
}

namespace {
la_ssize_t WriteCb(archive*, void* out, const void* buf, size_t n) {
  static_cast<std::string*>(out)->append(static_cast<const char*>(buf), n);
  return static_cast<la_ssize_t>(n);
}
}  // namespace

std::string TarBuilder::Build(const std::string& compression, Format f) const {
  std::string out;
  archive* a = archive_write_new();
  if (f == Format::kPax) archive_write_set_format_pax_restricted(a);
  if (f == Format::kGnu) archive_write_set_format_gnutar(a);
  if (f == Format::kUstar) archive_write_set_format_ustar(a);
  if (compression == "gzip") archive_write_add_filter_gzip(a);
  if (compression == "zstd") archive_write_add_filter_zstd(a);
  archive_write_set_bytes_in_last_block(a, 1);
  if (archive_write_open(a, &out, nullptr, WriteCb, nullptr) != ARCHIVE_OK) {
    throw std::runtime_error(archive_error_string(a));
  }
  for (const Spec& s : specs_) {
    archive_entry* e = archive_entry_new();
    archive_entry_copy_pathname(e, s.path.c_str());
    archive_entry_set_perm(e, s.mode);
    archive_entry_set_uid(e, s.uid);
    archive_entry_set_gid(e, s.gid);
    archive_entry_set_mtime(e, s.mtime, 0);
    for (auto& [k, v] : s.xattrs) archive_entry_xattr_add_entry(e, k.c_str(), v.data(), v.size());
    switch (s.kind) {
      case Spec::kFile:
        archive_entry_set_filetype(e, AE_IFREG);
        archive_entry_set_size(e, static_cast<la_int64_t>(s.content.size()));
        break;
      case Spec::kDir:
        archive_entry_set_filetype(e, AE_IFDIR);
        break;
      case Spec::kSymlink:
        archive_entry_set_filetype(e, AE_IFLNK);
        archive_entry_copy_symlink(e, s.link.c_str());
        break;
      case Spec::kHardlink:
        archive_entry_set_filetype(e, AE_IFREG);
        archive_entry_copy_hardlink(e, s.link.c_str());
        archive_entry_set_size(e, 0);
        break;
      case Spec::kFifo:
        archive_entry_set_filetype(e, AE_IFIFO);
        break;
      case Spec::kChar:
      case Spec::kBlock:
        archive_entry_set_filetype(e, s.kind == Spec::kChar ? AE_IFCHR : AE_IFBLK);
        archive_entry_set_rdevmajor(e, s.dev_major);
        archive_entry_set_rdevminor(e, s.dev_minor);
        break;
    }
    if (archive_write_header(a, e) < ARCHIVE_WARN)
      throw std::runtime_error(archive_error_string(a));
    if (s.kind == Spec::kFile && !s.content.empty())
      archive_write_data(a, s.content.data(), s.content.size());
    archive_entry_free(e);
  }
  archive_write_close(a);
  archive_write_free(a);
  return out;
}

RawTar& RawTar::Entry(const Header& h, const std::string& data) {
  std::string b(512, '\0');
  auto put = [&b](size_t off, size_t len, const std::string& v) {
    b.replace(off, std::min(len, v.size()), v.substr(0, len));
  };
  auto octal = [&put](size_t off, size_t len, uint64_t v) {
    char buf[32];
    snprintf(buf, sizeof buf, "%0*llo", static_cast<int>(len - 1), (unsigned long long)v);
    put(off, len - 1, buf);
  };
  put(0, 100, h.name);
  octal(100, 8, h.mode);
  octal(108, 8, 0);
  octal(116, 8, 0);
  octal(124, 12, h.size);
  octal(136, 12, static_cast<uint64_t>(h.mtime));
  if (!h.mtime_field.empty()) put(136, 12, h.mtime_field);
  b[156] = h.type;
  put(157, 100, h.linkname);
  if (h.gnu_magic) {
    put(257, 8, std::string("ustar  \0", 8));
  } else {
    put(257, 8,
        std::string("ustar\0"
                    "00",
                    8));
    put(345, 155, h.prefix);
  }
  put(148, 8, "        ");
  unsigned sum = 0;
  for (unsigned char c : b) sum += c;
  char buf[16];
  snprintf(buf, sizeof buf, "%06o", sum);
  put(148, 7, std::string(buf, 6) + std::string(1, '\0'));
  out_ += b;
  out_ += data;
  out_ += std::string((512 - data.size() % 512) % 512, '\0');
  return *this;
}

RawTar& RawTar::Pax(const std::vector<std::pair<std::string, std::string>>& records, char type) {
  std::string data;
  for (auto& [k, v] : records) {
    size_t body = 1 + k.size() + 1 + v.size() + 1;  // " k=v\n"
    size_t n = body + 1;
    while (std::to_string(n).size() + body != n) n++;
    data += std::to_string(n) + " " + k + "=" + v + "\n";
  }
  Header h;
  h.name = "PaxHeaders/x";
  h.type = type;
  h.size = data.size();
  return Entry(h, data);
}

RawTar& RawTar::GnuLong(char type, const std::string& value) {
  Header h;
  h.name = "././@LongLink";
  h.type = type;
  h.gnu_magic = true;
  h.size = value.size() + 1;
  return Entry(h, value + std::string(1, '\0'));
}

std::string Sha256Hex(const std::string& data) {
  return Sha256Of(data).hex();
}

std::string MakeTempDir() {
  char tmpl[] = "/tmp/imgfs-test-XXXXXX";
  if (!::mkdtemp(tmpl)) throw std::runtime_error("mkdtemp");
  return tmpl;
}

void RemoveTree(const std::string& dir) {
  ::nftw(
      dir.c_str(),
      [](const char* p, const struct stat*, int, struct FTW*) {
        ::chmod(p, 0700);
        return ::remove(p);
      },
      16, FTW_DEPTH | FTW_PHYS);
}

void WriteFile(const std::string& path, const std::string& data) {
  std::ofstream f(path, std::ios::binary);
  f << data;
  if (!f) throw std::runtime_error("write " + path);
}

namespace {
std::map<std::string, std::string>* g_snapshot;
std::string g_snapshot_root;
}  // namespace

std::string SnapshotTree(const std::string& dir) {
  std::map<std::string, std::string> m;
  g_snapshot = &m;
  g_snapshot_root = dir;
  ::nftw(
      dir.c_str(),
      [](const char* p, const struct stat* st, int type, struct FTW*) {
        std::string rel = std::string(p).substr(g_snapshot_root.size());
        // LMDB's files change on every open (reader table); compare the index logically.
        if (rel.find("/index/") == 0 || rel == "/gc.lock") return 0;
        std::string v = std::to_string(st->st_mode) + " " + std::to_string(st->st_size);
        if (type == FTW_F) {
          auto data = ReadFileToString(p, 1 << 30);
          v += " " + (data.ok() ? Sha256Of(*data).hex() : std::string("?"));
        }
        (*g_snapshot)[rel] = v;
        return 0;
      },
      16, FTW_PHYS);
  std::ostringstream os;
  for (auto& [k, v] : m) os << k << " " << v << "\n";
  return os.str();
}

}  // namespace imgfs::test
