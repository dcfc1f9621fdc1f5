// Issue 13, local items, at the model level: names quoted by ls, a deep tree listed
// on a thread with a small stack, the archive stream check, FIFOs refused by import,
// and prune skipping unpacked copies another UnpackCache holds.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <pthread.h>
#include <sys/file.h>
#include <sys/stat.h>

#include <cstdio>
#include <cstring>
#include <functional>

#include "cli/ls_format.h"
#include "fs/image_view.h"
#include "fs/unpack_cache.h"
#include "registry/archive_check.h"
#include "registry/image_loader.h"
#include "registry/reference.h"
#include "tests/store_fixture.h"
#include "tests/tar_builder.h"

namespace imgfs {
namespace {

using test::TarBuilder;

TEST(QuoteName, EscapeStyleForPipesAndTsv) {
  EXPECT_EQ(QuoteName("plain name", NameQuoting::kEscape), "plain name");
  EXPECT_EQ(QuoteName("a\nb", NameQuoting::kEscape), "a\\nb");
  EXPECT_EQ(QuoteName("t\tx", NameQuoting::kEscape), "t\\tx");
  EXPECT_EQ(QuoteName("back\\slash", NameQuoting::kEscape), "back\\\\slash");
  EXPECT_EQ(QuoteName("\x1b[31m", NameQuoting::kEscape), "\\033[31m");
  EXPECT_EQ(QuoteName("del\x7f", NameQuoting::kEscape), "del\\177");
  EXPECT_EQ(QuoteName("caf\xe9", NameQuoting::kEscape), "caf\xe9");  // bytes >= 0x80 as is
  EXPECT_EQ(QuoteName("caf\xc3\xa9", NameQuoting::kEscape), "caf\xc3\xa9");
}

TEST(QuoteName, ShellEscapeForTerminals) {
  EXPECT_EQ(QuoteName("plain", NameQuoting::kShellEscape), "plain");
  EXPECT_EQ(QuoteName("caf\xc3\xa9", NameQuoting::kShellEscape), "caf\xc3\xa9");
  EXPECT_EQ(QuoteName("sp ace", NameQuoting::kShellEscape), "'sp ace'");
  EXPECT_EQ(QuoteName("a\nb", NameQuoting::kShellEscape), "'a'$'\\n''b'");
  EXPECT_EQ(QuoteName("\x1b[2J", NameQuoting::kShellEscape), "$'\\033''[2J'");
  EXPECT_EQ(QuoteName("it's", NameQuoting::kShellEscape), "'it'\\''s'");
  EXPECT_EQ(QuoteName("caf\xe9", NameQuoting::kShellEscape), "'caf'$'\\351'");
  EXPECT_EQ(QuoteName("\xc2\x9b", NameQuoting::kShellEscape), "$'\\302'$'\\233'");  // C1 CSI
  EXPECT_EQ(QuoteName("", NameQuoting::kShellEscape), "''");
}

// Runs fn on a thread with a 256 KiB stack.
void OnSmallStack(const std::function<void()>& fn) {
  pthread_attr_t attr;
  pthread_attr_init(&attr);
  pthread_attr_setstacksize(&attr, 256 << 10);
  pthread_t th;
  auto tramp = [](void* p) -> void* {
    (*static_cast<const std::function<void()>*>(p))();
    return nullptr;
  };
  ASSERT_EQ(pthread_create(&th, &attr, tramp, const_cast<std::function<void()>*>(&fn)), 0);
  pthread_join(th, nullptr);
  pthread_attr_destroy(&attr);
}

class LocalHardeningTest : public test::StoreFixture {};

// 13.5: 10,000 directories deep (s1 → a/…/a, 2,000 levels, five times), listed with
// ls -R and tsv on a 256 KiB stack: the recursive walk of before needs ~200 bytes a level.
TEST_F(LocalHardeningTest, DeepTreeListsOnASmallStack) {
  constexpr int kLinks = 5, kLevels = 2000;
  std::string deep;
  for (int i = 0; i < kLevels; i++) deep += i ? "/a" : "a";
  TarBuilder b;
  std::string p;
  for (int k = 1; k <= kLinks; k++) {
    p += (k > 1 ? "/s" : "s") + std::to_string(k);
    b.Symlink(p, deep);
  }
  b.File(p + "/bottom", "deep\n");
  auto img = ImportTar(b.Build("gzip"), "deep:1");
  ASSERT_TRUE(img.ok()) << img.status().message();
  auto view = ImageView::Open(*store_, img->id);
  ASSERT_TRUE(view.ok()) << view.status().message();
  LayerReader cache(*store_);
  for (bool tsv : {false, true}) {
    std::string out_path = dir_ + (tsv ? "/tsv" : "/ls");
    Status st;
    OnSmallStack([&] {
      FILE* f = std::fopen(out_path.c_str(), "w");
      LsOptions o;
      o.recursive = true;
      o.tsv = tsv;
      o.sha = tsv;
      st = ListTree(**view, cache, MergedTree::kRoot, "/", o, f);
      std::fclose(f);
    });
    ASSERT_TRUE(st.ok()) << st.message();
    std::string got = *ReadFileToString(out_path, 1 << 30);
    size_t lines = std::count(got.begin(), got.end(), '\n');
    if (tsv) {
      EXPECT_EQ(lines, size_t{kLinks * kLevels + kLinks + 1});  // every node but the root
      EXPECT_NE(got.find("/bottom\n"), std::string::npos);
      EXPECT_NE(got.find("\t" + test::Sha256Hex("deep\n") + "\t-\t"), std::string::npos);
    } else {
      size_t headers = 0;
      for (size_t i = got.find(":\n"); i != std::string::npos; i = got.find(":\n", i + 1))
        headers++;
      EXPECT_EQ(headers, size_t{kLinks * kLevels + 1});  // every directory, the root too
      EXPECT_EQ(got.substr(0, 3), "/:\n");
      EXPECT_NE(got.find("\nbottom\n"), std::string::npos);
    }
  }
}

// 13.7: the stream check refuses what is not an image archive within its first bytes.
TEST(TarStreamCheck, RefusesNonArchivesAtOnceAndStopsAtTheEnd) {
  TarStreamCheck zeros;
  std::string z(1 << 20, '\0');
  auto r = zeros.Feed(z.data(), z.size());
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("not a tar archive"), std::string::npos);

