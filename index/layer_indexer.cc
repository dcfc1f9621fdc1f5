#include "index/layer_indexer.h"

#include <archive.h>
#include <archive_entry.h>
#include <sys/stat.h>

#include <unistd.h>

#include <algorithm>
#include <memory>

#include "index/tar_headers.h"

namespace imgfs {
namespace {

struct ArchiveFree {
  void operator()(archive* a) const { archive_read_free(a); }
};

// Feeds libarchive from a ByteSource, hashing every byte on the way (the diff_id
// covers the whole stream, including end-of-archive blocks and any padding).
struct Feed {
  ByteSource* src = nullptr;
  Sha256 hash;
  bool hashing = true;
  uint64_t total = 0;
  std::vector<char> buf = std::vector<char>(256 << 10);
  size_t prefetched = 0;       // bytes already in buf (read to see whether the stream is empty)
  const char* data = nullptr;  // the bytes Next returned: in buf, or the source's own
  TarHeaderWalker walker;
  Status error;

  Result<size_t> Next() {
    size_t n = prefetched;
    prefetched = 0;
    data = buf.data();
    if (n == 0) {
      // A pipelined source hands out its own buffer: no copy of the tar stream.
      IMGFS_ASSIGN_OR_RETURN(std::string_view v, src->ReadView(buf.data(), buf.size()));
      data = v.data();
      n = v.size();
    }
    if (hashing) hash.Update(data, n);
    total += n;
    // The walker sees every byte before libarchive parses it; its error (a malformed
    // or NUL-holding header) is reported when the indexer reaches that entry.
    (void)walker.Feed(std::string_view(data, n));
    return n;
  }

