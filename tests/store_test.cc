// The LMDB index: records round-trip, names move, removal frees exactly what no other
// image uses, the schema version is checked, damaged values are reported.
#include "index/store.h"

#include <gtest/gtest.h>
#include <lmdb.h>
#include <sys/stat.h>
#include <unistd.h>

#include "index/layer_indexer.h"
#include "tests/tar_builder.h"

namespace imgfs {
namespace {

class StoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = test::MakeTempDir();
    auto s = Store::Open(dir_);
    ASSERT_TRUE(s.ok()) << s.status().message();
    store_ = std::move(*s);
  }
  void TearDown() override {
    store_.reset();
    test::RemoveTree(dir_);
  }

  // Adds an image with the given layers (each a one-file tar), returns its id.
  Digest AddImage(const std::string& config, const std::vector<std::string>& files,
                  const std::string& name) {
    ImageRecord img;
    img.id = *store_->blobs().Put(config, std::nullopt);
    std::vector<Store::NewLayer> layers;
    std::vector<std::vector<LayerEntry>> tables;
    for (const std::string& f : files) {
      test::TarBuilder b;
      b.File(f, f);
      std::string tar = b.Build();
      StringSource src(tar);
      auto idx = IndexTarStream(&src);
      EXPECT_TRUE(idx.ok());
      Digest blob = *store_->blobs().Put(tar, std::nullopt);
      Store::NewLayer nl;
      nl.record.diff_id = idx->diff_id;
      nl.record.blob = blob;
      nl.record.size = tar.size();
      nl.record.blob_size = tar.size();
      nl.record.entry_count = idx->entries.size();
      nl.encoded_entries = EncodeEntries(idx->entries);
      layers.push_back(nl);
      tables.push_back(idx->entries);
      img.diff_ids.push_back(idx->diff_id);
    }
    std::vector<const std::vector<LayerEntry>*> ptrs;
    for (auto& t : tables) ptrs.push_back(&t);
    auto tree = MergedTree::Build(ptrs);
    EXPECT_TRUE(tree.ok());
    std::vector<std::pair<std::string, RefRecord>> refs;
    if (!name.empty()) refs.push_back({name, RefRecord{img.id.hex(), ""}});
    EXPECT_TRUE(store_->AddImage(img, layers, tree->Encode(), refs).ok());
    return img.id;
  }

  std::string dir_;
  std::unique_ptr<Store> store_;
};

// The index refuses an image with more layers than an image may have, whatever made it
// (a build or commit adding layers to a base), and stores nothing of it.
TEST_F(StoreTest, RefusesAnImageWithMoreLayersThanTheLimit) {
  Digest one = AddImage("{\"one\":1}", {"f"}, "");
  ImageRecord img = **store_->GetImage(one);
  img.id = *store_->blobs().Put("{\"many\":1}", std::nullopt);
  img.diff_ids.assign(Store::kMaxImageLayers + 1, img.diff_ids.at(0));
  uint64_t g = *store_->Generation();
  Status st =
      store_->AddImage(img, {}, "", {{"docker.io/library/many:1", RefRecord{img.id.hex(), ""}}});
  EXPECT_EQ(st.code(), Status::Code::kInvalidArgument) << st.message();
  EXPECT_NE(st.message().find("has 1001 layers; imgfs takes at most 1000"), std::string::npos)
      << st.message();
  EXPECT_FALSE(store_->GetImage(img.id)->has_value());
  EXPECT_EQ(*store_->Generation(), g);
}

TEST_F(StoreTest, ImageRoundTrip) {
  uint64_t g0 = *store_->Generation();
  Digest id = AddImage("{\"a\":1}", {"x", "y"}, "docker.io/library/a:latest");
  EXPECT_EQ(*store_->Generation(), g0 + 1);
  auto img = store_->GetImage(id);
  ASSERT_TRUE(img.ok() && img->has_value());
  EXPECT_EQ((*img)->diff_ids.size(), 2u);
  auto ref = store_->GetRef("docker.io/library/a:latest");
  ASSERT_TRUE(ref.ok() && ref->has_value());
  EXPECT_EQ((*ref)->image_id, id.hex());
  auto tree = store_->GetTree(id);
  ASSERT_TRUE(tree.ok());
  EXPECT_NE(*tree->Resolve("x", false), 0u);
  EXPECT_NE(*tree->Resolve("y", false), 0u);
  auto entries = store_->GetEntries((*img)->diff_ids[0]);
  ASSERT_TRUE(entries.ok());
  EXPECT_EQ(entries->at(0).path, "x");
  auto pre = store_->FindImagesByPrefix(id.hex().substr(0, 12));
  ASSERT_TRUE(pre.ok());
  ASSERT_EQ(pre->size(), 1u);
  EXPECT_EQ(pre->at(0), id);
}

