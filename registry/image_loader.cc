#include "registry/image_loader.h"

#include <fcntl.h>
#include <simdjson.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/utsname.h>

#include <ctime>
#include <map>
#include <memory>
#include <set>

#include "index/layer_indexer.h"
#include "index/merged_tree.h"
#include "registry/json.h"

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
  std::vector<std::string> parts;
  std::string all = target.size() && target[0] == '/' ? target : dir + "/" + target;
  size_t i = 0;
  while (i <= all.size()) {
    size_t j = all.find('/', i);
    if (j == std::string::npos) j = all.size();
    std::string c = all.substr(i, j - i);
    i = j + 1;
    if (c.empty() || c == ".") continue;
    if (c == "..") {
      if (parts.empty())
        return Status::InvalidArgument("link \"" + target + "\" points outside the archive");
      parts.pop_back();
      continue;
    }
    parts.push_back(c);
  }
  std::string out;
  for (auto& p : parts) out += (out.empty() ? "" : "/") + p;
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

// A layer that passed every check and waits in ingest/ to be committed.
struct StagedLayer {
  std::unique_ptr<BlobStore::Writer> writer;  // null when the blob is already stored
  Store::NewLayer layer;
  std::vector<LayerEntry> entries;
};

struct StagedImage {
  ImageRecord record;
  std::string config;
  std::string manifest;  // empty for docker-archive and import
  std::vector<std::string> names;
};

// Everything one load will add; committed only when all of it is verified.
class Stage {
 public:
  Stage(Store& store, const LoadOptions& opt) : store_(store), opt_(opt) {}

  // Streams a layer through the pipeline and checks it against `diff_id` and, when
  // known, against the blob digest and size of its descriptor.
  // With no expected diff_id (import), whatever the content hashes to is its diff_id.
  Result<Digest> AddLayer(const Region& region, const std::optional<Digest>& expected,
                          const Descriptor* desc, Compression hint) {
    if (expected) {
      if (layers_.count(expected->hex())) return *expected;
      IMGFS_ASSIGN_OR_RETURN(auto have, store_.GetLayer(*expected));
      if (have && store_.blobs().Has(have->blob)) return *expected;  // already local
    }
    if (opt_.progress)
      opt_.progress("Loading layer " + (expected ? expected->str()
                                        : desc   ? desc->digest.str()
                                                 : "…"));
    IMGFS_ASSIGN_OR_RETURN(auto writer, store_.blobs().NewWriter());
    FdSource file(region.fd->get(), region.offset, region.size);
    TeeSource tee(&file, writer.get());
    Result<LayerIndex> idx = Status::Ok().WithContext("");
    Compression detected;
    {
      PipelinedSource pipe(&tee);
      DecompressingSource dec(&pipe, hint);
      idx = IndexTarStream(&dec);
      detected = dec.compression();
    }
    std::string what = "layer " + (desc ? desc->digest.str() : expected ? expected->str() : "");
    if (!idx.ok()) return idx.status().WithContext(what);
    Digest diff_id = expected ? *expected : idx->diff_id;
    if (layers_.count(diff_id.hex())) return diff_id;
    if (!expected) {
      // Import learns the diff_id only now: a layer already held is kept as it is.
      IMGFS_ASSIGN_OR_RETURN(auto have, store_.GetLayer(diff_id));
      if (have && store_.blobs().Has(have->blob)) return diff_id;
    }
    Digest blob = tee.Finish();
    if (desc && !(blob == desc->digest)) {
      return Status::Corruption(what + ": digest mismatch: content hashes to " + blob.str());
    }
    if (desc && tee.bytes() != desc->size) {
      return Status::Corruption(what + ": size mismatch: " + std::to_string(tee.bytes()) +
                                " bytes, descriptor says " + std::to_string(desc->size));
    }
    if (!(idx->diff_id == diff_id)) {
      return Status::Corruption(what + ": diff_id mismatch: uncompressed content hashes to " +
                                idx->diff_id.str() + ", the config says " + diff_id.str());
    }
    StagedLayer s;
    s.layer.record.diff_id = diff_id;
    s.layer.record.blob = blob;
    s.layer.record.compression = detected;
    s.layer.record.media_type = desc ? desc->media_type
                                     : (detected == Compression::kGzip   ? media::kOciLayerGzip
                                        : detected == Compression::kZstd ? media::kOciLayerZstd
                                                                         : media::kOciLayer);
    s.layer.record.blob_size = tee.bytes();
    s.layer.record.size = idx->uncompressed_size;
    s.layer.record.entry_count = idx->entries.size();
    s.layer.encoded_entries = EncodeEntries(idx->entries);
    s.entries = std::move(idx->entries);
    if (!store_.blobs().Has(blob)) s.writer = std::move(writer);
    layers_[diff_id.hex()] = std::move(s);
    return diff_id;
  }

