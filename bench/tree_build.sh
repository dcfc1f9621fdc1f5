#!/usr/bin/env bash
# The tree build the first lookup inside an image waits for (issue 8): for one image of
# a store, Store::GetTree (what the mount runs), FlatLayerTree alone and the general merge
# (TreeBuilder) alone, each in ROUNDS fresh processes alternated round by round. Reports,
# per mode, the median of a process's first build (its heap not yet faulted in) and of
# the builds after it (warm), in ms, and the minor page faults of the first build.
#   bash bench/tree_build.sh BUILD-DIR STORE IMAGE-ID [ROUNDS]
# BUILD-DIR holds tree_build_bench (cmake target of that name).
set -euo pipefail
[[ $# -ge 3 ]] || { sed -n 2,8p "$0"; exit 2; }
BIN=$1/tree_build_bench S=$2 ID=$3 ROUNDS=${4:-20}
[[ -x $BIN ]] || { echo "no $BIN: make tree_build_bench" >&2; exit 1; }
out=$(mktemp)
trap 'rm -f "$out"' EXIT
modes="store merge"
layers=$("$BIN" "$S" "$ID" flat 1 >/dev/null 2>&1 && echo 1 || echo many)
[[ $layers == 1 ]] && modes="store flat merge"
for _ in $(seq "$ROUNDS"); do
  for m in $modes; do
    "$BIN" "$S" "$ID" "$m" 10 | awk -v m="$m" '{print m, (NR == 1 ? "first" : "warm"), $1, $2, $3}' >>"$out"
  done
done
/usr/bin/python3 - "$out" <<'PY'
import collections, statistics, sys
t = collections.defaultdict(list); f = collections.defaultdict(list); nodes = {}
for line in open(sys.argv[1]):
    m, k, ms, faults, n = line.split()
    t[(m, k)].append(float(ms)); f[(m, k)].append(int(faults)); nodes[m] = n
for m in dict.fromkeys(k[0] for k in t):
    print(f"{m:6} first {statistics.median(t[(m, 'first')]):6.2f} ms ({statistics.median(f[(m, 'first')])} faults)"
          f"  warm {statistics.median(t[(m, 'warm')]):6.2f} ms  nodes {nodes[m]}")
PY
