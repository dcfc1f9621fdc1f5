#include "index/layer_writer.h"

#include <archive.h>
#include <archive_entry.h>
#include <dirent.h>
#include <fcntl.h>
#include <isa-l/igzip_lib.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <map>
#include <utility>
#include <vector>

#include "index/file_util.h"
#include "index/pushed_source.h"

namespace imgfs {
namespace {

struct ArchiveWriteFree {
  void operator()(archive* a) const { archive_write_free(a); }
};
struct EntryFree {
  void operator()(archive_entry* e) const { archive_entry_free(e); }
};

constexpr std::string_view kWhiteoutPrefix = ".wh.";
constexpr std::string_view kOpaqueMarker = ".wh..wh..opq";

bool IsOverlayXattr(std::string_view name) {
  return name.starts_with("trusted.overlay.") || name.starts_with("user.overlay.");
}

// The entry's xattrs (overlay's own ones filtered out) and whether it is opaque.
struct HostXattrs {
  std::vector<std::pair<std::string, std::string>> kept;  // sorted by name
  bool opaque = false;
};

Result<HostXattrs> ReadXattrs(const std::string& path, const std::string& rel) {
  HostXattrs out;
  std::string names;
  for (;;) {
    ssize_t n = ::llistxattr(path.c_str(), nullptr, 0);
    if (n < 0) {
      if (errno == ENOTSUP) return out;
      return Status::FromErrno("listxattr " + rel);
    }
    names.resize(static_cast<size_t>(n));
    n = ::llistxattr(path.c_str(), names.data(), names.size());
    if (n >= 0) {
      names.resize(static_cast<size_t>(n));
      break;
    }
    if (errno != ERANGE) return Status::FromErrno("listxattr " + rel);
  }
  for (size_t at = 0; at < names.size();) {
    size_t end = names.find('\0', at);
    if (end == std::string::npos) end = names.size();
    std::string name = names.substr(at, end - at);
    at = end + 1;
    if (name.empty()) continue;
    std::string value;
    for (;;) {
      ssize_t n = ::lgetxattr(path.c_str(), name.c_str(), nullptr, 0);
      if (n < 0) {
        if (errno == ENODATA) break;  // removed meanwhile
        return Status::FromErrno("getxattr " + rel + " " + name);
      }
      value.resize(static_cast<size_t>(n));
      n = ::lgetxattr(path.c_str(), name.c_str(), value.data(), value.size());
      if (n >= 0) {
        value.resize(static_cast<size_t>(n));
        break;
      }
      if (errno != ERANGE) return Status::FromErrno("getxattr " + rel + " " + name);
    }
    if (IsOverlayXattr(name)) {
      std::string_view what = std::string_view(name).substr(name.find(".overlay.") + 9);
      if (what == "redirect") {
        return Status::Unsupported(
            rel + ": " + name +
            " is set (a directory renamed in the overlay; the upper directory does not hold "
            "its content): mount the overlay with redirect_dir=off to commit it");
      }
      if (what == "metacopy") {
        return Status::Unsupported(rel + ": " + name +
                                   " is set (metadata copied up without the data): mount the "
                                   "overlay with metacopy=off to commit it");
      }
      if (what == "opaque" && value == "y") out.opaque = true;
      continue;
    }
    out.kept.emplace_back(std::move(name), std::move(value));
  }
  std::sort(out.kept.begin(), out.kept.end());
  return out;
}

class TarWriter {
 public:
  TarWriter(const std::string& dir, const LayerWriteOptions& options, const ByteSink& sink)
      : dir_(dir), options_(options), sink_(sink) {}

