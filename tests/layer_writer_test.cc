// imgfs commit's model: the upper-directory → tar conversion rules (index/layer_writer.h),
// the per-layer changeset entries (index/changeset.h), docker's --change instructions
// (registry/committer.h), and commit + diff through a real store. The upper directories
// are made on the test machine's filesystem: whiteouts need mknod (root), opaque marks
// need trusted.* xattrs (root).
#include "index/layer_writer.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <map>

#include "fs/image_diff.h"
#include "fs/image_view.h"
#include "index/changeset.h"
#include "index/layer_indexer.h"
#include "registry/committer.h"
#include "tests/read_to_end.h"
#include "tests/tar_builder.h"

namespace imgfs {
namespace {

using test::TarBuilder;

std::string Tar(const std::string& dir, bool overlay, Status* st = nullptr) {
  std::string out;
  LayerWriteOptions o;
  o.overlay = overlay;
  Status s = WriteLayerTar(dir, o, [&](std::string_view d) {
    out.append(d);
    return Status::Ok();
  });
  if (st) *st = s;
  return s.ok() ? out : std::string();
}

std::vector<LayerEntry> Index(const std::string& tar) {
  StringSource src(tar);
  auto idx = IndexTarStream(&src);
  EXPECT_TRUE(idx.ok()) << idx.status().ToString();
  return idx.ok() ? idx->entries : std::vector<LayerEntry>{};
}

std::map<std::string, LayerEntry> ByPath(const std::vector<LayerEntry>& v) {
  std::map<std::string, LayerEntry> m;
  for (const auto& e : v) m[e.path] = e;
  return m;
}

void SetX(const std::string& p, const char* name, const std::string& v) {
  ASSERT_EQ(::lsetxattr(p.c_str(), name, v.data(), v.size(), 0), 0) << p << " " << name;
}

class LayerWriterTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (::geteuid() != 0) GTEST_SKIP() << "needs root (mknod, trusted.* xattrs)";
    dir_ = test::MakeTempDir();
    up_ = dir_ + "/upper";
    ASSERT_EQ(::mkdir(up_.c_str(), 0755), 0);
  }
  void TearDown() override {
    if (!dir_.empty()) test::RemoveTree(dir_);
  }
  std::string P(const std::string& rel) { return up_ + "/" + rel; }
  void Mk(const std::string& rel, mode_t mode = 0755) {
    ASSERT_EQ(::mkdir(P(rel).c_str(), mode), 0);
    ASSERT_EQ(::chmod(P(rel).c_str(), mode), 0);
  }
  // A typical upper directory: what a container's changes leave behind.
  void MakeUpper() {
    Mk("etc");
    test::WriteFile(P("etc/passwd"), "root:x:0:0\n");
    ASSERT_EQ(::chown(P("etc/passwd").c_str(), 1000, 2000), 0);
    ASSERT_EQ(::chmod(P("etc/passwd").c_str(), 04750), 0);
    struct timespec ts[2] = {{1600000000, 123456789}, {1600000000, 123456789}};
    ASSERT_EQ(::utimensat(AT_FDCWD, P("etc/passwd").c_str(), ts, AT_SYMLINK_NOFOLLOW), 0);
    ASSERT_EQ(::link(P("etc/passwd").c_str(), P("etc/passwd.hard").c_str()), 0);
    ASSERT_EQ(::mknod(P("etc/gone").c_str(), S_IFCHR, makedev(0, 0)), 0);  // a whiteout
    ASSERT_EQ(::mknod(P("etc/null").c_str(), S_IFCHR | 0666, makedev(1, 3)), 0);
    ASSERT_EQ(::mkfifo(P("etc/fifo").c_str(), 0600), 0);
    ASSERT_EQ(::symlink("../x", P("etc/link").c_str()), 0);
    SetX(P("etc/passwd"), "user.note", std::string("a\0b", 3));
    SetX(P("etc/passwd"), "trusted.overlay.origin", "leak?");
    SetX(P("etc/passwd"), "user.overlay.impure", "y");
    Mk("opq");
    SetX(P("opq"), "trusted.overlay.opaque", "y");
    test::WriteFile(P("opq/kept"), "k");
    Mk("uopq", 0700);
    SetX(P("uopq"), "user.overlay.opaque", "y");
    Mk("notopq");
    SetX(P("notopq"), "trusted.overlay.opaque", "x");  // "x": not opaque (has xwhiteouts)
  }
  std::string dir_, up_;
};

