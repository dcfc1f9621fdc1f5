// Reference parsing and normalisation, table-driven, against docker's rules
// (distribution/reference ParseNormalizedNamed + TagNameOnly).
#include "registry/reference.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace imgfs {
namespace {

struct Case {
  const char* in;
  const char* canonical;  // nullptr: must be rejected
  const char* familiar;   // familiar string after normalisation (tag default added)
};

const std::string kHex = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

class ReferenceTable : public ::testing::TestWithParam<Case> {};

TEST_P(ReferenceTable, ParsesAsDocker) {
  const Case& c = GetParam();
  auto r = ParseDockerRef(c.in);
  if (!c.canonical) {
    EXPECT_FALSE(r.ok()) << c.in << " parsed as " << r->String();
    if (!r.ok()) {
      EXPECT_FALSE(r.status().message().empty());
    }
    return;
  }
  ASSERT_TRUE(r.ok()) << c.in << ": " << r.status().message();
  EXPECT_EQ(r->String(), c.canonical) << c.in;
  if (c.familiar) {
    EXPECT_EQ(r->FamiliarString(), c.familiar) << c.in;
  }
}

const std::string kDigestRef = "ubuntu@sha256:" + kHex;
const std::string kDigestCanon = "docker.io/library/ubuntu@sha256:" + kHex;
const std::string kTagDigestRef = "ubuntu:16.04@sha256:" + kHex;
const std::string kLocalDigest = "localhost:5000/app@sha256:" + kHex;
const std::string kLocalDigestCanon = "localhost:5000/app@sha256:" + kHex;
const std::string kLong255 = "a/" + std::string(243, 'b');  // docker.io/a/… = 10+243+2 = 255
const std::string kLong256 = "a/" + std::string(244, 'b');
const std::string kLong255Canon = "docker.io/" + kLong255 + ":latest";
const std::string kUpperDigest = "ubuntu@sha256:" + std::string(64, 'A');
const std::string kShortDigest = "ubuntu@sha256:abc";
const std::string kBareHex = kHex;

INSTANTIATE_TEST_SUITE_P(
    Docker, ReferenceTable,
    ::testing::Values(
        // DESIGN.md §3 examples.
        Case{"ubuntu", "docker.io/library/ubuntu:latest", "ubuntu:latest"},
        Case{"user1/ubuntu", "docker.io/user1/ubuntu:latest", "user1/ubuntu:latest"},
        Case{"localhost:5000/ubuntu", "localhost:5000/ubuntu:latest",
             "localhost:5000/ubuntu:latest"},
        Case{"index.docker.io/ubuntu", "docker.io/library/ubuntu:latest", "ubuntu:latest"},
        Case{"ubuntu:16.04", "docker.io/library/ubuntu:16.04", "ubuntu:16.04"},
        Case{kDigestRef.c_str(), kDigestCanon.c_str(), kDigestRef.c_str()},
        Case{kTagDigestRef.c_str(), kDigestCanon.c_str(), kDigestRef.c_str()},  // digest wins
        Case{"busybox:latest", "docker.io/library/busybox:latest", "busybox:latest"},
        Case{"localhost:5000/app:v1", "localhost:5000/app:v1", "localhost:5000/app:v1"},
        // Hosts.
        Case{"docker.io/ubuntu", "docker.io/library/ubuntu:latest", "ubuntu:latest"},
        Case{"docker.io/library/ubuntu", "docker.io/library/ubuntu:latest", "ubuntu:latest"},
        Case{"index.docker.io/user/app", "docker.io/user/app:latest", "user/app:latest"},
        Case{"quay.io/coreos/etcd:v3", "quay.io/coreos/etcd:v3", "quay.io/coreos/etcd:v3"},
        Case{"localhost/app", "localhost/app:latest", "localhost/app:latest"},
        Case{"localhost", "docker.io/library/localhost:latest", "localhost:latest"},
        Case{"localhost:5000", "docker.io/library/localhost:5000", "localhost:5000"},  // tag "5000"
        Case{"127.0.0.1:5000/a/b/c", "127.0.0.1:5000/a/b/c:latest", nullptr},
        Case{"registry.example.com/team/app:1.2.3", "registry.example.com/team/app:1.2.3", nullptr},
        Case{"my-registry:8080/x", "my-registry:8080/x:latest", nullptr},
        Case{"Registry.Example.com/app", "Registry.Example.com/app:latest",
             nullptr},                               // upper-case host
        Case{"Foo/bar", "Foo/bar:latest", nullptr},  // upper-case first component is a host
        Case{"a.b/c", "a.b/c:latest", nullptr},
        Case{"docker.io/user/app/sub", "docker.io/user/app/sub:latest", "user/app/sub:latest"},
        Case{"xn--bcher-kva.example/app", "xn--bcher-kva.example/app:latest", nullptr},
        // Path components and separators.
        Case{"foo_bar", "docker.io/library/foo_bar:latest", nullptr},
        Case{"foo__bar", "docker.io/library/foo__bar:latest", nullptr},
        Case{"foo.bar", "docker.io/library/foo.bar:latest", nullptr},
        Case{"foo-bar", "docker.io/library/foo-bar:latest", nullptr},
        Case{"foo---bar", "docker.io/library/foo---bar:latest", nullptr},
        Case{"a/b/c/d/e", "docker.io/a/b/c/d/e:latest", nullptr},
        Case{"0/1", "docker.io/0/1:latest", nullptr}, Case{"foo___bar", nullptr, nullptr},
        Case{"foo._bar", nullptr, nullptr}, Case{"-foo", nullptr, nullptr},
        Case{"foo-", nullptr, nullptr}, Case{"foo.", nullptr, nullptr},
        Case{"_foo", nullptr, nullptr}, Case{"foo//bar", nullptr, nullptr},
        Case{"foo/", nullptr, nullptr}, Case{"/foo", nullptr, nullptr},
        Case{"foo bar", nullptr, nullptr}, Case{"foo$bar", nullptr, nullptr},
        // Upper case in the repository is rejected.
        Case{"Ubuntu", nullptr, nullptr}, Case{"user/Ubuntu", nullptr, nullptr},
        Case{"localhost:5000/App", nullptr, nullptr},
        // Tags.
        Case{"ubuntu:Latest", "docker.io/library/ubuntu:Latest", nullptr},
        Case{"ubuntu:_x", "docker.io/library/ubuntu:_x", nullptr},
        Case{"ubuntu:1.0-rc_1", "docker.io/library/ubuntu:1.0-rc_1", nullptr},
        Case{"ubuntu:.x", nullptr, nullptr}, Case{"ubuntu:-x", nullptr, nullptr},
        Case{"ubuntu:", nullptr, nullptr}, Case{"ubuntu:a:b", nullptr, nullptr},
        Case{"ubuntu:a/b", nullptr, nullptr}, Case{"ubuntu:a+b", nullptr, nullptr},
        // Digests.
        Case{kLocalDigest.c_str(), kLocalDigestCanon.c_str(), kLocalDigest.c_str()},
        Case{kUpperDigest.c_str(), nullptr, nullptr}, Case{kShortDigest.c_str(), nullptr, nullptr},
        Case{"ubuntu@md5:0123456789abcdef0123456789abcdef", nullptr, nullptr},
        Case{"ubuntu@", nullptr, nullptr}, Case{"ubuntu@sha256:", nullptr, nullptr},
        // Hosts that do not parse.
        Case{"localhost:abc/app", nullptr, nullptr}, Case{"-host.com/app", nullptr, nullptr},
        Case{"host-.com/app", nullptr, nullptr}, Case{"host..com/app", nullptr, nullptr},
        Case{":5000/app", nullptr, nullptr},
        // Length and special strings.
        Case{kLong255.c_str(), kLong255Canon.c_str(), nullptr},
        Case{kLong256.c_str(), nullptr, nullptr}, Case{kBareHex.c_str(), nullptr, nullptr},
        Case{"", nullptr, nullptr}));

TEST(Reference, NameAtMost255) {
  auto ok = ParseDockerRef(kLong255);
  ASSERT_TRUE(ok.ok()) << ok.status().message();
  EXPECT_EQ(ok->Name().size(), 255u);
  auto bad = ParseDockerRef(kLong256);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("255"), std::string::npos);
}

