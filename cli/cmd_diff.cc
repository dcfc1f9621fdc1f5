// imgfs subcommands. Comparing images: diff.
#include <cstdio>
#include <string>
#include <vector>

#include "cli/cli_common.h"
#include "fs/image_diff.h"
#include "fs/image_view.h"
#include "fs/span_cache.h"
#include "index/json_writer.h"

namespace imgfs {
namespace {

int CmdDiff(const std::string& root, const Args& a) {
  if (a.pos.empty() || a.pos.size() > 2) Die("diff: want IMAGE [BASE] (see imgfs diff --help)", 2);
  std::string format = a.Get("--format", "table");
  if (format != "table" && format != "json") Die("diff: --format is table or json", 2);
  auto store = OpenStore(root);
  auto id = ResolveImage(*store, a.pos[0]);
  if (!id.ok()) return Fail(id.status(), "diff");
  auto view = ImageView::Open(*store, *id);
  if (!view.ok()) return Fail(view.status(), "diff");
  Result<std::shared_ptr<const ImageView>> base = Status::NotFound("no base");
  if (a.pos.size() == 2) {
    auto bid = ResolveImage(*store, a.pos[1]);
    if (!bid.ok()) return Fail(bid.status(), "diff");
    base = ImageView::Open(*store, *bid);
  } else {
    // The top layer against what lies below it.
    std::vector<Digest> below = (*view)->image().diff_ids;
    if (!below.empty()) below.pop_back();
    base = ImageView::OpenLayers(*store, below, /*changeset=*/false);
  }
  if (!base.ok()) return Fail(base.status(), "diff");
  LayerReader cache(*store);
  auto changes = DiffViews(**base, **view, cache);
  if (!changes.ok()) return Fail(changes.status(), "diff");
  for (const PathChange& c : *changes) {
    if (format == "json") {
      // docker's JSON: Kind 0 = C, 1 = A, 2 = D.
      JsonWriter w;
      w.BeginObject().Key("Path").String(c.path).Key("Kind").Int(c.kind == 'C'   ? 0
                                                                 : c.kind == 'A' ? 1
                                                                                 : 2);
      w.EndObject();
      std::printf("%s\n", w.str().c_str());
    } else {
      std::printf("%c %s\n", c.kind, c.path.c_str());
    }
  }
  return 0;
}

}  // namespace

std::vector<Command> DiffCommands() {
  return {
      {"diff",
       "imgfs diff [--format table|json] IMAGE [BASE]",
       "List the paths an image changes (A added, C changed, D deleted), as docker diff.\n"
       "Against BASE, or, without it, what IMAGE's top layer changes in the layers below.\n"
       "  --format FORMAT    table (default: \"A /path\" lines) or json (one object per line)",
       {"--format"},
       {},
       CmdDiff},
  };
}

}  // namespace imgfs
