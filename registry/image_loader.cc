#include "registry/image_loader.h"

#include <fcntl.h>
#include <simdjson.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <ctime>
#include <map>
#include <memory>
#include <set>

#include "index/layer_indexer.h"
#include "index/merged_tree.h"
#include "registry/archive_check.h"
#include "registry/json.h"
#include "registry/printable.h"
#include "registry/stage.h"

namespace imgfs {
namespace {

constexpr size_t kMaxDocument = 8 << 20;  // manifests, configs, index.json

// A byte range of an input file.
struct Region {
  std::shared_ptr<UniqueFd> fd;
  uint64_t offset = 0;
  uint64_t size = 0;
};

// The files of an input: a directory, or the members of a plain tar file.
class Input {
 public:
  virtual ~Input() = default;
  virtual bool Exists(const std::string& path) = 0;
  virtual Result<Region> Open(const std::string& path) = 0;
  Result<std::string> ReadSmall(const std::string& path) {
    IMGFS_ASSIGN_OR_RETURN(Region r, Open(path));
    if (r.size > kMaxDocument)
      return Status::InvalidArgument(path + ": too large for a JSON document");
    std::string s(r.size, '\0');
    IMGFS_RETURN_IF_ERROR(
        PreadAll(r.fd->get(), s.data(), s.size(), static_cast<off_t>(r.offset)).WithContext(path));
    return s;
  }
};

class DirInput : public Input {
 public:
  explicit DirInput(std::string dir) : dir_(std::move(dir)) {}
  bool Exists(const std::string& path) override { return PathExists(JoinPath(dir_, path)); }
  Result<Region> Open(const std::string& path) override {
    auto clean = NormalizeTarPath(path, false);
    if (!clean.ok()) return clean.status();
    std::string full = JoinPath(dir_, *clean);
    auto fd = OpenFile(full, O_RDONLY);
    if (!fd.ok()) {
      if (fd.status().sys_errno() == ENOENT)
        return Status::NotFound(path + " is missing from " + dir_);
      return fd.status();
    }
    struct stat st;
    if (::fstat(fd->get(), &st) != 0) return Status::FromErrno("stat " + full);
    if (!S_ISREG(st.st_mode)) return Status::InvalidArgument(full + ": not a regular file");
    Region r;
    r.fd = std::make_shared<UniqueFd>(std::move(*fd));
    r.size = static_cast<uint64_t>(st.st_size);
    return r;
  }

 private:
  std::string dir_;
};

// Lexically joins a link target to the directory holding the link, clamping nothing:
// a target above the archive root is an error.
Result<std::string> JoinInside(const std::string& dir, const std::string& target) {
  std::vector<std::string_view> parts;
  std::string all = target.size() && target[0] == '/' ? target : dir + "/" + target;
  for (std::string_view c : SplitPath(all)) {
    if (c == ".") continue;
    if (c == "..") {
      if (parts.empty())
        return Status::InvalidArgument("link \"" + target + "\" points outside the archive");
      parts.pop_back();
      continue;
    }
    parts.push_back(c);
  }
  std::string out;
  for (std::string_view p : parts) out += (out.empty() ? "" : "/") + std::string(p);
  return out;
}

class TarInput : public Input {
 public:
  static Result<std::unique_ptr<TarInput>> Open(UniqueFd fd, const std::string& name) {
    auto in = std::unique_ptr<TarInput>(new TarInput());
    in->fd_ = std::make_shared<UniqueFd>(std::move(fd));
    in->name_ = name;
    IMGFS_ASSIGN_OR_RETURN(auto members, ScanTarFile(in->fd_->get()));
    for (auto& m : members) in->members_[m.path] = m;
    return in;
  }
  bool Exists(const std::string& path) override { return Find(path, 0).ok(); }
  Result<Region> Open(const std::string& path) override {
    IMGFS_ASSIGN_OR_RETURN(const TarMember* m, Find(path, 0));
    if (m->type != EntryType::kFile)
      return Status::InvalidArgument(path + ": not a regular file in " + name_);
    Region r;
    r.fd = fd_;
    r.offset = m->offset;
    r.size = m->size;
    return r;
  }