TEST(Reference, UpperCaseMessageSaysSo) {
  auto r = ParseDockerRef("Ubuntu:16.04");
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("must be lowercase"), std::string::npos)
      << r.status().message();
}

TEST(Reference, HexOnlyIsRejectedWithReason) {
  auto r = ParseDockerRef(kHex);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("64-byte hexadecimal"), std::string::npos);
}

TEST(Reference, ParseKeepsTagAndDigestNormalizedDropsTag) {
  auto r = ParseReference(kTagDigestRef);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->tag, "16.04");
  EXPECT_EQ(r->digest, "sha256:" + kHex);
  EXPECT_EQ(r->Normalized().tag, "");
}

TEST(Reference, FamiliarNames) {
  EXPECT_EQ(FamiliarizeName("docker.io/library/ubuntu"), "ubuntu");
  EXPECT_EQ(FamiliarizeName("docker.io/library/a/b"), "library/a/b");
  EXPECT_EQ(FamiliarizeName("docker.io/user1/ubuntu"), "user1/ubuntu");
  EXPECT_EQ(FamiliarizeName("localhost:5000/app"), "localhost:5000/app");
  EXPECT_EQ(FamiliarizeName("quay.io/library/x"), "quay.io/library/x");
  // Reference::FamiliarName (built without the canonical name) is FamiliarizeName's.
  for (const std::string& s : std::vector<std::string>{
           "ubuntu", "library/a/b", "user1/ubuntu", "localhost:5000/app", "quay.io/library/x",
           "index.docker.io/library/y:1", "docker.io/libraryx", "docker.io/library",
           "example.com:443/library/z@sha256:" + kHex}) {
    auto r = ParseReference(s);
    ASSERT_TRUE(r.ok()) << s;
    EXPECT_EQ(r->FamiliarName(), FamiliarizeName(r->Name())) << s;
  }
  EXPECT_EQ(ParseReference("library/a/b")->FamiliarName(), "library/a/b");
  EXPECT_EQ(ParseReference("busybox")->FamiliarName(), "busybox");
}

TEST(Reference, TagGrammar) {
  EXPECT_TRUE(IsValidTag(std::string(128, 'a')));
  EXPECT_FALSE(IsValidTag(std::string(129, 'a')));
  EXPECT_FALSE(IsValidTag(""));
}

}  // namespace
}  // namespace imgfs
