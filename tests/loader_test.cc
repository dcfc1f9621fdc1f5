// imgfs load / import on archives and layouts the test writes itself, and every bad
// input of the store issue: one clear error, and the store exactly as it was.
#include "registry/image_loader.h"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include "fs/image_view.h"
#include "registry/json.h"
#include "tests/store_fixture.h"
#include "tests/tar_builder.h"

namespace imgfs {
namespace {

using test::TarBuilder;

struct Layer {
  std::string blob;  // as stored (maybe compressed)
  std::string diff_id;
  std::string media_type;
};

Layer MakeLayer(const TarBuilder& b, const std::string& compression = "gzip") {
  Layer l;
  l.blob = b.Build(compression);
  l.diff_id = "sha256:" + test::Sha256Hex(b.Build("none"));
  l.media_type = compression == "gzip"   ? media::kOciLayerGzip
                 : compression == "zstd" ? media::kOciLayerZstd
                                         : media::kOciLayer;
  return l;
}

std::string ConfigFor(const std::vector<Layer>& layers, const std::string& extra = "") {
  std::string ids;
  for (const Layer& l : layers) ids += (ids.empty() ? "\"" : ",\"") + l.diff_id + "\"";
  return "{\"architecture\":\"amd64\",\"os\":\"linux\",\"created\":\"2024-01-02T03:04:05Z\"," +
         extra +
         "\"config\":{\"Env\":[\"PATH=/bin\"],\"Cmd\":[\"/bin/"
         "sh\"]},\"rootfs\":{\"type\":\"layers\",\"diff_ids\":[" +
         ids + "]}}";
}

std::string Desc(const std::string& mt, const std::string& data, const std::string& extra = "") {
  return "{\"mediaType\":\"" + mt + "\",\"digest\":\"sha256:" + test::Sha256Hex(data) +
         "\",\"size\":" + std::to_string(data.size()) + extra + "}";
}

// An OCI layout as a list of (path, bytes); written to a dir or packed into a tar.
struct Files {
  std::vector<std::pair<std::string, std::string>> files;
  void Add(const std::string& p, const std::string& d) { files.emplace_back(p, d); }
  void Blob(const std::string& d) { Add("blobs/sha256/" + test::Sha256Hex(d), d); }
  void WriteTo(const std::string& dir) const {
    for (auto& [p, d] : files) {
      std::string full = dir + "/" + p;
      ASSERT_TRUE(MakeDirs(full.substr(0, full.rfind('/'))).ok());
      test::WriteFile(full, d);
    }
  }
  std::string Tar() const {
    TarBuilder b;
    for (auto& [p, d] : files) b.File(p, d);
    return b.Build();
  }
};

Files OciLayout(const std::vector<Layer>& layers, const std::string& ref_name,
                std::string* manifest_out = nullptr, const std::string& config = "") {
  Files f;
  std::string cfg = config.empty() ? ConfigFor(layers) : config;
  f.Blob(cfg);
  std::string ls;
  for (const Layer& l : layers) {
    f.Blob(l.blob);
    ls += (ls.empty() ? "" : ",") + Desc(l.media_type, l.blob);
  }
  std::string manifest =
      "{\"schemaVersion\":2,\"mediaType\":\"" + std::string(media::kOciManifest) +
      "\",\"config\":" + Desc(media::kOciConfig, cfg) + ",\"layers\":[" + ls + "]}";
  f.Blob(manifest);
  f.Add("oci-layout", "{\"imageLayoutVersion\":\"1.0.0\"}");
  std::string ann =
      ref_name.empty()
          ? ""
          : ",\"annotations\":{\"org.opencontainers.image.ref.name\":\"" + ref_name + "\"}";
  f.Add("index.json",
        "{\"schemaVersion\":2,\"manifests\":[" + Desc(media::kOciManifest, manifest, ann) + "]}");
  if (manifest_out) *manifest_out = manifest;
  return f;
}

Files DockerArchive(const std::vector<Layer>& layers, const std::string& tags,
                    const std::string& config = "") {
  Files f;
  std::string cfg = config.empty() ? ConfigFor(layers) : config;
  std::string cfg_name = test::Sha256Hex(cfg) + ".json";
  f.Add(cfg_name, cfg);
  std::string paths;
  for (size_t i = 0; i < layers.size(); i++) {
    std::string p = "l" + std::to_string(i) + "/layer.tar";
    f.Add(p, layers[i].blob);
    paths += (paths.empty() ? "\"" : ",\"") + p + "\"";
  }
  f.Add("manifest.json", "[{\"Config\":\"" + cfg_name + "\",\"RepoTags\":[" + tags +
                             "],\"Layers\":[" + paths + "]}]");
  return f;
}

class LoaderTest : public test::StoreFixture {
 protected:
  void SetUp() override {
    StoreFixture::SetUp();
    if (HasFatalFailure()) return;
    TarBuilder base, top;
    base.Dir("etc")
        .File("etc/os-release", "NAME=test\n")
        .File("bin/tool", "#!/bin/sh\n", 0755)
        .File("gone", "x");
    top.File("etc/motd", "hi\n").Whiteout("", "gone");
    layers_ = {MakeLayer(base), MakeLayer(top, "zstd")};
  }
  std::string Cat(const Digest& id, const std::string& path) {
    auto view = ImageView::Open(*store_, id);
    EXPECT_TRUE(view.ok()) << view.status().message();
    auto n = (*view)->tree().Resolve(path, true);
    if (!n.ok() || *n == 0) return "<missing>";
    LayerReader cache(*store_);
    std::string out((*view)->tree().node(*n).size, '\0');
    auto r = (*view)->Read(cache, *n, out.data(), out.size(), 0);
    EXPECT_TRUE(r.ok()) << r.status().message();
    return out;
  }
  // The whole store, as files plus the index's logical content.
  std::string State() {
    std::string s = test::SnapshotTree(root_);
    s += "generation " + std::to_string(*store_->Generation()) + "\n";
    auto refs = store_->ListRefs();  // keep the Result alive while iterating
    for (auto& [k, v] : *refs) s += k + " " + v.image_id + "\n";
    return s;
  }
  // Loading `path` must fail with a message containing `want`, changing nothing.
  void ExpectRejected(const std::string& path, const std::string& want) {
    std::string before = State();
    auto r = LoadImages(*store_, path, LoadOptions{});
    ASSERT_FALSE(r.ok()) << path << " was accepted";
    EXPECT_NE(r.status().message().find(want), std::string::npos)
        << "message: " << r.status().message();
    EXPECT_EQ(r.status().message().find('\n'), std::string::npos);  // one line
    EXPECT_EQ(State(), before) << "store changed after: " << r.status().message();
  }
  std::vector<Layer> layers_;
};

TEST_F(LoaderTest, LoadsAnOciLayoutDirectory) {
  OciLayout(layers_, "v1").WriteTo(dir_ + "/layout");
  LoadOptions opt;
  opt.repository = "example/app";
  auto r = LoadImages(*store_, dir_ + "/layout", opt);
  ASSERT_TRUE(r.ok()) << r.status().message();
  ASSERT_EQ(r->size(), 1u);
  EXPECT_EQ(r->at(0).names.at(0), "docker.io/example/app:v1");
  Digest id = r->at(0).id;
  EXPECT_EQ(Cat(id, "/etc/os-release"), "NAME=test\n");
  EXPECT_EQ(Cat(id, "/etc/motd"), "hi\n");
  EXPECT_EQ(Cat(id, "/gone"), "<missing>");
  auto img = **store_->GetImage(id);
  EXPECT_EQ(img.created, "2024-01-02T03:04:05Z");
  EXPECT_EQ(img.architecture, "amd64");
  EXPECT_FALSE(img.manifest_digest.empty());
  // Loading again is a no-op that succeeds.
  auto again = LoadImages(*store_, dir_ + "/layout", opt);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->at(0).id, id);
}

TEST_F(LoaderTest, BareTagWithoutRepositoryLoadsUntagged) {
  OciLayout(layers_, "v1").WriteTo(dir_ + "/layout");
  auto r = LoadImages(*store_, dir_ + "/layout", LoadOptions{});
  ASSERT_TRUE(r.ok()) << r.status().message();
  EXPECT_TRUE(r->at(0).names.empty());
  EXPECT_TRUE(store_->GetImage(r->at(0).id)->has_value());
}

TEST_F(LoaderTest, LoadsAnOciArchiveWithAFullRefName) {
  test::WriteFile(dir_ + "/a.oci.tar", OciLayout(layers_, "localhost:5000/app:v2").Tar());
  auto r = LoadImages(*store_, dir_ + "/a.oci.tar", LoadOptions{});
  ASSERT_TRUE(r.ok()) << r.status().message();
  EXPECT_EQ(r->at(0).names.at(0), "localhost:5000/app:v2");
  EXPECT_EQ(Cat(r->at(0).id, "/bin/tool"), "#!/bin/sh\n");
}

TEST_F(LoaderTest, LoadsADockerArchivePlainAndCompressed) {
  std::vector<Layer> plain = {MakeLayer(TarBuilder().File("a", "A"), "none"),
                              MakeLayer(TarBuilder().File("b", "B"), "none")};
  std::string tar = DockerArchive(plain, "\"busybox:latest\",\"tools/bb:1\"").Tar();
  test::WriteFile(dir_ + "/save.tar", tar);
  auto r = LoadImages(*store_, dir_ + "/save.tar", LoadOptions{});
  ASSERT_TRUE(r.ok()) << r.status().message();
  EXPECT_EQ(r->at(0).names.size(), 2u);
  EXPECT_EQ(Cat(r->at(0).id, "b"), "B");
  // Uncompressed layers are read in place: no unpack copy.
  auto img = store_->GetImage(r->at(0).id);
  ASSERT_TRUE(img.ok() && img->has_value());
  ASSERT_EQ((**img).diff_ids.size(), 2u);
  for (size_t i = 0; i < 2; i++) {
    EXPECT_EQ((**img).diff_ids[i].str(), plain[i].diff_id);
    auto l = store_->GetLayer((**img).diff_ids[i]);
    ASSERT_TRUE(l.ok() && l->has_value());
    EXPECT_EQ((**l).compression, Compression::kNone);
    EXPECT_EQ((**l).blob.str(), plain[i].diff_id);  // the blob is the tar itself
    struct stat st;
    EXPECT_NE(stat(store_->UnpackedPath((**img).diff_ids[i]).c_str(), &st), 0);  // no copy
  }
  // docker save | gzip
  test::WriteFile(dir_ + "/save.tar.gz", [&] {
    TarBuilder b;
    for (auto& [p, d] : DockerArchive(plain, "\"other:1\"").files) b.File(p, d);
    return b.Build("gzip");
  }());
  auto r2 = LoadImages(*store_, dir_ + "/save.tar.gz", LoadOptions{});
  ASSERT_TRUE(r2.ok()) << r2.status().message();
  EXPECT_EQ(r2->at(0).id, r->at(0).id);
  EXPECT_TRUE(store_->GetRef("docker.io/library/other:1")->has_value());
}

TEST_F(LoaderTest, DockerArchiveWithSymlinkedLayer) {
  Layer l = MakeLayer(TarBuilder().File("a", "A"), "none");
  std::string cfg = ConfigFor({l, l});
  TarBuilder b;
  b.File("c.json", cfg).File("one/layer.tar", l.blob).Symlink("two/layer.tar", "../one/layer.tar");
  b.File("manifest.json",
         "[{\"Config\":\"c.json\",\"RepoTags\":[\"dup:1\"],\"Layers\":[\"one/layer.tar\",\"two/"
         "layer.tar\"]}]");
  test::WriteFile(dir_ + "/dup.tar", b.Build());
  auto r = LoadImages(*store_, dir_ + "/dup.tar", LoadOptions{});
  ASSERT_TRUE(r.ok()) << r.status().message();
  ASSERT_EQ(r->size(), 1u);
  auto img = store_->GetImage(r->at(0).id);
  ASSERT_TRUE(img.ok() && img->has_value());
  ASSERT_EQ((**img).diff_ids.size(), 2u);  // both layers, read through the one file
  EXPECT_EQ((**img).diff_ids[0].str(), l.diff_id);
  EXPECT_EQ((**img).diff_ids[1].str(), l.diff_id);
  EXPECT_EQ(Cat(r->at(0).id, "a"), "A");
}

TEST_F(LoaderTest, ImportMakesAOneLayerImage) {
  TarBuilder rootfs;
  rootfs.Dir("./").File("./bin/busybox", "ELF", 0755).Symlink("./bin/sh", "busybox");
  for (const char* c : {"none", "gzip", "zstd"}) {
    std::string path = dir_ + "/rootfs-" + c;
    test::WriteFile(path, rootfs.Build(c));
    auto ref = ParseDockerRef(std::string("myimg:") + c);
    auto r = ImportRootfs(*store_, path, *ref, LoadOptions{});
    ASSERT_TRUE(r.ok()) << r.status().message();
    EXPECT_EQ(Cat(r->id, "/bin/sh"), "ELF");
    auto img = **store_->GetImage(r->id);
    ASSERT_EQ(img.diff_ids.size(), 1u);
    EXPECT_EQ(img.diff_ids[0].hex(), test::Sha256Hex(rootfs.Build("none")));
  }
}

TEST_F(LoaderTest, RejectsTruncatedArchive) {
  std::string tar = DockerArchive(layers_, "\"a:1\"").Tar();
  test::WriteFile(dir_ + "/t.tar", tar.substr(0, tar.size() / 2));
  ExpectRejected(dir_ + "/t.tar", "truncated");
}

TEST_F(LoaderTest, RejectsCorruptedGzipLayer) {
  Layer bad = layers_[0];
  bad.blob[bad.blob.size() / 2] ^= 0x5a;
  test::WriteFile(dir_ + "/c.tar", DockerArchive({bad}, "\"a:1\"", ConfigFor({layers_[0]})).Tar());
  ExpectRejected(dir_ + "/c.tar", "layer");
}

TEST_F(LoaderTest, RejectsLayerDigestMismatch) {
  Files f = OciLayout(layers_, "a:1");
  for (auto& [p, d] : f.files) {
    if (p == "blobs/sha256/" + test::Sha256Hex(layers_[1].blob))
      d = MakeLayer(TarBuilder().File("evil", "x"), "zstd").blob;
  }
  f.WriteTo(dir_ + "/l");
  ExpectRejected(dir_ + "/l", "mismatch");
}

TEST_F(LoaderTest, RejectsDiffIdMismatch) {
  Layer wrong = layers_[1];
  wrong.diff_id = "sha256:" + test::Sha256Hex("not the layer");
  std::string cfg = ConfigFor({layers_[0], wrong});
  test::WriteFile(dir_ + "/d.tar", OciLayout(layers_, "a:1", nullptr, cfg).Tar());
  ExpectRejected(dir_ + "/d.tar", "diff_id mismatch");
}

// An image may have Store::kMaxImageLayers layers (docker: 125): one more is refused from
// the manifest (OCI) or the config (docker archive) before anything is stored, with one
// line naming the count; the limit itself loads.
TEST_F(LoaderTest, RejectsMoreLayersThanAnImageMayHave) {
  const size_t max = Store::kMaxImageLayers;
  std::vector<Layer> many(max + 1, layers_[1]);
  OciLayout(many, "a:1").WriteTo(dir_ + "/oci");
  ExpectRejected(dir_ + "/oci", "manifest lists 1001 layers; imgfs takes at most 1000");
  test::WriteFile(dir_ + "/d.tar", DockerArchive(many, "\"a:1\"").Tar());
  ExpectRejected(dir_ + "/d.tar", "image config lists 1001 layers; imgfs takes at most 1000");
  many.pop_back();
  OciLayout(many, "b:1").WriteTo(dir_ + "/ok");
  auto r = LoadImages(*store_, dir_ + "/ok", LoadOptions{});
  ASSERT_TRUE(r.ok()) << r.status().message();
  ASSERT_EQ(r->size(), 1u);
  EXPECT_EQ(Cat((*r)[0].id, "/etc/motd"), "hi\n");
}

TEST_F(LoaderTest, RejectsManifestNamingAMissingBlob) {
  Files f = OciLayout(layers_, "a:1");
  std::erase_if(f.files, [&](auto& p) {
    return p.first == "blobs/sha256/" + test::Sha256Hex(layers_[1].blob);
  });
  f.WriteTo(dir_ + "/m");
  ExpectRejected(dir_ + "/m", "missing");
}

TEST_F(LoaderTest, RejectsConfigThatIsNotJson) {
  test::WriteFile(dir_ + "/j.tar", DockerArchive(layers_, "\"a:1\"", "{not json").Tar());
  ExpectRejected(dir_ + "/j.tar", "not valid JSON");
}

TEST_F(LoaderTest, RejectsUnknownMediaType) {
  Layer odd = layers_[0];
  odd.media_type = "application/x-mystery";
  test::WriteFile(dir_ + "/u.tar", OciLayout({odd}, "a:1").Tar());
  ExpectRejected(dir_ + "/u.tar", "unknown layer media type");
}

TEST_F(LoaderTest, RejectsEmptyFile) {
  test::WriteFile(dir_ + "/empty.tar", "");
  ExpectRejected(dir_ + "/empty.tar", "empty");
}

TEST_F(LoaderTest, RejectsDirectoryThatIsNotALayout) {
  ASSERT_TRUE(MakeDirs(dir_ + "/plain/sub").ok());
  ExpectRejected(dir_ + "/plain", "not an OCI image layout");
}

TEST_F(LoaderTest, RejectsReferenceThatDoesNotParse) {
  test::WriteFile(dir_ + "/r.tar", DockerArchive(layers_, "\"Ubuntu:1\"").Tar());
  ExpectRejected(dir_ + "/r.tar", "lowercase");
}

TEST_F(LoaderTest, RejectsMaliciousTarPaths) {
  for (const char* p : {"../../etc/passwd", "a/../../b"}) {
    Layer evil = MakeLayer(TarBuilder().File(p, "pwned"), "none");
    test::WriteFile(dir_ + "/evil.tar", DockerArchive({evil}, "\"evil:1\"").Tar());
    ExpectRejected(dir_ + "/evil.tar", "escapes the image root");
  }
  Layer link = MakeLayer(TarBuilder().Hardlink("x", "nowhere"), "none");
  test::WriteFile(dir_ + "/link.tar", DockerArchive({link}, "\"evil:2\"").Tar());
  ExpectRejected(dir_ + "/link.tar", "missing target");
  struct stat st;
  EXPECT_NE(stat((dir_ + "/etc/passwd").c_str(), &st), 0);
}

TEST_F(LoaderTest, RejectsSchema1AndArtifacts) {
  Files f;
  std::string m1 = "{\"schemaVersion\":1,\"name\":\"x\",\"fsLayers\":[]}";
  f.Blob(m1);
  f.Add("oci-layout", "{\"imageLayoutVersion\":\"1.0.0\"}");
  f.Add("index.json",
        "{\"schemaVersion\":2,\"manifests\":[" + Desc(media::kOciManifest, m1) + "]}");
  f.WriteTo(dir_ + "/s1");
  ExpectRejected(dir_ + "/s1", "schema 1");
}

TEST_F(LoaderTest, SecondImageFailureLeavesTheFirstUncommittedToo) {
  // One archive, two images; the second is bad: nothing of either is stored.
  Files f = DockerArchive(layers_, "\"good:1\"");
  Layer evil = MakeLayer(TarBuilder().File("../x", "x"), "none");
  std::string cfg2 = ConfigFor({evil});
  f.Add("c2.json", cfg2);
  f.Add("evil/layer.tar", evil.blob);
  for (auto& [p, d] : f.files) {
    if (p == "manifest.json") {
      d.pop_back();  // drop ']'
      d += ",{\"Config\":\"c2.json\",\"RepoTags\":[\"bad:1\"],\"Layers\":[\"evil/layer.tar\"]}]";
    }
  }
  test::WriteFile(dir_ + "/two.tar", f.Tar());
  ExpectRejected(dir_ + "/two.tar", "escapes");
}

}  // namespace
}  // namespace imgfs

