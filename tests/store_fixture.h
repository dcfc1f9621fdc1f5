// StoreFixture: a GoogleTest fixture with a fresh store in a temporary directory, for
// tests that import images and read them back. dir_ is the temporary directory (removed
// after the test), root_ = dir_ + "/store" the store's root, store_ the open store.
// A fixture deriving from it calls StoreFixture::SetUp() first and returns when that
// failed (HasFatalFailure()), and drops whatever still holds the store (views, a
// MountFs) before it calls StoreFixture::TearDown().
#ifndef IMGFS_TESTS_STORE_FIXTURE_H_
#define IMGFS_TESTS_STORE_FIXTURE_H_

#include <gtest/gtest.h>

#include <memory>
#include <string>

#include "index/store.h"
#include "registry/image_loader.h"
#include "registry/reference.h"
#include "tests/tar_builder.h"

namespace imgfs::test {

class StoreFixture : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = MakeTempDir();
    root_ = dir_ + "/store";
    auto s = Store::Open(root_);
    ASSERT_TRUE(s.ok()) << s.status().message();
    store_ = std::move(*s);
  }
  void TearDown() override {
    store_.reset();
    RemoveTree(dir_);
  }
  // Writes `tar` (plain, gzip or zstd) to a new file in dir_ and imports it into the
  // store as a one-layer image named `ref` ("alpha:1").
  Result<LoadedImage> ImportTar(const std::string& tar, const std::string& ref) {
    auto parsed = ParseDockerRef(ref);
    if (!parsed.ok()) return parsed.status();
    std::string path = dir_ + "/import-" + std::to_string(imports_++) + ".tar";
    WriteFile(path, tar);
    return ImportRootfs(*store_, path, *parsed, LoadOptions{});
  }

  std::string dir_, root_;
  std::unique_ptr<Store> store_;

 private:
  int imports_ = 0;
};

}  // namespace imgfs::test

#endif  // IMGFS_TESTS_STORE_FIXTURE_H_
