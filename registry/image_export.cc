#include "registry/image_export.h"

#include <fcntl.h>

#include <cstring>
#include <map>
#include <optional>
#include <set>

#include "index/file_util.h"
#include "index/stream.h"

namespace imgfs {
namespace {

const char* OciLayerType(Compression c) {
  switch (c) {
    case Compression::kGzip:
      return media::kOciLayerGzip;
    case Compression::kZstd:
      return media::kOciLayerZstd;
    default:
      return media::kOciLayer;
  }
}

// --- a minimal deterministic ustar writer ---

void PutOctal(char* field, size_t width, uint64_t v) {
  // width-1 octal digits, then NUL
  for (size_t i = width - 1; i-- > 0;) {
    field[i] = static_cast<char>('0' + (v & 7));
    v >>= 3;
  }
  field[width - 1] = '\0';
}

std::string TarHeader(const std::string& name, uint64_t size, char type) {
  std::string h(512, '\0');
  std::memcpy(h.data(), name.data(), std::min<size_t>(name.size(), 100));
  PutOctal(&h[100], 8, type == '5' ? 0755 : 0644);
  PutOctal(&h[108], 8, 0);
  PutOctal(&h[116], 8, 0);
  if (size < (uint64_t{1} << 33)) {
    PutOctal(&h[124], 12, size);
  } else {  // GNU base-256 for sizes past 8 GiB
    h[124] = static_cast<char>(0x80);
    for (int i = 11; i >= 1; i--) {
      h[124 + i] = static_cast<char>(size & 0xff);
      size >>= 8;
    }
  }
  PutOctal(&h[136], 12, 0);
  h[156] = type;
  std::memcpy(&h[257], "ustar", 6);
  std::memcpy(&h[263], "00", 2);
  std::memset(&h[148], ' ', 8);
  unsigned sum = 0;
  for (unsigned char c : h) sum += c;
  PutOctal(&h[148], 7, sum);
  h[155] = ' ';
  return h;
}

class TarOut {
 public:
  explicit TarOut(int fd) : fd_(fd) {}
  Status Dir(const std::string& name) { return WriteAll(fd_, TarHeader(name, 0, '5').data(), 512); }
  Status File(const std::string& name, std::string_view data) {
    IMGFS_RETURN_IF_ERROR(WriteAll(fd_, TarHeader(name, data.size(), '0').data(), 512));
    IMGFS_RETURN_IF_ERROR(WriteAll(fd_, data.data(), data.size()));
    return Pad(data.size());
  }
  // Exactly `size` bytes from `src` that hash to `want`: anything else is corruption
  // (a blob damaged on disk is not passed on; the caller removes a partial -o file).
  Status Stream(const std::string& name, uint64_t size, ByteSource* src, const Digest& want) {
    Sha256 hash;
    IMGFS_RETURN_IF_ERROR(WriteAll(fd_, TarHeader(name, size, '0').data(), 512));
    std::vector<char> buf(1 << 20);
    uint64_t done = 0;
    for (;;) {
      IMGFS_ASSIGN_OR_RETURN(size_t got, src->Read(buf.data(), buf.size()));
      if (got == 0) break;
      if (done + got > size)
        return Status::Corruption(name + ": more bytes than the " + std::to_string(size) +
                                  " recorded in the index");
      hash.Update(buf.data(), got);
      IMGFS_RETURN_IF_ERROR(WriteAll(fd_, buf.data(), got));
      done += got;
    }
    if (done != size)
      return Status::Corruption(name + ": " + std::to_string(done) + " bytes, the index recorded " +
                                std::to_string(size));
    if (Digest got = hash.Finish(); !(got == want))
      return Status::Corruption(name + ": content hashes to " + got.str() + ", not " + want.str() +
                                " (run imgfs verify)");
    return Pad(size);
  }
  Status End() {
    std::string z(1024, '\0');
    return WriteAll(fd_, z.data(), z.size());
  }

