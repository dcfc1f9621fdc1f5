// Linked into every unit-test binary. With IMGFS_GTEST_FORCE_FAIL=1 in the environment
// the binary gains one test, ImgfsSelfCheck.ForcedFailure, that fails: tests/
// mutation_check.sh runs each binary that way and asserts it exits non-zero, so a
// binary whose failures cannot reach its exit status (a main that ignores
// RUN_ALL_TESTS, a listener that swallows failures) is caught. Without the variable
// nothing is registered, and test discovery never sees the test.
#include <gtest/gtest.h>

#include <cstdlib>
#include <cstring>

namespace {

class ForcedFailure : public ::testing::Test {
 public:
  void TestBody() override { EXPECT_EQ(1, 2) << "forced failure (IMGFS_GTEST_FORCE_FAIL=1)"; }
};

[[maybe_unused]] const bool registered = [] {
  const char* v = std::getenv("IMGFS_GTEST_FORCE_FAIL");
  if (v != nullptr && std::strcmp(v, "1") == 0) {
    ::testing::RegisterTest("ImgfsSelfCheck", "ForcedFailure", nullptr, nullptr, __FILE__, __LINE__,
                            []() -> ForcedFailure* { return new ForcedFailure; });
  }
  return true;
}();

}  // namespace
