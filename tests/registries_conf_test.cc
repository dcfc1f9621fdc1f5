// registries.conf (registry/registries_conf.h): parsing, drop-in merging, prefix
// matching, short names and the pull sources a reference gets.
#include "registry/registries_conf.h"

#include <gtest/gtest.h>

namespace imgfs {
namespace {

RegistriesConf Parse(const std::string& text) {
  RegistriesConf c;
  Status st = ParseRegistriesConf(text, "t.conf", &c);
  EXPECT_TRUE(st.ok()) << st.message();
  return c;
}

std::string Hosts(const std::vector<PullSource>& v) {
  std::string out;
  for (const PullSource& s : v) out += (out.empty() ? "" : " ") + s.host + "/" + s.path;
  return out;
}

TEST(RegistriesConf, SearchAliasesAndRegistries) {
  RegistriesConf c = Parse(R"(
unqualified-search-registries = ["a.example", "docker.io"]
[aliases]
"app" = "quay.io/team/app"
[[registry]]
prefix = "example.com/foo"
location = "internal.example:5000/bar"
[[registry.mirror]]
location = "m1.example/x"
[[registry.mirror]]
location = "m2.example"
pull-from-mirror = "digest-only"
)");
  EXPECT_EQ(c.search, (std::vector<std::string>{"a.example", "docker.io"}));
  auto cands = CandidateReferences(c, "app:1");
  ASSERT_TRUE(cands.ok());
  ASSERT_EQ(cands->size(), 1u);
  EXPECT_EQ((*cands)[0].String(), "quay.io/team/app:1");
  cands = CandidateReferences(c, "tool");
  ASSERT_TRUE(cands.ok());
  ASSERT_EQ(cands->size(), 2u);
  EXPECT_EQ((*cands)[0].Name(), "a.example/tool");
  EXPECT_EQ((*cands)[1].Name(), "docker.io/library/tool");
  // A tag: m2 (digest-only) is skipped; the rest of the name follows the prefix.
  auto ref = ParseDockerRef("example.com/foo/sub/img:2");
  ASSERT_TRUE(ref.ok());
  auto src = PullSources(c, *ref, {});
  ASSERT_TRUE(src.ok());
  EXPECT_EQ(Hosts(*src), "m1.example/x/sub/img internal.example:5000/bar/sub/img");
  EXPECT_TRUE((*src)[0].mirror);
  EXPECT_FALSE((*src)[1].mirror);
  ref = ParseDockerRef("example.com/foo/img@sha256:" + std::string(64, 'a'));
  ASSERT_TRUE(ref.ok());
  src = PullSources(c, *ref, {});
  ASSERT_TRUE(src.ok());
  EXPECT_EQ(Hosts(*src), "m1.example/x/img m2.example/img internal.example:5000/bar/img");
  // "example.com/foobar" is not under the prefix "example.com/foo".
  ref = ParseDockerRef("example.com/foobar:1");
  src = PullSources(c, *ref, {});
  ASSERT_TRUE(src.ok());
  EXPECT_EQ(Hosts(*src), "example.com/foobar");
}

TEST(RegistriesConf, QualifiedNamesAreNotSearched) {
  RegistriesConf c = Parse("unqualified-search-registries = [\"a.example\"]\n");
  for (const char* s : {"localhost/app", "host:5000/app", "b.example/app", "Upper/app"}) {
    EXPECT_FALSE(IsShortName(s)) << s;
  }
  auto cands = CandidateReferences(c, "b.example/app:1");
  ASSERT_TRUE(cands.ok());
  ASSERT_EQ(cands->size(), 1u);
  EXPECT_EQ((*cands)[0].Name(), "b.example/app");
  // No search list: docker.io, as docker.
  cands = CandidateReferences(RegistriesConf{}, "busybox");
  ASSERT_TRUE(cands.ok());
  ASSERT_EQ(cands->size(), 1u);
  EXPECT_EQ((*cands)[0].Name(), "docker.io/library/busybox");
}

TEST(RegistriesConf, DropInsMerge) {
  RegistriesConf c = Parse(R"(
unqualified-search-registries = ["a.example"]
[aliases]
"x" = "a.example/x"
"y" = "a.example/y"
[[registry]]
prefix = "p.example"
blocked = true
)");
  // A later file: search replaced, one alias replaced, the same prefix replaced.
  ASSERT_TRUE(ParseRegistriesConf(R"(
unqualified-search-registries = ["b.example"]
[aliases]
"y" = "b.example/y"
[[registry]]
prefix = "p.example"
location = "q.example"
)",
                                  "d.conf", &c)
                  .ok());
  EXPECT_EQ(c.search, std::vector<std::string>{"b.example"});
  EXPECT_EQ(c.aliases["x"], "a.example/x");
  EXPECT_EQ(c.aliases["y"], "b.example/y");
  ASSERT_EQ(c.registries.size(), 1u);
  EXPECT_FALSE(c.registries[0].blocked);
  EXPECT_EQ(c.registries[0].location, "q.example");
  // A file without the key keeps the search list.
  ASSERT_TRUE(ParseRegistriesConf("[aliases]\n", "e.conf", &c).ok());
  EXPECT_EQ(c.search, std::vector<std::string>{"b.example"});
}

TEST(RegistriesConf, BlockedAndWildcards) {
  RegistriesConf c = Parse(R"(
[[registry]]
prefix = "*.bad.example"
blocked = true
[[registry]]
prefix = "ok.bad.example"
)");
  auto ref = ParseDockerRef("x.bad.example/app:1");
  auto src = PullSources(c, *ref, {});
  ASSERT_FALSE(src.ok());
  EXPECT_NE(src.status().message().find("is blocked"), std::string::npos);
  // An exact prefix wins over the wildcard.
  ref = ParseDockerRef("ok.bad.example/app:1");
  EXPECT_TRUE(PullSources(c, *ref, {}).ok());
  ref = ParseDockerRef("bad.example/app:1");
  EXPECT_TRUE(PullSources(c, *ref, {}).ok());
}

TEST(RegistriesConf, DockerMirrorsComeFirstForDockerIo) {
  auto ref = ParseDockerRef("busybox");
  auto src = PullSources(RegistriesConf{}, *ref, {"http://127.0.0.1:5000/", "https://m.example"});
  ASSERT_TRUE(src.ok());
  EXPECT_EQ(Hosts(*src),
            "127.0.0.1:5000/library/busybox m.example/library/busybox docker.io/library/busybox");
  EXPECT_TRUE((*src)[0].insecure);
  EXPECT_FALSE((*src)[1].insecure);
  ref = ParseDockerRef("quay.io/a/b");
  src = PullSources(RegistriesConf{}, *ref, {"http://127.0.0.1:5000"});
  ASSERT_TRUE(src.ok());
  EXPECT_EQ(Hosts(*src), "quay.io/a/b");
  EXPECT_FALSE(PullSources(RegistriesConf{}, *ParseDockerRef("x"), {"ftp://m"}).ok());
}

TEST(RegistriesConf, BadFilesAreErrorsNamingTheFile) {
  for (const char* bad : {
           "unqualified-search-registries = \"docker.io\"\n",
           "unqualified-search-registries = [1]\n",
           "unqualified-search-registries = [\"a.example/path\"]\n",
           "[aliases]\n\"x\" = \"y\"\n",                // not qualified
           "[aliases]\n\"a.b/x\" = \"q.example/x\"\n",  // key not short
           "[[registry]]\ninsecure = true\n",           // no prefix, no location
           "[[registry]]\nlocation = \"a b\"\n",        // not a host
           "[[registry]]\nlocation = \"a.example\"\nblocked = \"yes\"\n",
           "[[registry]]\nlocation = \"a.example\"\nmirrors = []\n",  // misspelt
           "[[registry]]\nlocation = \"a.example\"\n[[registry.mirror]]\nlocation = \"m\"\n"
           "pull-from-mirror = \"sometimes\"\n",
           "[[registry]\n",
           "x = \n",
       }) {
    RegistriesConf c;
    Status st = ParseRegistriesConf(bad, "bad.conf", &c);
    EXPECT_FALSE(st.ok()) << bad;
    EXPECT_EQ(st.message().rfind("bad.conf", 0), 0u) << st.message();
  }
}

}  // namespace
}  // namespace imgfs
