#!/usr/bin/env bash
# Every test can fail: a mutation check of the test suites themselves (ctest runs it as
# `mutation_check`; usage: mutation_check.sh PATH_TO_IMGFS [GTEST_BINARY...]).
#
# End-to-end suites (tests/e2e/*.sh, every one a ctest test by CMakeLists.txt's glob): each must source
# lib.sh, end with `finish`, and neither trap EXIT nor redefine lib.sh's check/finish
# (lib.sh owns the exit path). Then a copy of each, with one forced failing check
# injected, must exit non-zero (and not 77, a skip):
#   - every suite: its own header, lib.sh, a hook that exits 0 and a hook that fails
#     (what broke mount.sh: a cleanup step's status became the suite's), one passing
#     and one forced failing check, finish. Seconds each.
#   - a suite that registers its own exit hooks (on_exit, or a trap) runs IN FULL with the forced
#     check just before its final finish, so the failure travels through the suite's
#     real hooks and exit path.
# Then lib.sh's exit paths once each: a re-trapped EXIT, a command failing under set -e,
# exit 0 before finish, no check at all, a skip in CI; and a control that does pass.
#
# Unit tests: each gtest binary, run with IMGFS_GTEST_FORCE_FAIL=1 (which registers the
# failing ImgfsSelfCheck.ForcedFailure, tests/gtest_self_check.cc), must exit non-zero
# and name that test; run without it, the same filter must pass with 0 tests.
set -uo pipefail
IMGFS=$(readlink -f "${1:?usage: $0 PATH_TO_IMGFS [GTEST_BINARY...]}")
shift
SRC=$(cd "$(dirname "$0")/.." && pwd)
E=$SRC/tests/e2e
W=$(mktemp -d "${TMPDIR:-/tmp}/imgfs-mutation.XXXXXX")
trap 'rm -rf "$W"' EXIT
mkdir -p "$W/tmp"
chmod 0755 "$W" "$W/tmp"  # rootless.sh's user must reach its files
bad=0
skipped=0
pass() { echo "ok - $*"; }
fail() { bad=$((bad + 1)); echo "not ok - $*"; }

# run_copy NAME FILE [ENV=VALUE...]: runs a suite copy; sets rc and out.
run_copy() {
  local name=$1 file=$2; shift 2
  rc=0
  out=$(env "$@" TMPDIR="$W/tmp" timeout 900 bash "$file" "$IMGFS" 2>&1) || rc=$?
  printf '%s\n' "$out" >"$W/$name.log"
}
# must_fail DESCRIPTION PATTERN [PATTERN2]: the last run_copy exited non-zero (not 77)
# and printed PATTERN (and PATTERN2).
must_fail() {
  if [[ $rc -ne 0 && $rc -ne 77 ]] && grep -q -- "$2" <<<"$out" && grep -q -- "${3:-$2}" <<<"$out"; then
    pass "$1 (exit $rc)"
  elif [[ $rc -eq 77 && ${CI:-} != true && ${IMGFS_CI:-0} != 1 ]]; then
    skipped=$((skipped + 1))
    echo "SKIP: $1: the suite skipped (exit 77), so its forced failure never ran"
  else
    # check() prints a failing command's output before its "not ok" line.
    fail "$1 (exit $rc; expected non-zero and '$2'); its failing checks (each with the lines before it) and last lines:"
    { grep -B3 '^not ok' <<<"$out" | head -50; echo '  ...'; tail -5 <<<"$out"; } | sed 's/^/#   /'
  fi
}