 private:
  TarInput() = default;
  Result<const TarMember*> Find(const std::string& path, int depth) {
    if (depth > 16) return Status::InvalidArgument(path + ": too many links in " + name_);
    auto clean = NormalizeTarPath(path, false);
    if (!clean.ok()) return clean.status();
    auto it = members_.find(*clean);
    if (it == members_.end()) return Status::NotFound(path + " is missing from " + name_);
    const TarMember& m = it->second;
    if (m.type == EntryType::kHardlink) return Find(m.link, depth + 1);
    if (m.type == EntryType::kSymlink) {
      size_t s = clean->rfind('/');
      std::string dir = s == std::string::npos ? "" : clean->substr(0, s);
      IMGFS_ASSIGN_OR_RETURN(std::string target, JoinInside(dir, m.link));
      return Find(target, depth + 1);
    }
    return &m;
  }
  std::shared_ptr<UniqueFd> fd_;
  std::string name_;
  std::map<std::string, TarMember> members_;
};

Result<std::string> CanonicalName(const std::string& user) {
  auto ref = ParseReference(user);
  if (!ref.ok()) return ref.status();
  return ref->Normalized().String();
}

// docker save: manifest.json = [{"Config": path, "RepoTags": [...], "Layers": [paths]}]
Status LoadDockerArchive(ImageStage& stage, Input& in, const std::string& name) {
  IMGFS_ASSIGN_OR_RETURN(std::string mj, in.ReadSmall("manifest.json"));
  simdjson::dom::parser p;
  simdjson::dom::array arr;
  if (auto e = p.parse(mj).get(arr); e) {
    return Status::InvalidArgument("manifest.json: not a JSON array: " +
                                   std::string(simdjson::error_message(e)));
  }
  for (simdjson::dom::element item : arr) {
    std::string_view cfg_path;
    simdjson::dom::array layer_paths;
    if (item["Config"].get(cfg_path) || item["Layers"].get(layer_paths)) {
      return Status::InvalidArgument("manifest.json: an entry lacks Config or Layers");
    }
    IMGFS_ASSIGN_OR_RETURN(std::string config, in.ReadSmall(std::string(cfg_path)));
    Digest cd = Sha256Of(config);
    IMGFS_ASSIGN_OR_RETURN(ImageRecord rec, RecordFromConfig(config, cd));
    std::vector<std::string> paths;
    for (simdjson::dom::element l : layer_paths) {
      std::string_view s;
      if (l.get(s)) return Status::InvalidArgument("manifest.json: a layer path is not a string");
      paths.emplace_back(s);
    }
    if (paths.size() != rec.diff_ids.size()) {
      return Status::InvalidArgument("manifest.json lists " + std::to_string(paths.size()) +
                                     " layers but the config has " +
                                     std::to_string(rec.diff_ids.size()) + " diff_ids");
    }
    StagedImage img;
    simdjson::dom::array tags;
    if (!item["RepoTags"].get(tags)) {
      for (simdjson::dom::element t : tags) {
        std::string_view s;
        if (t.get(s)) continue;
        IMGFS_ASSIGN_OR_RETURN(std::string n, CanonicalName(std::string(s)));
        img.names.push_back(n);
      }
    }
    for (size_t i = 0; i < paths.size(); i++) {
      IMGFS_ASSIGN_OR_RETURN(Region r, in.Open(paths[i]));
      FdSource src(r.fd->get(), r.offset, r.size);
      IMGFS_RETURN_IF_ERROR(
          stage.AddLayer(&src, rec.diff_ids[i], nullptr, Compression::kAuto).status());
    }
    img.record = std::move(rec);
    img.config = std::move(config);
    IMGFS_RETURN_IF_ERROR(stage.AddImage(std::move(img)));
  }
  return Status::Ok();
}

Result<std::string> ReadBlob(Input& in, const Descriptor& d) {
  std::string path = "blobs/sha256/" + d.digest.hex();
  IMGFS_ASSIGN_OR_RETURN(std::string data, in.ReadSmall(path));
  if (!(Sha256Of(data) == d.digest))
    return Status::Corruption("blob " + d.digest.str() + ": digest mismatch");
  if (data.size() != d.size)
    return Status::Corruption("blob " + d.digest.str() + ": size mismatch");
  return data;
}

// `repo_digest`: the digest a name@digest of the image records (an index.json entry
// that is an index: the index's); "" = the manifest's.
Status LoadOciManifest(ImageStage& stage, Input& in, const Descriptor& md,
                       std::vector<std::string> names, const std::string& repo_digest = "") {
  IMGFS_ASSIGN_OR_RETURN(std::string mbytes, ReadBlob(in, md));
  auto m = ParseManifest(mbytes);
  if (!m.ok()) return m.status().WithContext("manifest " + md.digest.str());
  IMGFS_ASSIGN_OR_RETURN(std::string config, ReadBlob(in, m->config));
  IMGFS_ASSIGN_OR_RETURN(ImageRecord rec, RecordFromConfig(config, m->config.digest));
  if (rec.diff_ids.size() != m->layers.size()) {
    return Status::InvalidArgument(
        "manifest " + md.digest.str() + " has " + std::to_string(m->layers.size()) +
        " layers but its config has " + std::to_string(rec.diff_ids.size()) + " diff_ids");
  }
  for (size_t i = 0; i < m->layers.size(); i++) {
    const Descriptor& ld = m->layers[i];
    IMGFS_ASSIGN_OR_RETURN(Compression c, LayerCompression(ld.media_type));
    auto region = in.Open("blobs/sha256/" + ld.digest.hex());
    if (!region.ok())
      return region.status().WithContext("manifest " + md.digest.str() + " names a missing layer");
    FdSource src(region->fd->get(), region->offset, region->size);
    IMGFS_RETURN_IF_ERROR(stage.AddLayer(&src, rec.diff_ids[i], &ld, c).status());
  }
  rec.manifest_digest = md.digest.str();
  rec.manifest_media_type = m->media_type.empty() ? md.media_type : m->media_type;
  StagedImage img;
  img.record = std::move(rec);
  img.config = std::move(config);
  img.manifest = std::move(mbytes);
  img.names = std::move(names);
  img.repo_digest = repo_digest;
  return stage.AddImage(std::move(img));
}

Result<std::vector<std::string>> NamesFromAnnotations(const Descriptor& d, const LoadOptions& opt) {
  std::vector<std::string> names;
  auto full = d.annotations.find("io.containerd.image.name");
  auto ref = d.annotations.find("org.opencontainers.image.ref.name");
  if (full != d.annotations.end()) {
    IMGFS_ASSIGN_OR_RETURN(std::string n, CanonicalName(full->second));
    names.push_back(n);
  } else if (ref != d.annotations.end()) {
    const std::string& v = ref->second;
    if (v.find_first_of(":/@") != std::string::npos) {
      IMGFS_ASSIGN_OR_RETURN(std::string n, CanonicalName(v));
      names.push_back(n);
    } else if (!opt.repository.empty()) {
      if (!IsValidTag(v))
        return Status::InvalidArgument("ref name \"" + v + "\" is not a valid tag");
      IMGFS_ASSIGN_OR_RETURN(std::string n, CanonicalName(opt.repository + ":" + v));
      names.push_back(n);
    }
  }
  return names;
}

Status LoadOciLayout(ImageStage& stage, Input& in, const LoadOptions& options) {
  IMGFS_ASSIGN_OR_RETURN(std::string layout, in.ReadSmall("oci-layout"));
  if (layout.find("imageLayoutVersion") == std::string::npos) {
    return Status::InvalidArgument("oci-layout: not an OCI image layout marker");
  }
  IMGFS_ASSIGN_OR_RETURN(std::string ij, in.ReadSmall("index.json"));
  auto idx = ParseIndex(ij);
  if (!idx.ok()) return idx.status().WithContext("index.json");
  if (idx->manifests.empty()) return Status::InvalidArgument("index.json lists no images");
  for (const Descriptor& d : idx->manifests) {
    IMGFS_ASSIGN_OR_RETURN(auto names, NamesFromAnnotations(d, options));
    Descriptor target = d;
    if (d.media_type == media::kOciIndex || d.media_type == media::kDockerList) {
      IMGFS_ASSIGN_OR_RETURN(std::string nested, ReadBlob(in, d));
      auto sub = ParseIndex(nested);
      if (!sub.ok()) return sub.status().WithContext("index " + d.digest.str());
      Platform host = HostPlatform();
      std::string offered;
      const Descriptor* pick = PickPlatform(sub->manifests, host, &offered);
      // An index of one image is that image, whatever its platform (as before).
      if (!pick && sub->manifests.size() == 1 && sub->manifests[0].platform.os != "unknown")
        pick = &sub->manifests[0];
      if (!pick) {
        return Status::NotFound("index " + d.digest.str() + " has no image for " + host.String() +
                                " (it offers " + offered + ")");
      }
      target = *pick;
    } else if (!d.media_type.empty() && d.media_type != media::kOciManifest &&
               d.media_type != media::kDockerManifest) {
      return Status::Unsupported("index.json entry " + d.digest.str() + ": unknown media type \"" +
                                 d.media_type + "\"");
    }
    IMGFS_RETURN_IF_ERROR(
        LoadOciManifest(stage, in, target, names, target.digest == d.digest ? "" : d.digest.str()));
  }
  return Status::Ok();
}

// Opens an input file without blocking and without taking any lock: a FIFO or a
// device would block open() (a FIFO until a writer comes) or read forever, while the
// caller holds gc.lock and stops prune and rmi. So the type is checked with stat
// first (no open at all for a device), then the file is opened O_NONBLOCK and fstat
// checked again (the name may have changed in between), then made blocking.
// `allow_dir`: a directory is accepted (an OCI layout) and returned as an empty fd.
Result<UniqueFd> OpenInput(const std::string& path, bool allow_dir, bool* is_dir) {
  *is_dir = false;
  auto refuse = [&path](mode_t m) {
    const char* what = S_ISFIFO(m)                ? "a FIFO"
                       : S_ISCHR(m) || S_ISBLK(m) ? "a device"
                       : S_ISSOCK(m)              ? "a socket"
                       : S_ISDIR(m)               ? "a directory"
                                                  : "not a regular file";
    return Status::InvalidArgument(path + ": " + what +
                                   " (only regular files are read; give - to read stdin)");
  };
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) return Status::FromErrno(path);
  if (S_ISDIR(st.st_mode) && allow_dir) {
    *is_dir = true;
    return UniqueFd();
  }
  if (!S_ISREG(st.st_mode)) return refuse(st.st_mode);
  IMGFS_ASSIGN_OR_RETURN(UniqueFd fd, OpenFile(path, O_RDONLY | O_NONBLOCK | O_NOCTTY));
  if (::fstat(fd.get(), &st) != 0) return Status::FromErrno("stat " + path);
  if (!S_ISREG(st.st_mode)) return refuse(st.st_mode);
  int fl = ::fcntl(fd.get(), F_GETFL);
  if (fl < 0 || ::fcntl(fd.get(), F_SETFL, fl & ~O_NONBLOCK) != 0)
    return Status::FromErrno("fcntl " + path);
  return fd;
}

// A stream read with read(2): stdin when it is a pipe or a terminal (pread fails
// there). `head` holds bytes already read to sniff the format; they come first.
class ReadSource : public ByteSource {
 public:
  ReadSource(int fd, std::string head) : fd_(fd), head_(std::move(head)) {}
  Result<size_t> Read(void* buf, size_t n) override {
    if (n == 0) return size_t{0};
    if (!head_.empty()) {
      size_t k = std::min(n, head_.size());
      std::memcpy(buf, head_.data(), k);
      head_.erase(0, k);
      return k;
    }
    for (;;) {
      ssize_t r = ::read(fd_, buf, n);
      if (r >= 0) return static_cast<size_t>(r);
      if (errno != EINTR) return Status::FromErrno("read stdin");
    }
  }