  TarStreamCheck junk;
  std::string j(4096, 'x');
  EXPECT_FALSE(junk.Feed(j.data(), j.size()).ok());

  TarBuilder rootfs;
  rootfs.Dir("bin").File("bin/sh", "ELF").File("etc/passwd", "root");
  std::string rt = rootfs.Build("none");
  TarStreamCheck rc;
  auto rr = rc.Feed(rt.data(), rt.size());
  ASSERT_FALSE(rr.ok());
  EXPECT_NE(rr.status().message().find("bin/sh"), std::string::npos) << rr.status().message();

  TarBuilder archive;
  archive.Dir(std::string(64, 'a'))
      .File(std::string(64, 'a') + "/layer.tar", std::string(3000, 'l'))
      .File(std::string(64, 'a') + "/json", "{}")
      .File(std::string(64, 'b') + ".json", "{}")
      .File("blobs/sha256/" + std::string(64, 'c'), "x")
      .File("manifest.json", "[]")
      .File("repositories", "{}");
  std::string at = archive.Build("none", TarBuilder::Format::kUstar);
  std::string with_tail = at + std::string(8192, 'T');
  TarStreamCheck ok;
  size_t fed = 0;
  for (size_t i = 0; i < with_tail.size() && !ok.ended(); i += 700) {  // odd chunks
    auto k = ok.Feed(with_tail.data() + i, std::min<size_t>(700, with_tail.size() - i));
    ASSERT_TRUE(k.ok()) << k.status().message();
    fed += *k;
  }
  EXPECT_TRUE(ok.ended());
  EXPECT_LE(fed, at.size());  // the trailing bytes are not part of it
  EXPECT_GE(fed, at.size() - 10240);
}

// 13.8: a FIFO is refused at once (open() on it would block with no writer).
TEST_F(LocalHardeningTest, ImportAndLoadRefuseAFifoWithoutBlocking) {
  std::string fifo = dir_ + "/fifo";
  ASSERT_EQ(mkfifo(fifo.c_str(), 0600), 0);
  auto r = ImportRootfs(*store_, fifo, *ParseDockerRef("f:1"), LoadOptions{});
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("a FIFO"), std::string::npos) << r.status().message();
  auto l = LoadImages(*store_, fifo, LoadOptions{});
  ASSERT_FALSE(l.ok());
  EXPECT_NE(l.status().message().find("a FIFO"), std::string::npos) << l.status().message();
}

// 13.6: prune keeps what another cache holds (an unpacked copy, a temp file being
// written) and removes it once released.
TEST_F(LocalHardeningTest, PruneSkipsUnpackedCopiesInUse) {
  TarBuilder b;
  b.File("f", std::string(100000, 'z'));
  auto img = ImportTar(b.Build("gzip"), "p:1");
  ASSERT_TRUE(img.ok()) << img.status().message();
  auto view = ImageView::Open(*store_, img->id);
  ASSERT_TRUE(view.ok());
  const LayerRecord& layer = (*view)->layers().at(0);
  std::string unpacked = store_->UnpackedPath(layer.diff_id);
  {
    UnpackCache cache(*store_);
    auto fd = cache.Get(layer);
    ASSERT_TRUE(fd.ok()) << fd.status().message();
    auto r = UnpackCache::Prune(*store_);
    ASSERT_TRUE(r.ok());
    EXPECT_EQ(r->busy, 1u);
    EXPECT_EQ(r->removed, 0u);
    EXPECT_TRUE(PathExists(unpacked));
    // A temp file another process is writing: locked from its creation.
    std::string tmp = unpacked + ".tmp-1-2";
    int t = ::open(tmp.c_str(), O_RDWR | O_CREAT | O_EXCL, 0600);
    ASSERT_GE(t, 0);
    ASSERT_EQ(flock(t, LOCK_SH), 0);
    r = UnpackCache::Prune(*store_);
    ASSERT_TRUE(r.ok());
    EXPECT_EQ(r->busy, 2u);
    EXPECT_TRUE(PathExists(tmp));
    ::close(t);  // a writer that died: its temp file is stale now
    r = UnpackCache::Prune(*store_);
    ASSERT_TRUE(r.ok());
    EXPECT_EQ(r->removed, 1u);
    EXPECT_FALSE(PathExists(tmp));
  }
  auto r = UnpackCache::Prune(*store_);  // the cache is gone: its copy is free
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->removed, 1u);
  EXPECT_EQ(r->busy, 0u);
  EXPECT_FALSE(PathExists(unpacked));
  // And a new reader (whole-layer mode) unpacks again.
  LayerReader again(*store_, 0, /*use_index=*/false);
  char buf[4];
  auto n = (*view)->Read(again, *(*view)->tree().Resolve("/f", true), buf, 4, 0);
  ASSERT_TRUE(n.ok()) << n.status().message();
  EXPECT_EQ(std::string(buf, 4), "zzzz");
  EXPECT_EQ(again.unpack_cache().unpack_count(), 1u);
}

}  // namespace
}  // namespace imgfs
