#!/usr/bin/env bash
# Parallel readers against one mount, per session loop of the daemon: K images walked at
# once by K processes, cold (a fresh mount after a cache drop), the way a scanner or a CI
# job fans out over images. Two workloads, each its own mount:
#   find   `find IMG -ls` (lookups, attributes, listings, readlinks: no file content)
#   grep   `grep -r -q` of a string no file holds (every file read whole)
# Modes: spin=0 is libfuse's multithreaded loop (a worker thread per request); spin=US
# is fs/fuse_loop.h's loop thread, which answers names and decoded reads itself.
# Each round runs every mode once (alternated); the report is the median and range of
# the wall time until the last process ends, and the daemon's CPU time.
# Usage: bench/loop_par.sh STORE REPO K [ROUNDS] [path/to/imgfs]   (REPO's first K tags
# are the images; bench/scale.sh's store and bench/app)   env: MODES (default
# "spin=0 spin=50")
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
STORE=$(readlink -f "$1")
REPO=$2
K=$3
ROUNDS=${4:-5}
IMGFS=$(readlink -f "${5:-$HERE/../build/imgfs}")
MODES=${MODES:-spin=0 spin=50}
source "$HERE/mount_lib.sh" looppar

TAGS=$("$IMGFS" -g "$STORE" images 2>/dev/null |
  awk -v r="$REPO" -v k="$K" '$1 == r && n < k {printf "%s ", $2; n++}')
[[ $(wc -w <<<"$TAGS") -eq $K ]] || { echo "fewer than $K tags of $REPO in $STORE" >&2; exit 1; }

one() {  # workload mode -> "wall_ms cpu_ms"
  local work=$1 mode=$2
  start_mount "$mode"
  local c0 t0 t1 c1 pids=() t
  c0=$(ticks "$DAEMON")
  t0=$(now)
  for t in $TAGS; do
    if [[ $work == find ]]; then
      find "$MNT/$REPO/$t" -ls >/dev/null &
    else
      grep -r -q zzq-no-file-holds-this-qzz "$MNT/$REPO/$t" &
    fi
    pids+=($!)
  done
  for p in "${pids[@]}"; do wait "$p" || true; done
  t1=$(now)
  c1=$(ticks "$DAEMON")
  stop_mount
  echo "$(((t1 - t0) / 1000000)) $(((c1 - c0) * 1000 / $(getconf CLK_TCK)))"
}

declare -A wall cpu
for r in $(seq 1 "$ROUNDS"); do
  for work in find grep; do
    for m in $MODES; do
      read -r w u < <(one "$work" "$m")
      wall[$work $m]+="$w "
      cpu[$work $m]+="$u "
      echo "round $r $work $m: $w ms, daemon CPU $u ms" >&2
    done
  done
done

med() { tr ' ' '\n' | grep . | sort -n | awk '{a[NR]=$1} END {m=a[int((NR+1)/2)]; printf "%d (%d-%d)", m, a[1], a[NR]}'; }
echo "$K images of $REPO walked at once, cold, $ROUNDS rounds, median (range), ms; load $(cut -d' ' -f1-3 /proc/loadavg)"
printf '| %-6s | %-10s | %-20s | %s |\n' work mode "wall" "daemon CPU"
for work in find grep; do
  for m in $MODES; do
    printf '| %-6s | %-10s | %-20s | %s |\n' "$work" "$m" "$(echo "${wall[$work $m]}" | med)" \
      "$(echo "${cpu[$work $m]}" | med)"
  done
done
