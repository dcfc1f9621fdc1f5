// FetchBlobRanges (registry/lazy_fetch.h) against a loopback HTTP server that answers a
// multi-range request as told (a good multipart body, a lying one, 200 with the whole
// blob) and single ranges honestly: the bytes returned are the blob's every time, and
// the number of requests shows which path was taken.
#include <gtest/gtest.h>

#include <atomic>
#include <functional>
#include <string>

#include "registry/lazy_fetch.h"
#include "tests/fake_http_server.h"

namespace imgfs {
namespace {

// Single ranges answered honestly, a whole-blob GET with 200, a multi-range request
// with whatever `multi` says.
class FakeServer {
 public:
  // `multi`: the whole HTTP answer to a request whose Range has a comma.
  // `single` (optional): the whole HTTP answer to a one-range request for bytes [a, b]
  // (inclusive), the n-th such request (from 0); unset, it is answered honestly.
  using Single = std::function<std::string(uint64_t a, uint64_t b, int n)>;
  explicit FakeServer(std::function<std::string(const std::string&)> multi, Single single = {})
      : multi_(std::move(multi)),
        single_(std::move(single)),
        http_([this](const std::string& req) { return Answer(req); }) {}
  int port() const { return http_.port(); }
  int blob_gets() const { return gets_; }
  static std::string Blob() {
    std::string b;
    for (int i = 0; i < 100000; i++) b += static_cast<char>(i * 131 % 251);
    return b;
  }
  static std::string Reply(const std::string& status, const std::string& headers,
                           const std::string& body) {
    return FakeHttpServer::Reply(status, headers, body);
  }