 private:
  int fd_;
  std::string head_;
};

// Reads up to `n` bytes from a stream (fewer only at its end).
Result<std::string> ReadHead(int fd, size_t n) {
  std::string s(n, '\0');
  size_t got = 0;
  while (got < n) {
    ssize_t r = ::read(fd, s.data() + got, n - got);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) return Status::FromErrno("read stdin");
    if (r == 0) break;
    got += static_cast<size_t>(r);
  }
  s.resize(got);
  return s;
}

// Copies the tar stream `raw` (compressed with `c`, or not) into a new file in
// ingest/ that the archive reader can seek, bounded before the format is known
// (archive_check.h): the tar headers are checked as they come out, the end-of-archive
// marker ends the copy, and the inflate ratio is capped. The file is unlinked by the
// caller once opened; its fd is returned.
Result<UniqueFd> SpoolTar(const Store& store, ByteSource* raw, Compression c, std::string* temp) {
  static std::atomic<int> seq{0};
  *temp = store.blobs().IngestDir() + "/" + std::to_string(::getpid()) + "-" +
          std::to_string(seq++) + "-archive.tar";
  IMGFS_ASSIGN_OR_RETURN(UniqueFd out, OpenFile(*temp, O_RDWR | O_CREAT | O_TRUNC, 0600));
  struct Counting : ByteSource {
    explicit Counting(ByteSource* s) : src(s) {}
    Result<size_t> Read(void* b, size_t n) override {
      IMGFS_ASSIGN_OR_RETURN(size_t got, src->Read(b, n));
      total += got;
      return got;
    }
    ByteSource* src;
    uint64_t total = 0;
  } src(raw);
  DecompressingSource dec(&src, c);
  TarStreamCheck check;
  uint64_t written = 0;
  std::vector<char> buf(1 << 20);
  while (!check.ended()) {
    IMGFS_ASSIGN_OR_RETURN(size_t got, dec.Read(buf.data(), buf.size()));
    if (got == 0) break;
    IMGFS_ASSIGN_OR_RETURN(size_t keep, check.Feed(buf.data(), got));
    written += keep;
    if (written > src.total * TarStreamCheck::kMaxInflateRatio + TarStreamCheck::kInflateSlack) {
      return Status::InvalidArgument(
          "inflates to more than " + std::to_string(TarStreamCheck::kMaxInflateRatio) +
          " times its compressed size (" + std::to_string(written >> 20) + " MiB from " +
          std::to_string(src.total >> 20) + " MiB); refusing a compression bomb");
    }
    IMGFS_RETURN_IF_ERROR(WriteAll(out.get(), buf.data(), keep));
  }
  if (written == 0) return Status::InvalidArgument("empty input");
  return out;
}

