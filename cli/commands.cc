// imgfs subcommands. Each command: parse its flags, open the store, call the model,
// print. Errors: one line "imgfs: <what>: <why>" on stderr, exit 1 (2 for usage).
#include <algorithm>
#include <cctype>
#include <cstdio>
#include <string>
#include <vector>

#include "cli/cli_common.h"

namespace imgfs {
namespace {

// Every command, in help order.
const std::vector<Command>& Commands() {
  static const std::vector<Command> cmds = [] {
    std::vector<Command> all;
    for (auto part : {RegistryCommands, ImageCommands, FileCommands, StoreCommands,
                      CommitCommands, DiffCommands}) {
      auto v = part();
      all.insert(all.end(), v.begin(), v.end());
    }
    return all;
  }();
  return cmds;
}

// Whether the help text names `flag` as a whole word ("--dig" is not "--digests").
bool NamedInHelp(const std::string& text, const std::string& flag) {
  auto word = [](char ch) { return std::isalnum(static_cast<unsigned char>(ch)) || ch == '-'; };
  for (size_t at = text.find(flag); at != std::string::npos; at = text.find(flag, at + 1)) {
    size_t end = at + flag.size();
    if ((at == 0 || !word(text[at - 1])) && (end == text.size() || !word(text[end]))) return true;
  }
  return false;
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
    std::fprintf(f, "  %-9s %s\n", c.name, first.c_str());
  }
  std::fprintf(f, "\nRun 'imgfs COMMAND --help' for more on a command.\n");
}

}  // namespace

int Main(int argc, char** argv) {
  std::string root;
  std::vector<std::string> rest;
  for (int i = 1; i < argc; i++) {
    std::string s = argv[i];
    if (s == "--root" || s == "-g" || s == "--graph") {
      if (i + 1 >= argc) Die(s + " needs a directory", 2);
      root = argv[++i];
    } else if (s.rfind("--root=", 0) == 0 || s.rfind("--graph=", 0) == 0) {
      root = s.substr(s.find('=') + 1);
    } else {
      rest.push_back(s);
    }
  }
  if (rest.empty() || rest[0] == "-h" || rest[0] == "--help" || rest[0] == "help") {
    TopHelp(rest.empty() ? stderr : stdout);
    return rest.empty() ? 2 : 0;
  }
  if (rest[0] == "-v" || rest[0] == "--version" || rest[0] == "version") {
    std::printf("imgfs version %s\n", IMGFS_VERSION);
    return 0;
  }
  if (root.empty()) root = DefaultRoot();
  for (const Command& c : Commands()) {
    if (rest[0] != c.name) continue;
    Args a;
    bool only_pos = false;
    for (size_t i = 1; i < rest.size(); i++) {
      std::string s = rest[i];
      if (only_pos || s == "-" || s.empty() || s[0] != '-') {
        a.pos.push_back(s);
        continue;
      }
      if (s == "--") {
        only_pos = true;
        continue;
      }
      if (s == "-h" || s == "--help") {
        std::printf("Usage: %s\n\n%s\n", c.usage, c.summary);
        return 0;
      }
      std::string value;
      bool has_value = false;
      if (size_t eq = s.find('='); s.rfind("--", 0) == 0 && eq != std::string::npos) {
        value = s.substr(eq + 1);
        s = s.substr(0, eq);
        has_value = true;
      }
      std::vector<std::string> flags;
      if (auto al = c.aliases.find(s); al != c.aliases.end()) {
        flags.push_back(al->second);
      } else if (s.rfind("--", 0) != 0 && s.size() > 2) {  // -lR
        for (size_t k = 1; k < s.size(); k++) {
          auto al2 = c.aliases.find(std::string("-") + s[k]);
          if (al2 == c.aliases.end())
            Die(c.name + std::string(": unknown flag -") + s[k] + " (see --help)", 2);
          flags.push_back(al2->second);
        }
      } else {
        flags.push_back(s);
      }
      for (const std::string& f : flags) {
        bool takes =
            std::find(c.value_flags.begin(), c.value_flags.end(), f) != c.value_flags.end();
        bool known = takes ||
                     std::any_of(c.aliases.begin(), c.aliases.end(),
                                 [&](auto& p) { return p.second == f; }) ||
                     NamedInHelp(c.summary, f) || NamedInHelp(c.usage, f);
        if (!known)
          Die(std::string(c.name) + ": unknown flag " + f + " (see imgfs " + c.name + " --help)",
              2);
        if (!takes && has_value) Die(std::string(c.name) + ": " + f + " takes no value", 2);
        if (takes && !has_value) {
          if (i + 1 >= rest.size()) Die(std::string(c.name) + ": " + f + " needs a value", 2);
          value = rest[++i];
        }
        a.opts[f] = value;
        a.all.emplace(f, value);
      }
    }
    return c.run(root, a);
  }
  Die("unknown command \"" + rest[0] + "\" (see imgfs --help)", 2);
}

}  // namespace imgfs
