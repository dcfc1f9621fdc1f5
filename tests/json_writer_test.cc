// JsonWriter's promise (its output is valid JSON whatever the bytes) and the credential
// store's round trip, both found wanting by tests/fuzz/credentials_fuzz.cc (see
// docs/fuzzing.md): a surrogate or overlong UTF-8 sequence was copied through raw,
// making config.json unreadable for every later lookup, and a host that is not ASCII
// was stored under a key no lookup could find.
#include <gtest/gtest.h>
#include <simdjson.h>
#include <stdlib.h>

#include <string>

#include "index/json_writer.h"
#include "registry/credentials.h"
#include "tests/tar_builder.h"

namespace imgfs {
namespace {

std::string Roundtrip(const std::string& s) {
  JsonWriter w;
  w.BeginArray().String(s).EndArray();
  simdjson::dom::parser p;
  simdjson::dom::array a;
  if (p.parse(w.str()).get(a)) return "<invalid JSON: " + w.str() + ">";
  std::string_view out;
  if (a.at(0).get(out)) return "<not a string>";
  return std::string(out);
}

TEST(JsonWriterTest, OutputIsValidJsonForAnyBytes) {
  EXPECT_EQ(Roundtrip("plain \"quoted\" \\ \n"), "plain \"quoted\" \\ \n");
  EXPECT_EQ(Roundtrip("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80"),
            "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80");
  // Each stray byte becomes the code point of the same number.
  EXPECT_EQ(Roundtrip("\xff"), "\xc3\xbf");
  EXPECT_EQ(Roundtrip("\xed\xa0\x80"), "\xc3\xad\xc2\xa0\xc2\x80");              // a surrogate
  EXPECT_EQ(Roundtrip("\xc0\xaf"), "\xc3\x80\xc2\xaf");                          // overlong "/"
  EXPECT_EQ(Roundtrip("\xe0\x80\xaf"), "\xc3\xa0\xc2\x80\xc2\xaf");              // overlong "/"
  EXPECT_EQ(Roundtrip("\xf4\x90\x80\x80"), "\xc3\xb4\xc2\x90\xc2\x80\xc2\x80");  // > U+10FFFF
  EXPECT_EQ(Roundtrip("\xf5\x80\x80\x80"), "\xc3\xb5\xc2\x80\xc2\x80\xc2\x80");
}

TEST(CredentialsTest, StoredCredentialsAreFoundAgainAndOddHostsAreRefused) {
  std::string dir = test::MakeTempDir();
  ::setenv("DOCKER_CONFIG", dir.c_str(), 1);
  Credentials c{"user", "secret"};
  ASSERT_TRUE(StoreCredentials("localhost:5000", c).ok());
  auto back = LookupCredentials("localhost:5000");
  ASSERT_TRUE(back.ok());
  EXPECT_EQ(back->username, "user");
  EXPECT_EQ(back->secret, "secret");
  EXPECT_FALSE(StoreCredentials("h\xed\xa0\x80", c).ok());
  EXPECT_FALSE(StoreCredentials("h\xff", c).ok());
  EXPECT_FALSE(StoreCredentials("", c).ok());
  EXPECT_FALSE(StoreCredentials("a b", c).ok());
  // The file is still readable for every host.
  back = LookupCredentials("localhost:5000");
  ASSERT_TRUE(back.ok());
  EXPECT_EQ(back->secret, "secret");
  ::unsetenv("DOCKER_CONFIG");
  test::RemoveTree(dir);
}

}  // namespace
}  // namespace imgfs
