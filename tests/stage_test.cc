// ImageStage's commit: small blobs written ahead (Prewrite) are published by Commit and
// only by it, a prewrite of the wrong bytes fails the commit, and a name@digest
// records the digest it was given, all in the one index transaction.
#include "registry/stage.h"

#include <dirent.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include "index/file_util.h"
#include "tests/store_fixture.h"

namespace imgfs {
namespace {

class StageTest : public test::StoreFixture {
 protected:
  void SetUp() override {
    ::unsetenv("IMGFS_SEEK_SPAN");  // sidecars as by default
    StoreFixture::SetUp();
  }
  // Regular files in ingest/ (its locks/ directory aside).
  size_t IngestFiles() {
    size_t n = 0;
    std::string dir = root_ + "/ingest";
    DIR* d = opendir(dir.c_str());
    if (!d) return 0;
    while (dirent* e = readdir(d)) {
      struct stat st;
      if (::stat((dir + "/" + e->d_name).c_str(), &st) == 0 && S_ISREG(st.st_mode)) n++;
    }
    closedir(d);
    return n;
  }
  // A one-layer image: its gzip layer, config and manifest.
  struct Image {
    std::string layer, config, manifest;
    Digest diff_id, config_digest, manifest_digest;
  };
  Image MakeImage(const std::string& content) {
    Image im;
    test::TarBuilder b;
    b.File("etc/hello", content);
    std::string tar = b.Build("none");
    im.layer = b.Build("gzip");
    im.diff_id = Sha256Of(tar);
    im.config = R"({"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[")" +
                im.diff_id.str() + R"("]}})";
    im.config_digest = Sha256Of(im.config);
    im.manifest = R"({"schemaVersion":2,"config":{"digest":")" + im.config_digest.str() + R"("}})";
    im.manifest_digest = Sha256Of(im.manifest);
    return im;
  }
  Status Stage(ImageStage& stage, const Image& im, std::vector<std::string> names,
               std::string repo_digest = "") {
    StringSource src(im.layer);
    auto added = stage.AddLayer(&src, im.diff_id, nullptr, Compression::kGzip);
    if (!added.ok()) return added.status();
    auto rec = RecordFromConfig(im.config, im.config_digest);
    if (!rec.ok()) return rec.status();
    StagedImage img;
    img.record = *rec;
    img.record.manifest_digest = im.manifest_digest.str();
    img.config = im.config;
    img.manifest = im.manifest;
    img.names = std::move(names);
    img.repo_digest = std::move(repo_digest);
    return stage.AddImage(std::move(img));
  }
};

TEST_F(StageTest, PrewrittenBlobsArePublishedByCommitOnly) {
  Image im = MakeImage("one");
  ImageStage stage(*store_, nullptr, /*commit_layers_early=*/true);
  stage.Prewrite(im.config, im.config_digest);
  stage.Prewrite(im.manifest, im.manifest_digest);
  ASSERT_TRUE(Stage(stage, im, {"docker.io/library/one:1"}).ok());
  // Written ahead (two files in ingest/, on their own threads), but nothing named or
  // published before Commit.
  for (int i = 0; i < 500 && IngestFiles() < 2; i++) ::usleep(10000);
  EXPECT_EQ(IngestFiles(), 2u);
  EXPECT_FALSE(store_->blobs().Has(im.config_digest));
  EXPECT_FALSE(store_->blobs().Has(im.manifest_digest));
  // The layer committed early, its sidecar beside it.
  EXPECT_TRUE(PathExists(root_ + "/seek/" + im.diff_id.hex()));
  auto out = stage.Commit();
  ASSERT_TRUE(out.ok()) << out.status().message();
  EXPECT_EQ(*store_->blobs().Read(im.config_digest), im.config);
  EXPECT_EQ(*store_->blobs().Read(im.manifest_digest), im.manifest);
  auto img = store_->GetImage(im.config_digest);
  ASSERT_TRUE(img.ok() && *img);
  EXPECT_EQ(IngestFiles(), 0u);
}

TEST_F(StageTest, ADroppedStageLeavesNoPrewrittenFile) {
  Image im = MakeImage("two");
  {
    ImageStage stage(*store_, nullptr, true);
    stage.Prewrite(im.config, im.config_digest);
    stage.Prewrite(im.manifest, im.manifest_digest);
    ASSERT_TRUE(Stage(stage, im, {"docker.io/library/two:1"}).ok());
  }  // a pull that failed after its config: no Commit
  EXPECT_EQ(IngestFiles(), 0u);
  EXPECT_FALSE(store_->blobs().Has(im.config_digest));
  EXPECT_FALSE(store_->blobs().Has(im.manifest_digest));
  auto img = store_->GetImage(im.config_digest);
  ASSERT_TRUE(img.ok());
  EXPECT_FALSE(*img);
}

