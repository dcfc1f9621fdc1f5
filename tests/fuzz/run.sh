#!/usr/bin/env bash
# Runs every libFuzzer target (tests/fuzz/*_fuzz.cc) for SECONDS each, one after the
# other, from its checked-in seed corpus (tests/fuzz/corpus/NAME, read only: every
# seed, and so every past crash kept there, runs first) plus a work corpus that grows
# in $FUZZ_WORK (default $TMPDIR/imgfs-fuzz). Crashing inputs are written there as
# NAME-crash-*. Exits non-zero when any target crashed, leaked, timed out or ran out
# of memory. Prints, per target, the executions and the outcome.
#
#   tests/fuzz/run.sh SECONDS [BUILD_DIR]      (BUILD_DIR: default build-fuzz)
#   FUZZ_TARGETS="json reference" tests/fuzz/run.sh 3600    (a subset, for hours)
#
# Build the targets first (clang only):
#   BUILD_DIR=build-fuzz bash .ci/build -DCMAKE_CXX_COMPILER=clang++ -DIMGFS_FUZZ=ON -DIMGFS_TESTS=OFF
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
secs=${1:?usage: run.sh SECONDS [BUILD_DIR]}
build=$(cd "${2:-$here/../../build-fuzz}" && pwd) || exit 2
work=${FUZZ_WORK:-${TMPDIR:-/tmp}/imgfs-fuzz}
all_targets=$(for f in "$here"/*_fuzz.cc; do basename "$f" _fuzz.cc; done | tr '\n' ' ')
targets=${FUZZ_TARGETS:-$all_targets}
mkdir -p "$work"
failed=0
total=0
# Every target has its row in docs/fuzzing.md's table and a seed corpus.
for t in $all_targets; do
  # (One awk, no pipe: under pipefail, `sed | grep -q` failed whenever grep quit first.)
  awk -v row="| \`$t\` |" '/^## /{in_table = /^## The fuzz targets/} in_table && index($0, row) == 1 {found = 1}
      END {exit !found}' "$here/../../docs/fuzzing.md" ||
    { echo "fuzz: $t has no row in docs/fuzzing.md's table of targets"; failed=1; }
  [[ -d $here/corpus/$t ]] || { echo "fuzz: $t has no seed corpus (tests/fuzz/corpus/$t)"; failed=1; }
done
for t in $targets; do
  bin=$build/${t}_fuzz
  [[ -x $bin ]] || { echo "fuzz: $bin is missing (build with -DIMGFS_FUZZ=ON)"; failed=1; continue; }
  mkdir -p "$work/$t"
  log=$work/$t.log
  rc=0
  ASAN_OPTIONS=detect_leaks=1:allocator_may_return_null=1 \
  UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
    "$bin" -max_total_time="$secs" -timeout=20 -rss_limit_mb=2048 -max_len=262144 \
      -print_final_stats=1 -artifact_prefix="$work/$t-" "$work/$t" "$here/corpus/$t" \
      >"$log" 2>&1 || rc=$?
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  total=$((total + ${runs:-0}))
  if [[ $rc -ne 0 ]]; then
    failed=1
    echo "fuzz $t: FAILED (exit $rc) after ${runs:-?} executions; log $log:"
    grep -E "ERROR|runtime error|property failed|Test unit written|SUMMARY" "$log" | head -20
  else
    echo "fuzz $t: ${runs:-?} executions in ${secs}s, no crash ($(ls "$work/$t" | wc -l) inputs in $work/$t)"
  fi
done
echo "fuzz: $total executions in all"
exit $failed
