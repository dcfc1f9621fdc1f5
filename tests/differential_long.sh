#!/usr/bin/env bash
# Long differential run: many seeded random layer stacks against umoci/overlayfs (see
# tests/e2e/differential.sh and docs/differential.md). Every difference is printed
# with its seed (rerun one with DIFFTEST_SEEDS=N:N+1 bash tests/e2e/differential.sh), and
# the last line is the summary: cases, seconds, differences by attribute and by class.
#   bash tests/differential_long.sh IMGFS [FIRST_SEED [COUNT [CLASSES [DEADLINE_S]]]]
# Defaults: seeds 100000..104999 (5,000 cases, outside CI's 1..200), the CI classes,
# no deadline. CLASSES=all runs every class, the known differences included.
set -euo pipefail
IMGFS=$(readlink -f "${1:?usage: $0 IMGFS [FIRST_SEED [COUNT [CLASSES [DEADLINE_S]]]]}")
FIRST=${2:-100000}
COUNT=${3:-5000}
HERE=$(cd "$(dirname "$0")" && pwd)
CLASSES=${4:-$(/usr/bin/python3 "$HERE/differential/difftest.py" --print-ci-classes)}
[[ $CLASSES == all ]] && CLASSES=$(/usr/bin/python3 -c "import sys; sys.path.insert(0, '$HERE/differential'); import gen; print(','.join(gen.ALL_CLASSES))")
W=$(mktemp -d "${TMPDIR:-/tmp}/imgfs-difflong.XXXXXX")
cleanup() { grep -o " $W/[^ ]*/mnt " /proc/mounts | xargs -r -n1 fusermount3 -u -z 2>/dev/null || true; rm -rf "$W"; }
trap cleanup EXIT
export TZ=UTC
echo "differential long run: seeds $FIRST..$((FIRST + COUNT - 1)), classes $CLASSES"
/usr/bin/python3 "$HERE/differential/difftest.py" --imgfs "$IMGFS" --work "$W" \
  --seeds "$FIRST:$((FIRST + COUNT))" --batch 250 --classes "$CLASSES" --deadline "${5:-0}"
