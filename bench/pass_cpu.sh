#!/usr/bin/env bash
# CPU seconds per stage of the one-pass layer pipeline (issues 8 and 14): `imgfs import`
# of the minbase gzip tarball into a fresh store, with IMGFS_STAGE_CPU=1 (each pipeline
# thread reports its getrusage(RUSAGE_THREAD)), alternating run by run between
#   imgfs                      (checkpoints recorded: the default 1 MiB span)
#   imgfs, IMGFS_SEEK_SPAN=0   (no seek index: plain ISA-L inflate)
#   BASELINE imgfs             (when BASELINE=path/to/older/imgfs is set)
# and printing the median of RUNS (default 5) per stage, with whole-process user CPU.
# Usage: bench/pass_cpu.sh [path/to/imgfs]   (input from bench/make_minbase.sh)
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
IMGFS=$(readlink -f "${1:-$HERE/../build/imgfs}")
B=${BENCH_DIR:-/var/tmp/imgfs-bench}
RUNS=${RUNS:-5}
bash "$HERE/make_minbase.sh" >/dev/null
W=$(mktemp -d /var/tmp/imgfs-bench-pass.XXXXXX)
trap 'rm -rf "$W"' EXIT
one() {  # LABEL BINARY [VAR=VALUE...]
  local label=$1 bin=$2
  shift 2
  rm -rf "$W/store"
  env IMGFS_STAGE_CPU=1 "$@" /usr/bin/time -f "user %U" "$bin" --root "$W/store" import \
    "$B/minbase.tar.gz" bench/pass:1 2>&1 >/dev/null |
    sed -n "s/^imgfs-stage-cpu \([a-z]*\) \([0-9.]*\).*/$label \1 \2/p; s/^user \(.*\)/$label user \1/p"
}
for ((i = 0; i < RUNS; i++)); do
  one checkpoints "$IMGFS"
  one no-index "$IMGFS" IMGFS_SEEK_SPAN=0
  [[ -n ${BASELINE:-} ]] && one baseline "$(readlink -f "$BASELINE")"
done >"$W/out"
echo "imgfs import of minbase.tar.gz ($(stat -c %s "$B/minbase.tar.gz") bytes), CPU seconds, median of $RUNS:"
python3 - "$W/out" <<'PY'
import statistics, sys
rows = {}
for line in open(sys.argv[1]):
    label, stage, sec = line.split()
    rows.setdefault(label, {}).setdefault(stage, []).append(float(sec))
for label, stages in rows.items():
    print(f"  {label:12}", "  ".join(f"{s} {statistics.median(v):.3f}"
                                     for s, v in sorted(stages.items())))
PY
uptime
