// Strict flag parsing (cli/flags.h) from a command's declared table.
#include "cli/flags.h"

#include <gtest/gtest.h>

namespace imgfs {
namespace {

Command Cmd() {
  return {"demo",
          "imgfs demo [-q] [-f FORMAT] ARG",
          "A demo.\n"
          "  -q, --quiet          quiet\n"
          "  --lenient            mentioned as an option line\n"
          "  -f, --format FORMAT  format\n"
          "Prose that names --prose is not a declaration.",
          {"--format"},
          {{"-q", "--quiet"}, {"-f", "--format"}, {"-a", "--all"}},
          nullptr};
}

// "ERR: msg" or "pos=a,b opts=k:v,k:v off=k".
std::string P(const Command& c, std::vector<std::string> words) {
  bool help = false;
  auto a = ParseFlags(c, words, &help);
  if (!a.ok()) return "ERR: " + a.status().message();
  std::string s = help ? "help " : "";
  s += "pos=";
  for (auto& p : a->pos) s += p + ",";
  s += " opts=";
  for (auto& [k, v] : a->opts) s += k + ":" + v + ",";
  s += " off=";
  for (auto& k : a->off) s += k + ",";
  return s;
}

TEST(CliFlags, DeclaredFlags) {
  Command c = Cmd();
  c.bool_flags = {"--quiet", "--all"};
  EXPECT_EQ(P(c, {"-q", "x"}), "pos=x, opts=--quiet:, off=");
  EXPECT_EQ(P(c, {"-qa"}), "pos= opts=--all:,--quiet:, off=");
  EXPECT_EQ(P(c, {"-qf", "json"}), "pos= opts=--format:json,--quiet:, off=");
  EXPECT_EQ(P(c, {"-fq", "json"}), "ERR: demo: -f takes a value: give it on its own");
  EXPECT_EQ(P(c, {"--format=a=b"}), "pos= opts=--format:a=b, off=");
  EXPECT_EQ(P(c, {"--", "-q"}), "pos=-q, opts= off=");
  EXPECT_EQ(P(c, {"-"}), "pos=-, opts= off=");
  EXPECT_EQ(P(c, {"x", "--help"}), "help pos=x, opts= off=");
  // Declared: --lenient is not in bool_flags, so it is unknown.
  EXPECT_EQ(P(c, {"--lenient"}), "ERR: demo: unknown flag --lenient (see imgfs demo --help)");
  EXPECT_EQ(P(c, {"--prose"}), "ERR: demo: unknown flag --prose (see imgfs demo --help)");
  EXPECT_EQ(P(c, {"--form", "x"}), "ERR: demo: unknown flag --form (see imgfs demo --help)");
  EXPECT_EQ(P(c, {"-z"}), "ERR: demo: unknown flag -z (see imgfs demo --help)");
  EXPECT_EQ(P(c, {"--format"}), "ERR: demo: --format needs a value");
}

TEST(CliFlags, Booleans) {
  Command c = Cmd();
  c.bool_flags = {"--quiet", "--all"};
  EXPECT_EQ(P(c, {"--quiet=false"}), "pos= opts= off=--quiet,");
  EXPECT_EQ(P(c, {"--quiet=true"}), "pos= opts=--quiet:, off=");
  EXPECT_EQ(P(c, {"-q", "--quiet=0"}), "pos= opts= off=--quiet,");
  EXPECT_EQ(P(c, {"--quiet=F", "-q"}), "pos= opts=--quiet:, off=");
  EXPECT_EQ(P(c, {"-q=1"}), "pos= opts=--quiet:, off=");
  EXPECT_EQ(P(c, {"--quiet=yes"}),
            "ERR: demo: invalid value \"yes\" for --quiet: want true or false");
  EXPECT_EQ(P(c, {"--quiet="}), "ERR: demo: invalid value \"\" for --quiet: want true or false");
  EXPECT_EQ(P(c, {"-qa=1"}), "ERR: demo: unknown flag -qa=1 (see imgfs demo --help)");
}

TEST(CliFlags, UndeclaredBoolsComeFromOptionLines) {
  Command c = Cmd();  // bool_flags left empty: option lines and alias targets
  FlagTable t = FlagsOf(c);
  std::sort(t.bool_flags.begin(), t.bool_flags.end());
  EXPECT_EQ(t.bool_flags, (std::vector<std::string>{"--all", "--lenient", "--quiet"}));
  EXPECT_EQ(P(c, {"--lenient"}), "pos= opts=--lenient:, off=");
  EXPECT_EQ(P(c, {"--prose"}), "ERR: demo: unknown flag --prose (see imgfs demo --help)");
}

}  // namespace
}  // namespace imgfs
