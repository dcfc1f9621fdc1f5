// A range the registry client asks for itself (RegistryClient::Request::range_start /
// range_end: lazy reads, resumed downloads) against a loopback server: a cut answer is
// resumed from the byte after the last one delivered, and a 206 that starts anywhere
// else than asked is refused with an error naming the Content-Range.
#include <gtest/gtest.h>

#include <atomic>
#include <mutex>
#include <string>

#include "registry/lazy_fetch.h"
#include "registry/registry_client.h"
#include "tests/fake_http_server.h"
#include "tests/read_to_end.h"

namespace imgfs {
namespace {

std::string Blob() {
  std::string b;
  for (int i = 0; i < 100000; i++) b += static_cast<char>(i * 131 % 251);
  return b;
}

// Answers GET /v2/ with 200 and a blob GET with its Range ("bytes=A-B" or "bytes=A-"):
// the first blob GET is cut after half its bytes when `cut_first`; every 206 claims to
// start `shift` bytes later than it does, and names `total` as the blob's size (empty:
// the true one).
class RangeServer {
 public:
  RangeServer(bool cut_first, uint64_t shift, std::string total = "")
      : cut_first_(cut_first),
        shift_(shift),
        total_(std::move(total)),
        http_([this](const std::string& r) { return Answer(r); }) {}
  std::string host() const { return http_.host(); }
  int blob_gets() const { return gets_; }
  std::string ranges() {
    std::lock_guard<std::mutex> l(mu_);
    return ranges_;
  }

