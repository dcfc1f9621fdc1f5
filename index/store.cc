#include "index/store.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <ctime>

#include "index/codec.h"
#include "index/file_util.h"

namespace imgfs {
namespace {

// The initial map: address space only (the file grows as used). A write that fills it
// grows it (Store::GrowMap) and is retried.
std::atomic<size_t> g_map_size{size_t{64} << 30};
constexpr uint64_t kRecordFormat = 1;

Status LmdbError(const std::string& what, int rc) {
  if (rc == MDB_MAP_FULL) return Status::Exhausted("index: " + what + ": LMDB map is full");
  if (rc > 0) return Status::Io("index: " + what, rc);
  return Status::Corruption("index: " + what + ": " + mdb_strerror(rc));
}

MDB_val Val(std::string_view s) {
  return MDB_val{s.size(), const_cast<char*>(s.data())};
}
std::string_view View(const MDB_val& v) {
  return std::string_view(static_cast<const char*>(v.mv_data), v.mv_size);
}

// The store root is private to its owner, as docker's data root is: blobs hold every
// file of every image (an image's /etc/shadow too), and the mount's permission checks
// mean nothing if another local user can read the blob. Parents are created as usual;
// the root itself is created 0700, and an existing root of ours that is open to group
// or others (stores made before this rule were 0711 with 0755 dirs inside) is tightened
// here, at every open. A root owned by someone else (root reading a user's store) is
// left alone. The directories inside are tightened too (defence in depth).
Status MakePrivateDir(const std::string& root) {
  size_t slash = root.find_last_not_of('/');
  slash = slash == std::string::npos ? std::string::npos : root.rfind('/', slash);
  if (slash != std::string::npos && slash > 0) {
    IMGFS_RETURN_IF_ERROR(MakeDirs(root.substr(0, slash), 0755));
  }
  if (::mkdir(root.c_str(), 0700) != 0 && errno != EEXIST) {
    return Status::FromErrno("mkdir " + root);
  }
  for (const char* sub : {"", "/blobs", "/blobs/sha256", "/ingest", "/index", "/unpacked"}) {
    std::string p = root + sub;
    struct stat st;
    if (::stat(p.c_str(), &st) != 0) {        // a symlinked root (/var/lib/imgfs → /data) is fine
      if (errno == ENOENT && *sub) continue;  // made below, 0700
      return Status::FromErrno("stat " + p);
    }
    if (!S_ISDIR(st.st_mode)) return Status::InvalidArgument(p + " exists and is not a directory");
    if (st.st_uid == ::geteuid() && (st.st_mode & 077) != 0 &&
        ::chmod(p.c_str(), st.st_mode & 07700) != 0) {
      return Status::FromErrno("chmod " + p);
    }
  }
  return Status::Ok();
}

}  // namespace

// An LMDB transaction that aborts unless committed. Values read through it are valid
// only until it ends; every accessor here copies.
class Txn {
 public:
  // Every transaction holds `gate` open for its life; a map resize (ours, or adopting
  // another process's) runs only inside gate->Exclusive.
  static Result<Txn> Begin(MDB_env* env, TxnGate* gate, bool write) {
    for (int attempt = 0;; attempt++) {
      gate->Enter();
      MDB_txn* t = nullptr;
      int rc = mdb_txn_begin(env, nullptr, write ? 0 : MDB_RDONLY, &t);
      if (rc == 0) return Txn(t, gate);
      gate->Leave();
      if (rc != MDB_MAP_RESIZED || attempt >= 4) return LmdbError("begin transaction", rc);
      // Another process grew the map: adopt its size, with no transaction open here.
      int set = 0;
      if (!gate->Exclusive([&] { set = mdb_env_set_mapsize(env, 0); })) {
        return Status::Unavailable(
            "index: the map was resized by another process while this thread holds a "
            "transaction; retry");
      }
      if (set) return LmdbError("adopt the resized map", set);
    }
  }
  Txn(Txn&& o) noexcept
      : t_(std::exchange(o.t_, nullptr)), gate_(std::exchange(o.gate_, nullptr)) {}
  Txn(const Txn&) = delete;
  ~Txn() {
    if (t_) mdb_txn_abort(t_);
    if (gate_) gate_->Leave();
  }
  Status Commit() {
    int rc = mdb_txn_commit(std::exchange(t_, nullptr));
    std::exchange(gate_, nullptr)->Leave();
    return rc ? LmdbError("commit", rc) : Status::Ok();
  }
  Result<std::optional<std::string>> Get(MDB_dbi db, std::string_view key) {
    MDB_val k = Val(key), v;
    int rc = mdb_get(t_, db, &k, &v);
    if (rc == MDB_NOTFOUND) return std::optional<std::string>();
    if (rc) return LmdbError("get", rc);
    return std::optional<std::string>(std::string(View(v)));
  }
  Status Put(MDB_dbi db, std::string_view key, std::string_view value) {
    MDB_val k = Val(key), v = Val(value);
    int rc = mdb_put(t_, db, &k, &v, 0);
    return rc ? LmdbError("put", rc) : Status::Ok();
  }
  // Deleting an absent key is not an error.
  Status Del(MDB_dbi db, std::string_view key) {
    MDB_val k = Val(key);
    int rc = mdb_del(t_, db, &k, nullptr);
    return rc && rc != MDB_NOTFOUND ? LmdbError("delete", rc) : Status::Ok();
  }
  // Calls fn(key, value) for every row; stops early when fn returns false.
  template <typename Fn>
  Status Scan(MDB_dbi db, Fn fn, std::string_view from = {}) {
    MDB_cursor* c = nullptr;
    int rc = mdb_cursor_open(t_, db, &c);
    if (rc) return LmdbError("cursor", rc);
    MDB_val k = Val(from), v;
    rc = mdb_cursor_get(c, &k, &v, from.empty() ? MDB_FIRST : MDB_SET_RANGE);
    while (rc == 0) {
      if (!fn(View(k), View(v))) break;
      rc = mdb_cursor_get(c, &k, &v, MDB_NEXT);
    }
    mdb_cursor_close(c);
    return rc && rc != MDB_NOTFOUND ? LmdbError("scan", rc) : Status::Ok();
  }
  // Scan with each value decoded by `decode` (returning a Result); a value that does
  // not decode stops the scan and is the returned error. fn(key, record) → continue?
  template <typename Decode, typename Fn>
  Status ScanRecords(MDB_dbi db, Decode decode, Fn fn) {
    Status bad;
    IMGFS_RETURN_IF_ERROR(Scan(db, [&](std::string_view k, std::string_view v) {
      auto r = decode(v);
      if (!r.ok()) {
        bad = r.status();
        return false;
      }
      return fn(k, std::move(*r));
    }));
    return bad;
  }
  // Every value of `db`, decoded by `decode` into a T.
  template <typename T, typename Decode>
  Result<std::vector<T>> ScanAll(MDB_dbi db, Decode decode) {
    std::vector<T> out;
    IMGFS_RETURN_IF_ERROR(ScanRecords(db, decode, [&](std::string_view, T r) {
      out.push_back(std::move(r));
      return true;
    }));
    return out;
  }

