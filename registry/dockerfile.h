// Dockerfile parsing and variable substitution for `imgfs build` (registry/builder.h).
//
// ParseDockerfile follows docker's parser (moby/buildkit frontend/dockerfile/parser):
//   - a line ending in `\` continues on the next line; comment lines (`#` first) and
//     empty lines inside a continuation are dropped;
//   - lines whose first non-blank character is `#` are comments; parser directives at
//     the top (`# syntax=`, `# escape=`) are read: `escape=\` is the only escape
//     accepted (`escape=`` ` is refused, naming the line);
//   - the instruction keyword is case-insensitive; leading `--name[=value]` words are
//     its flags;
//   - for CMD, ENTRYPOINT, RUN, SHELL, COPY, ADD and VOLUME, arguments that parse as a
//     JSON array of strings are the exec (JSON) form; anything else is the shell form.
//
// ExpandWord is docker's shell-word processing (ProcessWord) for the instructions
// docker substitutes (ADD COPY ENV EXPOSE FROM LABEL STOPSIGNAL USER VOLUME WORKDIR,
// and ARG): `$NAME`, `${NAME}`, `${NAME:-word}`, `${NAME-word}`, `${NAME:+word}`,
// `${NAME+word}`, `${NAME:?msg}`, `${NAME?msg}`; no substitution inside '…'; `\$` is a
// literal `$`. An unset variable is empty.
//
// Thread-safety: pure functions.
#ifndef IMGFS_REGISTRY_DOCKERFILE_H_
#define IMGFS_REGISTRY_DOCKERFILE_H_

#include <cstddef>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "index/status.h"

namespace imgfs {

struct DockerInstruction {
  int line = 0;                    // 1-based line the instruction starts on
  std::string cmd;                 // keyword, upper case
  std::string original;            // the instruction, continuations joined
  std::vector<std::string> flags;  // leading "--name[=value]" words, as written
  std::string args;                // the rest, trimmed
  bool json = false;               // exec form: json_args holds the array
  std::vector<std::string> json_args;
};

Result<std::vector<DockerInstruction>> ParseDockerfile(std::string_view text);

// The exec (JSON) form: true and the words when `text` is a JSON array of strings only.
bool ParseExecForm(std::string_view text, std::vector<std::string>* words);

using BuildVars = std::map<std::string, std::string>;

// Bounds against a hostile Dockerfile: its size (the builder reads no more), how deep
// ${A:-${B:-...}} may nest, and how much substitution may add to one word, or to the
// words of one ExpandWords call ("ENV A=$A$A" repeated would double it each line).
// The builder adds two (registry/builder_internal.h): what one instruction's
// substitutions may produce in all (["$A","$A",...] is many words), and how large the
// config and the ARG values may grow over all lines ("ENV Bn=$A" for n = 1..100000:
// each word small enough, the sum not); 16 MiB is the largest config pull accepts.
// Past any of them: a clear error.
inline constexpr size_t kMaxDockerfileSize = 16u << 20;
inline constexpr int kMaxSubstitutionDepth = 64;
inline constexpr size_t kMaxExpandedWord = 1u << 20;
inline constexpr size_t kMaxExpandedInstruction = 4u << 20;
inline constexpr size_t kMaxBuildState = 16u << 20;
// Each instruction costs time in the size of the config so far (parsed, changed,
// copied): with a config near kMaxBuildState that is ~0.1 s of CPU, so a 16 MiB
// Dockerfile of short lines would run for days. Real Dockerfiles have hundreds.
inline constexpr size_t kMaxInstructions = 10000;

// With keep_quotes, quotes and backslashes are kept and each substituted value is
// escaped (\ before \ " ' and blanks), so that a later word split (ENV/LABEL KEY=VALUE
// lists) sees the words as docker does; without, quotes are removed (ProcessWord).
Result<std::string> ExpandWord(std::string_view word, const BuildVars& vars, bool keep_quotes);

// Splits on blanks outside quotes, then expands each word without quotes.
Result<std::vector<std::string>> ExpandWords(std::string_view s, const BuildVars& vars);

}  // namespace imgfs

#endif  // IMGFS_REGISTRY_DOCKERFILE_H_