  static la_ssize_t Read(archive* a, void* self, const void** out) {
    auto* f = static_cast<Feed*>(self);
    auto r = f->Next();
    if (!r.ok()) {
      f->error = r.status();
      archive_set_error(a, EIO, "%s", r.status().message().c_str());
      return -1;
    }
    *out = f->data;
    return static_cast<la_ssize_t>(*r);
  }
};

Result<EntryType> TypeOf(archive_entry* e) {
  if (archive_entry_hardlink(e) != nullptr) return EntryType::kHardlink;
  switch (archive_entry_filetype(e)) {
    case AE_IFREG:
      return EntryType::kFile;
    case AE_IFDIR:
      return EntryType::kDir;
    case AE_IFLNK:
      return EntryType::kSymlink;
    case AE_IFCHR:
      return EntryType::kChar;
    case AE_IFBLK:
      return EntryType::kBlock;
    case AE_IFIFO:
      return EntryType::kFifo;
    case AE_IFSOCK:
      return Status::Unsupported("socket entries are not allowed in a layer");
    default:
      return Status::Corruption("unknown tar entry type");
  }
}

const char* PathOf(archive_entry* e) {
  const char* p = archive_entry_pathname(e);
  if (!p) p = archive_entry_pathname_utf8(e);
  return p;
}

}  // namespace

Result<LayerIndex> IndexTarStream(ByteSource* tar, bool hash) {
  Feed feed;
  feed.src = tar;
  feed.hashing = hash;
  // An empty stream is an empty layer (Go's tar reader, hence docker, containerd and
  // umoci, reads it so); libarchive would call it an unrecognized format.
  IMGFS_ASSIGN_OR_RETURN(feed.prefetched, tar->Read(feed.buf.data(), feed.buf.size()));
  if (feed.prefetched == 0) {
    LayerIndex empty;
    if (hash) empty.diff_id = feed.hash.Finish();
    return empty;
  }
  std::unique_ptr<archive, ArchiveFree> a(archive_read_new());
  if (!a) return Status::Exhausted("libarchive: out of memory");
  archive_read_support_format_tar(a.get());
  if (archive_read_open(a.get(), &feed, nullptr, &Feed::Read, nullptr) != ARCHIVE_OK) {
    if (!feed.error.ok()) return feed.error;
    return Status::Corruption(std::string("not a tar stream: ") + archive_error_string(a.get()));
  }
  LayerIndex out;
  archive_entry* e = nullptr;
  for (;;) {
    int r = archive_read_next_header(a.get(), &e);
    if (r == ARCHIVE_EOF) break;
    if (r == ARCHIVE_WARN) {
      // Charset conversion warnings: the raw name is still there and is kept as bytes.
    } else if (r != ARCHIVE_OK) {
      if (!feed.error.ok()) return feed.error;
      std::string msg =
          archive_error_string(a.get()) ? archive_error_string(a.get()) : "unknown error";
      const char* what =
          msg.find("runcated") != std::string::npos ? "truncated tar stream: " : "malformed tar: ";
      return Status::Corruption(what + msg + " (after " + std::to_string(out.entries.size()) +
                                " entries)");
    }
    if (archive_entry_sparse_count(e) > 0) {
      return Status::Unsupported("tar entry \"" + std::string(PathOf(e) ? PathOf(e) : "") +
                                 "\": sparse files are not supported");
    }
    // Names, link targets and mtimes come from the raw headers (see tar_headers.h).
    RawHeader raw;
    uint64_t header_end = static_cast<uint64_t>(archive_filter_bytes(a.get(), 0));
    if (!feed.walker.Pop(&raw)) {
      Status st = feed.walker.Feed({});
      if (!st.ok())
        return st.WithContext("after " + std::to_string(out.entries.size()) + " entries");
      return Status::Corruption("malformed tar: an entry at offset " + std::to_string(header_end) +
                                " that the header reader did not see");
    }
    if (raw.header_end != header_end) {
      return Status::Corruption("malformed tar: ambiguous headers (entry " +
                                std::to_string(out.entries.size() + 1) + " ends at offset " +
                                std::to_string(raw.header_end) + " or " +
                                std::to_string(header_end) + ")");
    }
    LayerEntry x;
    IMGFS_ASSIGN_OR_RETURN(x.type, TypeOf(e));
    auto path = NormalizeTarPath(raw.name, x.type == EntryType::kDir);
    if (!path.ok()) return path.status().WithContext("tar entry");
    x.path = std::move(*path);
    x.mode = archive_entry_perm(e) & 07777;
    if (archive_entry_uid(e) < 0 || archive_entry_gid(e) < 0) {
      return Status::Corruption("tar entry \"" + x.path + "\": negative uid/gid");
    }
    x.uid = static_cast<uint64_t>(archive_entry_uid(e));
    x.gid = static_cast<uint64_t>(archive_entry_gid(e));
    x.mtime_sec = raw.mtime_sec;
    x.mtime_nsec = raw.mtime_nsec;
    if (x.type == EntryType::kFile) {
      la_int64_t size = archive_entry_size(e);
      if (size < 0) return Status::Corruption("tar entry \"" + x.path + "\": negative size");
      x.size = static_cast<uint64_t>(size);
      // After the header has been read, libarchive has consumed exactly the header
      // blocks (including PAX/GNU extension headers): the bytes consumed so far from
      // our (uncompressed) stream are the offset of this entry's content.
      x.data_offset = static_cast<uint64_t>(archive_filter_bytes(a.get(), 0));
    } else if (x.type == EntryType::kSymlink) {
      // Kept verbatim, but the kernel's readlink must be able to return it.
      if (raw.link.size() > kMaxSymlinkTarget) {
        return Status::InvalidArgument("symlink \"" + x.path + "\": target of " +
                                       std::to_string(raw.link.size()) +
                                       " bytes is longer than PATH_MAX (4095 + NUL)");
      }
      // Nor can Linux hold an empty one (symlink(2): ENOENT); docker and umoci fail it.
      if (raw.link.empty()) {
        return Status::InvalidArgument("symlink \"" + x.path +
                                       "\" has an empty target (Linux cannot create one)");
      }
      x.link = std::move(raw.link);
    } else if (x.type == EntryType::kHardlink) {
      auto target = NormalizeTarPath(raw.link, false, /*link_target=*/true);
      if (!target.ok()) return target.status().WithContext("hard link \"" + x.path + "\"");
      x.link = std::move(*target);
    } else if (x.type == EntryType::kChar || x.type == EntryType::kBlock) {
      x.dev_major = static_cast<uint32_t>(archive_entry_rdevmajor(e));
      x.dev_minor = static_cast<uint32_t>(archive_entry_rdevminor(e));
    }
    archive_entry_xattr_reset(e);
    const char* xname;
    const void* xval;
    size_t xsize;
    while (archive_entry_xattr_next(e, &xname, &xval, &xsize) == ARCHIVE_OK) {
      // libarchive reports an xattr once per PAX record (SCHILY.xattr.* and
      // LIBARCHIVE.xattr.* spellings, repeated records), the last one read first (it
      // prepends to its list); one name has one value, the last one read, as in Go.
      auto same = std::find_if(x.xattrs.begin(), x.xattrs.end(),
                               [&](const Xattr& o) { return o.name == xname; });
      if (same == x.xattrs.end()) {
        x.xattrs.push_back(Xattr{xname, std::string(static_cast<const char*>(xval), xsize)});
      }
    }
    // A record with an empty value sets nothing (Go's reader skips it, so docker and
    // umoci do; POSIX pax: a zero-length value deletes the keyword), and one after a
    // valued record of the same name deletes it (in Go the later record wins too).
    std::erase_if(x.xattrs, [](const Xattr& o) { return o.value.empty(); });
    out.entries.push_back(std::move(x));
  }
  // Drain whatever follows the end-of-archive marker: it is part of the diff_id.
  if (!feed.error.ok()) return feed.error;
  for (;;) {
    auto r = tar->Read(feed.buf.data(), feed.buf.size());
    if (!r.ok()) return r.status();
    if (*r == 0) break;
    if (hash) feed.hash.Update(feed.buf.data(), *r);
    feed.total += *r;
  }
  if (hash) out.diff_id = feed.hash.Finish();
  out.uncompressed_size = feed.total;
  return out;
}

}  // namespace imgfs

