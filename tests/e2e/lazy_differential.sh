#!/usr/bin/env bash
# Differential test of lazy pulls, CI size: 60 seeded random layer stacks
# (tests/differential/gen.py, the cases of differential.sh) as zstd:chunked made by skopeo
# (tar headers from the blob), the same with a tar-split, and eStargz, each pushed to a
# docker-registry on loopback and pulled with `imgfs pull --lazy`; the lazy image, every
# file read through the lazy path, must list exactly as `imgfs load` of the same layers,
# and again after a plain pull completed it (verify clean). See
# tests/differential/lazydiff.py and docs/differential.md.
#   LAZYDIFF_SEEDS=A:B   seed range (default 1:61)
source "$(dirname "$0")/lib.sh"
need skopeo docker-registry zstd python3
SEEDS=${LAZYDIFF_SEEDS:-1:61}
out=$T/lazydiff.out
rc=0
/usr/bin/python3 "$HERE/../differential/lazydiff.py" --imgfs "$IMGFS" --work "$T/work" \
  --seeds "$SEEDS" >"$out" 2>&1 || rc=$?
grep -a '^DIFF' "$out" | cut -c1-600 | head -40 || true
tail -1 "$out"
check "lazy differential: no difference between pull --lazy and load ($SEEDS)" test "$rc" -eq 0
# Every format must have been exercised: a tool that refuses everything would pass.
lazy_cases() {  # a count from the summary line's JSON (0 when absent)
  /usr/bin/python3 - "$out" "$1" <<'PY'
import json, re, sys
m = re.search(r'^summary: .*counts (\{.*\})$', open(sys.argv[1], errors='replace').read(), re.M)
print(json.loads(m.group(1)).get(sys.argv[2], 0) if m else 0)
PY
}
check "  eStargz cases ran ($(lazy_cases estargz))" test "$(lazy_cases estargz)" -ge 5
check "  tar-split cases ran ($(lazy_cases tar-split))" test "$(lazy_cases tar-split)" -ge 5
check "  cases compared (not refused by both): $(lazy_cases compared)" test "$(lazy_cases compared)" -ge 25
check "  most of them lazily: $(lazy_cases pulled-in-full) pulled in full" \
  test "$(lazy_cases pulled-in-full)" -le $(($(lazy_cases compared) / 5))
finish
