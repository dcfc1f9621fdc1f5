// The blob store: validated digests, verify-before-publish, idempotent and
// concurrent ingestion, nothing visible on failure.
#include "index/blob_store.h"

#include <dirent.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <thread>

#include "tests/tar_builder.h"

namespace imgfs {
namespace {

class BlobStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = test::MakeTempDir();
    store_ = std::make_unique<BlobStore>(dir_);
    ASSERT_TRUE(store_->Init().ok());
  }
  void TearDown() override { test::RemoveTree(dir_); }
  size_t IngestFiles() {
    size_t n = 0;
    DIR* d = opendir((dir_ + "/ingest").c_str());
    while (dirent* e = readdir(d)) n += e->d_name[0] != '.';
    closedir(d);
    return n;
  }
  std::string dir_;
  std::unique_ptr<BlobStore> store_;
};

TEST(Digest, ValidatesBeforeBecomingAPath) {
  EXPECT_TRUE(Digest::Parse("sha256:" + std::string(64, 'a')).ok());
  EXPECT_FALSE(Digest::Parse("sha256:../../etc/passwd").ok());
  EXPECT_FALSE(Digest::Parse("sha256:" + std::string(64, 'A')).ok());
  EXPECT_FALSE(Digest::Parse("sha256:" + std::string(63, 'a')).ok());
  EXPECT_FALSE(Digest::Parse(std::string(64, 'a')).ok());
  EXPECT_EQ(Digest::Parse("sha512:" + std::string(128, 'a')).status().code(),
            Status::Code::kUnsupported);
  EXPECT_EQ(Sha256Of("").hex(), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
}

TEST_F(BlobStoreTest, PutVerifiesAndPublishes) {
  auto d = store_->Put("hello", Sha256Of("hello"));
  ASSERT_TRUE(d.ok());
  EXPECT_TRUE(store_->Has(*d));
  EXPECT_EQ(*store_->Read(*d), "hello");
  EXPECT_EQ(*store_->Size(*d), 5u);
  // Present already: success again.
  EXPECT_TRUE(store_->Put("hello", Sha256Of("hello")).ok());
  EXPECT_EQ(IngestFiles(), 0u);
}

TEST_F(BlobStoreTest, MismatchPublishesNothing) {
  auto bad = store_->Put("hello", Sha256Of("other"));
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().code(), Status::Code::kCorruption);
  EXPECT_NE(bad.status().message().find("digest mismatch"), std::string::npos);
  EXPECT_FALSE(store_->Has(Sha256Of("hello")));
  EXPECT_FALSE(store_->Has(Sha256Of("other")));
  EXPECT_EQ(IngestFiles(), 0u);
  auto w = store_->NewWriter();
  ASSERT_TRUE(w.ok());
  ASSERT_TRUE((*w)->Write("abc", 3).ok());
  auto r = (*w)->Commit(Sha256Of("abc"), 4);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("size mismatch"), std::string::npos);
  w->reset();
  EXPECT_EQ(IngestFiles(), 0u);
  EXPECT_FALSE(store_->Has(Sha256Of("abc")));
}

// A stored blob of the right size is kept (and synced), one a crash left short is
// written again.
TEST_F(BlobStoreTest, PutKeepsAWholeBlobAndRewritesAShortOne) {
  Digest d = Sha256Of("hello");
  ASSERT_TRUE(store_->Put("hello", d).ok());
  struct stat before, after;
  ASSERT_EQ(::stat(store_->BlobPath(d).c_str(), &before), 0);
  ASSERT_TRUE(store_->Put("hello", d).ok());
  ASSERT_EQ(::stat(store_->BlobPath(d).c_str(), &after), 0);
  EXPECT_EQ(before.st_ino, after.st_ino);
  ASSERT_EQ(::chmod(store_->BlobPath(d).c_str(), 0600), 0);
  ASSERT_EQ(::truncate(store_->BlobPath(d).c_str(), 0), 0);  // what a lost writeback leaves
  ASSERT_TRUE(store_->Put("hello", d).ok());
  EXPECT_EQ(*store_->Read(d), "hello");
  // Other bytes of the same size in place of it (damage): written again, too.
  ASSERT_EQ(::chmod(store_->BlobPath(d).c_str(), 0600), 0);
  test::WriteFile(store_->BlobPath(d), "jello");
  ASSERT_TRUE(store_->Put("hello", d).ok());
  EXPECT_EQ(*store_->Read(d), "hello");
  // Other bytes under its digest: refused, the blob kept.
  auto bad = store_->Put("goodbye", d);
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().code(), Status::Code::kCorruption);
  EXPECT_EQ(*store_->Read(d), "hello");
  EXPECT_TRUE(store_->SyncBlob(d).ok());
  EXPECT_FALSE(store_->SyncBlob(Sha256Of("absent")).ok());
  EXPECT_EQ(IngestFiles(), 0u);
}

