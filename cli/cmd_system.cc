// imgfs subcommands. system df: what the store holds and what prune would give back,
// in docker system df's table.
#include <dirent.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <map>
#include <set>
#include <string>
#include <vector>

#include "cli/cli_common.h"
#include "cli/go_template.h"
#include "fs/image_view.h"
#include "index/store.h"

namespace imgfs {
namespace {

struct DfRow {
  std::string type;
  uint64_t total = 0, active = 0, size = 0, reclaimable = 0;
};

// docker's "11.63MB (70%)".
std::string Reclaimable(uint64_t r, uint64_t size) {
  std::string s = HumanSize(static_cast<double>(r), 4);
  if (size > 0) s += " (" + std::to_string(r * 100 / size) + "%)";
  return s;
}

int CmdSystemDf(const std::string& root, const Args& a) {
  if (!a.pos.empty()) Die("system df: takes no arguments", 2);
  DockerFormat format =
      ParseFormatOrDie("system df", a.Get("--format", "table"),
                       "{{.Type}}\t{{.TotalCount}}\t{{.Active}}\t{{.Size}}\t{{.Reclaimable}}");
  auto store = OpenStore(root);
  auto images = store->ListImages();
  if (!images.ok()) return Fail(images.status(), "system df");
  auto names = NamesByImage(*store);
  if (!names.ok()) return Fail(names.status(), "system df");
  // Which blobs and layers each image uses, and whether a tagged image uses them.
  DfRow img{"Images"}, lay{"Layers"}, blob{"Blobs"}, cache{"Unpacked caches"};
  std::map<Digest, bool> image_blobs;                  // blob → used by a tagged image
  std::map<Digest, std::pair<uint64_t, bool>> layers;  // diff_id → size, kept
  for (const ImageRecord& r : *images) {
    bool tagged = !(*names)[r.id.hex()].tags.empty();
    img.total++;
    img.active += tagged;
    auto view = ImageView::Open(*store, r.id);
    if (!view.ok()) return Fail(view.status(), "system df");
    image_blobs[r.id] |= tagged;
    for (const LayerRecord& l : (*view)->layers()) {
      image_blobs[l.blob] |= tagged;
      auto& e = layers[l.diff_id];
      e.first = l.size;
      e.second |= tagged;
    }
  }
  for (auto& [d, kept] : image_blobs) {
    auto sz = store->blobs().Size(d);
    uint64_t n = sz.ok() ? *sz : 0;
    img.size += n;
    if (!kept) img.reclaimable += n;
  }
  for (auto& [d, e] : layers) {
    lay.total++;
    lay.active += e.second;
    lay.size += e.first;
    if (!e.second) lay.reclaimable += e.first;
  }
  auto live = store->LiveBlobs();
  if (!live.ok()) return Fail(live.status(), "system df");
  auto all = store->blobs().List();
  if (!all.ok()) return Fail(all.status(), "system df");
  for (const Digest& d : *all) {
    auto sz = store->blobs().Size(d);
    uint64_t n = sz.ok() ? *sz : 0;
    blob.total++;
    blob.size += n;
    if (live->count(d))
      blob.active++;
    else
      blob.reclaimable += n;
  }
  // Unpacked copies: a copy some process holds (a shared flock, unpack_cache.h) is
  // active; the others are what `imgfs prune` removes.
  std::string dir = root + "/unpacked";
  if (DIR* dp = ::opendir(dir.c_str())) {
    while (struct dirent* e = ::readdir(dp)) {
      std::string p = dir + "/" + e->d_name;
      struct stat st;
      if (e->d_name[0] == '.' || ::lstat(p.c_str(), &st) != 0 || !S_ISREG(st.st_mode)) continue;
      cache.total++;
      cache.size += static_cast<uint64_t>(st.st_size);
      bool busy = false;
      int fd = ::open(p.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
      if (fd >= 0) {
        busy = ::flock(fd, LOCK_EX | LOCK_NB) != 0;
        ::close(fd);  // closing releases the lock
      }
      if (busy)
        cache.active++;
      else
        cache.reclaimable += static_cast<uint64_t>(st.st_size);
    }
    ::closedir(dp);
  }
  std::vector<TemplateValue> rows;
  for (const DfRow& r : {img, lay, blob, cache}) {
    TemplateValue v = TemplateValue::Object(true);
    v.Set("Active", TemplateValue::Str(std::to_string(r.active)));
    v.Set("Reclaimable", TemplateValue::Str(Reclaimable(r.reclaimable, r.size)));
    v.Set("Size", TemplateValue::Str(HumanSize(static_cast<double>(r.size), 4)));
    v.Set("TotalCount", TemplateValue::Str(std::to_string(r.total)));
    v.Set("Type", TemplateValue::Str(r.type));
    rows.push_back(std::move(v));
  }
  return PrintFormatted("system df", format, rows,
                        HeaderOf({{"Active", "ACTIVE"},
                                  {"Reclaimable", "RECLAIMABLE"},
                                  {"Size", "SIZE"},
                                  {"TotalCount", "TOTAL"},
                                  {"Type", "TYPE"}}));
}

}  // namespace

std::vector<Command> SystemCommands() {
  return {
      {"system df",
       "imgfs system df [--format FORMAT]",
       "Show the store's disk use, as docker system df does.\n"
       "  Images: image configs and layer blobs (active: tagged; reclaimable: what\n"
       "    `imgfs image prune` frees). Layers: uncompressed layer sizes. Blobs: every\n"
       "    blob file (reclaimable: unreferenced, `imgfs prune`). Unpacked caches:\n"
       "    decompressed layer copies (active: open by a mount; the rest `imgfs prune`\n"
       "    removes).\n"
       "  --format FORMAT      \"table\" (default), \"json\" or a Go template: {{.Type}}\n"
       "                       {{.TotalCount}} {{.Active}} {{.Size}} {{.Reclaimable}}",
       {"--format"},
       {},
       CmdSystemDf,
       {}},
  };
}

}  // namespace imgfs