  Status Run() {
    a_.reset(archive_write_new());
    if (!a_) return Status::Io("archive_write_new failed", ENOMEM);
    if (archive_write_set_format_pax(a_.get()) != ARCHIVE_OK ||
        archive_write_set_bytes_in_last_block(a_.get(), 1) != ARCHIVE_OK ||
        archive_write_open(a_.get(), this, nullptr, &TarWriter::WriteCb, nullptr) != ARCHIVE_OK) {
      return ArchiveError("open the tar writer");
    }
    struct stat st;
    if (::lstat(dir_.c_str(), &st) != 0) return Status::FromErrno(dir_);
    if (!S_ISDIR(st.st_mode)) return Status::InvalidArgument(dir_ + ": not a directory");
    IMGFS_RETURN_IF_ERROR(Dir("", dir_));
    if (archive_write_close(a_.get()) != ARCHIVE_OK) return ArchiveError("finish the tar");
    return Status::Ok();
  }

 private:
  Status ArchiveError(const std::string& what) {
    if (!sink_error_.ok()) return sink_error_;
    const char* msg = archive_error_string(a_.get());
    return Status::Io(what + ": " + (msg ? msg : "libarchive error"), EIO);
  }

  static la_ssize_t WriteCb(archive* a, void* self, const void* buf, size_t n) {
    auto* w = static_cast<TarWriter*>(self);
    Status st = w->sink_(std::string_view(static_cast<const char*>(buf), n));
    if (!st.ok()) {
      w->sink_error_ = st;
      archive_set_error(a, EIO, "%s", st.message().c_str());
      return -1;
    }
    return static_cast<la_ssize_t>(n);
  }

  // The contents of directory `host` (its tar path `rel`, "" for the root).
  Status Dir(const std::string& rel, const std::string& host) {
    std::vector<std::string> names;
    {
      DIR* d = ::opendir(host.c_str());
      if (!d) return Status::FromErrno("open directory " + (rel.empty() ? dir_ : rel));
      errno = 0;
      while (struct dirent* de = ::readdir(d)) {
        std::string_view n = de->d_name;
        if (n != "." && n != "..") names.emplace_back(n);
        errno = 0;
      }
      int err = errno;
      ::closedir(d);
      if (err != 0) {
        errno = err;
        return Status::FromErrno("read directory " + (rel.empty() ? dir_ : rel));
      }
    }
    std::sort(names.begin(), names.end());
    if (rel.empty() && options_.overlay) {
      IMGFS_ASSIGN_OR_RETURN(HostXattrs x, ReadXattrs(host, "/"));
      if (x.opaque) {
        struct stat st;
        if (::lstat(host.c_str(), &st) != 0) return Status::FromErrno(host);
        IMGFS_RETURN_IF_ERROR(Marker(std::string(kOpaqueMarker), st, st.st_mode & 07777));
      }
    }
    for (const std::string& n : names) {
      std::string crel = rel.empty() ? n : rel + "/" + n;
      IMGFS_RETURN_IF_ERROR(Entry(rel, n, crel, host + "/" + n));
    }
    return Status::Ok();
  }

  // An empty regular file (a whiteout or an opaque marker).
  Status Marker(const std::string& path, const struct stat& st, uint32_t perm) {
    std::unique_ptr<archive_entry, EntryFree> e(archive_entry_new());
    archive_entry_copy_pathname(e.get(), path.c_str());
    archive_entry_set_filetype(e.get(), AE_IFREG);
    archive_entry_set_perm(e.get(), perm);
    archive_entry_set_uid(e.get(), st.st_uid);
    archive_entry_set_gid(e.get(), st.st_gid);
    archive_entry_set_mtime(e.get(), st.st_mtim.tv_sec, st.st_mtim.tv_nsec);
    archive_entry_set_size(e.get(), 0);
    if (archive_write_header(a_.get(), e.get()) != ARCHIVE_OK) return ArchiveError(path);
    return Status::Ok();
  }

