// What URLs the registry client agrees to fetch (docs/threat-model.md), and error
// contexts that never read "pull: : GET …".
#include "registry/registry_client.h"

#include <gtest/gtest.h>

namespace imgfs {
namespace {

TEST(CheckFetchUrl, HttpAndHttpsOnly) {
  EXPECT_TRUE(CheckFetchUrl("https://auth.docker.io/token", "realm").ok());
  EXPECT_TRUE(CheckFetchUrl("http://127.0.0.1:5000/v2/", "realm").ok());
  EXPECT_TRUE(CheckFetchUrl("HTTPS://Example.com/x", "realm").ok());  // schemes are case-blind
  for (const char* bad :
       {"gopher://127.0.0.1:6379/_SET%20x", "dict://127.0.0.1:11211/stat", "file:///etc/shadow",
        "ftp://host/x", "ldap://host/", "telnet://host", "FILE:///etc/passwd", "/v2/relative",
        "httpx://host/", "http:/one-slash", "", "https://", "http:///path-only"}) {
    Status st = CheckFetchUrl(bad, "token realm");
    EXPECT_FALSE(st.ok()) << bad;
    EXPECT_NE(st.message().find("token realm"), std::string::npos) << st.message();
  }
  EXPECT_NE(CheckFetchUrl("gopher://x/", "realm").message().find("only http and https"),
            std::string::npos);
}

TEST(CheckFetchUrl, NoControlCharactersOrSpaces) {
  EXPECT_FALSE(CheckFetchUrl("https://host/a\r\nX-Injected: 1", "realm").ok());
  EXPECT_FALSE(CheckFetchUrl("https://host/a b", "realm").ok());
  EXPECT_FALSE(CheckFetchUrl(std::string("https://host/a\0b", 16), "realm").ok());
  // The URL is shown without its control bytes.
  std::string msg = CheckFetchUrl("https://host/\x1b[2J", "realm").message();
  EXPECT_EQ(msg.find('\x1b'), std::string::npos) << msg;
}

TEST(UrlHost, HostAndPort) {
  EXPECT_EQ(UrlHost("https://auth.docker.io/token?x=1"), "auth.docker.io");
  EXPECT_EQ(UrlHost("http://127.0.0.1:5000"), "127.0.0.1:5000");
  EXPECT_EQ(UrlHost("http://user:pw@host:1/x"), "host:1");
  EXPECT_EQ(UrlHost("http://[::1]:80/"), "[::1]:80");
  EXPECT_EQ(UrlHost("no-scheme"), "");
}

TEST(StatusContext, EmptyContextAddsNothing) {
  Status st = Status::Unavailable("GET http://x/v2/: HTTP 500");
  EXPECT_EQ(st.WithContext("").message(), "GET http://x/v2/: HTTP 500");
  EXPECT_EQ(st.WithContext("pull x").message(), "pull x: GET http://x/v2/: HTTP 500");
}

}  // namespace
}  // namespace imgfs
