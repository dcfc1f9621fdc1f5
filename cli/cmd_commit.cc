// imgfs subcommands. New images from directories: commit.
#include <cstdio>
#include <string>
#include <vector>

#include "cli/cli_common.h"
#include "registry/committer.h"
#include "registry/reference.h"

namespace imgfs {
namespace {

int CmdCommit(const std::string& root, const Args& a) {
  if (a.pos.size() != 2) Die("commit: want DIR REPOSITORY[:TAG] (see imgfs commit --help)", 2);
  auto ref = ParseDockerRef(a.pos[1]);
  if (!ref.ok()) return Fail(ref.status(), "commit");
  if (!ref->digest.empty()) Die("commit: the reference must be a tag, not a digest");
  auto store = OpenStore(root);
  CommitRequest req;
  req.dir = a.pos[0];
  req.name = ref->Normalized().String();
  req.message = a.Get("--message");
  req.changes = a.Multi("--change");
  if (a.Has("--base")) {
    auto base = ResolveImage(*store, a.Get("--base"));
    if (!base.ok()) return Fail(base.status(), "commit: --base");
    req.base = *base;
  }
  auto out = CommitDirectory(*store, req);
  if (!out.ok()) return Fail(out.status(), "commit");
  std::printf("%s\n", out->id.str().c_str());
  return 0;
}

}  // namespace

std::vector<Command> CommitCommands() {
  return {
      {"commit",
       "imgfs commit [--base IMAGE] [-m MSG] [-c INSTRUCTION]... DIR REPOSITORY[:TAG]",
       "Create an image from a directory. Prints the image ID.\n"
       "With --base, DIR is an overlayfs upper directory over IMAGE (e.g. one whose lowerdir\n"
       "is IMAGE in an imgfs mount) and becomes one gzip layer on top of it: whiteouts and\n"
       "opaque directories become .wh. entries, overlay's own xattrs are left out, and a\n"
       "redirect or metacopy xattr is refused (docs/layer-rules.md). Without --base, DIR is\n"
       "a root filesystem and the image has that one layer.\n"
       "  --base IMAGE           the image the upper directory lies on\n"
       "  -m, --message MSG      the history entry's comment\n"
       "  -c, --change INSTR     apply a Dockerfile instruction to the config: CMD,\n"
       "                         ENTRYPOINT, ENV, EXPOSE, LABEL, USER, WORKDIR, VOLUME",
       {"--base", "--message", "--change"},
       {{"-m", "--message"}, {"-c", "--change"}},
       CmdCommit},
  };
}

}  // namespace imgfs