  Status Entry(const std::string& parent, const std::string& name, const std::string& rel,
               const std::string& host) {
    struct stat st;
    if (::lstat(host.c_str(), &st) != 0) return Status::FromErrno(rel);
    if (S_ISSOCK(st.st_mode)) return Status::Ok();  // docker skips sockets too
    if (options_.overlay && S_ISCHR(st.st_mode) && st.st_rdev == makedev(0, 0)) {
      std::string wh = (parent.empty() ? "" : parent + "/") + std::string(kWhiteoutPrefix) + name;
      return Marker(wh, st, 0);
    }
    if (std::string_view(name).starts_with(kWhiteoutPrefix)) {
      // A name a reader would take for a whiteout: writing it would delete, not add.
      return Status::Unsupported(rel + ": a file named .wh.* cannot be stored in a layer");
    }
    IMGFS_ASSIGN_OR_RETURN(HostXattrs x, ReadXattrs(host, rel));
    std::unique_ptr<archive_entry, EntryFree> e(archive_entry_new());
    archive_entry_copy_pathname(e.get(), rel.c_str());
    archive_entry_set_perm(e.get(), st.st_mode & 07777);
    archive_entry_set_uid(e.get(), st.st_uid);
    archive_entry_set_gid(e.get(), st.st_gid);
    archive_entry_set_mtime(e.get(), st.st_mtim.tv_sec, st.st_mtim.tv_nsec);
    for (const auto& [n, v] : x.kept) {
      archive_entry_xattr_add_entry(e.get(), n.c_str(), v.data(), v.size());
    }
    bool data = false;
    if (!S_ISDIR(st.st_mode) && st.st_nlink > 1) {
      auto [it, first] = links_.try_emplace({st.st_dev, st.st_ino}, rel);
      if (!first) {
        archive_entry_set_filetype(e.get(), AE_IFREG);
        archive_entry_copy_hardlink(e.get(), it->second.c_str());
        archive_entry_set_size(e.get(), 0);
        if (archive_write_header(a_.get(), e.get()) != ARCHIVE_OK) return ArchiveError(rel);
        return Status::Ok();
      }
    }
    UniqueFd fd;
    switch (st.st_mode & S_IFMT) {
      case S_IFDIR:
        archive_entry_set_filetype(e.get(), AE_IFDIR);
        break;
      case S_IFREG: {
        archive_entry_set_filetype(e.get(), AE_IFREG);
        archive_entry_set_size(e.get(), st.st_size);
        IMGFS_ASSIGN_OR_RETURN(fd, OpenFile(host, O_RDONLY | O_NOFOLLOW | O_CLOEXEC));
        data = st.st_size > 0;
        break;
      }
      case S_IFLNK: {
        std::string target(static_cast<size_t>(st.st_size) + 1, '\0');
        ssize_t n = ::readlink(host.c_str(), target.data(), target.size());
        if (n < 0) return Status::FromErrno("readlink " + rel);
        if (static_cast<size_t>(n) >= target.size())
          return Status::Unavailable(rel + ": changed while being read");
        target.resize(static_cast<size_t>(n));
        archive_entry_set_filetype(e.get(), AE_IFLNK);
        archive_entry_copy_symlink(e.get(), target.c_str());
        break;
      }
      case S_IFCHR:
      case S_IFBLK:
        archive_entry_set_filetype(e.get(), S_ISCHR(st.st_mode) ? AE_IFCHR : AE_IFBLK);
        archive_entry_set_rdevmajor(e.get(), major(st.st_rdev));
        archive_entry_set_rdevminor(e.get(), minor(st.st_rdev));
        break;
      case S_IFIFO:
        archive_entry_set_filetype(e.get(), AE_IFIFO);
        break;
      default:
        return Status::Unsupported(rel + ": unsupported file type");
    }
    if (archive_write_header(a_.get(), e.get()) != ARCHIVE_OK) return ArchiveError(rel);
    if (data) {
      std::vector<char> buf(1 << 20);
      uint64_t left = static_cast<uint64_t>(st.st_size);
      while (left > 0) {
        IMGFS_ASSIGN_OR_RETURN(
            size_t n, ReadSome(fd.get(), buf.data(), std::min<uint64_t>(left, buf.size())));
        if (n == 0) return Status::Unavailable(rel + ": file shrank while being read");
        if (archive_write_data(a_.get(), buf.data(), n) < 0) return ArchiveError(rel);
        left -= n;
      }
    }
    if (S_ISDIR(st.st_mode)) {
      if (options_.overlay && x.opaque) {
        IMGFS_RETURN_IF_ERROR(
            Marker(rel + "/" + std::string(kOpaqueMarker), st, st.st_mode & 07777));
      }
      return Dir(rel, host);
    }
    return Status::Ok();
  }

