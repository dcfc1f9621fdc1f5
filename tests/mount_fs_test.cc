// The mounted filesystem's operations, called directly (no kernel, no mount): the
// namespace, instances, bounds checks, reads, xattrs, live names, eviction.
#include "fs/mount_fs.h"

#include <fcntl.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <map>
#include <set>
#include <thread>

#include "registry/image_loader.h"
#include "tests/store_fixture.h"
#include "tests/tar_builder.h"
#include "tests/wait_for.h"

namespace imgfs {
namespace {

using test::TarBuilder;

int FdsOn(const std::string& path);  // below

class MountFsTest : public test::StoreFixture {
 protected:
  void SetUp() override {
    StoreFixture::SetUp();
    if (HasFatalFailure()) return;
    TarBuilder a;
    a.Dir("etc").File("etc/hostname", "alpha\n").Symlink("link", "/etc/hostname");
    a.File("cap", "x").last().xattrs = {{"security.capability", std::string("\x01\x00\x00\x02", 4)},
                                        {"user.k", "v"}};
    a.File("big", std::string(200000, 'b')).Hardlink("big2", "big");
    a.File("labeled", "y").last().xattrs = {{"security.selinux", "system_u:object_r:bin_t:s0"}};
    image_a_ = Import(a, "alpha:1", "gzip");
    TarBuilder b;
    b.File("etc/hostname", "beta\n");
    image_b_ = Import(b, "beta:1", "zstd");
  }
  void TearDown() override {
    fs_.reset();
    StoreFixture::TearDown();
  }
  Digest Import(const TarBuilder& b, const std::string& name, const std::string& compression) {
    auto r = ImportTar(b.Build(compression), name);
    EXPECT_TRUE(r.ok()) << r.status().message();
    return r->id;
  }
  // whole_layers: the whole-layer unpack path (UnpackCache) instead of seek indexes.
  MountFs& Fs(uint64_t cache_size = 0, bool whole_layers = false,
              uint64_t tree_cache = uint64_t{64} << 20) {
    if (!fs_) {
      MountFs::Options o;
      o.root = root_;
      o.cache_size = cache_size;
      o.tree_cache = tree_cache;
      o.whole_layers = whole_layers;
      auto f = MountFs::Create(o);
      EXPECT_TRUE(f.ok()) << f.status().message();
      fs_ = std::move(*f);
    }
    return *fs_;
  }
  uint64_t Walk(const std::string& path) {
    uint64_t ino = MountFs::kRootIno;
    size_t i = 0;
    while (i < path.size()) {
      size_t j = path.find('/', i);
      if (j == std::string::npos) j = path.size();
      auto e = Fs().Lookup(ino, path.substr(i, j - i));
      if (!e.ok() || e->ino == 0) return 0;
      ino = e->ino;
      i = j + 1;
    }
    return ino;
  }
  std::vector<std::string> List(uint64_t ino, uint64_t offset = 0, bool plus = false) {
    auto o = Fs().OpenDir(ino);
    EXPECT_TRUE(o.ok());
    std::vector<std::string> names;
    Status st = Fs().ReadDir(ino, o->fh, offset, plus, [&](const MountFs::DirEntry& d, uint64_t) {
      names.push_back(d.name);
      return true;
    });
    EXPECT_TRUE(st.ok()) << st.message();
    Fs().ReleaseDir(o->fh);
    return names;
  }
  // The bytes of a read's reply: inline, or read from the fd it names.
  static std::string Bytes(const MountFs::ReadData& r) {
    std::string chunk = r.bytes;
    if (r.fd) {
      chunk.resize(r.size);
      EXPECT_TRUE(PreadAll(r.fd->get(), chunk.data(), r.size, r.pos).ok());
    }
    return chunk;
  }
  std::string ReadAll(uint64_t ino) {
    auto o = Fs().Open(ino, O_RDONLY);
    EXPECT_TRUE(o.ok()) << o.status().message();
    std::string out;
    for (;;) {
      auto r = Fs().Read(ino, o->fh, 65536, out.size());
      EXPECT_TRUE(r.ok());
      if (!r.ok()) break;
      std::string chunk = Bytes(*r);
      if (chunk.empty()) break;
      out += chunk;
    }
    Fs().Release(o->fh);
    return out;
  }
  // The blob files of `image`'s layers, and the fds this process holds on them.
  std::vector<std::string> BlobPaths(const Digest& image) {
    std::vector<std::string> paths;
    auto view = ImageView::Open(*store_, image);
    EXPECT_TRUE(view.ok());
    if (view.ok())
      for (const LayerRecord& l : (*view)->layers())
        paths.push_back(store_->blobs().BlobPath(l.blob));
    return paths;
  }
  static int FdsOnAll(const std::vector<std::string>& paths) {
    int n = 0;
    for (const std::string& p : paths) n += FdsOn(p);
    return n;
  }
  std::unique_ptr<MountFs> fs_;
  Digest image_a_, image_b_;
};

TEST_F(MountFsTest, RootListsNamesIdAndRepositoriesJson) {
  auto names = List(MountFs::kRootIno);
  EXPECT_EQ(names, (std::vector<std::string>{".", "..", ".id", ".layers", ".repositories.json",
                                             "alpha", "beta"}));
  EXPECT_EQ(List(Walk("alpha")), (std::vector<std::string>{".", "..", "1"}));
}

TEST_F(MountFsTest, LayersShowEachLayersChangeset) {
  auto img = store_->GetImage(image_b_);
  ASSERT_TRUE(img.ok() && *img);
  std::string hex = (*img)->diff_ids.at(0).hex();
  auto listed = List(Walk(".layers"));
  EXPECT_NE(std::find(listed.begin(), listed.end(), hex), listed.end());
  EXPECT_EQ(ReadAll(Walk(".layers/" + hex + "/etc/hostname")), "beta\n");
  // A layer with a whiteout and an opaque marker, as an upper directory shows it.
  TarBuilder top;
  top.Dir("etc").File("etc/new", "n").Whiteout("etc", "hostname").Opaque("etc");
  Digest t = Import(top, "top:1", "none");
  auto timg = store_->GetImage(t);
  ASSERT_TRUE(timg.ok() && *timg);
  std::string thex = (*timg)->diff_ids.at(0).hex();
  auto wh = Fs().GetAttr(Walk(".layers/" + thex + "/etc/hostname"));
  ASSERT_TRUE(wh.ok());
  EXPECT_TRUE(S_ISCHR(wh->attr.st_mode));
  EXPECT_EQ(wh->attr.st_rdev, 0u);
  auto opq = Fs().GetXattr(Walk(".layers/" + thex + "/etc"), "trusted.overlay.opaque");
  ASSERT_TRUE(opq.ok());
  EXPECT_EQ(*opq, "y");
  EXPECT_EQ(List(Walk(".layers/" + thex + "/etc")),
            (std::vector<std::string>{".", "..", "hostname", "new"}));
  EXPECT_EQ(Walk(".layers/" + std::string(64, '0')), 0u);
  EXPECT_EQ(Walk(".layers/" + thex.substr(0, 12)), 0u);  // no prefixes
}

TEST_F(MountFsTest, TagIsAnImageInstanceWithTheTreesAttributes) {
  uint64_t root = Walk("alpha/1");
  ASSERT_NE(root, 0u);
  EXPECT_GE(root >> 32, 1u);
  EXPECT_EQ(root & 0xffffffff, 1u);
  auto a = Fs().GetAttr(root);
  ASSERT_TRUE(a.ok());
  EXPECT_TRUE(S_ISDIR(a->attr.st_mode));
  EXPECT_EQ(a->attr.st_ino, root);
  EXPECT_EQ(ReadAll(Walk("alpha/1/etc/hostname")), "alpha\n");
  EXPECT_EQ(ReadAll(Walk("beta/1/etc/hostname")), "beta\n");
  EXPECT_EQ(*Fs().ReadLink(Walk("alpha/1/link")), "/etc/hostname");
  EXPECT_EQ(ReadAll(Walk("alpha/1/big")), std::string(200000, 'b'));
}

TEST_F(MountFsTest, TimeoutsLongForContentShortForNames) {
  auto tag = Fs().Lookup(Walk("alpha"), "1");
  ASSERT_TRUE(tag.ok());
  EXPECT_LE(tag->entry_timeout, 1.0);  // the name can move
  EXPECT_GT(tag->attr_timeout, 1e6);   // the tree cannot
  auto file = Fs().Lookup(Walk("alpha/1/etc"), "hostname");
  EXPECT_GT(file->entry_timeout, 1e6);
  auto miss = Fs().Lookup(Walk("alpha/1/etc"), "nothing");
  ASSERT_TRUE(miss.ok());
  EXPECT_EQ(miss->ino, 0u);  // a cached negative entry
  EXPECT_GT(miss->entry_timeout, 1e6);
  EXPECT_TRUE(
      Fs().Lookup(MountFs::kRootIno, "nothing").status().IsNotFound());  // names: not cached
}

TEST_F(MountFsTest, HardLinksShareAnInodeWithinOneInstance) {
  auto a = Fs().GetAttr(Walk("alpha/1/big"));
  auto b = Fs().GetAttr(Walk("alpha/1/big2"));
  EXPECT_EQ(a->attr.st_ino, b->attr.st_ino);
  EXPECT_EQ(a->attr.st_nlink, 2u);
}

TEST_F(MountFsTest, EachNameIsItsOwnInstance) {
  ASSERT_TRUE(store_->SetRef("docker.io/library/gamma:2", RefRecord{image_a_.hex(), ""}).ok());
  uint64_t one = Walk("alpha/1"), two = Walk("gamma/2");
  ASSERT_NE(one, 0u);
  ASSERT_NE(two, 0u);
  EXPECT_NE(one >> 32, two >> 32);
  EXPECT_EQ(ReadAll(Walk("gamma/2/etc/hostname")), "alpha\n");
}

TEST_F(MountFsTest, TagShadowsASubRepository) {
  ASSERT_TRUE(store_->SetRef("docker.io/library/a:b", RefRecord{image_a_.hex(), ""}).ok());
  ASSERT_TRUE(store_->SetRef("docker.io/a/b:c", RefRecord{image_b_.hex(), ""}).ok());
  uint64_t ab = Walk("a/b");
  ASSERT_NE(ab, 0u);
  EXPECT_GE(ab >> 32, 1u);  // an image root, not the repository "a/b"
  EXPECT_EQ(ReadAll(Walk("a/b/etc/hostname")), "alpha\n");
  EXPECT_EQ(Walk("a/b/c"), 0u);
}

TEST_F(MountFsTest, IdDirectoryAndPrefixes) {
  auto ids = List(Walk(".id"));
  EXPECT_EQ(ids.size(), 4u);
  EXPECT_NE(std::find(ids.begin(), ids.end(), image_a_.hex()), ids.end());
  EXPECT_EQ(ReadAll(Walk(".id/" + image_a_.hex() + "/etc/hostname")), "alpha\n");
  EXPECT_EQ(ReadAll(Walk(".id/" + image_a_.hex().substr(0, 12) + "/etc/hostname")), "alpha\n");
  EXPECT_EQ(Walk(".id/" + image_a_.hex().substr(0, 11)), 0u);
  EXPECT_EQ(Walk(".id/" + std::string(64, '0')), 0u);
}

TEST_F(MountFsTest, RepositoriesJson) {
  std::string json = ReadAll(Walk(".repositories.json"));
  EXPECT_NE(json.find("\"alpha\":{\"alpha:1\":\"" + image_a_.str() + "\"}"), std::string::npos)
      << json;
  EXPECT_EQ(static_cast<size_t>(Fs().GetAttr(Walk(".repositories.json"))->attr.st_size),
            json.size());
}

TEST_F(MountFsTest, InodesAreBoundsChecked) {
  uint64_t root = Walk("alpha/1");
  EXPECT_FALSE(Fs().GetAttr((uint64_t{999} << 32) | 1).ok());
  EXPECT_FALSE(Fs().GetAttr((root & ~0xffffffffull) | 999999).ok());
  EXPECT_FALSE(Fs().GetAttr((root & ~0xffffffffull) | 0).ok());
  EXPECT_FALSE(Fs().GetAttr(999999).ok());  // an unknown name node
  EXPECT_FALSE(Fs().Lookup((uint64_t{777} << 32) | 1, "x").ok());
  EXPECT_FALSE(Fs().Open(root, O_RDONLY).ok());  // a directory
  EXPECT_EQ(Fs().Open(Walk("alpha/1/etc/hostname"), O_WRONLY).status().ToErrno(), EROFS);
}

TEST_F(MountFsTest, Xattrs) {
  uint64_t cap = Walk("alpha/1/cap");
  auto v = Fs().GetXattr(cap, "security.capability");
  ASSERT_TRUE(v.ok());
  EXPECT_EQ(*v, std::string("\x01\x00\x00\x02", 4));
  EXPECT_TRUE(Fs().GetXattr(cap, "user.none").status().IsNotFound());
  EXPECT_EQ(*Fs().ListXattr(cap), std::string("security.capability\0user.k\0", 27));
  // No SELinux label: ENOTSUP, in image content, at an image root and on a name
  // directory, so that `ls -l` asks once per mount instead of once per file.
  for (uint64_t ino : {cap, Walk("alpha/1"), Walk("alpha"), uint64_t{1}})
    EXPECT_EQ(Fs().GetXattr(ino, "security.selinux").status().ToErrno(), ENOTSUP) << ino;
  EXPECT_EQ(Fs().GetXattr(cap, "security.selinuxx").status().ToErrno(), ENOENT);
  EXPECT_EQ(*Fs().GetXattr(Walk("alpha/1/labeled"), "security.selinux"),
            "system_u:object_r:bin_t:s0");
  // ACLs enforced (the default): an absent ACL is "no such attribute", which the kernel
  // caches.
  for (const char* acl : {"system.posix_acl_access", "system.posix_acl_default"})
    EXPECT_EQ(Fs().GetXattr(cap, acl).status().ToErrno(), ENOENT) << acl;
}

// -o acl=off: an absent ACL is ENOTSUP everywhere (ls stops asking); one present is
// served as it is.
TEST_F(MountFsTest, WithoutAclEnforcementAnAbsentAclIsNotSupported) {
  TarBuilder b;
  b.File("f", "x").last().xattrs = {{"system.posix_acl_access", std::string("\x02\0\0\0", 4)}};
  Import(b, "withacl:1", "gzip");
  MountFs::Options o;
  o.root = root_;
  o.acl = false;
  auto f = MountFs::Create(o);
  ASSERT_TRUE(f.ok()) << f.status().message();
  fs_ = std::move(*f);
  for (uint64_t ino : {Walk("alpha/1/cap"), Walk("alpha/1"), Walk("alpha"), uint64_t{1}}) {
    for (const char* acl : {"system.posix_acl_access", "system.posix_acl_default"})
      EXPECT_EQ(Fs().GetXattr(ino, acl).status().ToErrno(), ENOTSUP) << ino << " " << acl;
  }
  EXPECT_EQ(*Fs().GetXattr(Walk("withacl/1/f"), "system.posix_acl_access"),
            std::string("\x02\0\0\0", 4));
  EXPECT_EQ(Fs().GetXattr(Walk("alpha/1/cap"), "user.none").status().ToErrno(), ENOENT);
}

TEST_F(MountFsTest, ReadDirResumesAtAnyOffset) {
  uint64_t root = Walk("alpha/1");
  auto all = List(root);
  for (uint64_t off = 0; off <= all.size(); off++) {
    auto rest = List(root, off);
    EXPECT_EQ(rest, std::vector<std::string>(all.begin() + off, all.end())) << off;
  }
  EXPECT_EQ(List(root, 0, true), all);
}

// Name directories, .id/, .layers/ and the root resume at any offset too, and one call makes
// entries only for what it hands out: a listing of N names in calls of k entries must
// not cost N per call (10,000 tags took ~400 calls, each making all 10,000 entries).
TEST_F(MountFsTest, NameDirectoriesResumeAtAnyOffsetAndMakeOnlyWhatTheyHandOut) {
  constexpr int kTags = 300;
  for (int i = 0; i < kTags; i++) {
    ASSERT_TRUE(
        store_
            ->SetRef("docker.io/library/many:t" + std::to_string(i), RefRecord{image_a_.hex(), ""})
            .ok());
  }
  uint64_t many = Walk("many");
  ASSERT_NE(many, 0u);
  const std::vector<std::string> names = List(many);
  ASSERT_EQ(names.size(), kTags + 2u);
  for (uint64_t dir : {many, MountFs::kRootIno, Walk(".id"), Walk(".layers")}) {
    auto all = List(dir);
    for (uint64_t off = 0; off <= all.size(); off += (dir == many ? 7 : 1)) {
      EXPECT_EQ(List(dir, off, true), std::vector<std::string>(all.begin() + off, all.end()))
          << "dir " << dir << " offset " << off;
    }
  }
  // A fresh mount: a reply with room for 25 entries makes about 25 instances.
  fs_.reset();
  many = Walk("many");
  size_t before = Fs().InstanceCount();
  auto o = Fs().OpenDir(many);
  ASSERT_TRUE(o.ok());
  int handed = 0;
  uint64_t next = 0;
  ASSERT_TRUE(Fs().ReadDir(many, o->fh, 0, true,
                           [&](const MountFs::DirEntry&, uint64_t off) {
                             if (handed == 25) return false;
                             handed++;
                             next = off;
                             return true;
                           })
                  .ok());
  EXPECT_LE(Fs().InstanceCount() - before, 26u);
  // The next call goes on where the last left off.
  std::vector<std::string> rest;
  ASSERT_TRUE(Fs().ReadDir(many, o->fh, next, true,
                           [&](const MountFs::DirEntry& d, uint64_t) {
                             rest.push_back(d.name);
                             return rest.size() < 3;
                           })
                  .ok());
  Fs().ReleaseDir(o->fh);
  ASSERT_EQ(next, 25u);
  EXPECT_EQ(rest, std::vector<std::string>(names.begin() + 25, names.begin() + 28));
  EXPECT_LE(Fs().InstanceCount() - before, 30u);
}

TEST_F(MountFsTest, NamesChangeLive) {
  uint64_t before = Walk("alpha/1");
  ASSERT_TRUE(store_->SetRef("docker.io/library/alpha:1", RefRecord{image_b_.hex(), ""}).ok());
  ASSERT_TRUE(store_->SetRef("docker.io/library/delta:new", RefRecord{image_b_.hex(), ""}).ok());
  uint64_t after = Walk("alpha/1");
  EXPECT_NE(before, after);  // a new instance: the kernel sees a new inode
  EXPECT_EQ(ReadAll(Walk("alpha/1/etc/hostname")), "beta\n");
  EXPECT_NE(Walk("delta/new"), 0u);
  EXPECT_TRUE(Fs().GetAttr(before).ok());  // the old instance still answers
  ASSERT_TRUE(store_->DeleteRef("docker.io/library/delta:new").ok());
  EXPECT_EQ(Walk("delta/new"), 0u);
}

TEST_F(MountFsTest, OpenFileKeepsReadingAfterItsImageIsRemoved) {
  uint64_t f = Walk("alpha/1/big");
  auto o = Fs().Open(f, O_RDONLY);
  ASSERT_TRUE(o.ok());
  auto freed = store_->DeleteImage(image_a_);
  ASSERT_TRUE(freed.ok());
  for (const Digest& d : *freed) ASSERT_TRUE(store_->blobs().Delete(d).ok());
  ::unlink(store_->UnpackedPath((**store_->GetImage(image_b_)).diff_ids[0]).c_str());
  auto r = Fs().Read(f, o->fh, 100, 1000);
  ASSERT_TRUE(r.ok()) << r.status().message();
  EXPECT_EQ(Bytes(*r), std::string(100, 'b'));
  Fs().Release(o->fh);
  EXPECT_EQ(Walk("alpha/1"), 0u);
}

using test::WaitFor;

// Descriptors of this process open on `path` (deleted or not).
int FdsOn(const std::string& path) {
  int n = 0;
  for (int fd = 0; fd < 4096; fd++) {
    char target[4096];
    std::string link = "/proc/self/fd/" + std::to_string(fd);
    ssize_t len = ::readlink(link.c_str(), target, sizeof target - 1);
    if (len > 0 && std::string(target, len).rfind(path, 0) == 0) n++;
  }
  return n;
}

TEST_F(MountFsTest, PinsOfRemovedLayersAreDroppedOnceTheirLastFileCloses) {
  Fs().set_opens_tracked(true);  // as with -o open=daemon
  uint64_t f = Walk("alpha/1/big");
  auto o = Fs().Open(f, O_RDONLY);
  ASSERT_TRUE(o.ok());
  std::vector<std::string> paths = BlobPaths(image_a_);
  int held = FdsOnAll(paths);
  EXPECT_GE(held, 1);  // pinned
  auto freed = store_->DeleteImage(image_a_);
  ASSERT_TRUE(freed.ok());
  for (const Digest& d : *freed) ASSERT_TRUE(store_->blobs().Delete(d).ok());
  EXPECT_EQ(Walk("alpha/1"), 0u);  // the generation moved: removed pins are released
  {
    auto r = Fs().Read(f, o->fh, 100, 1000);  // its fd (if any) is dropped at the brace
    ASSERT_TRUE(r.ok()) << r.status().message();
    EXPECT_EQ(Bytes(*r), std::string(100, 'b'));
  }
  Fs().Release(o->fh);
  held = FdsOnAll(paths);
  EXPECT_EQ(held, 0);  // nothing holds the deleted blobs any more
  EXPECT_EQ(ReadAll(Walk("beta/1/etc/hostname")), "beta\n");  // other images unaffected
}

TEST_F(MountFsTest, WithoutOpensPinsOfRemovedLayersWaitUntilTheKernelForgetsTheInstance) {
  // open=kernel (no opens seen): the kernel's references, counted as the adapter does
  // (one per lookup reply), are what keeps a removed layer pinned.
  uint64_t root = Walk("alpha/1"), big = Walk("alpha/1/big");
  ASSERT_NE(big, 0u);
  Fs().KernelRef(root);
  Fs().KernelRef(big);
  Fs().KernelRef(big);                        // looked up twice
  EXPECT_EQ(Fs().KernelRefs(root), 3);        // one count per instance
  auto first = Fs().Read(big, 0, 100, 1000);  // no open: resolved from the inode; pins
  ASSERT_TRUE(first.ok());
  std::vector<std::string> paths;
  auto view = ImageView::Open(*store_, image_a_);
  ASSERT_TRUE(view.ok());
  for (const LayerRecord& l : (*view)->layers()) paths.push_back(store_->blobs().BlobPath(l.blob));
  view = Status::NotFound("released");
  first = Status::NotFound("dropped");
  auto held = [&] {
    int n = 0;
    for (const std::string& p : paths) n += FdsOn(p);
    return n;
  };
  EXPECT_GE(held(), 1);
  auto freed = store_->DeleteImage(image_a_);
  ASSERT_TRUE(freed.ok());
  for (const Digest& d : *freed) ASSERT_TRUE(store_->blobs().Delete(d).ok());
  EXPECT_EQ(Walk("alpha/1"), 0u);             // the generation moved
  EXPECT_GE(held(), 1);                       // the kernel still holds alpha's inodes
  auto again = Fs().Read(big, 0, 100, 1000);  // and may read them
  ASSERT_TRUE(again.ok()) << again.status().message();
  EXPECT_EQ(Bytes(*again), std::string(100, 'b'));
  again = Status::NotFound("dropped");
  Fs().KernelForget(big, 2);
  EXPECT_GE(held(), 1);  // the root is still held
  Fs().KernelForget(root, 1);
  EXPECT_EQ(Fs().KernelRefs(root), 0);
  EXPECT_EQ(held(), 0);  // forgotten: the deleted blobs are let go
  EXPECT_EQ(ReadAll(Walk("beta/1/etc/hostname")), "beta\n");  // other images unaffected
}

// `imgfs rmi` commits the removal, then unlinks the freed blobs: the mount may see the
// generation move in between, when nothing is unlinked yet. The store's generation
// moves once more after the unlink (Store::NoteBlobsDeleted), and then the pins go.
TEST_F(MountFsTest, BlobsUnlinkedAfterTheMoveWasSeenAreLetGoAtTheNextMove) {
  uint64_t big = Walk("alpha/1/big");
  ASSERT_NE(big, 0u);
  ASSERT_TRUE(Fs().Read(big, 0, 10, 0).ok());  // builds the view, pins
  std::vector<std::string> paths = BlobPaths(image_a_);
  ASSERT_FALSE(paths.empty());
  auto held = [&] { return FdsOnAll(paths); };
  EXPECT_GE(held(), 1);
  auto freed = store_->DeleteImage(image_a_);
  ASSERT_TRUE(freed.ok());
  Fs().CheckGeneration();  // the move is seen before the blobs are unlinked
  for (const Digest& d : *freed) ASSERT_TRUE(store_->blobs().Delete(d).ok());
  Fs().CheckGeneration();
  EXPECT_GE(held(), 1);  // nothing has told the mount yet
  ASSERT_TRUE(store_->NoteBlobsDeleted().ok());
  Fs().CheckGeneration();
  EXPECT_EQ(held(), 0);  // the kernel holds nothing of alpha: let go at once
}

TEST_F(MountFsTest, KernelCountsRaceWithTheReleaseOfRemovedLayers) {
  // References taken and forgotten on three threads while the image is removed and the
  // generation moves (run under TSan in CI): one reference held throughout keeps the
  // layer; when it goes, the layer goes.
  uint64_t big = Walk("alpha/1/big");
  ASSERT_NE(big, 0u);
  ASSERT_TRUE(Fs().Read(big, 0, 10, 0).ok());  // builds the view, pins
  Fs().KernelRef(big);
  std::vector<std::string> paths;
  auto view = ImageView::Open(*store_, image_a_);
  ASSERT_TRUE(view.ok());
  for (const LayerRecord& l : (*view)->layers()) paths.push_back(store_->blobs().BlobPath(l.blob));
  view = Status::NotFound("released");
  auto held = [&] {
    int n = 0;
    for (const std::string& p : paths) n += FdsOn(p);
    return n;
  };
  std::atomic<bool> stop{false};
  std::atomic<int> bad{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 3; t++) {
    threads.emplace_back([&] {
      while (!stop.load()) {
        Fs().KernelRef(big);
        auto r = Fs().Read(big, 0, 10, 0);
        if (!r.ok()) bad++;
        Fs().KernelForget(big, 1);
      }
    });
  }
  auto freed = store_->DeleteImage(image_a_);
  ASSERT_TRUE(freed.ok());
  for (const Digest& d : *freed) ASSERT_TRUE(store_->blobs().Delete(d).ok());
  EXPECT_EQ(Walk("alpha/1"), 0u);  // the generation moved, under the threads
  ::usleep(50000);
  stop = true;
  for (auto& t : threads) t.join();
  EXPECT_EQ(bad.load(), 0);  // held: its layer stayed readable
  EXPECT_GE(held(), 1);
  Fs().KernelForget(big, 1);
  EXPECT_EQ(held(), 0);
}

TEST_F(MountFsTest, ForgetsBeyondTheKernelCountStopAtZero) {
  // A FORGET for more than was counted (or for an unknown inode) leaves no debt: a
  // reference handed out afterwards still holds a removed layer.
  uint64_t root = Walk("alpha/1"), big = Walk("alpha/1/big");
  ASSERT_NE(big, 0u);
  Fs().KernelRef(big);
  Fs().KernelForget(big, 5);  // nlookup larger than counted
  EXPECT_EQ(Fs().KernelRefs(root), 0);
  Fs().KernelForget(big, UINT64_MAX);  // as a signed count this is -1: would add one
  EXPECT_EQ(Fs().KernelRefs(root), 0);
  Fs().KernelForget((uint64_t{1} << 40) | 7, 3);  // an instance that does not exist
  Fs().KernelForget(MountFs::kRootIno, 3);        // the namespace is not counted
  Fs().KernelForget(big, 0);
  EXPECT_EQ(Fs().KernelRefs(root), 0);
  EXPECT_EQ(Fs().KernelRefs(MountFs::kRootIno), 0);
  Fs().KernelRef(big);  // the kernel looks it up again and holds it
  EXPECT_EQ(Fs().KernelRefs(root), 1);
  ASSERT_TRUE(Fs().Read(big, 0, 10, 0).ok());  // builds the view, pins
  std::vector<std::string> paths = BlobPaths(image_a_);
  ASSERT_FALSE(paths.empty());
  auto held = [&] { return FdsOnAll(paths); };
  auto freed = store_->DeleteImage(image_a_);
  ASSERT_TRUE(freed.ok());
  for (const Digest& d : *freed) ASSERT_TRUE(store_->blobs().Delete(d).ok());
  EXPECT_EQ(Walk("alpha/1"), 0u);  // the generation moved
  EXPECT_GE(held(), 1);            // still held by the kernel's one reference
  auto r = Fs().Read(big, 0, 100, 1000);
  ASSERT_TRUE(r.ok()) << r.status().message();
  EXPECT_EQ(Bytes(*r), std::string(100, 'b'));
  r = Status::NotFound("dropped");
  Fs().KernelForget(big, 1);
  EXPECT_EQ(held(), 0);
}

TEST_F(MountFsTest, UnpackCacheEvictsUnpinnedLayersOverTheLimit) {
  // A 1-byte limit: after each unpack, every other layer that no open file pins goes.
  Fs(1, true);
  uint64_t a_size = (**store_->GetLayer((**store_->GetImage(image_a_)).diff_ids[0])).size;
  uint64_t b_size = (**store_->GetLayer((**store_->GetImage(image_b_)).diff_ids[0])).size;
  UnpackCache& c = Fs().unpack_cache();
  EXPECT_EQ(ReadAll(Walk("alpha/1/etc/hostname")), "alpha\n");
  EXPECT_EQ(c.unpacked_bytes(), a_size);
  EXPECT_EQ(ReadAll(Walk("beta/1/etc/hostname")), "beta\n");
  EXPECT_EQ(c.unpacked_bytes(), b_size);              // alpha's copy evicted, the newest kept
  auto o = Fs().Open(Walk("alpha/1/big"), O_RDONLY);  // unpacks alpha again and pins it
  ASSERT_TRUE(o.ok());
  EXPECT_EQ(c.unpacked_bytes(), a_size);
  EXPECT_EQ(ReadAll(Walk("beta/1/etc/hostname")), "beta\n");
  EXPECT_EQ(c.unpacked_bytes(), a_size + b_size);  // alpha is pinned by the open file
  auto r = Fs().Read(Walk("alpha/1/big"), o->fh, 10, 0);
  ASSERT_TRUE(r.ok());
  std::string chunk(r->size, '\0');
  ASSERT_TRUE(PreadAll(r->fd->get(), chunk.data(), r->size, r->pos).ok());
  EXPECT_EQ(chunk, "bbbbbbbbbb");
  Fs().Release(o->fh);
  EXPECT_EQ(c.unpack_count(), 4u);
}

TEST_F(MountFsTest, UnpackCacheEvictsLeastRecentlyUsedFirstAmongFourLayers) {
  // Four gzip layers of one size; the limit holds two unpacked copies. Each read is a
  // use; after an unpack over the limit the least recently used copy goes first.
  std::vector<std::string> names = {"c", "d", "e", "f"};
  std::map<std::string, std::string> path;  // name -> its unpacked copy
  std::set<uint64_t> sizes;
  for (const std::string& n : names) {
    TarBuilder t;
    t.File("data", std::string(5000, n[0]));
    Digest id = Import(t, n + ":1", "gzip");
    LayerRecord l = **store_->GetLayer((**store_->GetImage(id)).diff_ids[0]);
    path[n] = root_ + "/unpacked/" + l.diff_id.hex() + ".tar";
    sizes.insert(l.size);
  }
  ASSERT_EQ(sizes.size(), 1u);  // equal sizes: the limit counts copies
  uint64_t size = *sizes.begin();
  Fs(2 * size + size / 2, true);
  UnpackCache& c = Fs().unpack_cache();
  auto read = [&](const std::string& n) {
    EXPECT_EQ(ReadAll(Walk(n + "/1/data")), std::string(5000, n[0])) << n;
  };
  auto unpacked = [&] {
    std::string s;
    for (const std::string& n : names) s += PathExists(path[n]) ? n : "";
    return s;
  };
  read("c");
  read("d");
  EXPECT_EQ(unpacked(), "cd");
  read("e");  // c is the least recently used
  EXPECT_EQ(unpacked(), "de");
  read("d");  // now e is
  read("f");
  EXPECT_EQ(unpacked(), "df");
  read("d");
  read("f");  // d, f again: both still there, nothing unpacked
  EXPECT_EQ(c.unpack_count(), 4u);
  read("c");  // d is older than f
  EXPECT_EQ(unpacked(), "cf");
  EXPECT_EQ(c.unpack_count(), 5u);
  EXPECT_EQ(c.unpacked_bytes(), 2 * size);
}

TEST_F(MountFsTest, ConcurrentReadersWhileTheCacheEvicts) {
  Fs(1, true);  // every unpack evicts whatever is not in use: maximum churn
  uint64_t a = Walk("alpha/1/etc/hostname"), b = Walk("beta/1/etc/hostname"),
           big = Walk("alpha/1/big");
  std::atomic<int> wrong{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; t++) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 40; i++) {
        uint64_t ino = (t + i) % 3 == 0 ? a : (t + i) % 3 == 1 ? b : big;
        auto r = Fs().Read(ino, 0, 1 << 20, 0);  // no-open mode: fh 0
        if (!r.ok() || !r->fd) {
          wrong++;
          continue;
        }
        std::string got(r->size, '\0');
        if (!PreadAll(r->fd->get(), got.data(), r->size, r->pos).ok()) wrong++;
        std::string want = ino == a ? "alpha\n" : ino == b ? "beta\n" : std::string(200000, 'b');
        if (got != want) wrong++;
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(wrong.load(), 0);
  EXPECT_GE(Fs().unpack_cache().unpack_count(), 2u);
}

// Issue 12: listing names, .id/ and image roots (stat, xattrs, readdirplus of the name
// directories) builds no tree; trees are built on the first lookup inside an image,
// evicted beyond tree_cache, and rebuilt with the same inode numbers.
TEST_F(MountFsTest, NameListingsBuildNoTreeAndTreesAreEvictedUnderTheBound) {
  Fs(0, false, 1);  // a 1-byte bound: one tree at a time
  for (const char* d : {"alpha", "beta"}) List(Walk(d), 0, true);
  List(Walk(".id"), 0, true);
  uint64_t a = Walk("alpha/1"), b = Walk("beta/1");
  ASSERT_NE(a, 0u);
  ASSERT_TRUE(Fs().GetAttr(a).ok());
  EXPECT_TRUE(S_ISDIR(Fs().GetAttr(a)->attr.st_mode));
  EXPECT_TRUE(Fs().ListXattr(a).ok());
  EXPECT_TRUE(Fs().OpenDir(a).ok());
  EXPECT_EQ(Fs().TreeCount(), 0u);
  uint64_t cap = Walk("alpha/1/cap");
  ASSERT_NE(cap, 0u);
  EXPECT_EQ(Fs().TreeCount(), 1u);
  EXPECT_EQ(*Fs().GetXattr(cap, "user.k"), "v");
  EXPECT_EQ(ReadAll(Walk("beta/1/etc/hostname")), "beta\n");  // evicts alpha's tree
  EXPECT_EQ(Fs().TreeCount(), 1u);
  (void)b;
  // alpha's inode numbers still name the same files after its tree was rebuilt.
  EXPECT_EQ(Walk("alpha/1/cap"), cap);
  EXPECT_EQ(*Fs().GetXattr(cap, "user.k"), "v");
  EXPECT_EQ(ReadAll(Walk("alpha/1/etc/hostname")), "alpha\n");
  EXPECT_EQ(Fs().TreeCount(), 1u);
}

}  // namespace
}  // namespace imgfs