// Read-only, and the owner's alone (issue 13.2: blobs are every image's files).
TEST_F(BlobStoreTest, BlobsAreReadOnly) {
  auto d = store_->Put("ro", std::nullopt);
  ASSERT_TRUE(d.ok());
  struct stat st;
  ASSERT_EQ(stat(store_->BlobPath(*d).c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0400u);
  ASSERT_EQ(stat((dir_ + "/blobs/sha256").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0700u);
  ASSERT_EQ(stat((dir_ + "/ingest").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0700u);
}

TEST_F(BlobStoreTest, ConcurrentIngestOfTheSameBlobInThreadsAndProcesses) {
  std::string data(3 << 20, 'x');
  for (size_t i = 0; i < data.size(); i += 4096) data[i] = static_cast<char>(i / 4096);
  Digest want = Sha256Of(data);
  pid_t kids[3];
  for (pid_t& k : kids) {
    k = fork();
    if (k == 0) {
      BlobStore other(dir_);
      auto r = other.Put(data, want);
      _exit(r.ok() ? 0 : 1);
    }
  }
  std::vector<std::thread> threads;
  std::atomic<int> ok{0};
  for (int i = 0; i < 4; i++) {
    threads.emplace_back([&] {
      if (store_->Put(data, want).ok()) ok++;
    });
  }
  for (auto& t : threads) t.join();
  for (pid_t k : kids) {
    int status = 0;
    waitpid(k, &status, 0);
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  }
  EXPECT_EQ(ok.load(), 4);
  EXPECT_EQ(*store_->Read(want, 8 << 20), data);
  EXPECT_EQ(IngestFiles(), 0u);
  auto all = store_->List();
  ASSERT_TRUE(all.ok());
  EXPECT_EQ(all->size(), 1u);
}

TEST_F(BlobStoreTest, DeleteAndMissing) {
  auto d = store_->Put("gone", std::nullopt);
  ASSERT_TRUE(store_->Delete(*d).ok());
  EXPECT_FALSE(store_->Has(*d));
  EXPECT_TRUE(store_->Read(*d).status().IsNotFound());
  EXPECT_TRUE(store_->Delete(*d).ok());
}

// A resumable ingest (issue 14): kept when not committed, its bytes hashed but not
// written again when the stream is fed from the start, removed by Discard.
TEST_F(BlobStoreTest, PartialFileResumes) {
  const std::string all = "hello, resumable world";
  Digest d = Sha256Of(all);
  {
    auto w = store_->OpenPartial(d, all.size());
    ASSERT_TRUE(w.ok());
    EXPECT_EQ((*w)->resumed(), 0u);
  }  // nothing written: nothing kept
  EXPECT_EQ(IngestFiles(), 0u);
  {
    auto w = store_->OpenPartial(d, all.size());
    ASSERT_TRUE(w.ok());
    ASSERT_TRUE((*w)->Write(all.data(), 7).ok());
  }  // not committed: kept
  EXPECT_EQ(IngestFiles(), 1u);
  auto w = store_->OpenPartial(d, all.size());
  ASSERT_TRUE(w.ok());
  EXPECT_EQ((*w)->resumed(), 7u);
  ASSERT_TRUE((*w)->Write(all.data(), 3).ok());  // the held bytes, fed again
  ASSERT_TRUE((*w)->Write(all.data() + 3, all.size() - 3).ok());
  auto got = (*w)->Commit(d, all.size());
  ASSERT_TRUE(got.ok()) << got.status().message();
  EXPECT_EQ(*store_->Read(d), all);
  EXPECT_EQ(IngestFiles(), 0u);
}

TEST_F(BlobStoreTest, PartialFileDiscardedAndOverlongRestarts) {
  Digest d = Sha256Of("abc");
  {
    auto w = store_->OpenPartial(d, 3);
    ASSERT_TRUE((*w)->Write("abcdef", 6).ok());  // longer than the blob can be
  }
  auto w = store_->OpenPartial(d, 3);
  ASSERT_TRUE(w.ok());
  EXPECT_EQ((*w)->resumed(), 0u);
  (*w)->Discard();
  EXPECT_EQ(IngestFiles(), 0u);
}

// SkipHashing: the caller's digest names the blob (it hashed the same bytes itself).
TEST_F(BlobStoreTest, SkipHashingNeedsTheCallersDigest) {
  auto w = store_->NewWriter();
  ASSERT_TRUE(w.ok());
  (*w)->SkipHashing();
  ASSERT_TRUE((*w)->Write("xyz", 3).ok());
  EXPECT_FALSE((*w)->Commit(std::nullopt).ok());
  auto got = (*w)->Commit(Sha256Of("xyz"), 3);
  ASSERT_TRUE(got.ok());
  EXPECT_EQ(*store_->Read(Sha256Of("xyz")), "xyz");
}

}  // namespace
}  // namespace imgfs
