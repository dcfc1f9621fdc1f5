// Registry client errors name the request that failed: its real method and URL
// (they all used to say GET), against a loopback server that closes every connection
// without answering.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <string>
#include <thread>

#include "registry/registry_client.h"
#include "tests/fake_http_server.h"

namespace imgfs {
namespace {

TEST(RegistryErrors, NameTheRealMethodAndUrl) {
  // Every connection closed unanswered (curl's "Empty reply from server").
  FakeHttpServer server([](const std::string&) { return std::string(); });
  RegistryOptions o;
  o.max_attempts = 2;  // one retry where the method allows it
  o.initial_backoff = 0.01;
  o.certs_dir = "/nonexistent";
  RegistryClient client("127.0.0.1:" + std::to_string(server.port()), o);
  std::string url =
      "http://127.0.0.1:" + std::to_string(server.port()) + "/v2/test/app/blobs/uploads/u1?x=1";
  for (const char* method : {"", "GET", "HEAD", "POST", "PUT", "PATCH"}) {
    RegistryClient::Request r;
    r.path_or_url = url;
    r.method = method;
    if (std::string(method) != "HEAD" && *method) r.body = "some bytes";
    auto got = client.Do(r);
    ASSERT_FALSE(got.ok()) << method;
    std::string want = std::string(*method ? method : "GET") + " " + url + ": ";
    EXPECT_NE(got.status().message().find(want), std::string::npos)
        << "method " << (*method ? method : "(none)") << ": " << got.status().message();
  }
  // The OAuth2 refresh (a form POST without `method`) is a POST too.
  RegistryClient::Request form;
  form.path_or_url = url;
  form.post_form = "grant_type=refresh_token";
  auto got = client.Do(form);
  ASSERT_FALSE(got.ok());
  EXPECT_NE(got.status().message().find("POST " + url + ": "), std::string::npos)
      << got.status().message();
}

// Runs `r` with a `cancelled` that turns true 300 ms in; returns the result and, in
// `took`, the seconds Do took.
Result<HttpResponse> DoCancelledAfter300ms(RegistryClient& client, RegistryClient::Request r,
                                           double* took) {
  std::atomic<bool> stop{false};
  r.cancelled = [&] { return stop.load(); };
  std::thread canceller([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    stop = true;
  });
  auto t0 = std::chrono::steady_clock::now();
  auto got = client.Do(r);
  *took = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  canceller.join();
  return got;
}

// A request whose caller went away stops in its retry wait too: a server answering 503
// with Retry-After: 30 (imgfs honours up to 30 s) does not hold a cancelled request.
TEST(RegistryErrors, CancelledRequestStopsDuringItsRetryWait) {
  std::atomic<int> asked{0};
  FakeHttpServer server([&](const std::string&) {
    asked++;
    return FakeHttpServer::Reply("503 Service Unavailable", "Retry-After: 30\r\n", "busy");
  });
  RegistryOptions o;
  o.max_attempts = 5;
  o.max_retry_seconds = 120;
  o.certs_dir = "/nonexistent";
  RegistryClient client(server.host(), o);
  RegistryClient::Request r;
  r.path_or_url = "http://" + server.host() + "/v2/test/app/blobs/sha256:00";
  double took = 0;
  auto got = DoCancelledAfter300ms(client, r, &took);
  ASSERT_FALSE(got.ok());
  EXPECT_NE(got.status().message().find("stopped"), std::string::npos) << got.status().message();
  EXPECT_LT(took, 5.0) << "a cancelled request waited out its Retry-After";
  EXPECT_EQ(asked.load(), 1);  // asked once, then waited, then stopped
}

// The same for the requests a registry request makes on its way: the ping that finds
// the registry's base URL (5xx retried with backoff) and the token request of a 401
// (its token service answering 503 with Retry-After: 30).
TEST(RegistryErrors, CancelledRequestStopsInItsPingAndTokenWaits) {
  for (bool token : {false, true}) {
    std::atomic<int> token_asks{0};
    FakeHttpServer* self = nullptr;
    FakeHttpServer server([&](const std::string& req) {
      if (req.rfind("GET /v2/ ", 0) == 0) {
        if (!token) return FakeHttpServer::Reply("503 Service Unavailable", "", "busy");
        return FakeHttpServer::Reply("401 Unauthorized",
                                     "WWW-Authenticate: Bearer realm=\"http://" + self->host() +
                                         "/token\",service=\"test\"\r\n",
                                     "");
      }
      if (req.rfind("GET /token", 0) == 0) {
        token_asks++;
        return FakeHttpServer::Reply("503 Service Unavailable", "Retry-After: 30\r\n", "busy");
      }
      return FakeHttpServer::Reply(
          "401 Unauthorized",
          "WWW-Authenticate: Bearer realm=\"http://" + self->host() +
              "/token\",service=\"test\",scope=\"repository:test/app:pull\"\r\n",
          "");
    });
    self = &server;
    RegistryOptions o;
    o.max_attempts = 5;
    o.max_retry_seconds = 120;
    o.initial_backoff = 20;  // the ping's first wait: 20 s unless cancelled
    o.certs_dir = "/nonexistent";
    o.authfile = "/nonexistent/auth.json";
    RegistryClient client(server.host(), o);
    RegistryClient::Request r;
    r.path_or_url = "/v2/test/app/manifests/latest";  // through BaseUrl and AuthHeader
    r.scope = "repository:test/app:pull";
    double took = 0;
    auto got = DoCancelledAfter300ms(client, r, &took);
    ASSERT_FALSE(got.ok()) << (token ? "token" : "ping");
    EXPECT_NE(got.status().message().find("stopped"), std::string::npos) << got.status().message();
    EXPECT_LT(took, 5.0) << (token ? "the token request" : "the ping")
                         << " waited out its retry wait after the cancel";
    if (token) {
      EXPECT_GE(token_asks.load(), 1);  // it did reach the token service
    }
  }
}

}  // namespace
}  // namespace imgfs