 private:
  Status Pad(uint64_t size) {
    size_t pad = (512 - size % 512) % 512;
    if (pad == 0) return Status::Ok();
    std::string z(pad, '\0');
    return WriteAll(fd_, z.data(), pad);
  }
  int fd_;
};

struct Loaded {
  ImageRecord rec;
  std::string config;
  std::vector<LayerRecord> layers;
};

Result<Loaded> LoadImage(const Store& store, const Digest& id) {
  Loaded l;
  IMGFS_ASSIGN_OR_RETURN(auto rec, store.GetImage(id));
  if (!rec) return Status::NotFound("no such image: " + id.str());
  l.rec = std::move(*rec);
  IMGFS_ASSIGN_OR_RETURN(l.config, store.blobs().Read(id));
  for (const Digest& d : l.rec.diff_ids) {
    IMGFS_ASSIGN_OR_RETURN(auto lr, store.GetLayer(d));
    if (!lr) return Status::Corruption("image " + id.Short() + ": layer " + d.str() + " missing");
    l.layers.push_back(std::move(*lr));
  }
  return l;
}

Result<UniqueFd> OpenBlobFile(const Store& store, const Digest& d) {
  auto fd = OpenFile(store.blobs().BlobPath(d), O_RDONLY | O_CLOEXEC);
  if (!fd.ok()) return fd.status().WithContext("blob " + d.str());
  return fd;
}

// The manifest the image came with, when the store holds it and every blob it names.
// The store keeps one blob per layer: a layer first loaded from a docker-archive
// (uncompressed) and later met compressed in a manifest has only the first, and then
// that manifest cannot be served as it is.
Result<std::optional<ExportManifest>> StoredManifest(const Store& store, const ImageRecord& image) {
  if (image.manifest_digest.empty()) return std::optional<ExportManifest>();
  IMGFS_ASSIGN_OR_RETURN(Digest md, Digest::Parse(image.manifest_digest));
  if (!store.blobs().Has(md)) return std::optional<ExportManifest>();
  ExportManifest m;
  IMGFS_ASSIGN_OR_RETURN(m.bytes, store.blobs().Read(md));
  auto parsed = ParseManifest(m.bytes);
  if (!parsed.ok()) return parsed.status().WithContext("manifest " + md.str());
  m.parsed = std::move(*parsed);
  bool all = store.blobs().Has(m.parsed.config.digest);
  for (const Descriptor& l : m.parsed.layers) all = all && store.blobs().Has(l.digest);
  if (!all) return std::optional<ExportManifest>();
  m.media_type = !m.parsed.media_type.empty()         ? m.parsed.media_type
                 : !image.manifest_media_type.empty() ? image.manifest_media_type
                                                      : media::kOciManifest;
  m.digest = md;
  return std::optional<ExportManifest>(std::move(m));
}

}  // namespace

Result<ExportManifest> ManifestFor(const Store& store, const ImageRecord& image) {
  IMGFS_ASSIGN_OR_RETURN(auto stored, StoredManifest(store, image));
  if (stored) return std::move(*stored);
  ExportManifest m;
  // No manifest of its own (or one naming blobs the store does not hold): an OCI
  // manifest over the stored blobs.
  JsonWriter w;
  w.BeginObject();
  w.Key("schemaVersion").Int(2);
  w.Key("mediaType").String(media::kOciManifest);
  IMGFS_ASSIGN_OR_RETURN(uint64_t csize, store.blobs().Size(image.id));
  m.parsed.media_type = media::kOciManifest;
  m.parsed.config = Descriptor{media::kOciConfig, image.id, csize, {}, {}, {}, false};
  w.Key("config").BeginObject().Key("mediaType").String(media::kOciConfig);
  w.Key("digest").String(image.id.str()).Key("size").Uint(csize).EndObject();
  w.Key("layers").BeginArray();
  for (const Digest& d : image.diff_ids) {
    IMGFS_ASSIGN_OR_RETURN(auto lr, store.GetLayer(d));
    if (!lr)
      return Status::Corruption("image " + image.id.Short() + ": layer " + d.str() + " missing");
    const char* mt = OciLayerType(lr->compression);
    w.BeginObject().Key("mediaType").String(mt).Key("digest").String(lr->blob.str());
    w.Key("size").Uint(lr->blob_size).EndObject();
    m.parsed.layers.push_back(Descriptor{mt, lr->blob, lr->blob_size, {}, {}, {}, false});
  }
  w.EndArray().EndObject();
  m.bytes = w.str();
  m.media_type = media::kOciManifest;
  m.digest = Sha256Of(m.bytes);
  return m;
}

Status SaveImages(const Store& store, const std::vector<SaveItem>& items, ArchiveFormat format,
                  int fd) {
  TarOut tar(fd);
  std::set<std::string> written;  // member names already in the archive
  if (format == ArchiveFormat::kDockerArchive) {
    JsonWriter mj;
    mj.BeginArray();
    for (const SaveItem& it : items) {
      IMGFS_ASSIGN_OR_RETURN(Loaded img, LoadImage(store, it.id));
      std::string cfg_name = it.id.hex() + ".json";
      if (written.insert(cfg_name).second) IMGFS_RETURN_IF_ERROR(tar.File(cfg_name, img.config));
      mj.BeginObject().Key("Config").String(cfg_name).Key("RepoTags");
      if (it.names.empty()) {
        mj.Null();
      } else {
        mj.BeginArray();
        for (const Reference& r : it.names) mj.String(r.FamiliarString());
        mj.EndArray();
      }
      mj.Key("Layers").BeginArray();
      for (const LayerRecord& l : img.layers) {
        std::string dir = l.diff_id.hex() + "/";
        std::string name = dir + "layer.tar";
        mj.String(name);
        if (!written.insert(name).second) continue;
        IMGFS_RETURN_IF_ERROR(tar.Dir(dir));
        IMGFS_ASSIGN_OR_RETURN(UniqueFd bf, OpenBlobFile(store, l.blob));
        FdSource raw(bf.get());
        DecompressingSource plain(&raw, l.compression);
        IMGFS_RETURN_IF_ERROR(
            tar.Stream(name, l.size, &plain, l.diff_id).WithContext("layer " + l.diff_id.str()));
      }
      mj.EndArray().EndObject();
    }
    mj.EndArray();
    IMGFS_RETURN_IF_ERROR(tar.File("manifest.json", mj.str()));
    return tar.End();
  }
  // OCI image layout in a tar.
  IMGFS_RETURN_IF_ERROR(tar.File("oci-layout", "{\"imageLayoutVersion\":\"1.0.0\"}"));
  IMGFS_RETURN_IF_ERROR(tar.Dir("blobs/"));
  IMGFS_RETURN_IF_ERROR(tar.Dir("blobs/sha256/"));
  JsonWriter ix;
  ix.BeginObject().Key("schemaVersion").Int(2);
  ix.Key("mediaType").String(media::kOciIndex);
  ix.Key("manifests").BeginArray();
  for (const SaveItem& it : items) {
    IMGFS_ASSIGN_OR_RETURN(Loaded img, LoadImage(store, it.id));
    IMGFS_ASSIGN_OR_RETURN(ExportManifest m, ManifestFor(store, img.rec));
    std::vector<Descriptor> blobs = m.parsed.layers;
    blobs.push_back(m.parsed.config);
    for (const Descriptor& d : blobs) {
      std::string name = "blobs/sha256/" + d.digest.hex();
      if (!written.insert(name).second) continue;
      IMGFS_ASSIGN_OR_RETURN(UniqueFd bf, OpenBlobFile(store, d.digest));
      FdSource raw(bf.get());
      IMGFS_RETURN_IF_ERROR(
          tar.Stream(name, d.size, &raw, d.digest).WithContext("blob " + d.digest.str()));
    }
    std::string mname = "blobs/sha256/" + m.digest.hex();
    if (written.insert(mname).second) IMGFS_RETURN_IF_ERROR(tar.File(mname, m.bytes));
    auto entry = [&](const Reference* r) {
      ix.BeginObject().Key("mediaType").String(m.media_type);
      ix.Key("digest").String(m.digest.str()).Key("size").Uint(m.bytes.size());
      if (r) {
        ix.Key("annotations").BeginObject();
        ix.Key("io.containerd.image.name").String(r->String());
        ix.Key("org.opencontainers.image.ref.name").String(r->tag);
        ix.EndObject();
      }
      ix.EndObject();
    };
    if (it.names.empty()) entry(nullptr);
    for (const Reference& r : it.names) entry(&r);
  }
  ix.EndArray().EndObject();
  IMGFS_RETURN_IF_ERROR(tar.File("index.json", ix.str()));
  return tar.End();
}

}  // namespace imgfs