TEST_F(LayerWriterTest, OverlayUpperDirRules) {
  MakeUpper();
  auto m = ByPath(Index(Tar(up_, true)));
  // Whiteouts become .wh. files; the device itself is not written.
  ASSERT_TRUE(m.count("etc/.wh.gone"));
  EXPECT_EQ(m["etc/.wh.gone"].type, EntryType::kFile);
  EXPECT_EQ(m["etc/.wh.gone"].size, 0u);
  EXPECT_FALSE(m.count("etc/gone"));
  // Opaque directories (trusted. and user.) get the marker, with the dir's mode; "x" does not.
  ASSERT_TRUE(m.count("opq/.wh..wh..opq"));
  ASSERT_TRUE(m.count("uopq/.wh..wh..opq"));
  EXPECT_EQ(m["uopq/.wh..wh..opq"].mode, 0700u);
  EXPECT_FALSE(m.count("notopq/.wh..wh..opq"));
  EXPECT_TRUE(m.count("opq/kept"));
  // No overlay xattr anywhere; others kept byte for byte.
  for (const auto& [p, e] : m) {
    for (const Xattr& x : e.xattrs) {
      EXPECT_EQ(x.name.find(".overlay."), std::string::npos) << p << " leaks " << x.name;
    }
  }
  ASSERT_EQ(m["etc/passwd"].xattrs.size(), 1u);
  EXPECT_EQ(m["etc/passwd"].xattrs[0], (Xattr{"user.note", std::string("a\0b", 3)}));
  // Owners, set-id bits, nanosecond mtimes, links, devices, FIFOs, symlinks.
  EXPECT_EQ(m["etc/passwd"].uid, 1000u);
  EXPECT_EQ(m["etc/passwd"].gid, 2000u);
  EXPECT_EQ(m["etc/passwd"].mode, 04750u);
  EXPECT_EQ(m["etc/passwd"].mtime_sec, 1600000000);
  EXPECT_EQ(m["etc/passwd"].mtime_nsec, 123456789u);
  EXPECT_EQ(m["etc/passwd"].size, 11u);
  EXPECT_EQ(m["etc/passwd.hard"].type, EntryType::kHardlink);
  EXPECT_EQ(m["etc/passwd.hard"].link, "etc/passwd");
  EXPECT_EQ(m["etc/null"].type, EntryType::kChar);
  EXPECT_EQ(m["etc/null"].dev_major, 1u);
  EXPECT_EQ(m["etc/null"].dev_minor, 3u);
  EXPECT_EQ(m["etc/fifo"].type, EntryType::kFifo);
  EXPECT_EQ(m["etc/link"].type, EntryType::kSymlink);
  EXPECT_EQ(m["etc/link"].link, "../x");
  EXPECT_FALSE(m.count(""));  // the upper directory itself has no entry
}

TEST_F(LayerWriterTest, SortedAndDeterministic) {
  MakeUpper();
  std::string a = Tar(up_, true);
  std::string b = Tar(up_, true);
  ASSERT_FALSE(a.empty());
  EXPECT_EQ(test::Sha256Hex(a), test::Sha256Hex(b));
  auto entries = Index(a);
  std::vector<std::string> paths;
  for (const auto& e : entries) paths.push_back(e.path);
  // Depth first, names sorted bytewise, a directory before its contents.
  std::vector<std::string> want = {"etc",
                                   "etc/fifo",
                                   "etc/.wh.gone",
                                   "etc/link",
                                   "etc/null",
                                   "etc/passwd",
                                   "etc/passwd.hard",
                                   "notopq",
                                   "opq",
                                   "opq/.wh..wh..opq",
                                   "opq/kept",
                                   "uopq",
                                   "uopq/.wh..wh..opq"};
  EXPECT_EQ(paths, want);
}