namespace imgfs {

Result<std::vector<TarMember>> ScanTarFile(int fd) {
  std::unique_ptr<archive, ArchiveFree> a(archive_read_new());
  if (!a) return Status::Exhausted("libarchive: out of memory");
  archive_read_support_format_tar(a.get());
  if (::lseek(fd, 0, SEEK_SET) != 0) return Status::FromErrno("seek");
  if (archive_read_open_fd(a.get(), fd, 1 << 20) != ARCHIVE_OK) {
    return Status::InvalidArgument(std::string("not a tar archive: ") +
                                   archive_error_string(a.get()));
  }
  std::vector<TarMember> out;
  archive_entry* e = nullptr;
  for (;;) {
    int r = archive_read_next_header(a.get(), &e);
    if (r == ARCHIVE_EOF) break;
    if (r != ARCHIVE_OK && r != ARCHIVE_WARN) {
      std::string msg =
          archive_error_string(a.get()) ? archive_error_string(a.get()) : "unknown error";
      if (msg.find("runcated") != std::string::npos)
        return Status::Corruption("truncated archive: " + msg);
      return Status::Corruption(
          std::string(out.empty() ? "not a tar archive: " : "malformed tar archive: ") + msg);
    }
    const char* raw = PathOf(e);
    if (!raw) return Status::Corruption("tar member without a name");
    TarMember m;
    auto type = TypeOf(e);
    if (!type.ok()) continue;  // sockets and oddities are not image members
    m.type = *type;
    auto path = NormalizeTarPath(raw, m.type == EntryType::kDir);
    if (!path.ok()) return path.status().WithContext("archive member");
    m.path = std::move(*path);
    if (m.type == EntryType::kFile) {
      m.size = static_cast<uint64_t>(std::max<la_int64_t>(0, archive_entry_size(e)));
      m.offset = static_cast<uint64_t>(archive_filter_bytes(a.get(), 0));
    } else if (m.type == EntryType::kSymlink) {
      const char* t = archive_entry_symlink(e);
      m.link = t ? t : "";
    } else if (m.type == EntryType::kHardlink) {
      const char* t = archive_entry_hardlink(e);
      auto target = NormalizeTarPath(t ? t : "", false);
      if (!target.ok()) return target.status().WithContext("archive member");
      m.link = *target;
    }
    out.push_back(std::move(m));
  }
  // A member whose bytes run past the end of the file means a truncated archive.
  struct stat st;
  if (::fstat(fd, &st) != 0) return Status::FromErrno("stat");
  for (const TarMember& m : out) {
    if (m.type == EntryType::kFile && m.offset + m.size > static_cast<uint64_t>(st.st_size)) {
      return Status::Corruption("truncated archive: member \"" + m.path +
                                "\" ends past the end of the file");
    }
  }
  return out;
}

}  // namespace imgfs