TEST_F(StoreTest, PersistsAcrossReopen) {
  Digest id = AddImage("{\"p\":1}", {"f"}, "docker.io/library/p:1");
  store_.reset();
  auto s = Store::Open(dir_);
  ASSERT_TRUE(s.ok());
  store_ = std::move(*s);
  EXPECT_TRUE(store_->GetImage(id)->has_value());
}

TEST_F(StoreTest, TagMovesAndDeleteRef) {
  Digest a = AddImage("{\"a\":1}", {"a"}, "docker.io/library/x:1");
  Digest b = AddImage("{\"b\":1}", {"b"}, "");
  ASSERT_TRUE(store_->SetRef("docker.io/library/x:1", RefRecord{b.hex(), ""}).ok());
  EXPECT_EQ((*store_->GetRef("docker.io/library/x:1"))->image_id, b.hex());
  EXPECT_TRUE(store_->DeleteRef("docker.io/library/x:1").ok());
  EXPECT_TRUE(store_->DeleteRef("docker.io/library/x:1").IsNotFound());
  EXPECT_FALSE(store_->SetRef("docker.io/library/y:1", RefRecord{std::string(64, 'f'), ""}).ok());
  (void)a;
}

TEST_F(StoreTest, DeleteImageFreesOnlyUnsharedLayers) {
  Digest a = AddImage("{\"a\":1}", {"shared", "only-a"}, "docker.io/library/a:1");
  Digest b = AddImage("{\"b\":1}", {"shared", "only-b"}, "docker.io/library/b:1");
  auto img_a = **store_->GetImage(a);
  auto freed = store_->DeleteImage(a);
  ASSERT_TRUE(freed.ok());
  std::set<Digest> f(freed->begin(), freed->end());
  EXPECT_TRUE(f.count(a));  // config
  auto shared = **store_->GetLayer(img_a.diff_ids[0]);
  EXPECT_FALSE(f.count(shared.blob));
  EXPECT_FALSE(store_->GetLayer(img_a.diff_ids[1])->has_value());
  EXPECT_FALSE(store_->GetRef("docker.io/library/a:1")->has_value());
  EXPECT_FALSE(store_->GetTree(a).ok());
  auto live = store_->LiveBlobs();
  ASSERT_TRUE(live.ok());
  EXPECT_TRUE(live->count(shared.blob));
  EXPECT_TRUE(live->count(b));
  EXPECT_FALSE(live->count(a));
}

// Issue 13.2: the store is private to its owner; a store made before the rule (root
// 0711, directories 0755 inside) is tightened when it is opened.
TEST_F(StoreTest, RootAndDirectoriesArePrivateAndTightenedOnOpen) {
  auto mode = [](const std::string& p) {
    struct stat st;
    return stat(p.c_str(), &st) == 0 ? st.st_mode & 07777 : 0xffffu;
  };
  for (const char* sub : {"", "/blobs", "/blobs/sha256", "/ingest", "/index", "/unpacked"})
    EXPECT_EQ(mode(dir_ + sub), 0700u) << sub;
  store_.reset();
  for (const char* sub : {"", "/blobs", "/blobs/sha256", "/ingest"})
    ASSERT_EQ(chmod((dir_ + sub).c_str(), *sub ? 0755 : 0711), 0);
  auto s = Store::Open(dir_);
  ASSERT_TRUE(s.ok()) << s.status().message();
  for (const char* sub : {"", "/blobs", "/blobs/sha256", "/ingest"})
    EXPECT_EQ(mode(dir_ + sub), 0700u) << sub;
  // A new store under missing parents: the parents are ordinary, the root private.
  std::string nested = dir_ + "/a/b/store";
  auto n = Store::Open(nested);
  ASSERT_TRUE(n.ok()) << n.status().message();
  EXPECT_EQ(mode(nested), 0700u);
  EXPECT_EQ(mode(dir_ + "/a/b") & 0700, 0700u);  // made by MakeDirs, owner rwx
  // A root that is a symlink to the real directory opens (and the target is private).
  ASSERT_EQ(mkdir((dir_ + "/real").c_str(), 0755), 0);
  ASSERT_EQ(symlink((dir_ + "/real").c_str(), (dir_ + "/link").c_str()), 0);
  auto l = Store::Open(dir_ + "/link");
  ASSERT_TRUE(l.ok()) << l.status().message();
  EXPECT_EQ(mode(dir_ + "/real"), 0700u);
}

