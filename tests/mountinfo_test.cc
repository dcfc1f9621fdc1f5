// fs/mountinfo.h: the mount table as the kernel writes it (octal escapes, optional
// fields before the separator), the mount on top of a directory, libfuse escaping.
#include "fs/mountinfo.h"

#include <gtest/gtest.h>

namespace imgfs {
namespace {

constexpr char kTable[] =
    "22 1 0:21 / /proc rw,nosuid,nodev,noexec,relatime shared:12 - proc proc rw\n"
    "40 22 0:35 / /mnt/a\\040b rw,relatime shared:1 master:2 - tmpfs none rw,size=1024k\n"
    "41 40 0:36 / /mnt/a\\040b ro,nosuid,nodev,relatime - fuse.imgfs /var/lib/my\\040store "
    "ro,user_id=0,group_id=0\n"
    "garbage line\n"
    "42 1 0:37 / /x rw - \n";

TEST(MountInfo, ParsesFieldsAndEscapes) {
  auto t = ParseMountInfo(kTable);
  ASSERT_EQ(t.size(), 3u);  // the garbage and the truncated line are skipped
  EXPECT_EQ(t[0].mount_point, "/proc");
  EXPECT_EQ(t[0].fstype, "proc");
  EXPECT_EQ(t[1].mount_point, "/mnt/a b");
  EXPECT_EQ(t[1].fstype, "tmpfs");  // after two optional fields
  EXPECT_EQ(t[2].fstype, kImgfsFsType);
  EXPECT_EQ(t[2].source, "/var/lib/my store");
}

TEST(MountInfo, TopMountWins) {
  auto t = ParseMountInfo(kTable);
  auto top = MountAt(t, "/mnt/a b");
  ASSERT_TRUE(top.has_value());
  EXPECT_EQ(top->fstype, kImgfsFsType);
  EXPECT_FALSE(MountAt(t, "/mnt/a").has_value());
  EXPECT_FALSE(MountAt(t, "/mnt").has_value());
}

TEST(MountInfo, ReadsTheRealTable) {
  auto t = ReadMountInfo();
  ASSERT_TRUE(t.ok()) << t.status().message();
  EXPECT_TRUE(MountAt(*t, "/").has_value());
}

TEST(MountInfo, EscapesFuseOptions) {
  EXPECT_EQ(EscapeFuseOption("/plain/path"), "/plain/path");
  EXPECT_EQ(EscapeFuseOption("/a,b\\c"), "/a\\,b\\\\c");
}

}  // namespace
}  // namespace imgfs
