// USER and COPY --chown lookups of `imgfs build` (registry/build_user.h) against
// /etc/passwd and /etc/group text: docker's rules (runc's user package) and what a
// hostile image's files do.
#include "registry/build_user.h"

#include <gtest/gtest.h>

namespace imgfs {
namespace {

const char kPasswd[] =
    "# comment\n"
    "root:x:0:0:root:/root:/bin/sh\n"
    "short:x:7\n"  // too few fields: not an entry
    "app:x:1000:1000::/home/app:/bin/sh\n"
    "app:x:1111:1111::/second:/bin/sh\n"  // the first entry wins
    "nohome:x:1200:1300:::/bin/sh\n";
const char kGroup[] =
    "root:x:0:\n"
    "app:x:1000:app\n"  // the primary group listed again: not a supplementary one
    "extra:x:2000:other,app\n"
    "again:x:2000:app\n"  // the same gid twice: once
    "third:x:3000:app,app\n"
    "bad:x:nan:app\n";

TEST(ResolveUser, NamesNumbersAndSupplementaryGroups) {
  auto u = ResolveUserIn(kPasswd, kGroup, "app");
  ASSERT_TRUE(u.ok()) << u.status().ToString();
  EXPECT_EQ(u->uid, 1000u);
  EXPECT_EQ(u->gid, 1000u);
  EXPECT_EQ(u->home, "/home/app");
  EXPECT_EQ(u->groups, (std::vector<gid_t>{2000, 3000}));

  u = ResolveUserIn(kPasswd, kGroup, "1000");  // by uid: the same entry
  ASSERT_TRUE(u.ok());
  EXPECT_EQ(u->gid, 1000u);
  EXPECT_EQ(u->groups, (std::vector<gid_t>{2000, 3000}));

  u = ResolveUserIn(kPasswd, kGroup, "app:extra");  // a group given: no supplementary
  ASSERT_TRUE(u.ok());
  EXPECT_EQ(u->uid, 1000u);
  EXPECT_EQ(u->gid, 2000u);
  EXPECT_TRUE(u->groups.empty());

  u = ResolveUserIn("", "", "4242:77");  // numbers need no files
  ASSERT_TRUE(u.ok());
  EXPECT_EQ(u->uid, 4242u);
  EXPECT_EQ(u->gid, 77u);
  EXPECT_EQ(u->home, "/");

  u = ResolveUserIn(kPasswd, kGroup, "nohome");
  ASSERT_TRUE(u.ok());
  EXPECT_EQ(u->gid, 1300u);
  EXPECT_EQ(u->home, "/");
}

TEST(ResolveUser, MissingNamesAreDockersErrors) {
  auto u = ResolveUserIn(kPasswd, kGroup, "short");
  ASSERT_FALSE(u.ok());
  EXPECT_EQ(u.status().message(), "unable to find user short: no matching entries in passwd file");
  u = ResolveUserIn(kPasswd, kGroup, "app:nogroup");
  ASSERT_FALSE(u.ok());
  EXPECT_EQ(u.status().message(),
            "unable to find group nogroup: no matching entries in group file");
  u = ResolveUserIn(kPasswd, kGroup, "app:bad");  // a non-numeric gid is no group
  ASSERT_FALSE(u.ok());
  u = ResolveUserIn("", "", "app");
  ASSERT_FALSE(u.ok());
}

// A 24 MiB line of ':' (a field per byte) and a member list of a million names before
// the real entries: found, without a copy per field.
TEST(ResolveUser, HugeLinesAndMemberLists) {
  std::string passwd(24u << 20, ':');
  passwd += "\napp:x:1000:1000::/:/bin/sh\n";
  std::string group = "big:x:5000:";
  for (int i = 0; i < 1000000; i++) group += "u" + std::to_string(i) + ",";
  group += "app\n";
  auto u = ResolveUserIn(passwd, group, "app");
  ASSERT_TRUE(u.ok()) << u.status().ToString();
  EXPECT_EQ(u->uid, 1000u);
  EXPECT_EQ(u->groups, std::vector<gid_t>{5000});
}

TEST(ResolveUser, SupplementaryGroupsAreBounded) {
  std::string group;
  for (size_t g = 1; g <= kMaxRunGroups + 1; g++) {
    group += "g" + std::to_string(g) + ":x:" + std::to_string(g) + ":app\n";
  }
  auto u = ResolveUserIn("app:x:1000:0::/:/bin/sh\n", group, "app");
  ASSERT_FALSE(u.ok());
  EXPECT_EQ(u.status().message(), "user app is in more than 65536 groups in the group file");
}

}  // namespace
}  // namespace imgfs
