#!/usr/bin/env bash
# Issue 12: a store of many images on shared bases. For each N in $SCALE_N (default
# "1000"; "1000 10000" for both), builds an OCI layout of N images with two layers
# each: a shared base (gzip) and a tiny layer of its own (bench/make_scale.py), then
# reports:
#   load        imgfs load of the whole layout into a fresh store: wall time, peak RSS
#   index       store size minus blobs/ (the LMDB index and anything else kept)
#   ls -l       cold `ls -l` of the N tag directories through a fresh mount
#   read-each   mount daemon RSS after reading one file in every image
#   images      imgfs images (median of 5)
# Bases: $BENCH_DIR/minbase.tar.gz (bench/make_minbase.sh) when present, else a base
# made from the host's /etc, /usr/sbin, zoneinfo, perl and python3 trees (~7,600
# entries, ~95 MB, so the figures compare with the Debian minbase's 6,675 entries). With
# SCALE_BASES=K (default 1; the 10,000 case of the issue uses 5), K distinct bases
# (the same tree plus a marker file each) are used round-robin.
# Usage: bench/scale.sh [path/to/imgfs]     env: SCALE_N, SCALE_BASES, MOUNT_OPTS
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
IMGFS=$(readlink -f "${1:-$HERE/../build/imgfs}")
B=${BENCH_DIR:-/var/tmp/imgfs-bench}
mkdir -p "$B"
K=${SCALE_BASES:-1}
base_files=()
for k in $(seq 1 "$K"); do
  f="$B/scalebase-$k.tar.gz"
  if [[ ! -f $f ]]; then
    mkdir -p "$B/marker-$k" && echo "base $k" >"$B/marker-$k/.scale-base"
    if [[ $k == 1 && -f $B/minbase.tar.gz ]]; then
      cp "$B/minbase.tar.gz" "$f"
    elif [[ -f $B/minbase.tar ]]; then
      (cp "$B/minbase.tar" "$f.tmp" && tar -C "$B/marker-$k" -rf "$f.tmp" .scale-base &&
        gzip -6 -c "$f.tmp" >"$f" && rm -f "$f.tmp")
    else
      tar --numeric-owner --ignore-failed-read -C / -cf - etc usr/sbin usr/share/zoneinfo \
        usr/share/perl usr/lib/python3 -C "$B/marker-$k" .scale-base 2>/dev/null |
        gzip -6 >"$f"
    fi
  fi
  base_files+=("$f")
done
source "$HERE/mount_lib.sh" scale
ms() { echo $(( ($2 - $1) / 1000000 )); }

for N in ${SCALE_N:-1000}; do
  L="$B/scale-oci-$N-$K"
  [[ -f $L/index.json ]] || python3 "$HERE/make_scale.py" "$L" "$N" "${base_files[@]}"
  S="$W/store-$N"
  echo "== $N images on $K base(s): $(ls "$L/blobs/sha256" | wc -l) blobs, $(du -sm "$L" | cut -f1) MB"
  /usr/bin/time -f '%e %M' -o "$W/time" "$IMGFS" -g "$S" load -q --name bench/app "$L" >/dev/null
  read -r secs kb <"$W/time"
  echo "load: ${secs} s, peak RSS $((kb / 1024)) MB"
  total=$(du -sb "$S" | cut -f1)
  blobs=$(du -sb "$S/blobs" | cut -f1)
  echo "store: $(( (total - blobs) >> 20 )) MB without blobs ($(( blobs >> 20 )) MB of blobs; index/data.mdb $(( $(stat -c %s "$S/index/data.mdb") >> 20 )) MB)"
  times=()
  for r in 1 2 3 4 5; do
    t0=$(date +%s%N); "$IMGFS" -g "$S" images >/dev/null; t1=$(date +%s%N)
    times+=("$(ms "$t0" "$t1")")
  done
  echo "imgfs images: median $(printf '%s\n' "${times[@]}" | sort -n | sed -n 3p) ms (runs: ${times[*]})"
  "$IMGFS" -g "$S" mount -f ${MOUNT_OPTS:+-o "$MOUNT_OPTS"} "$MNT" 2>"$W/mount.log" &
  DAEMON=$!
  for _ in $(seq 1 100); do mountpoint -q "$MNT" && break; sleep 0.1; done
  mountpoint -q "$MNT" || { cat "$W/mount.log"; exit 1; }
  t0=$(date +%s%N); count=$(ls -l "$MNT/bench/app" | grep -c '^d'); t1=$(date +%s%N)
  echo "cold ls -l of $count tag directories: $(ms "$t0" "$t1") ms (daemon RSS $(( $(awk '/VmRSS/{print $2}' /proc/$DAEMON/status) / 1024 )) MB)"
  t0=$(date +%s%N)
  python3 - "$MNT/bench/app" "$N" <<'PY'
import sys
d, n = sys.argv[1], int(sys.argv[2])
for i in range(n):
    with open(f"{d}/t{i}/opt/app/id") as f:
        got = f.read()
    if got != f"image {i}\n":
        sys.exit(f"t{i}/opt/app/id: {got!r}")
PY
  t1=$(date +%s%N)
  rss=$(awk '/VmRSS/{print $2}' /proc/$DAEMON/status)
  hwm=$(awk '/VmHWM/{print $2}' /proc/$DAEMON/status)
  echo "read one file in each of $N images: $(ms "$t0" "$t1") ms; daemon RSS $((rss / 1024)) MB (peak $((hwm / 1024)) MB)"
  fusermount3 -u "$MNT"
  wait "$DAEMON" || true
  DAEMON=
  rm -rf "$S"
done
