// Multi-range requests (registry/multipart_ranges.h): the Range header and its batches,
// the Content-Type boundary, Content-Range, and the multipart/byteranges parser on
// bodies shaped like Go's http.ServeContent answers (Debian's docker-registry) and on
// bodies that lie.
#include "registry/multipart_ranges.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

using namespace imgfs;

namespace {

constexpr uint64_t kBlob = 1000;

std::string Blob() {
  std::string b;
  for (uint64_t i = 0; i < kBlob; i++) b += static_cast<char>('a' + i * 7 % 26);
  return b;
}

struct P {
  uint64_t first, last;  // inclusive, as in Content-Range
  std::string total = "1000";
};

// A body as Go writes it: "--B\r\n" headers "\r\n" data, "\r\n--B\r\n"…, "\r\n--B--\r\n".
std::string Body(const std::vector<P>& parts, const std::string& b = "BOUNDARY") {
  std::string blob = Blob(), out;
  for (size_t i = 0; i < parts.size(); i++) {
    out += (i ? "\r\n--" : "--") + b + "\r\n";
    out += "Content-Range: bytes " + std::to_string(parts[i].first) + "-" +
           std::to_string(parts[i].last) + "/" + parts[i].total + "\r\n";
    out += "Content-Type: application/octet-stream\r\n\r\n";
    out += blob.substr(parts[i].first, parts[i].last - parts[i].first + 1);
  }
  return out + "\r\n--" + b + "--\r\n";
}

const std::vector<BlobRange> kAsked = {{0, 10}, {100, 5}, {200, 50}, {250, 10}, {900, 100}};

}  // namespace

TEST(MultipartRanges, HeaderAndBatches) {
  EXPECT_EQ(RangeHeaderValue({{0, 10}, {100, 5}}), "bytes=0-9,100-104");
  std::vector<BlobRange> many;
  for (uint64_t i = 0; i < 3000; i++) many.push_back({i * 100000000, 10});
  auto batches = BatchRanges(many);
  ASSERT_GT(batches.size(), 1u);
  size_t at = 0;
  for (const auto& b : batches) {
    EXPECT_LE(b.size(), kMaxRangesPerRequest);
    EXPECT_LE(RangeHeaderValue(b).size(), kMaxRangeHeaderBytes);
    for (const BlobRange& r : b) EXPECT_EQ(r.offset, many[at++].offset);  // all, in order
  }
  EXPECT_EQ(at, many.size());
  EXPECT_EQ(BatchRanges({{5, 1}}).size(), 1u);
  EXPECT_TRUE(BatchRanges({}).empty());
}

TEST(MultipartRanges, BoundaryAndContentRange) {
  EXPECT_EQ(MultipartBoundary("multipart/byteranges; boundary=abc123"), "abc123");
  EXPECT_EQ(MultipartBoundary("Multipart/ByteRanges;charset=x; Boundary=\"a b\""), "a b");
  EXPECT_EQ(MultipartBoundary("application/octet-stream"), "");
  EXPECT_EQ(MultipartBoundary("multipart/byteranges"), "");
  EXPECT_EQ(MultipartBoundary("multipart/byteranges; boundary=" + std::string(71, 'x')), "");
  uint64_t b = 0, e = 0;
  EXPECT_TRUE(ParseContentRange("bytes 10-19/1000", kBlob, &b, &e));
  EXPECT_EQ(b, 10u);
  EXPECT_EQ(e, 20u);
  EXPECT_FALSE(ParseContentRange("bytes 10-19/999", kBlob, &b, &e));     // another blob
  EXPECT_FALSE(ParseContentRange("bytes 10-1000/1000", kBlob, &b, &e));  // past the end
  EXPECT_FALSE(ParseContentRange("bytes 19-10/1000", kBlob, &b, &e));
  EXPECT_FALSE(ParseContentRange("bytes 10-19/*", kBlob, &b, &e));
  EXPECT_FALSE(ParseContentRange("bytes -5-19/1000", kBlob, &b, &e));
  EXPECT_FALSE(ParseContentRange("bytes 99999999999999999999-1/1000", kBlob, &b, &e));
  // Any total: "*" or a number the range lies in; the same grammar.
  uint64_t t = 0;
  EXPECT_TRUE(ParseContentRangeAnyTotal("bytes 10-19/*", &b, &e, &t));
  EXPECT_EQ(b, 10u);
  EXPECT_EQ(e, 20u);
  EXPECT_EQ(t, kUnknownTotal);
  EXPECT_TRUE(ParseContentRangeAnyTotal(" BYTES 0-0/1 ", &b, &e, &t));
  EXPECT_EQ(e, 1u);
  EXPECT_EQ(t, 1u);
  EXPECT_TRUE(
      ParseContentRangeAnyTotal("bytes 0-9999999999999999998/9999999999999999999", &b, &e, &t));
  EXPECT_EQ(e, 9999999999999999999u);
  EXPECT_FALSE(ParseContentRangeAnyTotal("bytes 10-19/19", &b, &e, &t));  // past the end
  EXPECT_FALSE(ParseContentRangeAnyTotal("bytes 19-10/*", &b, &e, &t));
  EXPECT_FALSE(ParseContentRangeAnyTotal("bytes 10-/*", &b, &e, &t));
  EXPECT_FALSE(ParseContentRangeAnyTotal("bytes 10-19/", &b, &e, &t));
  EXPECT_FALSE(ParseContentRangeAnyTotal("bytes 10-19/**", &b, &e, &t));
  EXPECT_FALSE(ParseContentRangeAnyTotal("bytes */1000", &b, &e, &t));  // unsatisfied-range
  EXPECT_FALSE(ParseContentRangeAnyTotal("bytes 0-18446744073709551615/*", &b, &e, &t));
}