namespace imgfs {
namespace {

std::string PlatformJson(const Platform& p) {
  return ",\"platform\":{\"os\":\"" + p.os + "\",\"architecture\":\"" + p.architecture + "\"" +
         (p.variant.empty() ? "" : ",\"variant\":\"" + p.variant + "\"") + "}";
}

// load picks from a nested index by pull's rules (PickPlatform): attestations are
// skipped, and an exact variant wins over the first entry of the architecture.
TEST_F(LoaderTest, NestedIndexFollowsPullsPlatformRules) {
  std::string manifest;
  Files f = OciLayout(layers_, "", &manifest);
  std::erase_if(f.files, [](const auto& e) { return e.first == "index.json"; });
  Platform host = HostPlatform();
  Platform other_variant = host;
  other_variant.variant = "v99";
  Platform exact = host;
  if (exact.variant.empty())
    exact.variant = host.architecture == "arm64" ? "v8" : host.architecture == "arm" ? "v7" : "";
  // The first two entries name blobs the layout does not have: picking either fails.
  std::string missing = "{\"schemaVersion\":2,\"missing\":1}";
  std::string nested =
      "{\"schemaVersion\":2,\"mediaType\":\"" + std::string(media::kOciIndex) +
      "\",\"manifests\":[" +
      Desc(media::kOciManifest, missing, PlatformJson({"unknown", "unknown", ""})) + "," +
      Desc(media::kOciManifest, missing + " ", PlatformJson(other_variant)) + "," +
      Desc(media::kOciManifest, manifest, PlatformJson(exact)) + "]}";
  f.Blob(nested);
  f.Add("index.json", "{\"schemaVersion\":2,\"manifests\":[" +
                          Desc(media::kOciIndex, nested,
                               ",\"annotations\":{\"org.opencontainers.image.ref.name\":\"v1\"}") +
                          "]}");
  f.WriteTo(dir_ + "/nested");
  LoadOptions opt;
  opt.repository = "example/nested";
  auto r = LoadImages(*store_, dir_ + "/nested", opt);
  ASSERT_TRUE(r.ok()) << r.status().message();
  ASSERT_EQ(r->size(), 1u);
  EXPECT_EQ(Cat(r->at(0).id, "/etc/motd"), "hi\n");
}

// An index.json entry that is an index, named name@<its digest>: the name records the
// index's digest (as a pull through that index does), not the platform manifest's.
TEST_F(LoaderTest, ANameByAnIndexDigestRecordsTheIndexDigest) {
  std::string manifest;
  Files f = OciLayout(layers_, "", &manifest);
  std::erase_if(f.files, [](const auto& e) { return e.first == "index.json"; });
  std::string nested = "{\"schemaVersion\":2,\"mediaType\":\"" + std::string(media::kOciIndex) +
                       "\",\"manifests\":[" +
                       Desc(media::kOciManifest, manifest, PlatformJson(HostPlatform())) + "]}";
  f.Blob(nested);
  std::string name = "docker.io/example/listed@" + Sha256Of(nested).str();
  f.Add("index.json", "{\"schemaVersion\":2,\"manifests\":[" +
                          Desc(media::kOciIndex, nested,
                               ",\"annotations\":{\"io.containerd.image.name\":\"" + name + "\"}") +
                          "]}");
  f.WriteTo(dir_ + "/listed");
  auto r = LoadImages(*store_, dir_ + "/listed", LoadOptions{});
  ASSERT_TRUE(r.ok()) << r.status().message();
  auto ref = store_->GetRef(name);
  ASSERT_TRUE(ref.ok() && *ref);
  EXPECT_EQ((*ref)->manifest_digest, Sha256Of(nested).str());
  EXPECT_NE((*ref)->manifest_digest, Sha256Of(manifest).str());
}

Descriptor Entry(const std::string& os, const std::string& arch, const std::string& variant) {
  Descriptor d;
  d.has_platform = true;
  d.platform = {os, arch, variant};
  d.digest = Sha256Of(os + arch + variant);
  return d;
}

TEST(PickPlatform, PullAndLoadRules) {
  std::vector<Descriptor> idx = {Entry("unknown", "unknown", ""), Entry("linux", "arm64", "v9"),
                                 Entry("linux", "arm64", "v8"),   Entry("linux", "amd64", "v3"),
                                 Entry("linux", "amd64", ""),     Entry("linux", "arm", "")};
  idx.push_back(Descriptor{});  // no platform at all
  std::string offered;
  EXPECT_EQ(PickPlatform(idx, {"linux", "arm64", ""}, &offered), &idx[2]);  // default v8
  EXPECT_EQ(offered, "linux/arm64/v9, linux/arm64/v8, linux/amd64/v3, linux/amd64, linux/arm");
  offered.clear();
  EXPECT_EQ(PickPlatform(idx, {"linux", "amd64", ""}, &offered), &idx[4]);  // exact: no variant
  EXPECT_EQ(PickPlatform(idx, {"linux", "amd64", "v3"}, &offered), &idx[3]);
  EXPECT_EQ(PickPlatform(idx, {"linux", "arm", ""}, &offered), &idx[5]);  // v7 wanted, unset
  EXPECT_EQ(PickPlatform(idx, {"linux", "arm64", "v7"}, &offered), nullptr);
  EXPECT_EQ(PickPlatform(idx, {"unknown", "unknown", ""}, &offered), nullptr);  // attestation
  EXPECT_EQ(PickPlatform(idx, {"windows", "amd64", ""}, &offered), nullptr);
}

// `offered` goes into an error line: an index of 30,000 entries whose strings hold
// terminal escapes gives a short one without control bytes, and the pick still works.
TEST(PickPlatform, HostileIndexGivesAShortPrintableOfferList) {
  std::vector<Descriptor> idx;
  for (int i = 0; i < 30000; i++)
    idx.push_back(Entry("linux\x1b]0;x\x07", "arch" + std::to_string(i), "v\r\n1"));
  idx.push_back(Entry("linux", "riscv64", ""));
  std::string offered;
  EXPECT_EQ(PickPlatform(idx, {"linux", "riscv64", ""}, &offered), &idx.back());
  EXPECT_LT(offered.size(), 1000u) << offered.substr(0, 200);
  for (char c : offered) EXPECT_FALSE(static_cast<unsigned char>(c) < 0x20 || c == 0x7f);
  EXPECT_EQ(offered.substr(0, 26), "linux?]0;x?/arch0/v??1, li");
  EXPECT_NE(offered.find(" and 29981 more"), std::string::npos) << offered;
}

}  // namespace
}  // namespace imgfs