TEST_F(LayerWriterTest, PlainDirectoryKeepsDevices) {
  ASSERT_EQ(::mknod(P("dev0").c_str(), S_IFCHR, makedev(0, 0)), 0);
  Mk("d");
  SetX(P("d"), "trusted.overlay.opaque", "y");
  auto m = ByPath(Index(Tar(up_, false)));
  EXPECT_EQ(m["dev0"].type, EntryType::kChar);
  EXPECT_FALSE(m.count(".wh.dev0"));
  EXPECT_FALSE(m.count("d/.wh..wh..opq"));
  EXPECT_TRUE(m["d"].xattrs.empty());
}

TEST_F(LayerWriterTest, RefusesRedirectMetacopyAndWhiteoutNames) {
  Mk("moved");
  SetX(P("moved"), "trusted.overlay.redirect", "/orig");
  Status st;
  Tar(up_, true, &st);
  EXPECT_EQ(st.code(), Status::Code::kUnsupported);
  EXPECT_NE(st.message().find("redirect_dir=off"), std::string::npos) << st.ToString();
  ASSERT_EQ(::rmdir(P("moved").c_str()), 0);

  test::WriteFile(P("meta"), "");
  SetX(P("meta"), "user.overlay.metacopy", "");
  Tar(up_, true, &st);
  EXPECT_NE(st.message().find("metacopy=off"), std::string::npos) << st.ToString();
  ASSERT_EQ(::unlink(P("meta").c_str()), 0);

  test::WriteFile(P(".wh.sneaky"), "");
  Tar(up_, true, &st);
  EXPECT_FALSE(st.ok());
  EXPECT_NE(st.message().find(".wh."), std::string::npos) << st.ToString();
}

TEST_F(LayerWriterTest, GzipSourceInflatesToTheTar) {
  MakeUpper();
  test::WriteFile(P("big"), std::string(3 << 20, 'z'));
  std::string tar = Tar(up_, true);
  auto src = GzipLayerSource(up_, LayerWriteOptions{});
  DecompressingSource dec(src.get(), Compression::kAuto);
  std::string all;
  Status st = test::ReadToEnd(dec, &all);
  ASSERT_TRUE(st.ok()) << st.ToString();
  EXPECT_EQ(dec.compression(), Compression::kGzip);
  EXPECT_EQ(test::Sha256Hex(all), test::Sha256Hex(tar));
}

TEST_F(LayerWriterTest, GzipSourceReportsWriterErrors) {
  Mk("moved");
  SetX(P("moved"), "trusted.overlay.redirect", "/orig");
  auto src = GzipLayerSource(up_, LayerWriteOptions{});
  char buf[4096];
  Status last;
  for (;;) {
    auto n = src->Read(buf, sizeof buf);
    if (!n.ok()) {
      last = n.status();
      break;
    }
    ASSERT_NE(*n, 0u) << "the stream ended without the error";
  }
  EXPECT_NE(last.message().find("redirect"), std::string::npos);
}

TEST(ChangesetTest, WhiteoutsBecomeDevicesAndOpaqueAnXattr) {
  TarBuilder b;
  b.Dir("a").Whiteout("a", "gone").Opaque("a").File("a/new", "n");
  b.Opaque("implicit");  // no entry for the directory itself
  b.File("f", "x").Whiteout("", "top");
  b.File(".wh..wh.plnk/1.2", "aufs");
  std::string tar = b.Build();
  StringSource src(tar);
  auto idx = IndexTarStream(&src);
  ASSERT_TRUE(idx.ok()) << idx.status().ToString();
  auto m = ByPath(ChangesetEntries(idx->entries));
  EXPECT_EQ(m["a/gone"].type, EntryType::kChar);
  EXPECT_EQ(m["a/gone"].mode, 0u);
  EXPECT_EQ(m["a/gone"].dev_major, 0u);
  EXPECT_EQ(m["top"].type, EntryType::kChar);
  EXPECT_EQ(m["a"].xattrs, (std::vector<Xattr>{{"trusted.overlay.opaque", "y"}}));
  EXPECT_EQ(m["implicit"].type, EntryType::kDir);
  EXPECT_EQ(m["implicit"].xattrs, (std::vector<Xattr>{{"trusted.overlay.opaque", "y"}}));
  EXPECT_TRUE(m["f"].xattrs.empty());
  for (const auto& [p, e] : m) {
    EXPECT_EQ(p.find(".wh."), std::string::npos) << p;
  }
  EXPECT_TRUE(m.count("a/new"));
}