TEST_F(StoreTest, RejectsAnotherSchemaVersion) {
  store_.reset();
  MDB_env* env;
  mdb_env_create(&env);
  mdb_env_set_maxdbs(env, 8);
  ASSERT_EQ(mdb_env_open(env, (dir_ + "/index").c_str(), 0, 0600), 0);
  MDB_txn* t;
  mdb_txn_begin(env, nullptr, 0, &t);
  MDB_dbi meta;
  mdb_dbi_open(t, "meta", 0, &meta);
  MDB_val k{6, const_cast<char*>("schema")}, v{2, const_cast<char*>("99")};
  mdb_put(t, meta, &k, &v, 0);
  mdb_txn_commit(t);
  mdb_env_close(env);
  auto s = Store::Open(dir_);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.status().message().find("schema version 99"), std::string::npos)
      << s.status().message();
}

TEST_F(StoreTest, ImageRecordCodecRejectsGarbage) {
  ImageRecord r;
  r.id = Sha256Of("x");
  r.diff_ids = {Sha256Of("a")};
  std::string enc = EncodeImage(r);
  EXPECT_TRUE(DecodeImage(enc).ok());
  EXPECT_FALSE(DecodeImage(enc.substr(0, enc.size() - 2)).ok());
  EXPECT_FALSE(DecodeImage("").ok());
  // Without layers (listings): the rest of the record, diff_ids left empty; a bad
  // layer field is still refused.
  r.size = 1234;
  r.created_unix = 99;
  auto lite = DecodeImage(EncodeImage(r), /*layers=*/false);
  ASSERT_TRUE(lite.ok());
  EXPECT_TRUE(lite->diff_ids.empty());
  EXPECT_EQ(lite->id, r.id);
  EXPECT_EQ(lite->size, 1234u);
  EXPECT_EQ(lite->created_unix, 99);
  EXPECT_FALSE(DecodeImage(enc.substr(0, enc.size() - 2), false).ok());
  // A layer field of 64 bytes that are not lower-case hex: refused both ways alike.
  std::string bad = enc;
  size_t at = bad.find(r.diff_ids[0].hex());
  ASSERT_NE(at, std::string::npos);
  bad[at] = 'G';
  EXPECT_FALSE(DecodeImage(bad).ok());
  EXPECT_FALSE(DecodeImage(bad, false).ok());
  // The listing decoder refuses the same records, and reads the same fields.
  EXPECT_FALSE(DecodeImageSummary(bad).ok());
  EXPECT_FALSE(DecodeImageSummary(bad, true).ok());
  EXPECT_FALSE(DecodeImageSummary(enc.substr(0, enc.size() - 2)).ok());
  EXPECT_FALSE(DecodeImageSummary("").ok());
  EXPECT_FALSE(DecodeImageSummary(enc + "x").ok());
  r.created = "2024-01-02T03:04:05Z";
  auto brief = DecodeImageSummary(EncodeImage(r), /*layers=*/true);
  ASSERT_TRUE(brief.ok());
  EXPECT_EQ(brief->id, r.id);
  EXPECT_EQ(brief->diff_ids, r.diff_ids);
  EXPECT_EQ(brief->size, 1234u);
  EXPECT_EQ(brief->created_unix, 99);
  EXPECT_TRUE(brief->has_created);
  r.created.clear();
  EXPECT_FALSE(DecodeImageSummary(EncodeImage(r))->has_created);
  EXPECT_TRUE(DecodeImageSummary(EncodeImage(r))->diff_ids.empty());
}