 private:
  std::string Answer(const std::string& req) {
    if (req.rfind("GET /v2/ ", 0) == 0) return FakeHttpServer::Reply("200 OK", "", "{}");
    int n = ++gets_;
    std::string blob = Blob();
    size_t r = req.find("Range: bytes=");
    uint64_t a = 0, b = blob.size() - 1;
    std::string status = "200 OK", headers;
    if (r != std::string::npos) {
      std::string spec = req.substr(r + 13, req.find("\r\n", r) - r - 13);
      {
        std::lock_guard<std::mutex> l(mu_);
        ranges_ += spec + " ";
      }
      a = std::stoull(spec);
      std::string last = spec.substr(spec.find('-') + 1);
      if (!last.empty()) b = std::stoull(last);
      status = "206 Partial Content";
      headers = "Content-Range: bytes " + std::to_string(a + shift_) + "-" +
                std::to_string(b + shift_) + "/" +
                (total_.empty() ? std::to_string(blob.size()) : total_) + "\r\n";
    }
    std::string out = FakeHttpServer::Reply(status, headers, blob.substr(a, b - a + 1));
    if (cut_first_ && n == 1) out.resize(out.size() - (b - a + 1) / 2);  // half the body
    return out;
  }
  bool cut_first_;
  uint64_t shift_;
  std::string total_;
  std::atomic<int> gets_{0};
  std::mutex mu_;
  std::string ranges_;   // the Range specs asked, in order (guarded by mu_)
  FakeHttpServer http_;  // last: its thread calls Answer
};

RegistryOptions Options() {
  RegistryOptions o;
  o.max_attempts = 3;
  o.initial_backoff = 0.01;
  o.certs_dir = "/nonexistent";
  return o;
}

TEST(RangeResume, LazyRangeCutMidwayIsResumedFromTheNextByte) {
  RangeServer s(/*cut_first=*/true, /*shift=*/0);
  RegistryClient client(s.host(), Options());
  auto got = FetchBlobRange(client, "t/x", Sha256Of("x"), 100000, 1000, 40000);
  ASSERT_TRUE(got.ok()) << got.status().message();
  EXPECT_EQ(*got, Blob().substr(1000, 40000));
  EXPECT_EQ(s.blob_gets(), 2);
  EXPECT_EQ(s.ranges(), "1000-40999 21000-40999 ");
}

TEST(RangeResume, LazyRangeStartingElsewhereIsRefused) {
  RangeServer s(/*cut_first=*/false, /*shift=*/7);
  RegistryClient client(s.host(), Options());
  auto got = FetchBlobRange(client, "t/x", Sha256Of("x"), 100000, 1000, 40000);
  ASSERT_FALSE(got.ok());
  EXPECT_NE(got.status().message().find("asked for bytes from 1000, answered 206 with "
                                        "Content-Range \"bytes 1007-41006/100000\""),
            std::string::npos)
      << got.status().message();
  EXPECT_EQ(s.blob_gets(), 1);  // not retried
}

// A 206 that starts where asked but names another total size is a range of another
// blob: refused by the transport, before the lazy fetcher sees the answer.
TEST(RangeResume, LazyRangeOfAnotherSizeIsRefused) {
  for (const char* total : {"99999", "*"}) {
    RangeServer s(/*cut_first=*/false, /*shift=*/0, total);
    RegistryClient client(s.host(), Options());
    auto got = FetchBlobRange(client, "t/x", Sha256Of("x"), 100000, 1000, 40000);
    ASSERT_FALSE(got.ok()) << total;
    EXPECT_NE(got.status().message().find("asked for bytes from 1000, answered 206 with "
                                          "Content-Range \"bytes 1000-40999/" +
                                          std::string(total) + "\" (the blob has 100000 bytes)"),
              std::string::npos)
        << got.status().message();
    EXPECT_EQ(s.blob_gets(), 1);  // not retried
  }
}

// A whole-blob download (OpenBlob) cut midway resumes with a Range: a 206 that starts
// elsewhere is named as such, not found later as a digest mismatch.
TEST(RangeResume, BlobResumeStartingElsewhereIsRefused) {
  RangeServer s(/*cut_first=*/true, /*shift=*/5);
  RegistryClient client(s.host(), Options());
  auto src = client.OpenBlob("t/x", Sha256Of(Blob()), {}, 100000);
  ASSERT_TRUE(src.ok()) << src.status().message();
  std::string got;
  Status st = test::ReadToEnd(**src, &got);
  ASSERT_FALSE(st.ok()) << "read " << got.size() << " bytes";
  EXPECT_NE(st.message().find("asked for bytes from 50000, answered 206 with Content-Range "
                              "\"bytes 50005-100004/100000\""),
            std::string::npos)
      << st.message();
  EXPECT_EQ(got, Blob().substr(0, 50000));
}

TEST(RangeResume, BlobCutMidwayIsResumed) {
  RangeServer s(/*cut_first=*/true, /*shift=*/0);
  RegistryClient client(s.host(), Options());
  auto src = client.OpenBlob("t/x", Sha256Of(Blob()), {}, 100000);
  ASSERT_TRUE(src.ok()) << src.status().message();
  std::string got;
  Status st = test::ReadToEnd(**src, &got);
  ASSERT_TRUE(st.ok()) << st.message();
  EXPECT_EQ(got, Blob());
  EXPECT_EQ(s.ranges(), "50000- ");
}

// Of a blob whose size is not known, a resumed 206 may name any total, "*" too (RFC
// 9110 §14.4); its start is still checked.
TEST(RangeResume, BlobOfUnknownSizeResumesWithAnyTotal) {
  RangeServer s(/*cut_first=*/true, /*shift=*/0, "*");
  RegistryClient client(s.host(), Options());
  auto src = client.OpenBlob("t/x", Sha256Of(Blob()));
  ASSERT_TRUE(src.ok()) << src.status().message();
  std::string got, buf(1 << 16, '\0');
  for (;;) {
    auto n = (*src)->Read(buf.data(), buf.size());
    ASSERT_TRUE(n.ok()) << n.status().message();
    if (*n == 0) break;
    got.append(buf.data(), *n);
  }
  EXPECT_EQ(got, Blob());
  EXPECT_EQ(s.ranges(), "50000- ");
}

}  // namespace
}  // namespace imgfs
