// Writes the generated seeds of the fuzz corpora (tests/fuzz/make_corpus.sh runs it):
// small layers made with the tests' TarBuilder (plain, gzip, zstd; pax, gnu, ustar),
// their encoded entry tables and merged trees, and encoded LMDB records, each made by
// imgfs's own encoders so the fuzzers start from valid inputs.
//   fuzz_corpus_gen OUTDIR   (writes OUTDIR/NAME/seed-*)
#include <sys/stat.h>

#include <cstdio>
#include <string>

#include "index/layer_indexer.h"
#include "index/merged_tree.h"
#include "index/store.h"
#include "index/stream.h"
#include "tests/tar_builder.h"

using namespace imgfs;
using imgfs::test::TarBuilder;

namespace {

std::string g_out;

void Put(const std::string& target, const std::string& name, const std::string& bytes) {
  std::string dir = g_out + "/" + target;
  ::mkdir(dir.c_str(), 0755);
  FILE* f = std::fopen((dir + "/seed-" + name).c_str(), "wb");
  if (!f || std::fwrite(bytes.data(), 1, bytes.size(), f) != bytes.size()) std::abort();
  std::fclose(f);
}

TarBuilder Lower() {
  TarBuilder b;
  b.Dir("bin").File("bin/sh", "#!/bin/sh\n", 04755).Symlink("bin/ls", "sh");
  b.Dir("etc", 0750)
      .File("etc/passwd", "root:x:0:0::/root:/bin/sh\n")
      .Hardlink("etc/pw", "etc/passwd");
  b.Fifo("run/fifo").Char("dev/null", 1, 3).Symlink("lib", "/usr/lib").Dir("usr/lib");
  b.File("usr/lib/empty", "");
  b.last().xattrs = {{"user.note", std::string("hello\0bin", 9)},
                     {"security.capability", std::string(20, '\1')}};
  b.Dir("opt/app").File("opt/app/f", "a");
  return b;
}

TarBuilder Upper() {
  TarBuilder b;
  b.Whiteout("etc", "pw").Opaque("opt/app").File("opt/app/g", "b");
  b.File("lib/via-link", "through the symlink").Dir("etc/passwd.d");
  b.Symlink("loop", "loop").Symlink("up", "../../..").Hardlink("bin/sh2", "bin/sh");
  return b;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: fuzz_corpus_gen OUTDIR\n");
    return 2;
  }
  g_out = argv[1];
  std::vector<std::vector<LayerEntry>> tables;
  int i = 0;
  for (TarBuilder b : {Lower(), Upper()}) {
    for (auto f :
         {TarBuilder::Format::kPax, TarBuilder::Format::kGnu, TarBuilder::Format::kUstar}) {
      std::string tar = b.Build("none", f);
      std::string n = std::to_string(i++);
      Put("layer_indexer", "none-" + n, std::string(1, '\0') + tar);
      Put("layer_indexer", "scan-" + n, std::string(1, '\4') + tar);
      if (f == TarBuilder::Format::kPax) {
        Put("layer_indexer", "gzip-" + n, std::string(1, '\1') + b.Build("gzip", f));
        Put("layer_indexer", "zstd-" + n, std::string(1, '\2') + b.Build("zstd", f));
        Put("layer_indexer", "auto-" + n, std::string(1, '\3') + b.Build("gzip", f));
        StringSource src(tar);
        auto index = IndexTarStream(&src);
        if (!index.ok()) {
          std::fprintf(stderr, "%s\n", index.status().ToString().c_str());
          return 1;
        }
        Put("layer_entry", n, EncodeEntries(index->entries));
        tables.push_back(index->entries);
      }
    }
  }
  auto one = MergedTree::Build({&tables[0]});
  auto two = MergedTree::Build({&tables[0], &tables[1]});
  if (!one.ok() || !two.ok()) return 1;
  Put("merged_tree", "one", std::string(1, '\0') + one->Encode());
  Put("merged_tree", "two", std::string(1, '\0') + two->Encode());
  Put("merged_tree", "build", std::string(1, '\1') + std::string(600, '\x5a'));

  Digest a = Sha256Of("a"), b = Sha256Of("b");
  Put("store_records", "ref", EncodeRef({a.hex(), "sha256:" + b.hex()}));
  ImageRecord img;
  img.id = a;
  img.manifest_digest = "sha256:" + b.hex();
  img.manifest_media_type = "application/vnd.oci.image.manifest.v1+json";
  img.config_size = 1234;
  img.created = "2024-01-02T03:04:05Z";
  img.created_unix = 1704164645;
  img.os = "linux";
  img.architecture = "arm64";
  img.variant = "v8";
  img.diff_ids = {a, b};
  img.size = 1 << 20;
  img.added_unix = -5;
  Put("store_records", "image", EncodeImage(img));
  LayerRecord l;
  l.diff_id = a;
  l.blob = b;
  l.media_type = "application/vnd.oci.image.layer.v1.tar+zstd";
  l.compression = Compression::kZstd;
  l.blob_size = 99;
  l.size = 1024;
  l.entry_count = 7;
  Put("store_records", "layer", EncodeLayer(l));
  return 0;
}