// ListImageSummaries lists what ListImages lists, field for field.
TEST_F(StoreTest, ImageSummariesAreTheListedImages) {
  Digest a = AddImage("{\"s\":1}", {"f", "g"}, "docker.io/library/s:1");
  auto rec = store_->GetImage(a);
  std::vector<Store::NewImage> batch;
  for (int i = 0; i < 5; i++) {
    Store::NewImage n;
    n.image = **rec;
    n.image.id = *store_->blobs().Put("{\"t\":" + std::to_string(i) + "}", std::nullopt);
    n.image.created = i % 2 ? "" : "2020-01-01T00:00:0" + std::to_string(i) + "Z";
    n.image.created_unix = 1577836800 + i;
    n.image.size = 1000 * i;
    n.tree_record = EncodeTreeRoot(store_->GetTree(a)->Root());
    batch.push_back(std::move(n));
  }
  ASSERT_TRUE(store_->AddImages(batch).ok());
  auto full = store_->ListImages();
  ASSERT_TRUE(full.ok());
  ASSERT_EQ(full->size(), 6u);
  for (bool layers : {false, true}) {
    auto brief = store_->ListImageSummaries(layers);
    ASSERT_TRUE(brief.ok());
    ASSERT_EQ(brief->size(), full->size());
    for (size_t i = 0; i < full->size(); i++) {
      const ImageRecord& f = (*full)[i];
      const ImageSummary& b = (*brief)[i];
      EXPECT_EQ(b.id, f.id);
      EXPECT_EQ(b.created_unix, f.created_unix);
      EXPECT_EQ(b.has_created, !f.created.empty());
      EXPECT_EQ(b.size, f.size);
      EXPECT_EQ(b.diff_ids, layers ? f.diff_ids : std::vector<Digest>{});
    }
  }
}

// Sets meta/schema of the (closed) store at dir to `value`; returns it as it was.
std::string SetRawSchema(const std::string& dir, const std::string& value) {
  MDB_env* env;
  mdb_env_create(&env);
  mdb_env_set_maxdbs(env, 8);
  EXPECT_EQ(mdb_env_open(env, (dir + "/index").c_str(), 0, 0600), 0);
  MDB_txn* t;
  mdb_txn_begin(env, nullptr, 0, &t);
  MDB_dbi meta;
  mdb_dbi_open(t, "meta", 0, &meta);
  MDB_val k{6, const_cast<char*>("schema")}, v;
  std::string old = mdb_get(t, meta, &k, &v) == 0
                        ? std::string(static_cast<const char*>(v.mv_data), v.mv_size)
                        : "";
  if (!value.empty()) {
    v = MDB_val{value.size(), const_cast<char*>(value.data())};
    mdb_put(t, meta, &k, &v, 0);
  }
  mdb_txn_commit(t);
  mdb_env_close(env);
  return old;
}

// Schema 2: a `trees` row is the root record; the tree is built from the entry tables
// when asked for, identical to the one built at load.
TEST_F(StoreTest, RootRecordRowsGiveTheSameTreeBuiltFromTheLayers) {
  Digest whole = AddImage("{\"w\":1}", {"a", "dir/b"}, "docker.io/library/w:1");
  auto expect = store_->GetTree(whole);  // decoded from the whole stored tree
  ASSERT_TRUE(expect.ok());
  auto img = store_->GetImage(whole);
  ASSERT_TRUE(img.ok() && img->has_value());
  ImageRecord second = **img;
  second.id = *store_->blobs().Put("{\"w\":2}", std::nullopt);
  TreeRoot root = expect->Root();
  root.xattrs = {{"user.k", "v"}};
  ASSERT_TRUE(store_->AddImage(second, {}, EncodeTreeRoot(root), {}).ok());
  auto built = store_->GetTree(second.id);
  ASSERT_TRUE(built.ok()) << built.status().message();
  EXPECT_EQ(built->Encode(), expect->Encode());
  auto r = store_->GetTreeRoot(second.id);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->node.mode, expect->node(MergedTree::kRoot).mode);
  EXPECT_EQ(r->node.nlink, expect->node(MergedTree::kRoot).nlink);
  EXPECT_EQ(r->xattrs, root.xattrs);
  auto w = store_->GetTreeRoot(whole);  // from a whole tree too
  ASSERT_TRUE(w.ok());
  EXPECT_EQ(w->node.nlink, 3u);  // root: . .. and dir/
  EXPECT_FALSE(DecodeTreeRoot(EncodeTreeRoot(root).substr(0, 8)).ok());
  EXPECT_FALSE(DecodeTreeRoot("IMGT....").ok());
}

