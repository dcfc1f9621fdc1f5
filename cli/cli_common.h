// Shared by the imgfs subcommands (cli/cmd_*.cc): parsed arguments, the command table
// entry, error exits, store opening, docker-style human units and image resolution.
#pragma once

#include <cstdint>
#include <cstdio>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <unordered_map>
#include <vector>

#include "cli/go_template.h"
#include "index/digest.h"
#include "index/status.h"
#include "index/store.h"
#include "registry/reference.h"
#include "registry/registry_client.h"

namespace imgfs {

struct Args {
  std::vector<std::string> pos;
  std::map<std::string, std::string>
      opts;  // "--flag" → value ("" for booleans), the last one given
  std::multimap<std::string, std::string> all;  // every value of every flag
  std::vector<std::string> Multi(const std::string& f) const {
    std::vector<std::string> v;
    for (auto [it, end] = all.equal_range(f); it != end; ++it) v.push_back(it->second);
    return v;
  }
  bool Has(const std::string& f) const { return opts.count(f) > 0; }
  std::string Get(const std::string& f, const std::string& def = "") const {
    auto it = opts.find(f);
    return it == opts.end() ? def : it->second;
  }
  std::set<std::string> off;  // boolean flags given as --flag=false (absent from opts)
  // A boolean flag whose default is on (history --human): off only when given =false.
  bool On(const std::string& f) const { return !off.count(f); }
};

struct Command {
  const char* name;
  const char* usage;
  const char* summary;
  std::vector<std::string> value_flags;  // flags that take a value
  std::map<std::string, std::string> aliases;
  std::function<int(const std::string& root, const Args&)> run;
  // Flags that take no value: --flag, --flag=true|false (cli/flags.h). Left empty, they
  // are the flags that open an option line of `summary` ("  -q, --quiet  ...") and the
  // targets of `aliases` that take no value.
  std::vector<std::string> bool_flags = {};
};

// One line "imgfs: MSG" on stderr, then exit (2 for usage errors).
[[noreturn]] void Die(const std::string& msg, int code = 1);
// Prints "imgfs: [CONTEXT: ]STATUS" and returns 1.
int Fail(const Status& st, const std::string& context = "");
// The store: --root, $IMGFS_ROOT, /var/lib/imgfs for root, else XDG data home.
std::string DefaultRoot();
std::unique_ptr<Store> OpenStore(const std::string& root);
// "3 weeks ago", as docker's units.HumanDuration.
std::string HumanSince(int64_t t);
// "4.26MB", as docker's units.HumanSizeWithPrecision(size, precision) (decimal units);
// precision 4 is units.HumanSize ("7.797MB", docker's VirtualSize).
std::string HumanSize(double v, int precision = 3);
// "64M", "2G", "1048576" → bytes.
Result<uint64_t> ParseSize(const std::string& s);
// Resolves what a user typed to an image: a reference first, then an ID (prefix).
Result<Digest> ResolveImage(const Store& store, const std::string& s);
// Names of each image, split into tags and digests.
struct Names {
  std::vector<Reference> tags, digests;
};
Result<std::unordered_map<std::string, Names>> NamesByImage(const Store& store);
// Registry options from flags, ROOT/config.json and the IMGFS_* environment.
RegistryOptions RegistryOptionsFor(const std::string& root, const Args& a);
// Lets reads of lazily pulled layers (mount, cat) fetch from their registry
// (cli/cmd_registry.cc; index/lazy_layer.h's RangeFetcherFactory).
void InstallLazyFetcher(const std::string& root);

// --format for a docker-style listing (go_template.h's DockerFormat): "table [T]", "json"
// or a template; a syntax error exits 2 naming the position.
DockerFormat ParseFormatOrDie(const std::string& cmd, const std::string& format,
                              const std::string& default_table);
// Renders and prints the rows; returns the exit status (1 on a template execution error).
int PrintFormatted(const std::string& cmd, const DockerFormat& f,
                   const std::vector<TemplateValue>& rows, const TemplateValue& header);
// A map of field name → column title, for a table's header line.
TemplateValue HeaderOf(const std::vector<std::pair<std::string, std::string>>& titles);
// Go's time.Time.String() in the local zone ("2024-01-02 15:04:05 +0000 UTC"), and
// time.RFC3339 in the local zone ("2024-01-02T15:04:05Z"), as docker prints them.
std::string GoTimeString(int64_t unix_seconds);
std::string GoTimeRfc3339(int64_t unix_seconds);

// The commands of each file, in help order (cli/commands.cc concatenates them).
std::vector<Command> ImageCommands();     // cli/cmd_images.cc
std::vector<Command> FileCommands();      // cli/cmd_files.cc
std::vector<Command> RegistryCommands();  // cli/cmd_registry.cc
std::vector<Command> StoreCommands();     // cli/cmd_store.cc
std::vector<Command> HistoryCommands();   // cli/cmd_history.cc
std::vector<Command> SystemCommands();    // cli/cmd_system.cc
std::vector<Command> SaveCommands();      // cli/cmd_save.cc
std::vector<Command> PushCommands();      // cli/cmd_push.cc
// The imgfs(1) manual page in roff from the command tables (cli/man_page.cc).
void PrintManPage(FILE* f, const std::vector<Command>& commands);
std::vector<Command> CommitCommands();  // cli/cmd_commit.cc
std::vector<Command> DiffCommands();    // cli/cmd_diff.cc
std::vector<Command> BuildCommands();   // cli/cmd_build.cc

}  // namespace imgfs
