// `imgfs help --man`: the imgfs(1) manual page in roff, made from the same command
// tables as --help (the build runs it, so the page never disagrees with the binary).
#include <cstdio>
#include <string>
#include <vector>

#include "cli/cli_common.h"

namespace imgfs {
namespace {

// Escapes text for roff: backslashes, hyphens (so options copy and paste as ASCII),
// and a leading dot or quote that roff would read as a request.
std::string Roff(const std::string& s) {
  std::string out;
  bool line_start = true;
  for (char c : s) {
    if (line_start && (c == '.' || c == '\'')) out += "\\&";
    if (c == '\\') {
      out += "\\e";
    } else if (c == '-') {
      out += "\\-";
    } else {
      out += c;
    }
    line_start = c == '\n';
  }
  return out;
}

}  // namespace

void PrintManPage(FILE* f, const std::vector<Command>& commands) {
  std::fprintf(f,
               ".TH IMGFS 1 \"\" \"imgfs %s\" \"User Commands\"\n"
               ".SH NAME\nimgfs \\- container images in a verified local store, browsable as "
               "plain directories\n"
               ".SH SYNOPSIS\n.B imgfs\n[\\fB\\-\\-root\\fR \\fIDIR\\fR] \\fICOMMAND\\fR "
               "[\\fIOPTIONS\\fR]\n"
               ".SH DESCRIPTION\nimgfs pulls, loads, saves and pushes container images like "
               "docker, podman and skopeo, keeps them in a content\\-addressed store whose every "
               "blob is verified, and shows every image as a read\\-only directory tree through "
               "FUSE (\\fBimgfs mount\\fR) or without a mount (\\fBimgfs ls\\fR, \\fBimgfs "
               "cat\\fR).\n"
               ".SH GLOBAL OPTIONS\n"
               ".TP\n\\fB\\-g\\fR, \\fB\\-\\-root\\fR, \\fB\\-\\-graph\\fR \\fIDIR\\fR\nthe "
               "store (environment \\fBIMGFS_ROOT\\fR; default \\fI/var/lib/imgfs\\fR for root, "
               "\\fI$XDG_DATA_HOME/imgfs\\fR otherwise)\n"
               ".TP\n\\fB\\-v\\fR, \\fB\\-\\-version\\fR\nprint the version\n"
               ".TP\n\\fB\\-h\\fR, \\fB\\-\\-help\\fR\nthe command list; \\fBimgfs "
               "\\fICOMMAND\\fB \\-\\-help\\fR for one command\n"
               ".SH COMMANDS\n",
               IMGFS_VERSION);
  for (const Command& c : commands) {
    std::fprintf(f, ".SS %s\n.nf\n\\fB%s\\fR\n.fi\n.PP\n.nf\n%s\n.fi\n", c.name,
                 Roff(c.usage).c_str(), Roff(c.summary).c_str());
  }
  std::fprintf(f,
               ".SH FILES\n.TP\n\\fIROOT/blobs/sha256/\\fR\nverified blobs (layers, configs, "
               "manifests)\n"
               ".TP\n\\fIROOT/index/\\fR\nthe LMDB index of images, layers and names\n"
               ".TP\n\\fIROOT/config.json\\fR\nregistry mirrors and insecure registries (docker's "
               "daemon.json keys)\n"
               ".TP\n\\fIROOT/mount.log\\fR\nthe log of a background mount\n"
               ".SH EXIT STATUS\n0 on success, 1 on an error (one line on standard error), 2 for a "
               "usage error.\n"
               ".SH SEE ALSO\n\\fBmount.imgfs\\fR(8), \\fBdocker\\fR(1), \\fBpodman\\fR(1), "
               "\\fBskopeo\\fR(1), \\fBfusermount3\\fR(1)\n");
}

}  // namespace imgfs