 private:
  std::string Answer(const std::string& req) {
    if (req.rfind("GET /v2/ ", 0) == 0) return Reply("200 OK", "", "{}");
    gets_++;
    size_t r = req.find("Range: bytes=");
    if (r == std::string::npos) return Reply("200 OK", "", Blob());
    std::string spec = req.substr(r + 13, req.find("\r\n", r) - r - 13);
    if (spec.find(',') != std::string::npos) return multi_(spec);
    uint64_t a = std::stoull(spec), b = std::stoull(spec.substr(spec.find('-') + 1));
    if (single_) return single_(a, b, singles_++);
    return Reply("206 Partial Content",
                 "Content-Range: bytes " + spec + "/" + std::to_string(Blob().size()) + "\r\n",
                 Blob().substr(a, b - a + 1));
  }
  std::function<std::string(const std::string&)> multi_;
  Single single_;
  int singles_ = 0;
  std::atomic<int> gets_{0};
  FakeHttpServer http_;  // last: its thread calls Answer
};

const std::vector<BlobRange> kRanges = {{10, 100}, {5000, 20}, {70000, 3000}};

std::string Part(uint64_t a, uint64_t len) {
  return "--XB\r\nContent-Range: bytes " + std::to_string(a) + "-" + std::to_string(a + len - 1) +
         "/100000\r\n\r\n" + FakeServer::Blob().substr(a, len) + "\r\n";
}

void FetchAndCheck(FakeServer& s, size_t want_requests) {
  RegistryOptions o;
  o.max_attempts = 1;
  o.certs_dir = "/nonexistent";
  o.insecure_registries = {"127.0.0.1:" + std::to_string(s.port())};
  RegistryClient client("127.0.0.1:" + std::to_string(s.port()), o);
  size_t requests = 0;
  auto got = FetchBlobRanges(client, "t/x", Sha256Of("x"), 100000, kRanges, &requests);
  ASSERT_TRUE(got.ok()) << got.status().message();
  ASSERT_EQ(got->size(), kRanges.size());
  for (size_t i = 0; i < kRanges.size(); i++)
    EXPECT_EQ((*got)[i], FakeServer::Blob().substr(kRanges[i].offset, kRanges[i].length)) << i;
  EXPECT_EQ(requests, want_requests);
  EXPECT_EQ(static_cast<size_t>(s.blob_gets()), want_requests);
}

TEST(MultiRangeFetch, GoodMultipartIsOneRequest) {
  FakeServer s([](const std::string&) {
    return FakeServer::Reply("206 Partial Content",
                             "Content-Type: multipart/byteranges; boundary=XB\r\n",
                             Part(5000, 20) + Part(10, 100) + Part(70000, 3000) + "--XB--\r\n");
  });
  FetchAndCheck(s, 1);
}

TEST(MultiRangeFetch, LyingMultipartFallsBackToSingleRanges) {
  FakeServer s([](const std::string&) {  // a part nobody asked for
    return FakeServer::Reply("206 Partial Content",
                             "Content-Type: multipart/byteranges; boundary=XB\r\n",
                             Part(10, 100) + Part(200, 10) + "--XB--\r\n");
  });
  FetchAndCheck(s, 1 + kRanges.size());
}

TEST(MultiRangeFetch, WholeBlobAnswerIsOneRequest) {
  FakeServer s(
      [](const std::string&) { return FakeServer::Reply("200 OK", "", FakeServer::Blob()); });
  FetchAndCheck(s, 1);
}

RegistryOptions LoopbackOptions(const FakeServer& s, int attempts) {
  RegistryOptions o;
  o.max_attempts = attempts;
  o.initial_backoff = 0.01;
  o.certs_dir = "/nonexistent";
  o.insecure_registries = {"127.0.0.1:" + std::to_string(s.port())};
  return o;
}

// The mount's reads (RegistryRangeFetcher): a body cut short is resumed by the client's
// retry, which asks from where the last attempt stopped; the 206 for that starts there
// and is accepted (it used to be taken for a lie because it did not start at the
// first offset asked).
TEST(RangeFetcher, ResumesABodyCutShort) {
  const std::string blob = FakeServer::Blob();
  FakeServer s([](const std::string&) { return std::string(); },
               [&](uint64_t a, uint64_t b, int n) {
                 std::string body = blob.substr(a, b - a + 1);
                 std::string head =
                     "HTTP/1.1 206 Partial Content\r\nConnection: close\r\n"
                     "Content-Length: " +
                     std::to_string(body.size()) + "\r\nContent-Range: bytes " + std::to_string(a) +
                     "-" + std::to_string(b) + "/" + std::to_string(blob.size()) + "\r\n\r\n";
                 // The first answer stops after 1000 bytes of its body (connection closed).
                 return n == 0 ? head + body.substr(0, 1000) : head + body;
               });
  RegistryClient client("127.0.0.1:" + std::to_string(s.port()), LoopbackOptions(s, 3));
  RegistryRangeFetcher f(std::shared_ptr<RegistryClient>(&client, [](RegistryClient*) {}), "t/x",
                         Sha256Of("x"), blob.size());
  std::string got;
  uint64_t next = 10;
  Status st = f.Fetch(10, 50000, [&](uint64_t pos, const char* p, size_t n) {
    EXPECT_EQ(pos, next);
    next = pos + n;
    got.append(p, n);
    return Status::Ok();
  });
  ASSERT_TRUE(st.ok()) << st.message();
  EXPECT_EQ(got, blob.substr(10, 50000));
  EXPECT_EQ(s.blob_gets(), 2);  // the cut answer and the resumed one
}

// A 206 that names another blob size, or starts elsewhere, is refused.
TEST(RangeFetcher, RefusesAContentRangeThatLies) {
  const std::string blob = FakeServer::Blob();
  for (const char* lie : {"bytes 10-59/99999", "bytes 11-60/100000", "bytes 10-59/*", "bytes x"}) {
    FakeServer s([](const std::string&) { return std::string(); },
                 [&](uint64_t a, uint64_t b, int) {
                   return FakeServer::Reply("206 Partial Content",
                                            std::string("Content-Range: ") + lie + "\r\n",
                                            blob.substr(a, b - a + 1));
                 });
    RegistryClient client("127.0.0.1:" + std::to_string(s.port()), LoopbackOptions(s, 1));
    RegistryRangeFetcher f(std::shared_ptr<RegistryClient>(&client, [](RegistryClient*) {}), "t/x",
                           Sha256Of("x"), blob.size());
    size_t delivered = 0;
    Status st = f.Fetch(10, 50, [&](uint64_t, const char*, size_t n) {
      delivered += n;
      return Status::Ok();
    });
    EXPECT_EQ(st.code(), Status::Code::kCorruption) << lie << ": " << st.message();
    EXPECT_EQ(delivered, 0u) << lie;
  }
}

}  // namespace
}  // namespace imgfs