  MDB_txn* get() { return t_; }

 private:
  Txn(MDB_txn* t, TxnGate* gate) : t_(t), gate_(gate) {}
  MDB_txn* t_;
  TxnGate* gate_;
};

std::string EncodeRef(const RefRecord& r) {
  Encoder e;
  e.PutVarint(kRecordFormat);
  e.PutBytes(r.image_id);
  e.PutBytes(r.manifest_digest);
  return e.Take();
}

Result<RefRecord> DecodeRef(std::string_view data) {
  Decoder d(data);
  RefRecord r;
  if (d.Varint() != kRecordFormat) return Status::Corruption("index: ref record: unknown format");
  r.image_id = std::string(d.Bytes());
  r.manifest_digest = std::string(d.Bytes());
  if (!d.done() || !Digest::FromHex(r.image_id).ok())
    return Status::Corruption("index: bad ref record");
  return r;
}

std::string EncodeLayer(const LayerRecord& r) {
  Encoder e;
  e.PutVarint(kRecordFormat);
  e.PutBytes(r.diff_id.hex());
  e.PutBytes(r.blob.hex());
  e.PutBytes(r.media_type);
  e.PutVarint(static_cast<uint8_t>(r.compression));
  e.PutVarint(r.blob_size);
  e.PutVarint(r.size);
  e.PutVarint(r.entry_count);
  return e.Take();
}

Result<LayerRecord> DecodeLayer(std::string_view data) {
  Decoder d(data);
  LayerRecord r;
  if (d.Varint() != kRecordFormat) return Status::Corruption("index: layer record: unknown format");
  auto diff = Digest::FromHex(d.Bytes());
  auto blob = Digest::FromHex(d.Bytes());
  r.media_type = std::string(d.Bytes());
  uint64_t c = d.Varint();
  r.blob_size = d.Varint();
  r.size = d.Varint();
  r.entry_count = d.Varint();
  if (!d.done() || !diff.ok() || !blob.ok() || c > 2)
    return Status::Corruption("index: bad layer record");
  r.diff_id = *diff;
  r.blob = *blob;
  r.compression = static_cast<Compression>(c);
  return r;
}

namespace {

std::string EncodeGeneration(uint64_t g) {
  return std::string(reinterpret_cast<const char*>(&g), 8);
}

Status BumpGeneration(Txn& t, MDB_dbi meta) {
  IMGFS_ASSIGN_OR_RETURN(auto cur, t.Get(meta, "generation"));
  uint64_t g = 0;
  if (cur && cur->size() == 8) std::memcpy(&g, cur->data(), 8);
  return t.Put(meta, "generation", EncodeGeneration(g + 1));
}

}  // namespace

std::string EncodeImage(const ImageRecord& r) {
  Encoder e;
  e.PutVarint(kRecordFormat);
  e.PutBytes(r.id.hex());
  e.PutBytes(r.manifest_digest);
  e.PutBytes(r.manifest_media_type);
  e.PutVarint(r.config_size);
  e.PutBytes(r.created);
  e.PutSigned(r.created_unix);
  e.PutBytes(r.os);
  e.PutBytes(r.architecture);
  e.PutBytes(r.variant);
  e.PutVarint(r.diff_ids.size());
  for (const Digest& d : r.diff_ids) e.PutBytes(d.hex());
  e.PutVarint(r.size);
  e.PutSigned(r.added_unix);
  return e.Take();
}

namespace {

// The fields of an image record, as views into it. Every decoder of the record goes
// through here, so all of them accept and refuse the same records.
struct ImageFields {
  std::string_view manifest_digest, manifest_media_type, created, os, architecture, variant;
  Digest id;
  uint64_t config_size = 0, size = 0;
  int64_t created_unix = 0, added_unix = 0;
};

// Decodes `data` into f; each diff_id goes to on_layer (checked as FromHex checks it
// when on_layer is null).
template <typename OnLayer>
Status ParseImage(std::string_view data, ImageFields& f, OnLayer on_layer) {
  Decoder d(data);
  if (d.Varint() != kRecordFormat) return Status::Corruption("index: image record: unknown format");
  auto id = Digest::FromHex(d.Bytes());
  f.manifest_digest = d.Bytes();
  f.manifest_media_type = d.Bytes();
  f.config_size = d.Varint();
  f.created = d.Bytes();
  f.created_unix = d.Signed();
  f.os = d.Bytes();
  f.architecture = d.Bytes();
  f.variant = d.Bytes();
  uint64_t n = d.Varint();
  if (!id.ok() || n > data.size()) return Status::Corruption("index: bad image record");
  f.id = std::move(*id);
  for (uint64_t i = 0; i < n && d.ok(); i++) {
    std::string_view hex = d.Bytes();
    if (hex.size() != 64 || !IsLowerHex(hex))
      return Status::Corruption("index: bad image record layer");
    on_layer(hex);
  }
  f.size = d.Varint();
  f.added_unix = d.Signed();
  if (!d.done()) return Status::Corruption("index: bad image record");
  return Status::Ok();
}

// A diff_id already checked by ParseImage.
Digest CheckedDigest(std::string_view hex) {
  return *Digest::FromHex(hex);
}

}  // namespace

Result<ImageRecord> DecodeImage(std::string_view data, bool layers) {
  ImageFields f;
  ImageRecord r;
  IMGFS_RETURN_IF_ERROR(ParseImage(data, f, [&](std::string_view hex) {
    if (layers) r.diff_ids.push_back(CheckedDigest(hex));
  }));
  r.id = std::move(f.id);
  r.manifest_digest = std::string(f.manifest_digest);
  r.manifest_media_type = std::string(f.manifest_media_type);
  r.config_size = f.config_size;
  r.created = std::string(f.created);
  r.created_unix = f.created_unix;
  r.os = std::string(f.os);
  r.architecture = std::string(f.architecture);
  r.variant = std::string(f.variant);
  r.size = f.size;
  r.added_unix = f.added_unix;
  return r;
}

Result<ImageSummary> DecodeImageSummary(std::string_view data, bool layers) {
  ImageFields f;
  ImageSummary r;
  IMGFS_RETURN_IF_ERROR(ParseImage(data, f, [&](std::string_view hex) {
    if (layers) r.diff_ids.push_back(CheckedDigest(hex));
  }));
  r.id = std::move(f.id);
  r.created_unix = f.created_unix;
  r.has_created = !f.created.empty();
  r.size = f.size;
  return r;
}

Result<std::unique_ptr<Store>> Store::Open(const std::string& root) {
  std::unique_ptr<Store> s(new Store());
  s->root_ = root;
  s->blobs_ = BlobStore(root);
  Status st = s->Init();
  if (!st.ok()) return st.WithContext("store " + root);
  return s;
}

Status Store::Init() {
  IMGFS_RETURN_IF_ERROR(MakePrivateDir(root_));
  IMGFS_RETURN_IF_ERROR(blobs_.Init());
  IMGFS_RETURN_IF_ERROR(MakeDirs(root_ + "/index", 0700));
  IMGFS_RETURN_IF_ERROR(MakeDirs(root_ + "/unpacked", 0700));
  int rc = mdb_env_create(&env_);
  if (rc) return LmdbError("create environment", rc);
  mdb_env_set_maxdbs(env_, 8);
  mdb_env_set_mapsize(env_, g_map_size.load());
  mdb_env_set_maxreaders(env_, 512);
  rc = mdb_env_open(env_, (root_ + "/index").c_str(), MDB_NOTLS, 0600);
  if (rc) return LmdbError("open " + root_ + "/index", rc);
  struct {
    const char* name;
    MDB_dbi* dbi;
  } dbs[] = {{"meta", &meta_},     {"refs", &refs_},       {"images", &images_},
             {"layers", &layers_}, {"entries", &entries_}, {"trees", &trees_}};
  // An existing store opens in a read transaction (no write, no sync); a new one, or
  // one missing a database, in a write transaction that creates what is missing.
  for (bool write : {false, true}) {
    IMGFS_ASSIGN_OR_RETURN(Txn t, Txn::Begin(env_, &gate_, write));
    bool missing = false;
    for (auto& d : dbs) {
      rc = mdb_dbi_open(t.get(), d.name, write ? MDB_CREATE : 0, d.dbi);
      if (rc == MDB_NOTFOUND && !write) {
        missing = true;
        break;
      }
      if (rc) return LmdbError(std::string("open database ") + d.name, rc);
    }
    if (missing) continue;
    IMGFS_ASSIGN_OR_RETURN(auto schema, t.Get(meta_, "schema"));
    if (!schema || *schema == "1") {
      // New, or schema 1 (whole trees in `trees`, still read as such): upgrade in place.
      if (!write) continue;
      IMGFS_RETURN_IF_ERROR(t.Put(meta_, "schema", std::to_string(kSchemaVersion)));
    } else if (*schema != std::to_string(kSchemaVersion)) {
      return Status::Unsupported("index schema version " + *schema +
                                 " is not supported (this imgfs reads " +
                                 std::to_string(kSchemaVersion) + ")");
    }
    return t.Commit();  // (a read transaction must commit for its DBI handles to stay open)
  }
  return Status::Corruption("index: cannot open its databases");
}

Store::~Store() {
  if (env_) mdb_env_close(env_);
}

Result<std::optional<RefRecord>> Store::GetRef(const std::string& ref) const {
  IMGFS_ASSIGN_OR_RETURN(Txn t, Txn::Begin(env_, &gate_, false));
  IMGFS_ASSIGN_OR_RETURN(auto v, t.Get(refs_, ref));
  if (!v) return std::optional<RefRecord>();
  IMGFS_ASSIGN_OR_RETURN(RefRecord r, DecodeRef(*v));
  return std::optional<RefRecord>(std::move(r));
}

Result<std::vector<std::pair<std::string, RefRecord>>> Store::ListRefs() const {
  IMGFS_ASSIGN_OR_RETURN(Txn t, Txn::Begin(env_, &gate_, false));
  std::vector<std::pair<std::string, RefRecord>> out;
  IMGFS_RETURN_IF_ERROR(t.ScanRecords(refs_, DecodeRef, [&](std::string_view k, RefRecord r) {
    out.emplace_back(std::string(k), std::move(r));
    return true;
  }));
  return out;
}

Result<std::optional<ImageRecord>> Store::GetImage(const Digest& id) const {
  IMGFS_ASSIGN_OR_RETURN(Txn t, Txn::Begin(env_, &gate_, false));
  IMGFS_ASSIGN_OR_RETURN(auto v, t.Get(images_, id.hex()));
  if (!v) return std::optional<ImageRecord>();
  IMGFS_ASSIGN_OR_RETURN(ImageRecord r, DecodeImage(*v));
  return std::optional<ImageRecord>(std::move(r));
}

Result<std::vector<ImageRecord>> Store::ListImages(bool layers) const {
  IMGFS_ASSIGN_OR_RETURN(Txn t, Txn::Begin(env_, &gate_, false));
  return t.ScanAll<ImageRecord>(images_,
                                [layers](std::string_view v) { return DecodeImage(v, layers); });
}

Result<std::vector<ImageSummary>> Store::ListImageSummaries(bool layers) const {
  IMGFS_ASSIGN_OR_RETURN(Txn t, Txn::Begin(env_, &gate_, false));
  return t.ScanAll<ImageSummary>(
      images_, [layers](std::string_view v) { return DecodeImageSummary(v, layers); });
}

Result<std::vector<Digest>> Store::FindImagesByPrefix(const std::string& prefix) const {
  IMGFS_ASSIGN_OR_RETURN(Txn t, Txn::Begin(env_, &gate_, false));
  std::vector<Digest> out;
  IMGFS_RETURN_IF_ERROR(t.Scan(
      images_,
      [&](std::string_view k, std::string_view) {
        if (k.substr(0, prefix.size()) != prefix) return false;
        auto d = Digest::FromHex(k);
        if (d.ok()) out.push_back(*d);
        return true;
      },
      prefix));
  return out;
}

Result<std::optional<LayerRecord>> Store::GetLayer(const Digest& diff_id) const {
  IMGFS_ASSIGN_OR_RETURN(Txn t, Txn::Begin(env_, &gate_, false));
  IMGFS_ASSIGN_OR_RETURN(auto v, t.Get(layers_, diff_id.hex()));
  if (!v) return std::optional<LayerRecord>();
  IMGFS_ASSIGN_OR_RETURN(LayerRecord r, DecodeLayer(*v));
  return std::optional<LayerRecord>(std::move(r));
}

Result<std::vector<LayerEntry>> Store::GetEntries(const Digest& diff_id) const {
  IMGFS_ASSIGN_OR_RETURN(Txn t, Txn::Begin(env_, &gate_, false));
  MDB_val k = Val(diff_id.hex()), v;
  int rc = mdb_get(t.get(), entries_, &k, &v);
  if (rc == MDB_NOTFOUND)
    return Status::NotFound("index: no entry table for layer " + diff_id.str());
  if (rc) return LmdbError("get entries", rc);
  return DecodeEntries(View(v));  // decodes (copies) inside the transaction
}

namespace {

// The merged tree of `image_id` built from its layers' entry tables, inside t; the
// state after the lower layers comes from (and goes to) `lower` when it can.
Result<MergedTree> BuildTreeIn(Txn& t, MDB_dbi images, MDB_dbi entries, const Digest& image_id,
                               LowerTreeCache* lower) {
  IMGFS_ASSIGN_OR_RETURN(auto v, t.Get(images, image_id.hex()));
  if (!v) return Status::NotFound("no such image: " + image_id.str());
  IMGFS_ASSIGN_OR_RETURN(ImageRecord img, DecodeImage(*v));
  std::vector<std::string> ids;
  for (const Digest& d : img.diff_ids) ids.push_back(d.hex());
  // One table at a time (TableFn), as views of the LMDB value (valid in this
  // transaction; the tree copies what it keeps): an image that lists a layer thousands
  // of times does not hold thousands of copies of its entries.
  EntryTable table_buf;
  auto table = [&](size_t i) -> Result<const EntryTable*> {
    MDB_val k = Val(ids[i]), ev;
    int rc = mdb_get(t.get(), entries, &k, &ev);
    if (rc == MDB_NOTFOUND)
      return Status::NotFound("index: no entry table for layer " + img.diff_ids[i].str());
    if (rc) return LmdbError("get entries", rc);
    IMGFS_RETURN_IF_ERROR(table_buf.Decode(View(ev)));
    return &table_buf;
  };
  auto tree = lower->Build(ids, table);
  if (!tree.ok()) return tree.status().WithContext("image " + image_id.str());
  return tree;
}

// The merged tree of `image_id` from its `trees` row, inside transaction t.
Result<MergedTree> TreeIn(Txn& t, MDB_dbi images, MDB_dbi entries, std::string_view row,
                          const Digest& image_id, LowerTreeCache* lower) {
  if (!IsTreeRootRecord(row)) return MergedTree::Decode(row);
  return BuildTreeIn(t, images, entries, image_id, lower);
}

}  // namespace

Result<MergedTree> Store::GetTree(const Digest& image_id) const {
  IMGFS_ASSIGN_OR_RETURN(Txn t, Txn::Begin(env_, &gate_, false));
  MDB_val k = Val(image_id.hex()), v;
  int rc = mdb_get(t.get(), trees_, &k, &v);
  if (rc == MDB_NOTFOUND)
    return Status::NotFound("index: no merged tree for image " + image_id.str());
  if (rc) return LmdbError("get tree", rc);
  return TreeIn(t, images_, entries_, View(v), image_id, &lower_trees_);
}

Result<TreeRoot> Store::GetTreeRoot(const Digest& image_id) const {
  IMGFS_ASSIGN_OR_RETURN(Txn t, Txn::Begin(env_, &gate_, false));
  MDB_val k = Val(image_id.hex()), v;
  int rc = mdb_get(t.get(), trees_, &k, &v);
  if (rc == MDB_NOTFOUND)
    return Status::NotFound("index: no merged tree for image " + image_id.str());
  if (rc) return LmdbError("get tree", rc);
  if (IsTreeRootRecord(View(v))) return DecodeTreeRoot(View(v));
  IMGFS_ASSIGN_OR_RETURN(MergedTree tree, MergedTree::Decode(View(v)));
  return tree.Root();
}

Result<uint64_t> Store::Generation() const {
  IMGFS_ASSIGN_OR_RETURN(Txn t, Txn::Begin(env_, &gate_, false));
  IMGFS_ASSIGN_OR_RETURN(auto v, t.Get(meta_, "generation"));
  uint64_t g = 0;
  if (v && v->size() == 8) std::memcpy(&g, v->data(), 8);
  return g;
}

Status Store::AddImage(const ImageRecord& image, const std::vector<NewLayer>& layers,
                       const std::string& tree_record,
                       const std::vector<std::pair<std::string, RefRecord>>& refs) {
  return AddImages({NewImage{image, layers, tree_record, refs}});
}

void Store::SetInitialMapSizeForTest(size_t bytes) {
  g_map_size = bytes;
}

Status Store::GrowMap() {
  int rc = 0;
  // Doubles what this process maps now (another process may have grown it since).
  if (!gate_.Exclusive([&] {
        MDB_envinfo info;
        rc = mdb_env_info(env_, &info);
        if (rc == 0) rc = mdb_env_set_mapsize(env_, info.me_mapsize * 2);
      })) {
    return Status::Unavailable("index: cannot grow the map while this thread holds a transaction");
  }
  return rc ? LmdbError("grow the map", rc) : Status::Ok();
}

Status Store::AddImages(const std::vector<NewImage>& images) {
  // A full map is grown and the whole transaction retried (it was aborted: nothing
  // of it is in the store).
  for (int attempt = 0;; attempt++) {
    Status st = AddImagesOnce(images);
    if (st.code() != Status::Code::kExhausted || attempt >= 8) return st;
    IMGFS_RETURN_IF_ERROR(GrowMap());
  }
}

Status Store::CheckLayerCount(std::string_view what, size_t n) {
  if (n <= kMaxImageLayers) return Status::Ok();
  return Status::InvalidArgument(std::string(what) + " " + std::to_string(n) +
                                 " layers; imgfs takes at most " + std::to_string(kMaxImageLayers) +
                                 " (docker 125)");
}

Status Store::AddImagesOnce(const std::vector<NewImage>& images) {
  IMGFS_ASSIGN_OR_RETURN(Txn t, Txn::Begin(env_, &gate_, true));
  for (const NewImage& n : images) {
    IMGFS_RETURN_IF_ERROR(
        CheckLayerCount("image " + n.image.id.Short() + " has", n.image.diff_ids.size()));
    for (const NewLayer& l : n.layers) {
      IMGFS_RETURN_IF_ERROR(t.Put(layers_, l.record.diff_id.hex(), EncodeLayer(l.record)));
      IMGFS_RETURN_IF_ERROR(t.Put(entries_, l.record.diff_id.hex(), l.encoded_entries));
    }
    for (const Digest& d : n.image.diff_ids) {
      IMGFS_ASSIGN_OR_RETURN(auto have, t.Get(layers_, d.hex()));
      if (!have) return Status::NotFound("index: layer " + d.str() + " is not indexed");
    }
    IMGFS_RETURN_IF_ERROR(t.Put(images_, n.image.id.hex(), EncodeImage(n.image)));
    IMGFS_RETURN_IF_ERROR(t.Put(trees_, n.image.id.hex(), n.tree_record));
    for (const auto& [name, rec] : n.refs)
      IMGFS_RETURN_IF_ERROR(t.Put(refs_, name, EncodeRef(rec)));
  }
  IMGFS_RETURN_IF_ERROR(BumpGeneration(t, meta_));
  return t.Commit();
}

Result<size_t> Store::ShrinkTrees() {
  IMGFS_ASSIGN_OR_RETURN(Txn t, Txn::Begin(env_, &gate_, true));
  std::vector<std::string> whole;
  IMGFS_RETURN_IF_ERROR(t.Scan(trees_, [&](std::string_view k, std::string_view v) {
    if (!IsTreeRootRecord(v)) whole.emplace_back(k);
    return true;
  }));
  size_t replaced = 0;
  for (const std::string& hex : whole) {
    IMGFS_ASSIGN_OR_RETURN(Digest id, Digest::FromHex(hex));
    IMGFS_ASSIGN_OR_RETURN(auto stored, t.Get(trees_, hex));
    if (!stored) continue;
    // Rebuilt with today's rules from the same entry tables; kept whole unless identical
    // (a tree built by older rules stays what it was).
    auto rebuilt = BuildTreeIn(t, images_, entries_, id, &lower_trees_);
    if (!rebuilt.ok() || rebuilt->Encode() != *stored) continue;
    IMGFS_RETURN_IF_ERROR(t.Put(trees_, hex, EncodeTreeRoot(rebuilt->Root())));
    replaced++;
  }
  if (replaced) IMGFS_RETURN_IF_ERROR(BumpGeneration(t, meta_));
  IMGFS_RETURN_IF_ERROR(t.Commit());
  return replaced;
}

Status Store::SetRef(const std::string& ref, const RefRecord& rec) {
  IMGFS_ASSIGN_OR_RETURN(Txn t, Txn::Begin(env_, &gate_, true));
  IMGFS_ASSIGN_OR_RETURN(auto img, t.Get(images_, rec.image_id));
  if (!img) return Status::NotFound("no such image: " + rec.image_id);
  IMGFS_RETURN_IF_ERROR(t.Put(refs_, ref, EncodeRef(rec)));
  IMGFS_RETURN_IF_ERROR(BumpGeneration(t, meta_));
  return t.Commit();
}

Status Store::DeleteRef(const std::string& ref) {
  IMGFS_ASSIGN_OR_RETURN(Txn t, Txn::Begin(env_, &gate_, true));
  IMGFS_ASSIGN_OR_RETURN(auto v, t.Get(refs_, ref));
  if (!v) return Status::NotFound("no such reference: " + ref);
  IMGFS_RETURN_IF_ERROR(t.Del(refs_, ref));
  IMGFS_RETURN_IF_ERROR(BumpGeneration(t, meta_));
  return t.Commit();
}

Result<std::vector<Digest>> Store::DeleteImage(const Digest& id) {
  IMGFS_ASSIGN_OR_RETURN(Txn t, Txn::Begin(env_, &gate_, true));
  IMGFS_ASSIGN_OR_RETURN(auto v, t.Get(images_, id.hex()));
  if (!v) return Status::NotFound("no such image: " + id.str());
  IMGFS_ASSIGN_OR_RETURN(ImageRecord img, DecodeImage(*v));
  // Names of this image.
  std::vector<std::string> names;
  IMGFS_RETURN_IF_ERROR(t.Scan(refs_, [&](std::string_view k, std::string_view val) {
    auto r = DecodeRef(val);
    if (r.ok() && r->image_id == id.hex()) names.emplace_back(k);
    return true;
  }));
  for (const std::string& n : names) IMGFS_RETURN_IF_ERROR(t.Del(refs_, n));
  IMGFS_RETURN_IF_ERROR(t.Del(images_, id.hex()));
  IMGFS_RETURN_IF_ERROR(t.Del(trees_, id.hex()));
  // What the remaining images still use.
  std::set<std::string> used_layers;
  std::set<std::string> used_manifests;
  IMGFS_RETURN_IF_ERROR(t.ScanRecords(
      images_, [](std::string_view v) { return DecodeImage(v); },
      [&](std::string_view, const ImageRecord& r) {
        for (const Digest& d : r.diff_ids) used_layers.insert(d.hex());
        used_manifests.insert(r.manifest_digest);
        return true;
      }));
  std::vector<Digest> freed{id};
  if (!img.manifest_digest.empty() && !used_manifests.count(img.manifest_digest)) {
    auto m = Digest::Parse(img.manifest_digest);
    if (m.ok()) freed.push_back(*m);
  }
  for (const Digest& d : img.diff_ids) {
    if (used_layers.count(d.hex())) continue;
    IMGFS_ASSIGN_OR_RETURN(auto lv, t.Get(layers_, d.hex()));
    if (lv) {
      auto l = DecodeLayer(*lv);
      if (l.ok()) freed.push_back(l->blob);
    }
    IMGFS_RETURN_IF_ERROR(t.Del(layers_, d.hex()));
    IMGFS_RETURN_IF_ERROR(t.Del(entries_, d.hex()));
    used_layers.insert(d.hex());  // a layer listed twice in one image is freed once
  }
  IMGFS_RETURN_IF_ERROR(BumpGeneration(t, meta_));
  IMGFS_RETURN_IF_ERROR(t.Commit());
  return freed;
}

Status Store::NoteBlobsDeleted() {
  IMGFS_ASSIGN_OR_RETURN(Txn t, Txn::Begin(env_, &gate_, true));
  IMGFS_RETURN_IF_ERROR(BumpGeneration(t, meta_));
  return t.Commit();
}

Result<uint64_t> Store::Compact() {
  std::string dir = root_ + "/index";
  // LMDB holds a shared lock on byte 0 of lock.mdb in every process that has the
  // environment open; a conflicting lock of another process means someone else is in.
  {
    auto fd = OpenFile(dir + "/lock.mdb", O_RDWR);
    if (!fd.ok()) return fd.status();
    struct flock fl {};
    fl.l_type = F_WRLCK;
    fl.l_whence = SEEK_SET;
    fl.l_start = 0;
    fl.l_len = 1;
    if (::fcntl(fd->get(), F_GETLK, &fl) != 0) return Status::FromErrno("fcntl " + dir);
    if (fl.l_type != F_UNLCK) {
      return Status::Unavailable("the index is open in another process (pid " +
                                 std::to_string(fl.l_pid) + "; a mount?): not compacted");
    }
  }
  struct stat before {};
  if (::stat((dir + "/data.mdb").c_str(), &before) != 0) return Status::FromErrno("stat index");
  std::string tmp = dir + "/compact.tmp";
  (void)::unlink((tmp + "/data.mdb").c_str());
  (void)::rmdir(tmp.c_str());
  if (::mkdir(tmp.c_str(), 0700) != 0) return Status::FromErrno("mkdir " + tmp);
  int rc = mdb_env_copy2(env_, tmp.c_str(), MDB_CP_COMPACT);
  if (rc) {
    (void)::unlink((tmp + "/data.mdb").c_str());
    (void)::rmdir(tmp.c_str());
    return LmdbError("compacting copy", rc);
  }
  // The copy is complete and synced: put it in place, then reopen on it.
  mdb_env_close(env_);
  env_ = nullptr;
  Status moved;
  if (::rename((tmp + "/data.mdb").c_str(), (dir + "/data.mdb").c_str()) != 0) {
    moved = Status::FromErrno("rename compacted index");
  }
  (void)::unlink((tmp + "/data.mdb").c_str());
  (void)::rmdir(tmp.c_str());
  IMGFS_RETURN_IF_ERROR(Init());
  IMGFS_RETURN_IF_ERROR(moved);
  struct stat after {};
  if (::stat((dir + "/data.mdb").c_str(), &after) != 0) return Status::FromErrno("stat index");
  return before.st_size > after.st_size ? uint64_t(before.st_size - after.st_size) : 0;
}

Result<std::set<Digest>> Store::LiveBlobs() const {
  IMGFS_ASSIGN_OR_RETURN(Txn t, Txn::Begin(env_, &gate_, false));
  std::set<Digest> live;
  IMGFS_RETURN_IF_ERROR(t.ScanRecords(
      images_, [](std::string_view v) { return DecodeImage(v); },
      [&](std::string_view, const ImageRecord& r) {
        live.insert(r.id);
        auto m = Digest::Parse(r.manifest_digest);
        if (m.ok()) live.insert(*m);
        return true;
      }));
  IMGFS_RETURN_IF_ERROR(
      t.ScanRecords(layers_, DecodeLayer, [&](std::string_view, const LayerRecord& r) {
        live.insert(r.blob);
        return true;
      }));
  return live;
}

}  // namespace imgfs
