// A loopback HTTP server for the registry client's tests: one connection at a time,
// each read up to the end of its request headers, answered with whatever `answer`
// returns for them (the whole HTTP response, sent as is; "" closes the connection
// unanswered), then closed.
#ifndef IMGFS_TESTS_FAKE_HTTP_SERVER_H_
#define IMGFS_TESTS_FAKE_HTTP_SERVER_H_

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <functional>
#include <string>
#include <thread>

namespace imgfs {

class FakeHttpServer {
 public:
  using Answer = std::function<std::string(const std::string& request_headers)>;
  explicit FakeHttpServer(Answer answer) : answer_(std::move(answer)) {
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
      for (;;) {
        int c = ::accept(fd_, nullptr, nullptr);
        if (c < 0) break;
        std::string req;
        char buf[4096];
        while (req.find("\r\n\r\n") == std::string::npos) {
          ssize_t n = ::recv(c, buf, sizeof buf, 0);
          if (n <= 0) break;
          req.append(buf, static_cast<size_t>(n));
        }
        std::string out = answer_(req);
        for (size_t off = 0; off < out.size();) {
          ssize_t n = ::send(c, out.data() + off, out.size() - off, MSG_NOSIGNAL);
          if (n <= 0) break;
          off += static_cast<size_t>(n);
        }
        ::close(c);
      }
    });
  }
  ~FakeHttpServer() {
    ::shutdown(fd_, SHUT_RDWR);
    thread_.join();
    ::close(fd_);
  }
  int port() const { return port_; }
  std::string host() const { return "127.0.0.1:" + std::to_string(port_); }

  // "HTTP/1.1 STATUS" with `headers` (each ending in \r\n), a Content-Length and
  // Connection: close.
  static std::string Reply(const std::string& status, const std::string& headers,
                           const std::string& body) {
    return "HTTP/1.1 " + status +
           "\r\nConnection: close\r\nContent-Length: " + std::to_string(body.size()) + "\r\n" +
           headers + "\r\n" + body;
  }

 private:
  Answer answer_;
  int fd_ = -1;
  int port_ = 0;
  std::thread thread_;
};

}  // namespace imgfs

#endif  // IMGFS_TESTS_FAKE_HTTP_SERVER_H_