// A compressed archive is first inflated into ingest/ (removed when done).
Result<UniqueFd> OpenPlainTar(const Store& store, UniqueFd fd, const std::string& path,
                              std::string* temp) {
  char head[4] = {};
  ssize_t n = ::pread(fd.get(), head, sizeof head, 0);
  if (n < 0) return Status::FromErrno("read " + path);
  if (n == 0) return Status::InvalidArgument("empty file");
  Compression c = DetectCompression(std::string_view(head, static_cast<size_t>(n)));
  if (c == Compression::kNone) return fd;
  FdSource src(fd.get());
  return SpoolTar(store, &src, c, temp);
}

// Standard input as a load or import source. A regular file redirected at offset 0
// (`imgfs load < f.tar`) is used in place; a pipe is a stream. A terminal is refused.
struct StdinInput {
  UniqueFd file;  // set when stdin is a seekable regular file
  bool stream = false;
};
Result<StdinInput> OpenStdin() {
  if (::isatty(STDIN_FILENO))
    return Status::InvalidArgument("stdin is a terminal: give a FILE or redirect an archive");
  struct stat st;
  if (::fstat(STDIN_FILENO, &st) != 0) return Status::FromErrno("stat stdin");
  StdinInput in;
  if (S_ISREG(st.st_mode) && ::lseek(STDIN_FILENO, 0, SEEK_CUR) == 0) {
    int fd = ::fcntl(STDIN_FILENO, F_DUPFD_CLOEXEC, 3);
    if (fd < 0) return Status::FromErrno("dup stdin");
    in.file = UniqueFd(fd);
    if (st.st_size == 0) return Status::InvalidArgument("empty input");
    return in;
  }
  if (S_ISDIR(st.st_mode)) return Status::InvalidArgument("stdin is a directory");
  in.stream = true;
  return in;
}

}  // namespace

