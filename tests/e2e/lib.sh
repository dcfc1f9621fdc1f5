# Shared helpers for the end-to-end tests. Each test sources this, gets a private
# temporary directory in $T and a store in $ROOT, and everything is removed on exit,
# whether the test passes or fails.
set -euo pipefail
IMGFS=${1:?usage: $0 PATH_TO_IMGFS}
IMGFS=$(readlink -f "$IMGFS")
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
T=$(mktemp -d /tmp/imgfs-e2e.XXXXXX)
ROOT=$T/store
export IMGFS_ROOT=$ROOT
export TZ=UTC
cleanup() {
  local rc=$?
  for pid in ${CLEANUP_PIDS:-}; do kill "$pid" 2>/dev/null || true; done
  for m in ${CLEANUP_MOUNTS:-}; do fusermount3 -u -z "$m" 2>/dev/null || true; done
  rm -rf "$T"
  exit $rc
}
trap cleanup EXIT
fails=0
passes=0
ok() { passes=$((passes + 1)); echo "ok - $*"; }
not_ok() { fails=$((fails + 1)); echo "not ok - $*"; }
check() {  # check DESCRIPTION COMMAND...
  local d=$1; shift
  if "$@"; then ok "$d"; else not_ok "$d"; fi
}
# expect_fail DESCRIPTION PATTERN COMMAND...: the command must fail with one line
# on stderr that matches PATTERN.
expect_fail() {
  local d=$1 pat=$2; shift 2
  local err rc=0
  err=$("$@" 2>&1 >/dev/null) || rc=$?
  if [[ $rc -ne 0 && $(printf '%s\n' "$err" | wc -l) -eq 1 && $err =~ $pat ]]; then
    ok "$d"
  else
    not_ok "$d (rc=$rc, stderr: $err)"
  fi
}
finish() {
  echo "$passes passed, $fails failed"
  [[ $fails -eq 0 ]]
}
need() {
  for t in "$@"; do
    command -v "$t" >/dev/null || { echo "missing tool: $t (install it; see README)"; exit 1; }
  done
}
# A store's state: every file (size, hash) except LMDB's own files, plus the index's
# generation counter and names, read through imgfs itself.
store_state() {
  (cd "$ROOT" && find . -path ./index -prune -o -name gc.lock -prune -o -type f -printf '%p %s\n' | sort
   find "$ROOT/blobs" -type f -exec sha256sum {} + 2>/dev/null | sort
   "$IMGFS" images --no-trunc --digests --format json 2>&1 | sed 's/"CreatedSince":"[^"]*",//')
}