FORCED='check "forced failure (mutation check)" false'
for suite in "$E"/*.sh; do
  name=$(basename "$suite" .sh)
  [[ $name == lib ]] && continue
  # Lint: what the exit path relies on.
  src_line=$(grep -n '^source "$(dirname "$0")/lib.sh"$' "$suite" | cut -d: -f1)
  [[ $(wc -w <<<"$src_line") -eq 1 ]] || { fail "$name: must source lib.sh exactly once"; continue; }
  [[ $(grep -v '^[[:space:]]*$' "$suite" | tail -1) == finish ]] || fail "$name: its last line must be finish"
  if grep -Eq '(^|[;&|({[:space:]])(builtin[[:space:]]+)?trap[[:space:]]' "$suite"; then
    fail "$name: traps a signal itself (lib.sh owns the exit path; use on_exit)"
  fi
  if grep -Eq '^[[:space:]]*(function[[:space:]]+)?(check|ok|not_ok|expect_fail|finish|cleanup|on_exit)[[:space:]]*\(\)' "$suite"; then
    fail "$name: redefines a lib.sh function"
  fi
  # The cheap copy: the suite's header, lib.sh, the injected failure, finish.
  {
    head -n $((src_line - 1)) "$suite"
    echo "source '$E/lib.sh'"
    echo "on_exit 'true; exit 0'"
    echo "on_exit false"
    echo 'check "a passing check" true'
    echo "$FORCED"
    echo finish
  } >"$W/$name.early.sh"
  run_copy "$name.early" "$W/$name.early.sh"
  must_fail "$name: a forced failing check fails the suite (early finish)" "not ok - forced failure (mutation check)"
  # The full copy, for suites with exit hooks of their own.
  if grep -Eq '\<(on_exit|trap)\>' "$suite"; then
    last=$(grep -n '^finish$' "$suite" | tail -1 | cut -d: -f1)
    sed -e "${src_line}s|.*|source '$E/lib.sh'|" -e "${last}s|^finish\$|$FORCED\nfinish|" "$suite" >"$W/$name.full.sh"
    run_copy "$name.full" "$W/$name.full.sh"
    must_fail "$name: a forced failing check before its finish fails the whole suite" \
      "not ok - forced failure (mutation check)" "^[0-9]* passed, 1 failed$"  # and nothing else failed
  fi
done

# lib.sh's exit paths, once each.
lib_case() {  # lib_case NAME BODY [ENV=VALUE...]: a tiny suite
  local name=$1 body=$2; shift 2
  printf "source '%s/lib.sh'\n%s\n" "$E" "$body" >"$W/lib-$name.sh"
  run_copy "lib-$name" "$W/lib-$name.sh" "$@"
}
lib_case control 'check "a passing check" true
finish'
if [[ $rc -eq 0 ]]; then pass "control: a suite whose checks pass exits 0"; else fail "control: a passing suite exited $rc"; fi
lib_case retrap 'trap "rm -f /nonexistent; cleanup" EXIT
check "a passing check" true
finish'
must_fail "a suite that re-traps EXIT (mount.sh's old bug) fails" "may not trap EXIT"
lib_case abort 'check "a passing check" true
false
finish'
must_fail "a command failing under set -e fails the suite" "stopped before finish"
lib_case exit0 'check "a passing check" true
exit 0'
must_fail "exit 0 before finish fails the suite" "stopped before finish"
lib_case nocheck 'finish'
must_fail "a suite with no check fails" "no check ran"
lib_case ciskip 'require_fuse
check "a passing check" true
finish' IMGFS_FUSE_DEV=/nonexistent IMGFS_CI=1
must_fail "a FUSE suite without /dev/fuse fails in CI" "CI may not skip"
lib_case devskip 'require_fuse
check "a passing check" true
finish' IMGFS_FUSE_DEV=/nonexistent IMGFS_CI=0 CI=
if [[ $rc -eq 77 ]] && grep -q "SKIP: .*DID NOT RUN" <<<"$out"; then
  pass "outside CI the same suite skips loudly (exit 77)"
else
  fail "outside CI a missing /dev/fuse should skip with exit 77 (got $rc)"
fi

# The unit-test binaries.
for bin in "$@"; do
  name=$(basename "$bin")
  rc=0
  out=$(IMGFS_GTEST_FORCE_FAIL=1 "$bin" --gtest_filter='ImgfsSelfCheck.*' 2>&1) || rc=$?
  if [[ $rc -ne 0 ]] && grep -q '^\[  FAILED  \] ImgfsSelfCheck.ForcedFailure' <<<"$out"; then
    pass "$name: a forced failing test fails the binary (exit $rc)"
  else
    fail "$name: with a forced failing test it exited $rc"
    tail -5 <<<"$out" | sed 's/^/#   /'
  fi
  rc=0
  out=$(env -u IMGFS_GTEST_FORCE_FAIL "$bin" --gtest_filter='ImgfsSelfCheck.*' 2>&1) || rc=$?
  if [[ $rc -eq 0 ]] && grep -q '^\[  PASSED  \] 0 tests' <<<"$out"; then
    pass "$name: without IMGFS_GTEST_FORCE_FAIL the forced test does not exist"
  else
    fail "$name: the forced test is registered without IMGFS_GTEST_FORCE_FAIL (exit $rc)"
  fi
done

echo "mutation check: $bad failed, $skipped skipped"
((bad == 0)) || exit 1
((skipped == 0)) || exit 77
