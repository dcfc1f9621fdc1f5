// The tree build of one image, the way the first lookup inside it runs it, timed in one
// process: `tree_build_bench STORE IMAGE MODE N` prints N lines "ms minor-faults", the
// first being the process's first build (its heap not yet faulted in). MODE:
//   store  Store::GetTree (what the mount calls: decode the tables, build, lay out);
//   flat   FlatLayerTree on the image's one layer table (decoded once, untimed);
//   merge  TreeBuilder::AddLayer of each table, then Finish (the general merge).
// bench/tree_build.sh runs it in alternated fresh processes and reports medians.
#include <sys/resource.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "index/merged_tree.h"
#include "index/store.h"

using namespace imgfs;

namespace {

long MinorFaults() {
  rusage r{};
  getrusage(RUSAGE_SELF, &r);
  return r.ru_minflt;
}

int Fail(const Status& st) {
  std::fprintf(stderr, "tree_build_bench: %s\n", st.ToString().c_str());
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 5) {
    std::fprintf(stderr, "usage: tree_build_bench STORE IMAGE-ID store|flat|merge N\n");
    return 2;
  }
  auto store = Store::Open(argv[1]);
  if (!store.ok()) return Fail(store.status());
  auto id = Digest::Parse(argv[2]);
  if (!id.ok()) return Fail(id.status());
  auto image = (*store)->GetImage(*id);
  if (!image.ok()) return Fail(image.status());
  if (!*image) return Fail(Status::NotFound("no image " + id->str()));
  const std::string mode = argv[3];
  const int n = std::atoi(argv[4]);
  // The tables as the store holds them (encoded), decoded to views before the clock.
  std::vector<std::string> encoded;
  for (const Digest& d : (**image).diff_ids) {
    auto entries = (*store)->GetEntries(d);
    if (!entries.ok()) return Fail(entries.status());
    encoded.push_back(EncodeEntries(*entries));
  }
  std::vector<EntryTable> tables(encoded.size());
  for (size_t i = 0; i < encoded.size(); i++) {
    Status st = tables[i].Decode(encoded[i]);
    if (!st.ok()) return Fail(st);
  }
  if (mode == "flat" && tables.size() != 1) {
    return Fail(Status::InvalidArgument("flat needs an image of one layer"));
  }
  for (int i = 0; i < n; i++) {
    long f0 = MinorFaults();
    auto t0 = std::chrono::steady_clock::now();
    size_t nodes = 0;
    if (mode == "store") {
      auto t = (*store)->GetTree(*id);
      if (!t.ok()) return Fail(t.status());
      nodes = t->node_count();
    } else if (mode == "flat") {
      auto t = FlatLayerTree(tables[0]);
      if (!t) return Fail(Status::InvalidArgument("the layer needs the merge"));
      nodes = t->node_count();
    } else if (mode == "merge") {
      TreeBuilder b;
      for (const EntryTable& t : tables) {
        Status st = b.AddLayer(t);
        if (!st.ok()) return Fail(st);
      }
      auto t = b.Finish();
      if (!t.ok()) return Fail(t.status());
      nodes = t->node_count();
    } else {
      return Fail(Status::InvalidArgument("unknown mode " + mode));
    }
    auto t1 = std::chrono::steady_clock::now();
    std::printf("%.3f %ld %zu\n", std::chrono::duration<double, std::milli>(t1 - t0).count(),
                MinorFaults() - f0, nodes);
  }
  return 0;
}