Platform HostPlatform() {
  struct utsname u;
  ::uname(&u);
  std::string m = u.machine;
  Platform p{"linux", m, ""};
  if (m == "x86_64") p.architecture = "amd64";
  if (m == "aarch64") p.architecture = "arm64";
  if (m == "armv7l") p = {"linux", "arm", "v7"};
  if (m == "i686" || m == "i386") p.architecture = "386";
  return p;
}

namespace {

bool PlatformMatches(const Platform& want, const Platform& have) {
  if (want.os != have.os || want.architecture != have.architecture) return false;
  return want.variant.empty() || have.variant.empty() || want.variant == have.variant;
}

std::string DefaultVariant(const std::string& arch) {
  if (arch == "arm") return "v7";
  if (arch == "arm64") return "v8";
  return "";
}

}  // namespace

const Descriptor* PickPlatform(const std::vector<Descriptor>& entries, const Platform& want,
                               std::string* offered) {
  const Descriptor* pick = nullptr;
  Platform exact = want;
  if (exact.variant.empty()) exact.variant = DefaultVariant(want.architecture);
  // The list goes into an error line: the index's own strings, so no control bytes,
  // and at most kShown of them (an index may hold tens of thousands).
  constexpr size_t kShown = 20;
  size_t listed = 0, more = 0;
  for (const Descriptor& d : entries) {
    if (!d.has_platform || d.platform.os == "unknown") continue;  // attestations
    if (listed++ < kShown) {
      *offered += (offered->empty() ? "" : ", ") + Printable(d.platform.String(), 100);
    } else {
      more++;
    }
    if (!pick && d.platform.os == exact.os && d.platform.architecture == exact.architecture &&
        d.platform.variant == exact.variant)
      pick = &d;
  }
  for (const Descriptor& d : entries) {
    if (pick) break;
    if (d.has_platform && d.platform.os != "unknown" && PlatformMatches(want, d.platform))
      pick = &d;
  }
  if (more) *offered += " and " + std::to_string(more) + " more";
  return pick;
}

