#!/usr/bin/env bash
# Issue 12's `ls -l` row: a cold and a repeated `ls -l` of one repository's tag
# directories (image roots) through a fresh mount, per session loop of the daemon, and
# the same listing of as many native directories after a cache drop, in one run.
#   spin=0    libfuse's multithreaded loop (the loop before fs/fuse_loop.h)
#   spin=US   fs/fuse_loop.h's loop thread, polling US µs after each request
# Each round runs every mode once (alternated); the report is the median and range per
# mode, the daemon's CPU time per listing pair, and the ratio to native.
# Usage: bench/names_ls.sh STORE REPO [ROUNDS] [path/to/imgfs]   (STORE: e.g. the store
# bench/scale.sh builds; REPO: bench/app)   env: MODES (default "spin=0 spin=50 spin=200")
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
STORE=$(readlink -f "$1")
REPO=$2
ROUNDS=${3:-5}
IMGFS=$(readlink -f "${4:-$HERE/../build/imgfs}")
MODES=${MODES:-spin=0 spin=50 spin=200}
source "$HERE/mount_lib.sh" namesls

one_mount() {  # mode -> "cold_ms warm_ms cpu_ms count"
  local mode=$1
  start_mount "$mode"
  local c0 t0 t1 t2 c1 n
  c0=$(ticks "$DAEMON")
  t0=$(now)
  n=$(ls -l "$MNT/$REPO" | grep -c '^d')
  t1=$(now)
  ls -l "$MNT/$REPO" >/dev/null
  t2=$(now)
  c1=$(ticks "$DAEMON")
  stop_mount
  echo "$(((t1 - t0) / 1000000)) $(((t2 - t1) / 1000000)) $(((c1 - c0) * 1000 / $(getconf CLK_TCK))) $n"
}

declare -A cold warm cpu
count=0
for r in $(seq 1 "$ROUNDS"); do
  for m in $MODES; do
    read -r c w u n < <(one_mount "$m")
    cold[$m]+="$c "
    warm[$m]+="$w "
    cpu[$m]+="$u "
    count=$n
    echo "round $r $m: cold $c ms, repeated $w ms, daemon CPU $u ms, $n directories" >&2
  done
done

# Native: as many directories on the disk the store is on, listed after a cache drop.
NAT="$(dirname "$STORE")/.names_ls_native.$$"
mkdir -p "$NAT"
trap 'cleanup; rm -rf "$NAT"' EXIT
(cd "$NAT" && seq -f 't%05g' 1 "$count" | xargs mkdir -p)
ncold="" nwarm=""
for r in $(seq 1 "$ROUNDS"); do
  drop
  t0=$(now); ls -l "$NAT" >/dev/null; t1=$(now); ls -l "$NAT" >/dev/null; t2=$(now)
  ncold+="$(((t1 - t0) / 1000000)) "
  nwarm+="$(((t2 - t1) / 1000000)) "
done

med() { tr ' ' '\n' | grep . | sort -n | awk '{a[NR]=$1} END {m=a[int((NR+1)/2)]; printf "%d (%d-%d)", m, a[1], a[NR]}'; }
medv() { tr ' ' '\n' | grep . | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
nc=$(echo "$ncold" | medv)
nw=$(echo "$nwarm" | medv)
echo "ls -l of $count tag directories of $REPO, $ROUNDS rounds, median (range), ms; load $(cut -d' ' -f1-3 /proc/loadavg)"
printf '| %-10s | %-18s | %-18s | %-14s | %s |\n' mode cold repeated "daemon CPU" "cold / native"
for m in $MODES; do
  c=$(echo "${cold[$m]}" | medv)
  printf '| %-10s | %-18s | %-18s | %-14s | %s |\n' "$m" "$(echo "${cold[$m]}" | med)" \
    "$(echo "${warm[$m]}" | med)" "$(echo "${cpu[$m]}" | med)" \
    "$(awk -v a="$c" -v b="$nc" 'BEGIN {printf "%.2fx", (b > 0 ? a / b : 0)}')"
done
printf '| %-10s | %-18s | %-18s | %-14s | %s |\n' native "$(echo "$ncold" | med)" \
  "$(echo "$nwarm" | med)" "" "1.00x"