TEST(MultipartRanges, ParsesGoShapedAnswer) {
  std::string blob = Blob();
  std::string body = Body({{0, 9}, {100, 104}, {200, 249}, {250, 259}, {900, 999}});
  auto parts = ParseMultipartByteranges("BOUNDARY", body, kAsked, kBlob);
  ASSERT_TRUE(parts.ok()) << parts.status().message();
  ASSERT_EQ(parts->size(), 5u);
  for (const RangePart& p : *parts) EXPECT_EQ(p.bytes, blob.substr(p.offset, p.bytes.size()));
  EXPECT_EQ((*parts)[4].offset, 900u);
  EXPECT_EQ((*parts)[4].bytes.size(), 100u);
}

TEST(MultipartRanges, AcceptsReorderedAndCoalescedParts) {
  std::string blob = Blob();
  // 200-249 and 250-259 touch: one part; parts in another order; a preamble line.
  std::string body = "\r\n" + Body({{900, 999}, {0, 9}, {200, 259}, {100, 104}});
  auto parts = ParseMultipartByteranges("BOUNDARY", body, kAsked, kBlob);
  ASSERT_TRUE(parts.ok()) << parts.status().message();
  ASSERT_EQ(parts->size(), 4u);
  uint64_t prev = 0;
  for (const RangePart& p : *parts) {
    EXPECT_GE(p.offset, prev);  // sorted
    prev = p.offset;
    EXPECT_EQ(p.bytes, blob.substr(p.offset, p.bytes.size()));
  }
  EXPECT_EQ((*parts)[2].bytes.size(), 60u);
  // Fewer parts than asked (a server that sent some only) parses: the caller fetches
  // the rest.
  EXPECT_TRUE(ParseMultipartByteranges("BOUNDARY", Body({{100, 104}}), kAsked, kBlob).ok());
}

TEST(MultipartRanges, RefusesWhatWasNotAsked) {
  auto refuse = [](const std::string& body, const char* why) {
    auto r = ParseMultipartByteranges("BOUNDARY", body, kAsked, kBlob);
    EXPECT_FALSE(r.ok()) << why;
  };
  refuse(Body({{0, 10}}), "one byte past an asked range");
  refuse(Body({{0, 104}}), "coalesced over a gap that was not asked for");
  refuse(Body({{300, 309}}), "a range never asked");
  refuse(Body({{0, 9, "999"}}), "another total size");
  refuse(Body({{0, 9}, {0, 9}}), "the same part twice (overlap)");
  refuse(Body({{0, 9}, {100, 104}, {200, 249}, {250, 259}, {900, 999}, {1, 2}}),
         "more parts than ranges asked");
  refuse(Body({{0, 9}}, "OTHER"), "another boundary");
  std::string b = Body({{0, 9}, {100, 104}});
  refuse(b.substr(0, b.size() - 30), "cut short");
  std::string shorter = b;
  shorter.replace(shorter.find("bytes 0-9"), 9, "bytes 0-8");  // data is one byte longer
  refuse(shorter, "data longer than its Content-Range");
  std::string two = b;
  two.replace(two.find("Content-Type"), 0, "Content-Range: bytes 0-9/1000\r\n");
  refuse(two, "two Content-Range headers");
  std::string none = b;
  none.replace(none.find("Content-Range"), 13, "X-Range");
  refuse(none, "no Content-Range");
  refuse("", "empty body");
  refuse(std::string(5000, 'x') + b, "boundary after a long preamble");
  EXPECT_FALSE(ParseMultipartByteranges("", b, kAsked, kBlob).ok());
  EXPECT_FALSE(ParseMultipartByteranges("BOUNDARY", b, {{0, 10}, {5, 10}}, kBlob).ok());
}