TEST(CommitChangesTest, DockerChangeInstructions) {
  std::string base = R"({"Cmd":["sh"],"Env":["PATH=/bin","A=old"],"Labels":{"x":"1"},)"
                     R"("WorkingDir":"/srv"})";
  auto r = ApplyChanges(base, {"ENV A=new B=\"two words\"", "env C spaced value", "LABEL y=2 x=3",
                               "EXPOSE 80 53/udp", "VOLUME [\"/data\"]", "VOLUME /a /b",
                               "USER app:app", "WORKDIR sub", R"(CMD ["run","--x"])"});
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(*r,
            R"({"Cmd":["run","--x"],"Env":["PATH=/bin","A=new","B=two words","C=spaced value"],)"
            R"("Labels":{"x":"3","y":"2"},"WorkingDir":"/srv/sub",)"
            R"("ExposedPorts":{"80/tcp":{},"53/udp":{}},"Volumes":{"/data":{},"/a":{},"/b":{}},)"
            R"("User":"app:app"})");
  auto e = ApplyChanges(base, {"ENTRYPOINT /bin/app -v"});
  ASSERT_TRUE(e.ok());
  EXPECT_EQ(*e, R"({"Cmd":null,"Env":["PATH=/bin","A=old"],"Labels":{"x":"1"},)"
                R"("WorkingDir":"/srv","Entrypoint":["/bin/sh","-c","/bin/app -v"]})");
  auto bad = ApplyChanges(base, {"RUN rm -rf /"});
  EXPECT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("unsupported instruction RUN"), std::string::npos);
  EXPECT_FALSE(ApplyChanges(base, {"EXPOSE http"}).ok());
  EXPECT_FALSE(ApplyChanges(base, {"EXPOSE 70000"}).ok());
  EXPECT_FALSE(ApplyChanges(base, {"EXPOSE 80/foo"}).ok());
  EXPECT_FALSE(ApplyChanges(base, {"EXPOSE 90-80"}).ok());
  auto range = ApplyChanges("", {"EXPOSE 8000-8002/udp"});
  ASSERT_TRUE(range.ok()) << range.status().ToString();
  EXPECT_EQ(*range, R"({"ExposedPorts":{"8000/udp":{},"8001/udp":{},"8002/udp":{}}})");
  EXPECT_FALSE(ApplyChanges(base, {"LABEL novalue"}).ok());
}

TEST(CommitChangesTest, ChildConfigAppendsLayerAndHistory) {
  std::string parent =
      R"({"architecture":"arm64","os":"linux","config":{"Cmd":["sh"]},"container":"abc",)"
      R"("rootfs":{"type":"layers","diff_ids":["sha256:)" +
      std::string(64, 'a') +
      R"("]},"history":[{"created_by":"base"}],"created":"2000-01-01T00:00:00Z"})";
  auto d = Digest::FromHex(std::string(64, 'b'));
  ASSERT_TRUE(d.ok());
  auto c = ChildConfig(parent, *d, {"USER nobody"}, "msg", 0);
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(*c, R"({"architecture":"arm64","os":"linux","config":{"Cmd":["sh"],"User":"nobody"},)"
                R"("rootfs":{"type":"layers","diff_ids":["sha256:)" +
                    std::string(64, 'a') + R"(","sha256:)" + std::string(64, 'b') +
                    R"("]},"history":[{"created_by":"base"},{"created":"1970-01-01T00:00:00Z",)"
                    R"("created_by":"imgfs commit --change 'USER nobody'","comment":"msg"}],)"
                    R"("created":"1970-01-01T00:00:00Z"})");
}

