// Shared by the libFuzzer targets (tests/fuzz/*_fuzz.cc, docs/fuzzing.md): a property
// that does not hold aborts, which libFuzzer reports as a crash with its input.
#ifndef IMGFS_TESTS_FUZZ_FUZZ_CHECK_H_
#define IMGFS_TESTS_FUZZ_FUZZ_CHECK_H_

#include <cstdio>
#include <cstdlib>

#define FUZZ_CHECK(cond)                                                               \
  do {                                                                                 \
    if (!(cond)) {                                                                     \
      std::fprintf(stderr, "%s:%d: property failed: %s\n", __FILE__, __LINE__, #cond); \
      std::abort();                                                                    \
    }                                                                                  \
  } while (0)

#endif  // IMGFS_TESTS_FUZZ_FUZZ_CHECK_H_