  // Builds the merged tree now, so a bad image fails before anything is committed.
  Status AddImage(StagedImage img) {
    std::vector<std::vector<LayerEntry>> loaded;
    std::vector<const std::vector<LayerEntry>*> tables;
    loaded.reserve(img.record.diff_ids.size());
    img.record.size = 0;
    for (const Digest& d : img.record.diff_ids) {
      auto it = layers_.find(d.hex());
      if (it != layers_.end()) {
        tables.push_back(&it->second.entries);
        img.record.size += it->second.layer.record.size;
        continue;
      }
      IMGFS_ASSIGN_OR_RETURN(auto rec, store_.GetLayer(d));
      if (!rec) return Status::NotFound("layer " + d.str() + " was not staged");
      img.record.size += rec->size;
      IMGFS_ASSIGN_OR_RETURN(auto entries, store_.GetEntries(d));
      loaded.push_back(std::move(entries));
      tables.push_back(&loaded.back());
    }
    auto tree = MergedTree::Build(tables);
    if (!tree.ok()) return tree.status().WithContext("image " + img.record.id.str());
    trees_.push_back(tree->Encode());
    images_.push_back(std::move(img));
    return Status::Ok();
  }

  Result<std::vector<LoadedImage>> Commit() {
    for (auto& [hex, s] : layers_) {
      if (!s.writer) continue;
      IMGFS_RETURN_IF_ERROR(
          s.writer->Commit(s.layer.record.blob).status().WithContext("commit layer blob"));
    }
    std::vector<LoadedImage> out;
    std::set<std::string> recorded;
    for (size_t i = 0; i < images_.size(); i++) {
      StagedImage& img = images_[i];
      IMGFS_RETURN_IF_ERROR(store_.blobs().Put(img.config, img.record.id).status());
      if (!img.manifest.empty()) {
        IMGFS_ASSIGN_OR_RETURN(Digest md, Digest::Parse(img.record.manifest_digest));
        IMGFS_RETURN_IF_ERROR(store_.blobs().Put(img.manifest, md).status());
      }
      std::vector<Store::NewLayer> new_layers;
      for (const Digest& d : img.record.diff_ids) {
        auto it = layers_.find(d.hex());
        if (it != layers_.end() && !recorded.count(d.hex())) {
          new_layers.push_back(it->second.layer);
          recorded.insert(d.hex());
        }
      }
      std::vector<std::pair<std::string, RefRecord>> refs;
      for (const std::string& n : img.names) {
        RefRecord r{img.record.id.hex(),
                    n.find('@') != std::string::npos ? img.record.manifest_digest : ""};
        refs.emplace_back(n, r);
      }
      IMGFS_RETURN_IF_ERROR(store_.AddImage(img.record, new_layers, trees_[i], refs));
      out.push_back(LoadedImage{img.record.id, img.names});
    }
    return out;
  }

  Store& store() { return store_; }
  const LoadOptions& options() { return opt_; }

 private:
  Store& store_;
  const LoadOptions& opt_;
  std::map<std::string, StagedLayer> layers_;
  std::vector<StagedImage> images_;
  std::vector<std::string> trees_;
};

Result<ImageRecord> RecordFromConfig(const std::string& config_bytes, const Digest& config_digest,
                                     ImageConfig* parsed_out) {
  auto parsed = ParseConfig(config_bytes);
  if (!parsed.ok()) return parsed.status().WithContext("config " + config_digest.str());
  ImageRecord r;
  r.id = config_digest;
  r.config_size = config_bytes.size();
  r.created = parsed->created;
  r.created_unix = parsed->created_unix;
  r.os = parsed->platform.os;
  r.architecture = parsed->platform.architecture;
  r.variant = parsed->platform.variant;
  r.diff_ids = parsed->diff_ids;
  r.added_unix = ::time(nullptr);
  if (parsed_out) *parsed_out = std::move(*parsed);
  return r;
}

