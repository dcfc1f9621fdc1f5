// Registry client errors name the request that failed: its real method and URL
// (they all used to say GET), against a loopback server that closes every connection
// without answering.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <string>
#include <thread>

#include "registry/registry_client.h"

namespace imgfs {
namespace {

// Accepts connections on a loopback port and closes each one after reading what the
// client sent first (no reply at all: curl's "Empty reply from server").
class SilentServer {
 public:
  SilentServer() {
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    EXPECT_EQ(::bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
    socklen_t len = sizeof a;
    ::getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &len);
    port_ = ntohs(a.sin_port);
    EXPECT_EQ(::listen(fd_, 16), 0);
    thread_ = std::thread([this] {
      while (!stop_) {
        int c = ::accept(fd_, nullptr, nullptr);
        if (c < 0) break;
        char buf[4096];
        (void)::recv(c, buf, sizeof buf, 0);
        ::close(c);
      }
    });
  }
  ~SilentServer() {
    stop_ = true;
    ::shutdown(fd_, SHUT_RDWR);
    thread_.join();
    ::close(fd_);
  }
  int port() const { return port_; }

 private:
  int fd_ = -1;
  int port_ = 0;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

TEST(RegistryErrors, NameTheRealMethodAndUrl) {
  SilentServer server;
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

}  // namespace
}  // namespace imgfs
