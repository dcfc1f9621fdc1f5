// The Dockerfile parser and variable substitution of `imgfs build`
// (registry/dockerfile.h). Expected values are the behaviour docker documents in its
// Dockerfile reference ("Parser directives", "Environment replacement", "Shell and
// exec form", comments and line continuations).
#include "registry/dockerfile.h"

#include <gtest/gtest.h>

#include "registry/json.h"

namespace imgfs {
namespace {

std::vector<DockerInstruction> Parse(const std::string& text) {
  auto r = ParseDockerfile(text);
  EXPECT_TRUE(r.ok()) << r.status().ToString();
  return r.ok() ? *r : std::vector<DockerInstruction>{};
}

std::string Expand(const std::string& s, const BuildVars& v, bool keep = false) {
  auto r = ExpandWord(s, v, keep);
  EXPECT_TRUE(r.ok()) << s << ": " << r.status().ToString();
  return r.ok() ? *r : "<error>";
}

TEST(DockerfileParse, InstructionsLinesFlagsAndForms) {
  auto v = Parse(
      "# syntax=docker/dockerfile:1\n"
      "# a comment\n"
      "\n"
      "from busybox AS base\n"
      "COPY --chown=10:20 a b /dst/\n"
      "CMD [\"echo\", \"hi there\"]\n"
      "ENTRYPOINT ['sh']\n"
      "cmd echo $HOME\n");
  ASSERT_EQ(v.size(), 5u);
  EXPECT_EQ(v[0].cmd, "FROM");
  EXPECT_EQ(v[0].line, 4);
  EXPECT_EQ(v[0].args, "busybox AS base");
  EXPECT_EQ(v[1].cmd, "COPY");
  EXPECT_EQ(v[1].line, 5);
  EXPECT_EQ(v[1].flags, std::vector<std::string>{"--chown=10:20"});
  EXPECT_EQ(v[1].args, "a b /dst/");
  EXPECT_FALSE(v[1].json);
  EXPECT_TRUE(v[2].json);
  EXPECT_EQ(v[2].json_args, (std::vector<std::string>{"echo", "hi there"}));
  // Single quotes are not JSON: docker runs this in the shell form.
  EXPECT_FALSE(v[3].json);
  EXPECT_EQ(v[3].args, "['sh']");
  EXPECT_EQ(v[4].cmd, "CMD");
  EXPECT_FALSE(v[4].json);
  EXPECT_EQ(v[4].args, "echo $HOME");
}

TEST(DockerfileParse, ContinuationsDropCommentAndEmptyLines) {
  // The reference's example: the comment line inside the continuation is removed.
  auto v = Parse(
      "FROM scratch\n"
      "RUN echo hello \\\n"
      "# comment\n"
      "world\n"
      "ENV A=1 \\  \n"
      "\n"
      "    B=2\n"
      "LABEL x=y");
  ASSERT_EQ(v.size(), 4u);
  EXPECT_EQ(v[1].cmd, "RUN");
  EXPECT_EQ(v[1].line, 2);
  EXPECT_EQ(v[1].args, "echo hello world");
  EXPECT_EQ(v[2].line, 5);
  EXPECT_EQ(v[2].args, "A=1     B=2");
  EXPECT_EQ(v[3].line, 8);
  EXPECT_EQ(v[3].args, "x=y");
}

TEST(DockerfileParse, LinesOfOnlyContinuationsAreNothing) {
  // Found by tests/fuzz/dockerfile_fuzz.cc: a lone "\\" line made an instruction with
  // no keyword.
  auto v = Parse("FROM scratch\n\\\n  \\\nENV A=1\n\\");
  ASSERT_EQ(v.size(), 2u);
  EXPECT_EQ(v[1].cmd, "ENV");
  EXPECT_EQ(v[1].args, "A=1");
  EXPECT_EQ(v[1].line, 2);  // the continuation starting on line 2 ends in it
}

TEST(DockerfileParse, EscapeDirective) {
  EXPECT_TRUE(ParseDockerfile("# escape=\\\nFROM scratch\n").ok());
  auto r = ParseDockerfile("# escape=`\nFROM scratch\n");
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("line 1"), std::string::npos) << r.status().message();
  // After the first instruction it is only a comment.
  EXPECT_TRUE(ParseDockerfile("FROM scratch\n# escape=`\n").ok());
}

TEST(DockerfileExpand, ReferenceExamples) {
  BuildVars v = {{"FOO", "/bar"}, {"abc", "hello"}, {"empty", ""}};
  // "Environment replacement": WORKDIR ${FOO} → /bar, ADD . $FOO → /bar,
  // COPY \$FOO /quux → $FOO.
  EXPECT_EQ(Expand("${FOO}", v), "/bar");
  EXPECT_EQ(Expand("$FOO", v), "/bar");
  EXPECT_EQ(Expand("\\$FOO", v), "$FOO");
  EXPECT_EQ(Expand("${FOO}/x$FOO.y", v), "/bar/x/bar.y");
  // ${variable:-word}: the value if set, else word; ${variable:+word}: word if set.
  EXPECT_EQ(Expand("${abc:-world}", v), "hello");
  EXPECT_EQ(Expand("${nope:-world}", v), "world");
  EXPECT_EQ(Expand("${empty:-world}", v), "world");
  EXPECT_EQ(Expand("${empty-world}", v), "");
  EXPECT_EQ(Expand("${abc:+world}", v), "world");
  EXPECT_EQ(Expand("${nope:+world}", v), "");
  EXPECT_EQ(Expand("${empty+world}", v), "world");
  EXPECT_EQ(Expand("${nope:-$FOO/x}", v), "/bar/x");
  // Unset is empty; single quotes stop substitution; double quotes do not.
  EXPECT_EQ(Expand("a${nope}b$nope", v), "ab");
  EXPECT_EQ(Expand("'$FOO' \"$FOO\"", v), "$FOO /bar");
  EXPECT_EQ(Expand("$ x ${FOO}$", v), "$ x /bar$");
  EXPECT_FALSE(ExpandWord("${nope:?must be set}", v, false).ok());
  EXPECT_EQ(Expand("${abc:?x}", v), "hello");
  EXPECT_FALSE(ExpandWord("${FOO", v, false).ok());
  EXPECT_FALSE(ExpandWord("'open", v, false).ok());
  EXPECT_FALSE(ExpandWord("${FOO/a/b}", v, false).ok());
}

TEST(DockerfileExpand, KeepQuotesForKeyValueLists) {
  // ENV abc=bye def=$abc: def takes the value before this instruction (hello).
  BuildVars v = {{"abc", "hello"}, {"sp", "a b\"c"}};
  EXPECT_EQ(Expand("abc=bye def=$abc", v, true), "abc=bye def=hello");
  // A substituted value is one word, quotes in it are data.
  EXPECT_EQ(Expand("x=$sp", v, true), "x=a\\ b\\\"c");
  EXPECT_EQ(Expand("x=\"$sp y\" z='$sp'", v, true), "x=\"a\\ b\\\"c y\" z='$sp'");
}

TEST(DockerfileExpand, Words) {
  BuildVars v = {{"D", "/dst dir"}};
  auto w = ExpandWords("\"a b\" c\\ d '$D' $D", v);
  ASSERT_TRUE(w.ok());
  EXPECT_EQ(*w, (std::vector<std::string>{"a b", "c d", "$D", "/dst dir"}));
}

// Hostile input: nesting and growth end in an error, never a stack overflow or a
// word of gigabytes.
TEST(DockerfileExpand, NestingAndGrowthAreBounded) {
  BuildVars v = {{"A", std::string(1 << 19, 'a')}};  // 512 KiB
  std::string nested;
  for (int i = 0; i < kMaxSubstitutionDepth; i++) nested += "${X:-";
  nested += "x" + std::string(kMaxSubstitutionDepth, '}');
  EXPECT_EQ(Expand(nested, v), "x");  // 64 deep is fine
  auto deep = ExpandWord("${X:-" + nested + "}", v, false);
  ASSERT_FALSE(deep.ok());
  EXPECT_EQ(deep.status().message(), "substitutions nested more than 64 deep");
  auto r = ExpandWord("$A$A", v, false);  // 1 MiB from 4 bytes: just fits
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->size(), size_t{1} << 20);
  for (bool keep : {false, true}) {
    for (std::string w : {"$A$A$A", "\"$A$A$A\"", "${X:-$A$A$A}"}) {
      auto big = ExpandWord(w, v, keep);
      ASSERT_FALSE(big.ok()) << w;
      EXPECT_EQ(big.status().message(), "substitution makes a word more than 1 MiB longer");
    }
  }
  auto words = ExpandWords("$A $A $A", v);  // each word fits, the three do not
  ASSERT_FALSE(words.ok());
  EXPECT_EQ(words.status().message(), "substitution makes the words more than 1 MiB longer");
  EXPECT_TRUE(ExpandWords("$A $A", v).ok());
}