Result<GcLock> GcLock::Acquire(const Store& store, bool exclusive) {
  IMGFS_ASSIGN_OR_RETURN(UniqueFd fd, OpenFile(store.root() + "/gc.lock", O_RDWR | O_CREAT, 0600));
  while (::flock(fd.get(), exclusive ? LOCK_EX : LOCK_SH) != 0) {
    if (errno != EINTR) return Status::FromErrno("lock " + store.root() + "/gc.lock");
  }
  return GcLock(std::move(fd));
}

Result<std::vector<LoadedImage>> LoadImages(Store& store, const std::string& path,
                                            const LoadOptions& options) {
  bool is_dir = false;
  bool from_stdin = path == "-";
  UniqueFd input;
  if (from_stdin) {
    auto in = OpenStdin();
    if (!in.ok()) return in.status();
    input = std::move(in->file);
  } else {
    IMGFS_ASSIGN_OR_RETURN(input, OpenInput(path, /*allow_dir=*/true, &is_dir));
  }
  IMGFS_ASSIGN_OR_RETURN(GcLock lock, GcLock::Acquire(store, false));
  ImageStage stage(store, options.progress);
  Status status;
  std::string temp;
  const std::string name = from_stdin ? "stdin" : path;
  if (from_stdin && input.get() < 0) {
    // A pipe: spool the (inflated) tar into ingest/, checked and bounded as it comes.
    auto head = ReadHead(STDIN_FILENO, 4);
    if (!head.ok()) return head.status();
    if (head->empty()) return Status::InvalidArgument("stdin: empty input");
    Compression c = DetectCompression(*head);
    ReadSource src(STDIN_FILENO, std::move(*head));
    auto fd = SpoolTar(store, &src, c, &temp);
    if (!fd.ok()) {
      if (!temp.empty()) ::unlink(temp.c_str());
      return fd.status().WithContext(name);
    }
    input = std::move(*fd);
    // Already plain: OpenPlainTar below sees no compression magic and keeps it.
  }
  if (is_dir) {
    DirInput in(path);
    if (!in.Exists("oci-layout") || !in.Exists("index.json")) {
      return Status::InvalidArgument(path +
                                     ": not an OCI image layout (no oci-layout and index.json)");
    }
    status = LoadOciLayout(stage, in, options);
  } else {
    std::string spooled = temp;
    auto fd = OpenPlainTar(store, std::move(input), name, &temp);
    if (!spooled.empty()) ::unlink(spooled.c_str());
    if (!fd.ok()) {
      if (!temp.empty()) ::unlink(temp.c_str());
      return fd.status().WithContext(name);
    }
    auto in = TarInput::Open(std::move(*fd), name);
    if (!temp.empty()) ::unlink(temp.c_str());  // the open fd keeps it readable
    if (!in.ok()) return in.status().WithContext(name);
    if ((*in)->Exists("manifest.json")) {
      status = LoadDockerArchive(stage, **in, name);
    } else if ((*in)->Exists("oci-layout")) {
      status = LoadOciLayout(stage, **in, options);
    } else {
      return Status::InvalidArgument(
          name + ": not a docker-archive or OCI archive (no manifest.json or oci-layout)");
    }
  }
  if (!status.ok()) return status.WithContext(name);
  auto out = stage.Commit();
  if (!out.ok()) return out.status().WithContext(name);
  return out;
}