TEST_F(StageTest, APrewriteOfOtherBytesFailsTheCommitAndNamesNothing) {
  Image im = MakeImage("three");
  ImageStage stage(*store_, nullptr, true);
  stage.Prewrite(std::string(im.config.size(), 'x'), im.config_digest);  // same size
  ASSERT_TRUE(Stage(stage, im, {"docker.io/library/three:1"}).ok());
  auto out = stage.Commit();
  ASSERT_FALSE(out.ok());
  EXPECT_NE(out.status().message().find("digest mismatch"), std::string::npos)
      << out.status().message();
  EXPECT_NE(out.status().message().find(im.config_digest.str()), std::string::npos);
  EXPECT_FALSE(store_->blobs().Has(im.config_digest));
  EXPECT_EQ(IngestFiles(), 0u);
  auto ref = store_->GetRef("docker.io/library/three:1");
  ASSERT_TRUE(ref.ok());
  EXPECT_FALSE(*ref);
}

// A config stored meanwhile (another process) is used; the prewritten file goes.
TEST_F(StageTest, ABlobStoredMeanwhileIsKeptAndThePrewriteDropped) {
  Image im = MakeImage("five");
  ImageStage stage(*store_, nullptr, true);
  stage.Prewrite(im.config, im.config_digest);
  ASSERT_TRUE(Stage(stage, im, {"docker.io/library/five:1"}).ok());
  ASSERT_TRUE(store_->blobs().Put(im.config, im.config_digest).ok());
  struct stat before, after;
  ASSERT_EQ(::stat(store_->blobs().BlobPath(im.config_digest).c_str(), &before), 0);
  ASSERT_TRUE(stage.Commit().ok());
  ASSERT_EQ(::stat(store_->blobs().BlobPath(im.config_digest).c_str(), &after), 0);
  EXPECT_EQ(before.st_ino, after.st_ino);
  EXPECT_EQ(IngestFiles(), 0u);
}

// A layer blob a crash left short in blobs/ is written again, not trusted.
TEST_F(StageTest, AShortLayerBlobInTheStoreIsWrittenAgain) {
  Image im = MakeImage("six");
  Descriptor d;
  d.media_type = media::kOciLayerGzip;
  d.digest = Sha256Of(im.layer);
  d.size = im.layer.size();
  test::WriteFile(store_->blobs().BlobPath(d.digest), im.layer.substr(0, 10));
  ImageStage stage(*store_, nullptr, true);
  StringSource src(im.layer);
  ASSERT_TRUE(stage.AddLayer(&src, im.diff_id, &d, Compression::kGzip).ok());
  EXPECT_EQ(*store_->blobs().Read(d.digest), im.layer);
}

TEST_F(StageTest, ANameByDigestRecordsTheDigestItWasGiven) {
  Image im = MakeImage("four");
  std::string list = "sha256:" + std::string(64, 'c');  // a manifest list's digest
  std::string by_digest = "docker.io/library/four@" + list;
  {
    ImageStage stage(*store_, nullptr, true);
    ASSERT_TRUE(Stage(stage, im, {"docker.io/library/four:1", by_digest}, list).ok());
    ASSERT_TRUE(stage.Commit().ok());
  }
  auto ref = store_->GetRef(by_digest);
  ASSERT_TRUE(ref.ok() && *ref);
  EXPECT_EQ((*ref)->image_id, im.config_digest.hex());
  EXPECT_EQ((*ref)->manifest_digest, list);
  // The same image and names again, through another list: the name follows it.
  std::string list2 = "sha256:" + std::string(64, 'd');
  {
    ImageStage stage(*store_, nullptr, true);
    ASSERT_TRUE(Stage(stage, im, {"docker.io/library/four:1", by_digest}, list2).ok());
    ASSERT_TRUE(stage.Commit().ok());
  }
  ref = store_->GetRef(by_digest);
  ASSERT_TRUE(ref.ok() && *ref);
  EXPECT_EQ((*ref)->manifest_digest, list2);
  auto tag = store_->GetRef("docker.io/library/four:1");
  ASSERT_TRUE(tag.ok() && *tag);
  EXPECT_EQ((*tag)->manifest_digest, "");
  // Without a repo digest, the manifest's own.
  std::string own = "docker.io/library/four@" + im.manifest_digest.str();
  {
    ImageStage stage(*store_, nullptr, true);
    ASSERT_TRUE(Stage(stage, im, {own}).ok());
    ASSERT_TRUE(stage.Commit().ok());
  }
  auto ref2 = store_->GetRef(own);
  ASSERT_TRUE(ref2.ok() && *ref2);
  EXPECT_EQ((*ref2)->manifest_digest, im.manifest_digest.str());
}

}  // namespace
}  // namespace imgfs
