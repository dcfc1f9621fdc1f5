// Regression tests for what the fuzz targets found (docs/fuzzing.md), all by
// tests/fuzz/credentials_fuzz.cc: JsonWriter copied a surrogate or overlong UTF-8
// sequence through raw, making config.json unreadable for every later lookup; a host
// that is not ASCII was stored under a key no lookup could find; and a credential
// helper that exits without reading its stdin killed imgfs with SIGPIPE.
#include <gtest/gtest.h>
#include <simdjson.h>
#include <stdlib.h>
#include <sys/stat.h>

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

// The helper exits at once; the key it is sent (the host) is larger than a pipe's
// buffer, so the write meets a closed pipe every time, not only when the race is lost.
TEST(CredentialsTest, AHelperThatExitsWithoutReadingIsAnErrorNotSigpipe) {
  std::string dir = test::MakeTempDir();
  test::WriteFile(dir + "/config.json", "{\"credsStore\": \"quits\"}");
  test::WriteFile(dir + "/docker-credential-quits", "#!/bin/sh\nexit 1\n");
  ASSERT_EQ(::chmod((dir + "/docker-credential-quits").c_str(), 0755), 0);
  std::string path = std::getenv("PATH") ? std::getenv("PATH") : "";
  ::setenv("DOCKER_CONFIG", dir.c_str(), 1);
  ::setenv("PATH", (dir + ":" + path).c_str(), 1);
  auto c = LookupCredentials(std::string(1 << 20, 'h'));
  EXPECT_FALSE(c.ok());
  ::setenv("PATH", path.c_str(), 1);
  ::unsetenv("DOCKER_CONFIG");
  test::RemoveTree(dir);
}

}  // namespace
}  // namespace imgfs

// Findings of the token_cache and push_answers targets (docs/fuzzing.md).
#include "registry/pusher.h"
#include "registry/registry_client_internal.h"

namespace imgfs {
namespace {

using registry_detail::FormatTokenCacheFile;
using registry_detail::ParseTokenCacheFile;

// A token cache file without the newline after its expiry was accepted whole: the
// magic line went out as the Authorization header.
TEST(FuzzFindings, TokenCacheFileIsReadStrictly) {
  EXPECT_FALSE(ParseTokenCacheFile("imgfs-token 1 99999999999Bearer ars-imgfs-token 1t 9o9"));
  EXPECT_FALSE(ParseTokenCacheFile("imgfs-token 1 99999999999 Bearer abc"));
  EXPECT_FALSE(ParseTokenCacheFile("imgfs-token 1 -5\nBearer abc\n"));
  EXPECT_FALSE(ParseTokenCacheFile("imgfs-token 1 99999999999999999999\nBearer abc\n"));
  EXPECT_FALSE(ParseTokenCacheFile("imgfs-token 1 5\nBasic YTpi\n"));
  EXPECT_FALSE(ParseTokenCacheFile("imgfs-token 1 5\nBearer a\r\nX: y\n"));
  auto ok = ParseTokenCacheFile("imgfs-token 1 99999999999\nBearer abc.def\n");
  ASSERT_TRUE(ok);
  EXPECT_EQ(ok->expiry, 99999999999LL);
  EXPECT_EQ(ok->header, "Bearer abc.def");
  auto again = ParseTokenCacheFile(FormatTokenCacheFile(ok->expiry, ok->header));
  ASSERT_TRUE(again);
  EXPECT_EQ(again->header, ok->header);
}

// An absolute upload Location under the registry's base became a path before any
// check, so control bytes in it got through (curl's request was still refused later
// by Once's URL check, but the resolver must not hand them on).
TEST(FuzzFindings, UploadLocationUnderTheBaseIsChecked) {
  std::string base = "http://127.0.0.1:5000";
  auto bad = ResolveUploadLocation(base, base + "/v2/t/app/blobs/up\x01-6");
  EXPECT_FALSE(bad.ok());
  auto nul = ResolveUploadLocation(base, base + "/v2/x" + std::string("\0y", 2));
  EXPECT_FALSE(nul.ok());
  auto good = ResolveUploadLocation(base, base + "/v2/t/app/blobs/uploads/u1?_state=a");
  ASSERT_TRUE(good.ok()) << good.status().message();
  EXPECT_EQ(*good, "/v2/t/app/blobs/uploads/u1?_state=a");
  auto other = ResolveUploadLocation(base, "https://storage.example/up?sig=1");
  ASSERT_TRUE(other.ok());
  EXPECT_EQ(*other, "https://storage.example/up?sig=1");
}

}  // namespace
}  // namespace imgfs
