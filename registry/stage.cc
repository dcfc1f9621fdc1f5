#include "registry/stage.h"

#include <ctime>
#include <future>
#include <set>
#include <system_error>

#include "index/layer_indexer.h"
#include "index/merged_tree.h"
#include "index/seek_index.h"

namespace imgfs {
namespace {

// Passes `src` on, showing every byte read to `see` first.
class ObservedSource : public ByteSource {
 public:
  ObservedSource(ByteSource* src, const ImageStage::TarBytes& see) : src_(src), see_(see) {}
  Result<size_t> Read(void* buf, size_t n) override {
    IMGFS_ASSIGN_OR_RETURN(size_t k, src_->Read(buf, n));
    if (see_ && k > 0) see_(static_cast<const char*>(buf), k);
    return k;
  }
  Result<std::string_view> ReadView(char* scratch, size_t n) override {
    IMGFS_ASSIGN_OR_RETURN(std::string_view v, src_->ReadView(scratch, n));
    if (see_ && !v.empty()) see_(v.data(), v.size());
    return v;
  }

 private:
  ByteSource* src_;
  const ImageStage::TarBytes& see_;
};

}  // namespace

ImageStage::ImageStage(Store& store, std::function<void(const std::string&)> progress,
                       bool commit_layers_early)
    : store_(store), progress_(std::move(progress)), commit_early_(commit_layers_early) {}

ImageStage::~ImageStage() = default;

bool ImageStage::HaveLayer(const Digest& diff_id) {
  {
    std::lock_guard<std::mutex> l(mu_);
    if (layers_.count(diff_id.hex())) return true;
  }
  auto have = store_.GetLayer(diff_id);
  return have.ok() && *have && store_.blobs().Has((*have)->blob);
}

void ImageStage::ForgetMissingBlobs() {
  std::lock_guard<std::mutex> l(mu_);
  for (auto it = layers_.begin(); it != layers_.end();) {
    if (!it->second.writer && !it->second.lazy &&
        !store_.blobs().Has(it->second.layer.record.blob)) {
      it = layers_.erase(it);
    } else {
      ++it;
    }
  }
}

Result<Digest> ImageStage::AddLayer(ByteSource* src, const std::optional<Digest>& expected,
                                    const Descriptor* desc, Compression hint,
                                    std::unique_ptr<BlobStore::Writer> resume,
                                    const TarBytes& tar_bytes) {
  if (expected && HaveLayer(*expected)) return *expected;
  std::string what = "layer " + (desc       ? desc->digest.str()
                                 : expected ? expected->str()
                                            : std::string("(import)"));
  if (progress_) progress_("Loading " + what);
  std::unique_ptr<BlobStore::Writer> writer = std::move(resume);
  // A blob already stored whole (verified by an earlier pull) is only read: no copy.
  // One of the wrong size (a crash before its writer's sync) is written again.
  if (!writer && !(desc && store_.blobs().HasWhole(desc->digest, desc->size))) {
    IMGFS_ASSIGN_OR_RETURN(writer, store_.blobs().NewWriter());
  }
  bool blob_found = !writer;
  // An uncompressed layer's bytes reach the tar hash unchanged, so its diff_id is its
  // blob digest: hash them there only.
  bool blob_is_tar = hint == Compression::kNone;
  if (writer && blob_is_tar) writer->SkipHashing();
  // What failed for a reason other than the transfer (bad bytes, a mismatch) must not
  // be resumed: the next attempt starts from 0.
  auto fail = [&](Status st) {
    if (writer && st.code() != Status::Code::kUnavailable) writer->Discard();
    return st;
  };
  TeeSource tee(src, writer.get());
  Result<LayerIndex> idx = Status::Unavailable("not indexed");
  Compression detected = Compression::kNone;
  Result<std::string> seek = std::string();  // the layer's seek index (index/seek_index.h)
  {
    // Three stages, so that inflating (the longest) has a core to itself:
    //   thread 1: read/receive the blob, copy it into ingest/ and hash it
    //   thread 2: inflate (and find the seek index's checkpoints)
    //   this thread: hash the seek index's spans, hash the tar (the diff_id) and
    //   parse it (the span hashes here balance the two threads: inflate is the
    //   longer stage)
    PipelinedSource blob_stage(&tee, 512 << 10, 4, "blob");
    IndexingSource dec(&blob_stage, hint, SeekSpanFromEnv());
    dec.HashSpansElsewhere();
    {
      PipelinedSource inflate_stage(&dec, 512 << 10, 4, "inflate");
      SpanHasher spans(&inflate_stage, &dec);
      ObservedSource observed(&spans, tar_bytes);
      double cpu = ThreadCpuSeconds();
      idx = IndexTarStream(tar_bytes ? static_cast<ByteSource*>(&observed) : &spans);
      if (idx.ok()) {
        Status st = spans.Finish();
        if (!st.ok()) idx = st;
      }
      ReportStageCpu("index", ThreadCpuSeconds() - cpu);
    }  // joins thread 2 before `dec` is looked at
    detected = dec.compression();
    if (idx.ok()) seek = dec.Finish();
  }
  if (!idx.ok()) return fail(idx.status().WithContext(what));
  if (!seek.ok()) return fail(seek.status().WithContext(what));
  Digest diff_id = expected ? *expected : idx->diff_id;
  if (!expected && HaveLayer(diff_id)) return diff_id;  // import: a layer already held stays
  Digest blob = blob_is_tar ? idx->diff_id : tee.Finish();
  if (desc && !(blob == desc->digest)) {
    return fail(Status::Corruption(what + ": digest mismatch: content hashes to " + blob.str()));
  }
  if (desc && tee.bytes() != desc->size) {
    return fail(Status::Corruption(what + ": size mismatch: " + std::to_string(tee.bytes()) +
                                   " bytes, descriptor says " + std::to_string(desc->size)));
  }
  if (!(idx->diff_id == diff_id)) {
    return fail(Status::Corruption(what + ": diff_id mismatch: uncompressed content hashes to " +
                                   idx->diff_id.str() + ", the config says " + diff_id.str()));
  }
  StagedLayer s;
  LayerRecord& r = s.layer.record;
  r.diff_id = diff_id;
  r.blob = blob;
  r.compression = detected;
  r.media_type = desc ? desc->media_type
                      : (detected == Compression::kGzip   ? media::kOciLayerGzip
                         : detected == Compression::kZstd ? media::kOciLayerZstd
                                                          : media::kOciLayer);
  r.blob_size = tee.bytes();
  r.size = idx->uncompressed_size;
  r.entry_count = idx->entries.size();
  s.layer.encoded_entries = EncodeEntries(idx->entries);
  s.entries = std::move(idx->entries);
  s.seek_index = std::move(*seek);
  if (writer && store_.blobs().HasWhole(blob, tee.bytes())) {
    writer.reset();  // stored meanwhile, or before (no descriptor to know it by)
    blob_found = true;
  }
  s.blob_found = blob_found;
  if (writer) {
    if (commit_early_) {
      // Durable but for the directory entries: Commit fsyncs blobs/ before the index
      // names the layer (a crash before that at worst loses the names of blobs nothing
      // names yet). The sidecar is written while the blob's fsync waits (the two
      // fsyncs share a journal commit).
      auto write_sidecar = [&] {
        return s.seek_index.empty()
                   ? Status::Ok()
                   : WriteSeekIndex(store_, diff_id, s.seek_index, /*sync_dir=*/false);
      };
      std::future<Status> sidecar;
      try {
        if (!s.seek_index.empty()) sidecar = std::async(std::launch::async, write_sidecar);
      } catch (const std::system_error&) {  // no thread to be had: in turn, then
      }
      Status st = writer->Commit(blob, std::nullopt, Durability::kFile).status();
      Status side = sidecar.valid() ? sidecar.get() : write_sidecar();
      IMGFS_RETURN_IF_ERROR(st.WithContext("commit " + what));
      IMGFS_RETURN_IF_ERROR(side);
      s.seek_index.clear();
    } else {
      s.writer = std::move(writer);
    }
  }
  std::lock_guard<std::mutex> l(mu_);
  layers_.try_emplace(diff_id.hex(), std::move(s));
  return diff_id;
}

std::string ImageStage::StagedEntries(const Digest& diff_id) {
  std::lock_guard<std::mutex> l(mu_);
  auto it = layers_.find(diff_id.hex());
  return it == layers_.end() ? "" : it->second.layer.encoded_entries;
}

Status ImageStage::AddLazyLayer(const Digest& diff_id, const Descriptor& desc,
                                std::vector<LayerEntry> entries, uint64_t tar_size) {
  StagedLayer s;
  LayerRecord& r = s.layer.record;
  r.diff_id = diff_id;
  r.blob = desc.digest;
  // zstd:chunked or eStargz (gzip); the puller has checked the media type already.
  IMGFS_ASSIGN_OR_RETURN(r.compression, LayerCompression(desc.media_type));
  r.media_type = desc.media_type;
  r.blob_size = desc.size;
  r.size = tar_size;
  r.entry_count = entries.size();
  s.layer.encoded_entries = EncodeEntries(entries);
  s.entries = std::move(entries);
  s.lazy = true;
  std::lock_guard<std::mutex> l(mu_);
  layers_.try_emplace(diff_id.hex(), std::move(s));
  return Status::Ok();
}

Status ImageStage::AddImage(StagedImage img) {
  // Layers of other images may still be added by other threads (layers_ changes).
  std::lock_guard<std::mutex> l(mu_);
  std::vector<std::string> ids;
  std::vector<LayerEntry> loaded;  // one stored layer's table at a time (TableFn)
  EntryTable view;                 // views of the table handed out
  img.record.size = 0;
  for (const Digest& d : img.record.diff_ids) {
    ids.push_back(d.hex());
    auto it = layers_.find(d.hex());
    if (it != layers_.end()) {
      img.record.size += it->second.layer.record.size;
      continue;
    }
    IMGFS_ASSIGN_OR_RETURN(auto rec, store_.GetLayer(d));
    if (!rec) return Status::NotFound("layer " + d.str() + " was not staged");
    img.record.size += rec->size;
  }
  // The tree is built here (a bad image fails before anything is committed); images
  // on the same lower layers share the merge state after them.
  auto table = [&](size_t i) -> Result<const EntryTable*> {
    auto it = layers_.find(ids[i]);
    if (it != layers_.end()) {
      view.Assign(it->second.entries);
    } else {
      IMGFS_ASSIGN_OR_RETURN(loaded, store_.GetEntries(img.record.diff_ids[i]));
      view.Assign(loaded);
    }
    return &view;
  };
  auto root = lower_trees_.BuildRoot(ids, table);
  if (!root.ok()) return root.status().WithContext("image " + img.record.id.str());
  trees_.push_back(EncodeTreeRoot(*root));  // the tree itself is rebuilt when read
  images_.push_back(std::move(img));
  return Status::Ok();
}

void ImageStage::Prewrite(std::string bytes, const Digest& digest) {
  if (prewritten_.count(digest.hex()) || store_.blobs().Has(digest)) return;
  const BlobStore& blobs = store_.blobs();
  auto write = [&blobs, bytes = std::move(bytes)]() -> Result<std::unique_ptr<BlobStore::Writer>> {
    IMGFS_ASSIGN_OR_RETURN(auto w, blobs.NewWriter());
    IMGFS_RETURN_IF_ERROR(w->Write(bytes.data(), bytes.size()));
    IMGFS_RETURN_IF_ERROR(w->Sync());
    return w;
  };
  try {
    prewritten_.emplace(digest.hex(), std::async(std::launch::async, std::move(write)));
  } catch (const std::system_error&) {  // no thread to be had: Commit writes it
  }
}

Status ImageStage::PutSmall(const std::string& bytes, const Digest& digest, Durability durability) {
  auto it = prewritten_.find(digest.hex());
  // Stored meanwhile by another process: that one is used (Put checks and syncs it),
  // the prewritten file is dropped.
  if (it != prewritten_.end() && store_.blobs().Has(digest)) {
    prewritten_.erase(it);
    it = prewritten_.end();
  }
  if (it != prewritten_.end()) {
    auto w = it->second.get();
    prewritten_.erase(it);
    // A failed prewrite (a full disk, say) is tried again the usual way, which reports it.
    if (w.ok())
      return (*w)
          ->Commit(digest, bytes.size(), durability)
          .status()
          .WithContext("blob " + digest.str());
  }
  return store_.blobs().Put(bytes, digest, durability).status().WithContext("blob " + digest.str());
}

Result<std::vector<LoadedImage>> ImageStage::Commit() {
  // Many images: the blobs are synced once (syncfs) before the index names them,
  // instead of two fsyncs per blob (3 blobs per image). Else each file is fsynced
  // (or was, when it was prewritten or committed early) and the directories once.
  const bool batch_sync = images_.size() >= kBatchSyncImages;
  const Durability each = batch_sync ? Durability::kLater : Durability::kFile;
  for (auto& [hex, s] : layers_) {
    // The sidecar goes first: a layer record never points at a blob whose index is
    // still to come (a missing one is rebuilt on first read all the same).
    if (!s.seek_index.empty()) {
      IMGFS_RETURN_IF_ERROR(
          WriteSeekIndex(store_, s.layer.record.diff_id, s.seek_index, /*sync_dir=*/false)
              .WithContext("write seek index"));
      s.seek_index.clear();
    }
    if (!s.writer) {
      // A blob found in the store (read, checked, not written here): its writer may
      // have left its sync to later (Durability::kLater, another process's load).
      if (s.blob_found && !s.lazy && !batch_sync)
        IMGFS_RETURN_IF_ERROR(store_.blobs().SyncBlob(s.layer.record.blob));
      continue;
    }
    IMGFS_RETURN_IF_ERROR(s.writer->Commit(s.layer.record.blob, std::nullopt, each)
                              .status()
                              .WithContext("commit layer blob"));
    s.writer.reset();
  }
  ReportStageMark("layer-blobs");
  std::vector<LoadedImage> out;
  std::vector<Store::NewImage> batch;  // one write transaction for the whole load
  std::set<std::string> recorded;
  for (size_t i = 0; i < images_.size(); i++) {
    StagedImage& img = images_[i];
    IMGFS_RETURN_IF_ERROR(PutSmall(img.config, img.record.id, each));
    if (!img.manifest.empty()) {
      IMGFS_ASSIGN_OR_RETURN(Digest md, Digest::Parse(img.record.manifest_digest));
      IMGFS_RETURN_IF_ERROR(PutSmall(img.manifest, md, each));
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
    bool names_in_place = true;
    for (const std::string& n : img.names) {
      bool by_digest = n.find('@') != std::string::npos;
      RefRecord r{img.record.id.hex(), !by_digest                ? ""
                                       : img.repo_digest.empty() ? img.record.manifest_digest
                                                                 : img.repo_digest};
      IMGFS_ASSIGN_OR_RETURN(auto have, store_.GetRef(n));
      names_in_place = names_in_place && have && have->image_id == r.image_id &&
                       have->manifest_digest == r.manifest_digest;
      refs.emplace_back(n, r);
    }
    // Loading what is already there, under the same names, writes nothing.
    IMGFS_ASSIGN_OR_RETURN(auto existing, store_.GetImage(img.record.id));
    if (!existing || !names_in_place || !new_layers.empty()) {
      batch.push_back(Store::NewImage{img.record, std::move(new_layers), trees_[i], refs});
    }
    out.push_back(LoadedImage{img.record.id, img.names});
  }
  ReportStageMark("small-blobs");
  if (batch_sync) {
    IMGFS_RETURN_IF_ERROR(store_.blobs().SyncAll());
  } else {
    // Also the names of blobs committed early (AddLayer), or found in the store and
    // synced above (another process may not have synced their names yet). seek/ is not
    // synced: a sidecar is fsynced before its rename, and one whose name a crash lost
    // is rebuilt on the layer's first read (docs/store-format.md).
    IMGFS_RETURN_IF_ERROR(store_.blobs().SyncDir());
  }
  if (!batch.empty()) IMGFS_RETURN_IF_ERROR(store_.AddImages(batch));
  return out;
}

Result<ImageRecord> RecordFromConfig(const std::string& config_bytes, const Digest& config_digest) {
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
  return r;
}

}  // namespace imgfs
