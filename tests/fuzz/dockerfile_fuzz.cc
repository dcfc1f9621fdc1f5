// The Dockerfile parser and substitution of `imgfs build` (registry/dockerfile.h) read
// a file the user hands over. Properties: no crash; every instruction has a non-empty
// upper-case keyword and a line number inside the input, in increasing order; a JSON
// form instruction has no shell args lost (json_args only when json); substitution of
// each instruction's args, with and without quotes kept, either fails cleanly or
// succeeds, and a word with no '$', quote or backslash expands to itself.
#include <cctype>
#include <cstdint>
#include <string>
#include <string_view>

#include "registry/dockerfile.h"
#include "tests/fuzz/fuzz_check.h"

using namespace imgfs;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view in(reinterpret_cast<const char*>(data), size);
  auto r = ParseDockerfile(in);
  if (!r.ok()) return 0;
  int lines = 1;
  for (char c : in) lines += c == '\n';
  int last = 0;
  BuildVars vars = {{"A", "a b"}, {"EMPTY", ""}, {"Q", "\"'\\"}};
  for (const auto& ins : *r) {
    FUZZ_CHECK(!ins.cmd.empty());
    for (char c : ins.cmd) FUZZ_CHECK(!std::islower(static_cast<unsigned char>(c)));
    FUZZ_CHECK(ins.line > last && ins.line <= lines);
    last = ins.line;
    FUZZ_CHECK(ins.json || ins.json_args.empty());
    auto a = ExpandWord(ins.args, vars, false);
    auto b = ExpandWord(ins.args, vars, true);
    FUZZ_CHECK(a.ok() == b.ok());
    if (ins.args.find_first_of("$'\"\\") == std::string::npos) {
      FUZZ_CHECK(a.ok() && *a == ins.args);
      FUZZ_CHECK(b.ok() && *b == ins.args);
    }
    (void)ExpandWords(ins.args, vars);
  }
  return 0;
}