Result<std::string> CanonicalName(const std::string& user) {
  auto ref = ParseReference(user);
  if (!ref.ok()) return ref.status();
  return ref->Normalized().String();
}

// docker save: manifest.json = [{"Config": path, "RepoTags": [...], "Layers": [paths]}]
Status LoadDockerArchive(Stage& stage, Input& in, const std::string& name) {
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
    ImageConfig parsed;
    IMGFS_ASSIGN_OR_RETURN(ImageRecord rec, RecordFromConfig(config, cd, &parsed));
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
      IMGFS_RETURN_IF_ERROR(
          stage.AddLayer(r, rec.diff_ids[i], nullptr, Compression::kAuto).status());
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

Status LoadOciManifest(Stage& stage, Input& in, const Descriptor& md,
                       std::vector<std::string> names) {
  IMGFS_ASSIGN_OR_RETURN(std::string mbytes, ReadBlob(in, md));
  auto m = ParseManifest(mbytes);
  if (!m.ok()) return m.status().WithContext("manifest " + md.digest.str());
  IMGFS_ASSIGN_OR_RETURN(std::string config, ReadBlob(in, m->config));
  IMGFS_ASSIGN_OR_RETURN(ImageRecord rec, RecordFromConfig(config, m->config.digest, nullptr));
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
    IMGFS_RETURN_IF_ERROR(stage.AddLayer(*region, rec.diff_ids[i], &ld, c).status());
  }
  rec.manifest_digest = md.digest.str();
  rec.manifest_media_type = m->media_type.empty() ? md.media_type : m->media_type;
  StagedImage img;
  img.record = std::move(rec);
  img.config = std::move(config);
  img.manifest = std::move(mbytes);
  img.names = std::move(names);
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

bool PlatformMatches(const Platform& want, const Platform& have) {
  if (want.os != have.os || want.architecture != have.architecture) return false;
  return want.variant.empty() || have.variant.empty() || want.variant == have.variant;
}

Status LoadOciLayout(Stage& stage, Input& in) {
  IMGFS_ASSIGN_OR_RETURN(std::string layout, in.ReadSmall("oci-layout"));
  if (layout.find("imageLayoutVersion") == std::string::npos) {
    return Status::InvalidArgument("oci-layout: not an OCI image layout marker");
  }
  IMGFS_ASSIGN_OR_RETURN(std::string ij, in.ReadSmall("index.json"));
  auto idx = ParseIndex(ij);
  if (!idx.ok()) return idx.status().WithContext("index.json");
  if (idx->manifests.empty()) return Status::InvalidArgument("index.json lists no images");
  for (const Descriptor& d : idx->manifests) {
    IMGFS_ASSIGN_OR_RETURN(auto names, NamesFromAnnotations(d, stage.options()));
    Descriptor target = d;
    if (d.media_type == media::kOciIndex || d.media_type == media::kDockerList) {
      IMGFS_ASSIGN_OR_RETURN(std::string nested, ReadBlob(in, d));
      auto sub = ParseIndex(nested);
      if (!sub.ok()) return sub.status().WithContext("index " + d.digest.str());
      Platform host = HostPlatform();
      const Descriptor* pick = nullptr;
      std::string offered;
      for (const Descriptor& m : sub->manifests) {
        offered += (offered.empty() ? "" : ", ") + m.platform.String();
        if (!pick && (sub->manifests.size() == 1 || PlatformMatches(host, m.platform))) pick = &m;
      }
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
    IMGFS_RETURN_IF_ERROR(LoadOciManifest(stage, in, target, names));
  }
  return Status::Ok();
}

// A compressed archive is first inflated into ingest/ (removed when done).
Result<UniqueFd> OpenPlainTar(const Store& store, const std::string& path, std::string* temp) {
  IMGFS_ASSIGN_OR_RETURN(UniqueFd fd, OpenFile(path, O_RDONLY));
  char head[4] = {};
  ssize_t n = ::pread(fd.get(), head, sizeof head, 0);
  if (n < 0) return Status::FromErrno("read " + path);
  if (n == 0) return Status::InvalidArgument("empty file");
  Compression c = DetectCompression(std::string_view(head, static_cast<size_t>(n)));
  if (c == Compression::kNone) return fd;
  *temp = store.blobs().IngestDir() + "/" + std::to_string(::getpid()) + "-archive.tar";
  IMGFS_ASSIGN_OR_RETURN(UniqueFd out, OpenFile(*temp, O_RDWR | O_CREAT | O_TRUNC, 0600));
  FdSource src(fd.get());
  DecompressingSource dec(&src, c);
  std::vector<char> buf(1 << 20);
  for (;;) {
    IMGFS_ASSIGN_OR_RETURN(size_t got, dec.Read(buf.data(), buf.size()));
    if (got == 0) break;
    IMGFS_RETURN_IF_ERROR(WriteAll(out.get(), buf.data(), got));
  }
  return out;
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

Result<GcLock> GcLock::Acquire(const Store& store, bool exclusive) {
  IMGFS_ASSIGN_OR_RETURN(UniqueFd fd, OpenFile(store.root() + "/gc.lock", O_RDWR | O_CREAT, 0600));
  while (::flock(fd.get(), exclusive ? LOCK_EX : LOCK_SH) != 0) {
    if (errno != EINTR) return Status::FromErrno("lock " + store.root() + "/gc.lock");
  }
  return GcLock(std::move(fd));
}

Result<std::vector<LoadedImage>> LoadImages(Store& store, const std::string& path,
                                            const LoadOptions& options) {
  IMGFS_ASSIGN_OR_RETURN(GcLock lock, GcLock::Acquire(store, false));
  Stage stage(store, options);
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) return Status::FromErrno(path);
  Status status;
  std::string temp;
  if (S_ISDIR(st.st_mode)) {
    DirInput in(path);
    if (!in.Exists("oci-layout") || !in.Exists("index.json")) {
      return Status::InvalidArgument(path +
                                     ": not an OCI image layout (no oci-layout and index.json)");
    }
    status = LoadOciLayout(stage, in);
  } else {
    auto fd = OpenPlainTar(store, path, &temp);
    if (!fd.ok()) {
      if (!temp.empty()) ::unlink(temp.c_str());
      return fd.status().WithContext(path);
    }
    auto in = TarInput::Open(std::move(*fd), path);
    if (!temp.empty()) ::unlink(temp.c_str());  // the open fd keeps it readable
    if (!in.ok()) return in.status().WithContext(path);
    if ((*in)->Exists("manifest.json")) {
      status = LoadDockerArchive(stage, **in, path);
    } else if ((*in)->Exists("oci-layout")) {
      status = LoadOciLayout(stage, **in);
    } else {
      return Status::InvalidArgument(
          path + ": not a docker-archive or OCI archive (no manifest.json or oci-layout)");
    }
  }
  if (!status.ok()) return status.WithContext(path);
  auto out = stage.Commit();
  if (!out.ok()) return out.status().WithContext(path);
  return out;
}

Result<LoadedImage> ImportRootfs(Store& store, const std::string& tarball, const Reference& ref,
                                 const LoadOptions& options) {
  IMGFS_ASSIGN_OR_RETURN(GcLock lock, GcLock::Acquire(store, false));
  auto fd = OpenFile(tarball, O_RDONLY);
  if (!fd.ok()) return fd.status();
  struct stat st;
  if (::fstat(fd->get(), &st) != 0) return Status::FromErrno(tarball);
  if (!S_ISREG(st.st_mode)) return Status::InvalidArgument(tarball + ": not a regular file");
  if (st.st_size == 0) return Status::InvalidArgument(tarball + ": empty file");
  Region region;
  region.fd = std::make_shared<UniqueFd>(std::move(*fd));
  region.size = static_cast<uint64_t>(st.st_size);

  Stage stage(store, options);
  auto diff_id = stage.AddLayer(region, std::nullopt, nullptr, Compression::kAuto);
  if (!diff_id.ok()) return diff_id.status().WithContext(tarball);
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
      .String("imgfs import " + BaseName(tarball));
  w.EndObject().EndArray();
  w.EndObject();
  std::string config = w.str();
  IMGFS_ASSIGN_OR_RETURN(ImageRecord rec, RecordFromConfig(config, Sha256Of(config), nullptr));
  StagedImage img;
  img.record = std::move(rec);
  img.config = std::move(config);
  img.names.push_back(ref.Normalized().String());
  IMGFS_RETURN_IF_ERROR(stage.AddImage(std::move(img)).WithContext(tarball));
  IMGFS_ASSIGN_OR_RETURN(auto out, stage.Commit());
  return out.at(0);
}

}  // namespace imgfs
