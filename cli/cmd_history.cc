// imgfs subcommands. An image's history (docker history) and image prune (docker image
// prune): both read the image's config and names, as docker's do.
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <ctime>
#include <iostream>
#include <set>
#include <string>
#include <vector>

#include "cli/cli_common.h"
#include "cli/go_template.h"
#include "cli/image_filter.h"
#include "fs/image_view.h"
#include "fs/unpack_cache.h"
#include "index/store.h"
#include "registry/image_loader.h"
#include "registry/json.h"

namespace imgfs {
namespace {

// docker's formatter.Ellipsis: at most `width` characters, the last one "…".
std::string Ellipsis(const std::string& s, size_t width) {
  std::vector<std::string> chars;
  for (size_t i = 0; i < s.size();) {
    size_t n = 1;
    while (i + n < s.size() && (static_cast<unsigned char>(s[i + n]) & 0xC0) == 0x80) n++;
    chars.push_back(s.substr(i, n));
    i += n;
  }
  if (chars.size() <= width) return s;
  std::string out;
  for (size_t i = 0; i + 1 < width; i++) out += chars[i];
  return out + "\xE2\x80\xA6";
}

int CmdHistory(const std::string& root, const Args& a) {
  if (a.pos.size() != 1) Die("history: want exactly one IMAGE (see imgfs history --help)", 2);
  bool no_trunc = a.Has("--no-trunc"), quiet = a.Has("--quiet"), human = a.On("--human");
  DockerFormat format =
      ParseFormatOrDie("history", quiet ? "{{.ID}}" : a.Get("--format", "table"),
                       "{{.ID}}\t{{.CreatedSince}}\t{{.CreatedBy}}\t{{.Size}}\t{{.Comment}}");
  auto store = OpenStore(root);
  auto id = ResolveImage(*store, a.pos[0]);
  if (!id.ok()) return Fail(id.status(), "history");
  auto view = ImageView::Open(*store, *id);
  if (!view.ok()) return Fail(view.status(), "history " + a.pos[0]);
  auto cfg_bytes = store->blobs().Read(*id);
  if (!cfg_bytes.ok()) return Fail(cfg_bytes.status(), "history " + a.pos[0]);
  auto cfg = TemplateValueFromJson(*cfg_bytes);
  if (!cfg.ok()) return Fail(cfg.status(), "history " + a.pos[0]);
  // moby's ImageHistory: one row per history entry, newest first; a non-empty entry
  // takes the next layer's size; the newest row carries the image ID, the others
  // "<missing>" (an image from a registry or an archive has no parent images).
  struct Row {
    std::string id, created_by, comment;
    int64_t created = 0;
    uint64_t size = 0;
  };
  std::vector<Row> rows;
  const auto& layers = (*view)->layers();
  size_t next_layer = 0;
  if (const TemplateValue* h = cfg->Find("history");
      h && h->kind() == TemplateValue::Kind::kArray) {
    for (const TemplateValue& e : h->items()) {
      Row r;
      r.id = "<missing>";
      auto str = [&](const char* k) {
        const TemplateValue* v = e.Find(k);
        return v && v->kind() == TemplateValue::Kind::kString ? v->s() : std::string();
      };
      r.created = ParseRfc3339(str("created"));
      r.created_by = str("created_by");
      r.comment = str("comment");
      const TemplateValue* empty = e.Find("empty_layer");
      if (!(empty && empty->kind() == TemplateValue::Kind::kBool && empty->b())) {
        if (next_layer >= layers.size())
          return Fail(Status::Corruption("too many non-empty layers in the history"),
                      "history " + a.pos[0]);
        r.size = layers[next_layer++].size;
      }
      rows.push_back(r);
    }
  }
  std::reverse(rows.begin(), rows.end());
  if (!rows.empty()) rows[0].id = id->str();
  std::vector<TemplateValue> values;
  for (const Row& r : rows) {
    // docker's history context (cli/command/formatter/history.go), keys sorted.
    std::string by = r.created_by;
    std::replace(by.begin(), by.end(), '\t', ' ');
    std::string rid = r.id;
    if (!no_trunc && rid.rfind("sha256:", 0) == 0) rid = rid.substr(7, 12);
    TemplateValue v = TemplateValue::Object(true);
    v.Set("Comment", TemplateValue::Str(r.comment));
    v.Set("CreatedAt", TemplateValue::Str(GoTimeRfc3339(r.created)));
    v.Set("CreatedBy", TemplateValue::Str(no_trunc ? by : Ellipsis(by, 45)));
    v.Set("CreatedSince",
          TemplateValue::Str(human ? HumanSince(r.created) : GoTimeRfc3339(r.created)));
    v.Set("ID", TemplateValue::Str(rid));
    v.Set("Size", TemplateValue::Str(human ? HumanSize(static_cast<double>(r.size))
                                           : std::to_string(r.size)));
    values.push_back(std::move(v));
  }
  return PrintFormatted("history", format, values,
                        HeaderOf({{"Comment", "COMMENT"},
                                  {"CreatedAt", "CREATED AT"},
                                  {"CreatedBy", "CREATED BY"},
                                  {"CreatedSince", "CREATED"},
                                  {"ID", "IMAGE"},
                                  {"Size", "SIZE"}}));
}

int CmdImagePrune(const std::string& root, const Args& a) {
  if (!a.pos.empty()) Die("image prune: takes no arguments (see imgfs image prune --help)", 2);
  bool all = a.Has("--all");
  auto store = OpenStore(root);
  ImageFilter filter;
  if (Status st = filter.Parse(*store, a.Multi("--filter"), {"until", "label"}); !st.ok())
    Die("image prune: " + st.message(), 2);
  if (!a.Has("--force")) {
    std::fprintf(stderr, "%s\nAre you sure you want to continue? [y/N] ",
                 all ? "WARNING! This will remove all images (imgfs has no containers to keep "
                       "them)."
                     : "WARNING! This will remove all dangling images.");
    std::string answer;
    std::getline(std::cin, answer);
    if (answer != "y" && answer != "Y" && answer != "yes")
      Die("image prune: cancelled (nothing removed)");
  }
  auto lock = GcLock::Acquire(*store, true);
  if (!lock.ok()) return Fail(lock.status(), "image prune");
  auto images = store->ListImages();
  if (!images.ok()) return Fail(images.status(), "image prune");
  auto names = NamesByImage(*store);
  if (!names.ok()) return Fail(names.status(), "image prune");
  std::string report;
  uint64_t freed_bytes = 0;
  for (const ImageRecord& img : *images) {
    const Names& n = (*names)[img.id.hex()];
    bool untagged = n.tags.empty();
    if (!all && !untagged) continue;
    std::string repo = n.tags.empty() ? (n.digests.empty() ? "<none>" : n.digests[0].FamiliarName())
                                      : n.tags[0].FamiliarName();
    if (!filter.Match(*store, img, repo, "<none>", untagged)) continue;
    for (auto& t : n.tags) report += "untagged: " + t.FamiliarString() + "\n";
    for (auto& d : n.digests) report += "untagged: " + d.FamiliarString() + "\n";
    auto freed = store->DeleteImage(img.id);
    if (!freed.ok()) return Fail(freed.status(), "image prune");
    auto live = store->LiveBlobs();
    if (!live.ok()) return Fail(live.status(), "image prune");
    for (const Digest& d : *freed) {
      if (live->count(d)) continue;
      auto sz = store->blobs().Size(d);
      Status st = store->blobs().Delete(d);
      if (!st.ok()) return Fail(st, "image prune");
      freed_bytes += sz.ok() ? *sz : 0;
    }
    report += "deleted: " + img.id.str() + "\n";
  }
  if (!report.empty()) {
    Status st = store->NoteBlobsDeleted();  // a running mount lets its pins of them go
    if (!st.ok()) return Fail(st, "image prune");
  }
  // Unpacked copies are caches: `imgfs prune` removes them.
  if (!report.empty()) std::printf("Deleted Images:\n%s\n", report.c_str());
  std::printf("Total reclaimed space: %s\n", HumanSize(static_cast<double>(freed_bytes)).c_str());
  return 0;
}

}  // namespace

std::vector<Command> HistoryCommands() {
  return {
      {"history",
       "imgfs history [--no-trunc] [-q] [-H=false] [--format FORMAT] IMAGE",
       "Show the history of an image, as docker history does (newest first).\n"
       "  --no-trunc           full image IDs and commands\n"
       "  -q, --quiet          only image IDs\n"
       "  -H, --human BOOL     human sizes and dates (default true)\n"
       "  --format FORMAT      \"table\" (default), \"table TEMPLATE\", \"json\" or a Go\n"
       "                       template: {{.ID}} {{.CreatedSince}} {{.CreatedAt}}\n"
       "                       {{.CreatedBy}} {{.Size}} {{.Comment}}",
       {"--format"},
       {{"-q", "--quiet"}, {"-H", "--human"}},
       CmdHistory,
       {"--no-trunc", "--quiet", "--human"}},
      {"image prune",
       "imgfs image prune [-a] [-f] [--filter until=DURATION|label=K[=V]]...",
       "Remove images without a tag (with -a: every image), as docker image prune does,\n"
       "then the blobs only they used (unpacked copies: imgfs prune).\n"
       "  -a, --all            every image, not only the untagged ones\n"
       "  -f, --force          do not ask for confirmation\n"
       "  --filter FILTER      until=DURATION|TIME (created before), label=KEY[=VALUE]",
       {"--filter"},
       {{"-a", "--all"}, {"-f", "--force"}},
       CmdImagePrune,
       {"--all", "--force"}},
  };
}

}  // namespace imgfs