Result<LoadedImage> ImportRootfs(Store& store, const std::string& tarball, const Reference& ref,
                                 const LoadOptions& options) {
  bool is_dir = false;
  const bool from_stdin = tarball == "-";
  const std::string name = from_stdin ? "stdin" : tarball;
  UniqueFd file;
  if (from_stdin) {
    IMGFS_ASSIGN_OR_RETURN(StdinInput in, OpenStdin());
    file = std::move(in.file);
  } else {
    IMGFS_ASSIGN_OR_RETURN(file, OpenInput(tarball, /*allow_dir=*/false, &is_dir));
  }
  IMGFS_ASSIGN_OR_RETURN(GcLock lock, GcLock::Acquire(store, false));
  // A file is read with pread; a pipe streams straight through the one-pass pipeline
  // (the layer needs no random access, so nothing is spooled).
  std::unique_ptr<ByteSource> src;
  if (file.get() >= 0) {
    struct stat st;
    if (::fstat(file.get(), &st) != 0) return Status::FromErrno(name);
    if (st.st_size == 0) return Status::InvalidArgument(name + ": empty file");
    src = std::make_unique<FdSource>(file.get(), 0, static_cast<uint64_t>(st.st_size));
  } else {
    IMGFS_ASSIGN_OR_RETURN(std::string head, ReadHead(STDIN_FILENO, 512));
    if (head.empty()) return Status::InvalidArgument("stdin: empty input");
    src = std::make_unique<ReadSource>(STDIN_FILENO, std::move(head));
  }

  ImageStage stage(store, options.progress);
  auto diff_id = stage.AddLayer(src.get(), std::nullopt, nullptr, Compression::kAuto);
  if (!diff_id.ok()) return diff_id.status().WithContext(name);
  Platform host = HostPlatform();
  int64_t now = ::time(nullptr);
  JsonWriter w;
  w.BeginObject();
  w.Key("architecture").String(host.architecture);
  w.Key("os").String(host.os);
  if (!host.variant.empty()) w.Key("variant").String(host.variant);
  w.Key("created").String(FormatRfc3339(now));
  w.Key("config").BeginObject().EndObject();
  w.Key("rootfs").BeginObject().Key("type").String("layers");
  w.Key("diff_ids").BeginArray().String(diff_id->str()).EndArray().EndObject();
  w.Key("history").BeginArray().BeginObject();
  w.Key("created")
      .String(FormatRfc3339(now))
      .Key("created_by")
      .String("imgfs import " + (from_stdin ? std::string("-") : BaseName(tarball)));
  w.EndObject().EndArray();
  w.EndObject();
  std::string config = w.str();
  IMGFS_ASSIGN_OR_RETURN(ImageRecord rec, RecordFromConfig(config, Sha256Of(config)));
  StagedImage img;
  img.record = std::move(rec);
  img.config = std::move(config);
  img.names.push_back(ref.Normalized().String());
  IMGFS_RETURN_IF_ERROR(stage.AddImage(std::move(img)).WithContext(name));
  IMGFS_ASSIGN_OR_RETURN(auto out, stage.Commit());
  return out.at(0);
}

}  // namespace imgfs
