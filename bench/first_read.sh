#!/usr/bin/env bash
# First read of one file through a fresh mount, caches dropped before each read, for
# several imgfs binaries or environments alternated round by round (so a load change
# hits all of them alike): each round starts a daemon, drops the page cache, times
# `cat` of the file (process start included), and unmounts. Root (drop_caches).
#   bash bench/first_read.sh STORE PATH-IN-MOUNT ROUNDS 'LABEL=[ENV=VALUE...] IMGFS' ...
# e.g. bench/first_read.sh /var/tmp/s m/1/usr/share/doc/bash/copyright 40 \
#        "warm=build/imgfs" "nowarm=IMGFS_READAHEAD=0 build/imgfs"
# Prints one line per label: runs, median, mean, min, max (ms). W: work dir.
set -euo pipefail
[[ $# -ge 4 ]] || { sed -n 2,9p "$0"; exit 2; }
S=$1 FILE=$2 ROUNDS=$3
shift 3
W=${W:-${TMPDIR:-/var/tmp}/imgfs-first-read}
M=$W/mnt
mkdir -p "$M"
: >"$W/times"
trap 'mountpoint -q "$M" && fusermount3 -u "$M"' EXIT
for _ in $(seq "$ROUNDS"); do
  for spec in "$@"; do
    label=${spec%%=*}
    # shellcheck disable=SC2086  # the spec's words are env assignments and the binary
    env ${spec#*=} --root "$S" mount "$M"
    for _ in $(seq 100); do mountpoint -q "$M" && break; sleep 0.05; done
    sync
    echo 3 >/proc/sys/vm/drop_caches
    t0=$(date +%s%N)
    cat "$M/$FILE" >/dev/null
    t1=$(date +%s%N)
    echo "$label $(((t1 - t0) / 1000))" >>"$W/times"
    fusermount3 -u "$M"
  done
done
/usr/bin/python3 - "$W/times" <<'PY'
import collections, statistics, sys
d = collections.defaultdict(list)
for line in open(sys.argv[1]):
    label, us = line.split()
    d[label].append(int(us) / 1000)
for label, v in d.items():
    print(f"{label}: {len(v)} runs, median {statistics.median(v):.1f} ms, "
          f"mean {statistics.mean(v):.1f}, min {min(v):.1f}, max {max(v):.1f}")
PY