namespace imgfs {
namespace {

TEST_F(MountFsTest, ConcurrentReadersAtManyOffsetsThroughTheSpanPath) {
  Fs(1);  // a 1-byte span cache: a shard keeps only its newest span
  uint64_t a = Walk("alpha/1/etc/hostname"), b = Walk("beta/1/etc/hostname"),
           big = Walk("alpha/1/big");
  std::atomic<int> wrong{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; t++) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 40; i++) {
        uint64_t ino = (t + i) % 3 == 0 ? a : (t + i) % 3 == 1 ? b : big;
        uint64_t off = ino == big ? (t * 7919 + i * 104729) % 150000 : 0;
        auto r = Fs().Read(ino, 0, 1 << 16, off);  // no-open mode: fh 0
        if (!r.ok() || r->fd) {                    // indexed layers come back as bytes, never an fd
          wrong++;
          continue;
        }
        std::string want = ino == a   ? "alpha\n"
                           : ino == b ? "beta\n"
                                      : std::string(std::min<uint64_t>(1 << 16, 200000 - off), 'b');
        if (r->bytes != want) wrong++;
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(wrong.load(), 0);
  EXPECT_EQ(Fs().unpack_cache().unpack_count(), 0u);
  EXPECT_GE(Fs().layer_reader().spans_decoded(), 2u);
}

// ReadIfReady, the mount's loop thread's read (fs/fuse_loop.h), answers only what needs
// no waiting: spans decoded already (with Read's bytes), generated bytes, reads past the
// end. A span not decoded, or a layer read from a file, is left to Read.
TEST_F(MountFsTest, ReadIfReadyAnswersOnlyFromDecodedSpans) {
  Fs();
  uint64_t big = Walk("alpha/1/big"), json = Walk(".repositories.json");
  ASSERT_NE(big, 0u);
  ASSERT_NE(json, 0u);
  EXPECT_FALSE(Fs().ReadIfReady(big, 0, 4096, 1000).has_value());
  EXPECT_EQ(Fs().layer_reader().spans_decoded(), 0u);  // it decoded nothing
  auto r = Fs().Read(big, 0, 4096, 1000);
  ASSERT_TRUE(r.ok()) << r.status().message();
  ASSERT_EQ(r->bytes, std::string(4096, 'b'));
  for (uint64_t off : {uint64_t{1000}, uint64_t{150000}, uint64_t{199990}}) {
    auto now = Fs().ReadIfReady(big, 0, 4096, off);
    ASSERT_TRUE(now.has_value() && now->ok()) << off;
    EXPECT_EQ((*now)->bytes, std::string(std::min<uint64_t>(4096, 200000 - off), 'b')) << off;
  }
  EXPECT_EQ(Fs().layer_reader().spans_decoded(), 1u);  // answered from the span cache
  auto past = Fs().ReadIfReady(big, 0, 10, 300000);
  ASSERT_TRUE(past.has_value() && past->ok());
  EXPECT_TRUE((*past)->bytes.empty());
  auto js = Fs().ReadIfReady(json, 0, 1 << 16, 0);
  ASSERT_TRUE(js.has_value() && js->ok());
  EXPECT_EQ((*js)->bytes, Fs().Read(json, 0, 1 << 16, 0)->bytes);
  EXPECT_NE((*js)->bytes.find("alpha"), std::string::npos);
}

TEST_F(MountFsTest, ReadIfReadyLeavesWholeLayerReadsToRead) {
  Fs(0, /*whole_layers=*/true);
  uint64_t big = Walk("alpha/1/big");
  auto o = Fs().Open(big, O_RDONLY);  // unpacks the layer: the handle reads a file
  ASSERT_TRUE(o.ok()) << o.status().message();
  auto r = Fs().Read(big, o->fh, 4096, 1000);
  ASSERT_TRUE(r.ok()) << r.status().message();
  ASSERT_TRUE(r->fd != nullptr);
  // With the open handle (its stream and fd at hand) and without (no-open mode): the
  // splice may wait on the disk, so both are left to Read.
  EXPECT_FALSE(Fs().ReadIfReady(big, o->fh, 4096, 1000).has_value());
  EXPECT_FALSE(Fs().ReadIfReady(big, 0, 4096, 1000).has_value());
  Fs().Release(o->fh);
}

// The mount's loop thread (MountFs::NoWait) never waits: a tree to build, new names,
// a layer that another thread holds while opening it are each a WouldBlock, before any
// effect (no entry emitted), and the same calls answer there once the work is done.
TEST_F(MountFsTest, ANoWaitThreadSaysWouldBlockInsteadOfWaiting) {
  Fs();
  uint64_t root = Walk("alpha/1");  // names and the root record: no tree
  ASSERT_NE(root, 0u);
  // f on a NoWait thread; whether it returned within WaitFor's bound. `release` lets a
  // thread that waited go on before it is joined.
  auto nowait = [&](
                    auto&& f, const std::function<void()>& release = [] {}) {
    std::atomic<bool> done{false};
    std::thread t([&] {
      MountFs::NoWait w;
      f();
      done = true;
    });
    bool in_time = WaitFor([&] { return done.load(); });
    release();
    t.join();
    return in_time;
  };
  std::vector<std::string> emitted;
  auto list = [&](uint64_t ino) {
    emitted.clear();
    return Fs().ReadDir(ino, 0, 0, true, [&](const MountFs::DirEntry& d, uint64_t) {
      emitted.push_back(d.name);
      return true;
    });
  };
  ASSERT_TRUE(nowait([&] {
    EXPECT_TRUE(MountFs::IsWouldBlock(Fs().Lookup(root, "etc").status()));  // no tree yet
    EXPECT_TRUE(MountFs::IsWouldBlock(list(root)));
    EXPECT_TRUE(emitted.empty());
    EXPECT_TRUE(Fs().GetAttr(root).ok());  // the root record
    auto again = Fs().Lookup(MountFs::kRootIno, "alpha");
    EXPECT_TRUE(again.ok());
  }));
  EXPECT_EQ(Fs().TreeCount(), 0u);
  uint64_t etc = Walk("alpha/1/etc"), big = Walk("alpha/1/big");  // builds the tree
  ASSERT_NE(etc, 0u);
  ASSERT_TRUE(WaitFor([&] { return Fs().layer_reader().layers_warmed() == 1; }));
  {
    // A reader holds the layer (as an index build or an unpack would) until the gate
    // opens; it is let go and joined on every way out of this block.
    std::mutex gate;
    std::unique_lock<std::mutex> closed(gate);
    std::atomic<bool> holding{false};
    Fs().layer_reader().set_open_hook([&] {
      holding = true;
      std::lock_guard<std::mutex> wait_here(gate);
    });
    std::thread reader([&] {
      auto r = Fs().Read(big, 0, 100, 1000);
      EXPECT_TRUE(r.ok() && r->bytes == std::string(100, 'b'));
    });
    struct Joined {
      std::thread& t;
      std::unique_lock<std::mutex>& gate;
      ~Joined() {
        if (gate.owns_lock()) gate.unlock();
        t.join();
      }
    } joined{reader, closed};
    ASSERT_TRUE(WaitFor([&] { return holding.load(); }));
    bool in_time = nowait(
        [&] {
          EXPECT_TRUE(MountFs::IsWouldBlock(list(etc)));  // its read-ahead needs the layer
          EXPECT_TRUE(emitted.empty());
          EXPECT_FALSE(Fs().ReadIfReady(big, 0, 100, 1000).has_value());
          auto e = Fs().Lookup(etc, "hostname");  // the tree is built: answered
          EXPECT_TRUE(e.ok() && e->ino != 0);
          EXPECT_TRUE(Fs().GetXattr(Walk("alpha/1/cap"), "user.k").ok());
        },
        [&] { closed.unlock(); });
    EXPECT_TRUE(in_time) << "a NoWait thread waited on a layer being opened";
  }
  Fs().layer_reader().set_open_hook(nullptr);  // the reader is done: the layer is open
  ASSERT_TRUE(nowait([&] {
    EXPECT_TRUE(list(etc).ok());  // the layer is open now
    EXPECT_EQ(emitted, (std::vector<std::string>{".", "..", "hostname"}));
    auto r = Fs().ReadIfReady(big, 0, 100, 1000);
    EXPECT_TRUE(r.has_value() && r->ok() && (*r)->bytes == std::string(100, 'b'));
  }));
  // New names are read by a thread that may wait; then a NoWait thread sees them.
  uint64_t json = Walk(".repositories.json");
  ASSERT_NE(json, 0u);
  ASSERT_TRUE(store_->SetRef("docker.io/library/delta:new", RefRecord{image_b_.hex(), ""}).ok());
  ASSERT_TRUE(nowait([&] {
    EXPECT_TRUE(MountFs::IsWouldBlock(Fs().Lookup(MountFs::kRootIno, "delta").status()));
    EXPECT_TRUE(MountFs::IsWouldBlock(list(MountFs::kRootIno)));
    EXPECT_TRUE(emitted.empty());
    EXPECT_TRUE(MountFs::IsWouldBlock(Fs().GetAttr(MountFs::kRootIno).status()));
    EXPECT_FALSE(Fs().ReadIfReady(json, 0, 4096, 0).has_value());
  }));
  EXPECT_NE(Walk("delta/new"), 0u);
  ASSERT_TRUE(nowait([&] { EXPECT_TRUE(Fs().Lookup(MountFs::kRootIno, "delta").ok()); }));
}

// `.layers/` makes each layer's view as it lists it: on a NoWait thread a view not built
// yet is a WouldBlock, after the entries before it were emitted (the adapter takes those
// back), never a listing with the layer left out.
TEST_F(MountFsTest, ANoWaitListingOfLayersSaysWouldBlockRatherThanLeaveOneOut) {
  uint64_t layers = Walk(".layers");
  ASSERT_NE(layers, 0u);
  std::vector<std::string> emitted;
  Status st;
  std::thread t([&] {
    MountFs::NoWait w;
    st = Fs().ReadDir(layers, 0, 0, true, [&](const MountFs::DirEntry& d, uint64_t) {
      emitted.push_back(d.name);
      return true;
    });
  });
  t.join();
  EXPECT_TRUE(MountFs::IsWouldBlock(st)) << st.message();
  EXPECT_LT(emitted.size(), 4u);  // ".", "..", no layer
  auto all = List(layers);        // here, where waiting is fine: every layer
  EXPECT_EQ(all.size(), 4u);      // ".", "..", alpha's and beta's layers
}

// A FORGET on a NoWait thread that lets a removed layer go hands the release (which
// waits for an open of the layer under way) to the background runner.
TEST_F(MountFsTest, ANoWaitThreadHandsTheReleaseOfRemovedLayersToTheBackground) {
  std::vector<std::function<void()>> later;
  Fs().set_background([&](std::function<void()> work) { later.push_back(std::move(work)); });
  struct Unset {  // `later` goes before the fixture's mount
    MountFs& fs;
    ~Unset() { fs.set_background(nullptr); }
  } unset{Fs()};
  uint64_t big = Walk("alpha/1/big");
  ASSERT_TRUE(Fs().Read(big, 0, 10, 0).ok());  // builds the view, pins
  Fs().KernelRef(big);
  std::vector<std::string> paths = BlobPaths(image_a_);
  auto freed = store_->DeleteImage(image_a_);
  ASSERT_TRUE(freed.ok());
  for (const Digest& d : *freed) ASSERT_TRUE(store_->blobs().Delete(d).ok());
  EXPECT_EQ(Walk("alpha/1"), 0u);  // the move is seen; the kernel still holds alpha
  EXPECT_GE(FdsOnAll(paths), 1);
  {
    MountFs::NoWait w;
    Fs().KernelForget(big, 1);
  }
  ASSERT_EQ(later.size(), 1u);
  EXPECT_GE(FdsOnAll(paths), 1);  // not released in place
  later[0]();
  EXPECT_EQ(FdsOnAll(paths), 0);
}

// The first lookup inside an image opens its layers (blob, sidecar) on the read-ahead
// thread while this thread builds the tree (LayerReader::Warm); names alone open nothing.
TEST_F(MountFsTest, TheFirstLookupInsideAnImageOpensItsLayersAhead) {
  Fs();
  ASSERT_NE(Walk("alpha/1"), 0u);  // an image root: its root record, no tree
  EXPECT_EQ(Fs().layer_reader().layers_warmed(), 0u);
  ASSERT_NE(Walk("alpha/1/etc"), 0u);
  ASSERT_TRUE(test::WaitFor([&] { return Fs().layer_reader().layers_warmed() == 1; }));
  EXPECT_EQ(ReadAll(Walk("alpha/1/etc/hostname")), "alpha\n");
  EXPECT_EQ(Fs().layer_reader().indexes_built(), 0u);
  ASSERT_NE(Walk("beta/1/etc"), 0u);
  ASSERT_TRUE(test::WaitFor([&] { return Fs().layer_reader().layers_warmed() == 2; }));
}

// Listing a directory queues its files' spans for read-ahead: reading them afterwards
// decodes nothing (grep -r, find and tar read a directory's files right after listing it).
TEST_F(MountFsTest, ListingADirectoryReadsItsFilesSpansAhead) {
  Fs();
  uint64_t etc = Walk("alpha/1/etc");
  ASSERT_NE(etc, 0u);
  EXPECT_EQ(Fs().layer_reader().spans_decoded(), 0u);
  List(etc);
  auto until = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (Fs().layer_reader().spans_prefetched() == 0 && std::chrono::steady_clock::now() < until)
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  ASSERT_EQ(Fs().layer_reader().spans_prefetched(), 1u);  // the layer is one 1 MiB span
  EXPECT_EQ(ReadAll(Walk("alpha/1/etc/hostname")), "alpha\n");
  EXPECT_EQ(Fs().layer_reader().spans_decoded(), 1u);  // the read found it decoded
  List(etc);                                           // cached: nothing more queued
  EXPECT_EQ(Fs().layer_reader().prefetch_queued(), 0u);
  EXPECT_EQ(Fs().layer_reader().spans_decoded(), 1u);
  // Listed once already: the kernel has its files' pages (keep_cache), so a later
  // listing queues nothing even when the spans are gone from the span cache.
  auto img = store_->GetImage(image_a_);
  ASSERT_TRUE(img.ok() && *img);
  Fs().layer_reader().Forget((*img)->diff_ids[0].hex());
  List(etc);
  std::this_thread::sleep_for(std::chrono::seconds(2));
  EXPECT_EQ(Fs().layer_reader().spans_prefetched(), 1u);
  EXPECT_EQ(Fs().layer_reader().spans_decoded(), 1u);
}

// The once-per-directory record is bounded: after 2^16 other directories were listed it
// starts over, and a directory listed again queues its files once more (read-ahead does
// not stop for good; the record does not grow to millions of directories).
TEST_F(MountFsTest, ReadAheadRecordOfListedDirectoriesIsBounded) {
  constexpr int kDirs = 1 << 16;
  TarBuilder b;
  b.File("etc/f", "many\n");
  for (int i = 0; i < kDirs; i++) b.Dir("d/" + std::to_string(i));
  Digest many = Import(b, "many:1", "gzip");
  uint64_t etc = Walk("many/1/etc"), d = Walk("many/1/d");
  ASSERT_NE(etc, 0u);
  ASSERT_NE(d, 0u);
  auto prefetched = [&](uint64_t n) {
    return WaitFor([&] { return Fs().layer_reader().spans_prefetched() >= n; });
  };
  List(etc);
  ASSERT_TRUE(prefetched(1));
  auto img = store_->GetImage(many);
  ASSERT_TRUE(img.ok() && *img);
  std::string layer = (*img)->diff_ids[0].hex();
  Fs().layer_reader().Forget(layer);  // its spans are gone from the span cache
  List(etc);                          // listed once: nothing queued (the kernel has the pages)
  EXPECT_EQ(Fs().layer_reader().prefetch_queued(), 0u);
  std::vector<std::string> names = List(d);
  ASSERT_EQ(names.size(), static_cast<size_t>(kDirs) + 2);
  for (const std::string& n : names) {
    if (n == "." || n == "..") continue;
    auto e = Fs().Lookup(d, n);
    ASSERT_TRUE(e.ok());
    List(e->ino);
  }
  Fs().layer_reader().Forget(layer);
  uint64_t before = Fs().layer_reader().spans_prefetched();
  List(etc);  // 2^16 + 1 directories listed since: the record started over
  EXPECT_TRUE(prefetched(before + 1)) << Fs().layer_reader().spans_prefetched();
}

}  // namespace
}  // namespace imgfs
