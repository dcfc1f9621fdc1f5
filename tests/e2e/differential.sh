#!/usr/bin/env bash
# Differential test, CI size: 200 seeded random layer stacks (tests/differential/gen.py),
# each loaded into imgfs and compared attribute by attribute, through `imgfs ls` and
# through one FUSE mount, with `umoci unpack` of the same layers (or, for the classes
# where imgfs follows the kernel's overlay rules, a real overlayfs mount of the layers
# extracted by GNU tar). See docs/differential.md for the classes and verdicts.
# Long runs: tests/differential_long.sh.
#   DIFFTEST_SEEDS=A:B      seed range (default 1:201)
#   DIFFTEST_CLASSES=...    comma-separated classes (default: every class that passes)
source "$(dirname "$0")/lib.sh"
need umoci zstd tar python3
require_fuse
[[ $(id -u) -eq 0 ]] || { echo "SKIP: the overlayfs reference and device nodes need root"; exit 77; }
# The classes CI runs: every class in gen.ALL_CLASSES except the known differences
# listed in docs/differential.md (each one still runs with DIFFTEST_CLASSES=...).
CLASSES=${DIFFTEST_CLASSES:-$(/usr/bin/python3 "$HERE/../differential/difftest.py" --print-ci-classes)}
SEEDS=${DIFFTEST_SEEDS:-1:201}
echo "classes: $CLASSES; seeds: $SEEDS"
out=$T/difftest.out
rc=0
/usr/bin/python3 "$HERE/../differential/difftest.py" --imgfs "$IMGFS" --work "$T/work" \
  --seeds "$SEEDS" --batch 100 --classes "$CLASSES" >"$out" 2>&1 || rc=$?
grep -a '^DIFF' "$out" | head -60 || true
tail -1 "$out"
check "differential: no difference between imgfs and the reference ($SEEDS)" test "$rc" -eq 0
n=$(sed -n 's/^summary: cases \([0-9]*\),.*/\1/p' "$out")
check "differential: every case ran (got ${n:-none})" test "${n:-0}" -ge 200 -o -n "${DIFFTEST_SEEDS:-}"
check "differential: no mount left behind" bash -c "! grep -q ' $T/work' /proc/mounts"
finish