  const std::string& dir_;
  const LayerWriteOptions& options_;
  const ByteSink& sink_;
  Status sink_error_;
  std::unique_ptr<archive, ArchiveWriteFree> a_;
  std::map<std::pair<dev_t, ino_t>, std::string> links_;  // first path of a linked inode
};

}  // namespace

Status WriteLayerTar(const std::string& dir, const LayerWriteOptions& options,
                     const ByteSink& sink) {
  TarWriter w(dir, options, sink);
  return w.Run();
}

struct GzipSink::Impl {
  isal_zstream s;
  std::vector<uint8_t> level_buf = std::vector<uint8_t>(ISAL_DEF_LVL1_DEFAULT);
  std::vector<uint8_t> out = std::vector<uint8_t>(256 << 10);
  bool finished = false;
};

GzipSink::GzipSink(ByteSink sink) : impl_(std::make_unique<Impl>()), sink_(std::move(sink)) {
  isal_deflate_init(&impl_->s);
  impl_->s.gzip_flag = IGZIP_GZIP;
  impl_->s.level = 1;
  impl_->s.level_buf = impl_->level_buf.data();
  impl_->s.level_buf_size = static_cast<uint32_t>(impl_->level_buf.size());
}

GzipSink::~GzipSink() = default;

Status GzipSink::Run(std::string_view data, bool last) {
  isal_zstream& s = impl_->s;
  s.next_in = reinterpret_cast<uint8_t*>(const_cast<char*>(data.data()));
  s.avail_in = static_cast<uint32_t>(data.size());
  s.end_of_stream = last ? 1 : 0;
  s.flush = NO_FLUSH;
  do {
    s.next_out = impl_->out.data();
    s.avail_out = static_cast<uint32_t>(impl_->out.size());
    int ret = isal_deflate(&s);
    if (ret != COMP_OK)
      return Status::Io("gzip: deflate failed (" + std::to_string(ret) + ")", EIO);
    size_t n = impl_->out.size() - s.avail_out;
    if (n > 0) {
      IMGFS_RETURN_IF_ERROR(sink_(std::string_view(reinterpret_cast<char*>(impl_->out.data()), n)));
    }
  } while (s.avail_in > 0 || s.avail_out == 0 || (last && s.internal_state.state != ZSTATE_END));
  return Status::Ok();
}

Status GzipSink::Write(std::string_view data) {
  // isal_zstream counts in 32 bits: feed large writes in pieces.
  while (!data.empty()) {
    size_t k = std::min<size_t>(data.size(), 1u << 30);
    IMGFS_RETURN_IF_ERROR(Run(data.substr(0, k), false));
    data.remove_prefix(k);
  }
  return Status::Ok();
}

Status GzipSink::Finish() {
  if (impl_->finished) return Status::Ok();
  impl_->finished = true;
  return Run({}, true);
}

std::unique_ptr<ByteSource> GzipLayerSource(const std::string& dir,
                                            const LayerWriteOptions& options,
                                            Status* writer_error) {
  // The writer and gzip run on the source's thread; 2 MiB of gzip output may wait.
  return std::make_unique<PushedSource>(
      [dir, options](const PushedSource::Push& push) {
        GzipSink gz([&push](std::string_view d) {
          return push(d) ? Status::Ok() : Status::Unavailable("reader stopped");
        });
        IMGFS_RETURN_IF_ERROR(
            WriteLayerTar(dir, options, [&gz](std::string_view d) { return gz.Write(d); }));
        return gz.Finish();
      },
      2 << 20,
      [writer_error](const Status& st) {
        if (writer_error) *writer_error = st;
      });
}

}  // namespace imgfs