// A schema-1 store (whole trees in `trees`) opens, is marked schema 2, reads its trees
// as before, and ShrinkTrees turns the rows the current rules rebuild identically into
// root records.
TEST_F(StoreTest, SchemaOneStoreIsUpgradedAndItsWholeTreesShrink) {
  Digest id = AddImage("{\"o\":1}", {"x", "y/z"}, "docker.io/library/o:1");
  std::string before = store_->GetTree(id)->Encode();
  store_.reset();
  EXPECT_EQ(SetRawSchema(dir_, "1"), "2");
  auto s = Store::Open(dir_);
  ASSERT_TRUE(s.ok()) << s.status().message();
  store_ = std::move(*s);
  EXPECT_EQ(store_->GetTree(id)->Encode(), before);
  auto n = store_->ShrinkTrees();
  ASSERT_TRUE(n.ok()) << n.status().message();
  EXPECT_EQ(*n, 1u);
  EXPECT_EQ(*store_->ShrinkTrees(), 0u);
  EXPECT_EQ(store_->GetTree(id)->Encode(), before);
  store_.reset();
  EXPECT_EQ(SetRawSchema(dir_, ""), "2");
}

// One write transaction for many images: one generation step, all visible.
TEST_F(StoreTest, AddImagesIsOneTransaction) {
  Digest a = AddImage("{\"m\":1}", {"f"}, "");
  auto rec = store_->GetImage(a);
  std::vector<Store::NewImage> batch;
  for (int i = 0; i < 50; i++) {
    Store::NewImage n;
    n.image = **rec;
    n.image.id = *store_->blobs().Put("{\"n\":" + std::to_string(i) + "}", std::nullopt);
    n.tree_record = EncodeTreeRoot(store_->GetTree(a)->Root());
    n.refs = {{"docker.io/library/many:" + std::to_string(i), RefRecord{n.image.id.hex(), ""}}};
    batch.push_back(std::move(n));
  }
  uint64_t g = *store_->Generation();
  ASSERT_TRUE(store_->AddImages(batch).ok());
  EXPECT_EQ(*store_->Generation(), g + 1);
  EXPECT_EQ(store_->ListImages()->size(), 51u);
  EXPECT_EQ(store_->ListRefs()->size(), 50u);
  // A bad image (a layer not indexed) fails the whole batch.
  batch[0].image.id = *store_->blobs().Put("{\"bad\":1}", std::nullopt);
  batch[0].image.diff_ids = {Sha256Of("no such layer")};
  batch[1].image.id = *store_->blobs().Put("{\"bad\":2}", std::nullopt);
  EXPECT_FALSE(store_->AddImages(batch).ok());
  EXPECT_EQ(store_->ListImages()->size(), 51u);
}

// A write that does not fit the map grows it and is retried, not failed.
TEST_F(StoreTest, FullMapGrowsInsteadOfFailing) {
  Store::SetInitialMapSizeForTest(size_t{1} << 20);
  std::string dir = test::MakeTempDir();
  auto small = Store::Open(dir);
  Store::SetInitialMapSizeForTest(size_t{64} << 30);
  ASSERT_TRUE(small.ok()) << small.status().message();
  std::string config = "{\"big\":1}";
  Store::NewImage n;
  n.image.id = *(*small)->blobs().Put(config, std::nullopt);
  Store::NewLayer l;
  l.record.diff_id = Sha256Of("big layer");
  l.record.blob = Sha256Of("big blob");
  l.encoded_entries = std::string(size_t{6} << 20, 'x');  // 6 MB into a 1 MB map
  n.layers = {l};
  n.image.diff_ids = {l.record.diff_id};
  n.tree_record = EncodeTreeRoot(TreeRoot{});
  Status st = (*small)->AddImages({n});
  EXPECT_TRUE(st.ok()) << st.message();
  EXPECT_TRUE((*small)->GetImage(n.image.id)->has_value());
  small->reset();
  test::RemoveTree(dir);
}

}  // namespace
}  // namespace imgfs