TEST(DockerfileParse, InstructionCountIsBounded) {
  std::string text = "FROM scratch\n";
  for (size_t i = 1; i < kMaxInstructions; i++) text += "LABEL a=b\n";
  auto ok = ParseDockerfile(text);
  ASSERT_TRUE(ok.ok()) << ok.status().ToString();
  EXPECT_EQ(ok->size(), kMaxInstructions);
  auto r = ParseDockerfile(text + "# a comment is no instruction\n\nLABEL c=d\n");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().message(), "Dockerfile has more than 10000 instructions");
}

TEST(DockerfileParse, ExecForm) {
  std::vector<std::string> w = {"kept"};
  EXPECT_TRUE(ParseExecForm(R"(["/bin/sh", "-c", "a b"])", &w));
  EXPECT_EQ(w, (std::vector<std::string>{"/bin/sh", "-c", "a b"}));
  w = {"kept"};
  for (const char* bad : {"", "echo [x]", "[\"a\", 1]", "[\"a\"", "{\"a\": 1}", "[\"a\"] x"}) {
    EXPECT_FALSE(ParseExecForm(bad, &w)) << bad;
    EXPECT_EQ(w, std::vector<std::string>{"kept"}) << bad;
  }
  EXPECT_TRUE(ParseExecForm("[]", &w));
  EXPECT_TRUE(w.empty());
}

