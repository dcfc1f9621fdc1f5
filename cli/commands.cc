// imgfs subcommands. Each command: parse its flags, open the store, call the model,
// print. Errors: one line "imgfs: <what>: <why>" on stderr, exit 1 (2 for usage).
#include <algorithm>
#include <cctype>
#include <cstdio>
#include <map>
#include <string>
#include <vector>

#include "cli/cli_common.h"
#include "cli/flags.h"

namespace imgfs {
namespace {

// Every command, in help order.
const std::vector<Command>& Commands() {
  static const std::vector<Command> cmds = [] {
    std::vector<Command> all;
    for (auto part : {RegistryCommands, ImageCommands, HistoryCommands, FileCommands, StoreCommands,
                      SystemCommands, SaveCommands, PushCommands, CommitCommands, DiffCommands,
                      BuildCommands}) {
      auto v = part();
      all.insert(all.end(), v.begin(), v.end());
    }
    return all;
  }();
  return cmds;
}

void TopHelp(FILE* f) {
  std::fprintf(f,
               "Usage: imgfs [--root DIR] COMMAND [OPTIONS]\n\n"
               "Container images in a verified local store, browsable as plain directories.\n\n"
               "Global options:\n"
               "  -g, --root, --graph DIR   store location (env IMGFS_ROOT; default /var/lib/imgfs "
               "for root,\n"
               "                            $XDG_DATA_HOME/imgfs otherwise)\n"
               "  -v, --version             print the version\n"
               "  -h, --help                this help\n\nCommands:\n");
  for (const Command& c : Commands()) {
    std::string first = c.summary;
    first = first.substr(0, first.find('\n'));
    std::fprintf(f, "  %-12s %s\n", c.name, first.c_str());
  }
  std::fprintf(f,
               "\n'imgfs image ls|rm|inspect|history|tag|prune|...' are the same commands "
               "grouped as docker does.\nRun 'imgfs COMMAND --help' or 'imgfs help COMMAND' "
               "for more on a command.\n");
}

const Command* Find(const std::string& name) {
  for (const Command& c : Commands()) {
    if (name == c.name) return &c;
  }
  return nullptr;
}

// The command the words start with: "images", "system df", "image ls" (docker's group
// form: image ls → images, image rm → rmi, image prune → "image prune", image X → X).
// *used is how many words named it.
const Command* Resolve(const std::vector<std::string>& w, size_t at, size_t* used) {
  if (at + 1 < w.size()) {
    if (const Command* c = Find(w[at] + " " + w[at + 1])) {
      *used = 2;
      return c;
    }
    if (w[at] == "image") {
      static const std::map<std::string, std::string> group = {
          {"ls", "images"}, {"list", "images"}, {"rm", "rmi"}, {"remove", "rmi"}};
      auto g = group.find(w[at + 1]);
      const Command* c = Find(g != group.end() ? g->second : w[at + 1]);
      if (c && std::string(c->name) != "prune") {
        *used = 2;
        return c;
      }
    }
  }
  *used = 1;
  return Find(w[at]);
}

void CommandHelp(const Command& c) {
  std::printf("Usage: %s\n\n%s\n", c.usage, c.summary);
}

}  // namespace

int Main(int argc, char** argv) {
  std::string root;
  std::vector<std::string> rest;
  // Global options come before "--"; after it every word is an argument.
  bool only_pos = false;
  for (int i = 1; i < argc; i++) {
    std::string s = argv[i];
    if (only_pos) {
      rest.push_back(s);
    } else if (s == "--root" || s == "-g" || s == "--graph") {
      if (i + 1 >= argc) Die(s + " needs a directory", 2);
      root = argv[++i];
    } else if (s.rfind("--root=", 0) == 0 || s.rfind("--graph=", 0) == 0) {
      root = s.substr(s.find('=') + 1);
    } else {
      only_pos = s == "--";
      rest.push_back(s);
    }
  }
  if (rest.size() == 2 && rest[0] == "help" && rest[1] == "--man") {
    PrintManPage(stdout, Commands());
    return 0;
  }
  if (rest.empty() || rest[0] == "-h" || rest[0] == "--help") {
    TopHelp(rest.empty() ? stderr : stdout);
    return rest.empty() ? 2 : 0;
  }
  if (rest[0] == "help") {
    if (rest.size() == 1) {
      TopHelp(stdout);
      return 0;
    }
    size_t used = 0;
    const Command* c = Resolve(rest, 1, &used);
    if (!c || 1 + used != rest.size())
      Die("help: unknown command \"" + rest[1] + "\" (see imgfs --help)", 2);
    CommandHelp(*c);
    return 0;
  }
  if (rest[0] == "-v" || rest[0] == "--version" || rest[0] == "version") {
    std::printf("imgfs version %s\n", IMGFS_VERSION);
    return 0;
  }
  if (root.empty()) root = DefaultRoot();
  size_t used = 0;
  const Command* c = Resolve(rest, 0, &used);
  if (!c) {
    if (rest[0] == "image" || rest[0] == "system") {
      if (rest.size() == 2 && (rest[1] == "-h" || rest[1] == "--help")) {
        TopHelp(stdout);
        return 0;
      }
      if (rest.size() > 1)
        Die(rest[0] + ": unknown subcommand \"" + rest[1] + "\" (see imgfs --help)", 2);
      Die(rest[0] + ": want a subcommand (see imgfs --help)", 2);
    }
    Die("unknown command \"" + rest[0] + "\" (see imgfs --help)", 2);
  }
  bool help = false;
  auto a = ParseFlags(*c, std::vector<std::string>(rest.begin() + used, rest.end()), &help);
  if (!a.ok()) Die(a.status().message(), 2);
  if (help) {
    CommandHelp(*c);
    return 0;
  }
  return c->run(root, *a);
}

}  // namespace imgfs