// commit twice through a real store (a base from a plain directory, then an upper
// directory on it), and diff the result.
TEST_F(LayerWriterTest, CommitAndDiffThroughTheStore) {
  std::string rootfs = dir_ + "/rootfs";
  ASSERT_EQ(::mkdir(rootfs.c_str(), 0755), 0);
  ASSERT_EQ(::mkdir((rootfs + "/etc").c_str(), 0755), 0);
  ASSERT_EQ(::mkdir((rootfs + "/old").c_str(), 0755), 0);
  test::WriteFile(rootfs + "/etc/a", "a");
  test::WriteFile(rootfs + "/etc/b", "b");
  test::WriteFile(rootfs + "/old/x", "x");
  ASSERT_EQ(::mkdir((rootfs + "/swap").c_str(), 0755), 0);
  test::WriteFile(rootfs + "/swap/c", "c");
  test::WriteFile(rootfs + "/f2", "f");
  auto store = Store::Open(dir_ + "/store");
  ASSERT_TRUE(store.ok());
  CommitRequest base;
  base.dir = rootfs;
  base.name = "docker.io/library/base:1";
  auto b = CommitDirectory(**store, base);
  ASSERT_TRUE(b.ok()) << b.status().ToString();

  Mk("etc");
  test::WriteFile(P("etc/a"), "A");  // same size, new content
  struct stat st;
  ASSERT_EQ(::stat((rootfs + "/etc/a").c_str(), &st), 0);
  struct timespec ts[2] = {st.st_mtim, st.st_mtim};
  ASSERT_EQ(::utimensat(AT_FDCWD, P("etc/a").c_str(), ts, 0), 0);  // same mtime too
  ASSERT_EQ(::mknod(P("etc/b").c_str(), S_IFCHR, makedev(0, 0)), 0);
  Mk("old");
  SetX(P("old"), "trusted.overlay.opaque", "y");
  test::WriteFile(P("old/y"), "y");
  test::WriteFile(P("new"), "n");
  test::WriteFile(P("swap"), "now a file");  // a directory replaced by a file
  Mk("f2");                                  // a file replaced by a directory
  test::WriteFile(P("f2/k"), "k");
  CommitRequest child;
  child.dir = up_;
  child.base = b->id;
  child.name = "docker.io/library/child:1";
  child.changes = {"CMD [\"x\"]"};
  auto c = CommitDirectory(**store, child);
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  auto view = ImageView::Open(**store, c->id);
  ASSERT_TRUE(view.ok());
  ASSERT_EQ((*view)->image().diff_ids.size(), 2u);
  auto parent = ImageView::OpenLayers(**store, {(*view)->image().diff_ids[0]}, false);
  ASSERT_TRUE(parent.ok());
  LayerReader cache(**store);
  auto changes = DiffViews(**parent, **view, cache);
  ASSERT_TRUE(changes.ok()) << changes.status().ToString();
  std::string got;
  for (const auto& ch : *changes) got += std::string(1, ch.kind) + " " + ch.path + "\n";
  EXPECT_EQ(got,
            "C /etc\nC /etc/a\nD /etc/b\nC /f2\nA /f2/k\nA /new\nC /old\nD /old/x\nA /old/y\n"
            "C /swap\nD /swap/c\n");
  // The per-layer view shows the upper directory again.
  auto layer = ImageView::OpenLayers(**store, {(*view)->image().diff_ids[1]}, true);
  ASSERT_TRUE(layer.ok());
  auto wh = (*layer)->tree().Resolve("etc/b", false);
  ASSERT_TRUE(wh.ok() && *wh != 0);
  EXPECT_EQ((*layer)->tree().node(*wh).mode, static_cast<uint32_t>(S_IFCHR));
  EXPECT_EQ((*layer)->tree().node(*wh).rdev, 0u);
}

}  // namespace
}  // namespace imgfs