// Go's time.ParseDuration, as HEALTHCHECK flags and --filter until= use it.
TEST(GoDuration, GoSyntaxAndRange) {
  const std::pair<const char*, int64_t> good[] = {
      {"0", 0},
      {"-0", 0},
      {"1h30m", 5400000000000},
      {"500ms", 500000000},
      {"-2h", -7200000000000},
      {"+5s", 5000000000},
      {"1.5h", 5400000000000},
      {".5s", 500000000},
      {"1us", 1000},
      {"1\xC2\xB5s", 1000},  // µs, as Go writes it
      {"3ns", 3},
      {"2562047h", 2562047 * 3600000000000},  // near Go's largest (about 292 years)
  };
  for (const auto& [s, ns] : good) {
    auto r = ParseGoDurationNs(s);
    ASSERT_TRUE(r.ok()) << s << ": " << r.status().ToString();
    EXPECT_EQ(*r, ns) << s;
  }
  const std::pair<const char*, const char*> bad[] = {
      {"", "time: invalid duration \"\""},
      {"-", "time: invalid duration \"-\""},
      {".", "time: invalid duration \".\""},
      {"1.2.3s", "time: invalid duration \"1.2.3s\""},
      {"h", "time: invalid duration \"h\""},
      {"1", "time: missing unit in duration \"1\""},
      {"1s2", "time: missing unit in duration \"1s2\""},
      {"1x", "time: unknown unit \"x\" in duration \"1x\""},
      {"9999999999h", "time: invalid duration \"9999999999h\""},  // past int64 ns
      {"2562048h", "time: invalid duration \"2562048h\""},
  };
  for (const auto& [s, msg] : bad) {
    auto r = ParseGoDurationNs(s);
    ASSERT_FALSE(r.ok()) << s;
    EXPECT_EQ(r.status().message(), msg);
  }
}

}  // namespace
}  // namespace imgfs
