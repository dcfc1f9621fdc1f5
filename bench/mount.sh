#!/usr/bin/env bash
# Mount benchmarks (issue 4). The native baseline is the same image unpacked by umoci
# onto the local disk, measured in the same run. Reported as ratios imgfs/native.
#   1. ls of the image root right after load (nothing unpacked)       target ≤ 20 ms
#   2. find -printf '%p %s %m\n': warm ≤ 1.5×; cold (fresh mount, drop_caches) ≤ 3×
#   3. grep -r: first time incl. the on-demand unpack ≤ 2× native cold; warm ≤ 1.3×
#   4. tar -cf - . | cat >/dev/null warm ≤ 1.3×
#   5. daemon RSS after walking and reading 10 images                   target ≤ 150 MB
# Usage: bench/mount.sh [path/to/imgfs]   (inputs from bench/make_minbase.sh; root)
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
IMGFS=$(readlink -f "${1:-$HERE/../build/imgfs}")
B=${BENCH_DIR:-/var/tmp/imgfs-bench}
bash "$HERE/make_minbase.sh" >/dev/null
W=$(mktemp -d /var/tmp/imgfs-bench-mount.XXXXXX)
M=$W/mnt
export IMGFS_ROOT=$W/store
cleanup() { fusermount3 -u -z "$M" 2>/dev/null || true; rm -rf "$W"; }
trap cleanup EXIT
mkdir -p "$M"
"$IMGFS" load -q --name bench/minbase "$B/minbase-oci" >/dev/null
umoci unpack --image "$B/minbase-oci:latest" "$W/native" >/dev/null
N=$W/native/rootfs
I=$M/bench/minbase/latest
drop() { sync; echo 3 >/proc/sys/vm/drop_caches; }
remount() { fusermount3 -u -z "$M" 2>/dev/null || true; "$IMGFS" mount "$M"; }
runs=${RUNS:-10}
report() {  # report JSON: ratio of the 2nd command to the 1st
  python3 - "$1" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))['results']
print(f"  native {r[0]['mean']*1000:8.1f} ms   imgfs {r[1]['mean']*1000:8.1f} ms   ratio {r[1]['mean']/r[0]['mean']:.2f}x")
PY
}

echo "1. ls of the image root right after load (fresh mount, nothing unpacked, caches dropped)"
for i in 1 2 3 4 5; do
  remount; drop
  s=$(date +%s%N); ls "$I" >/dev/null; e=$(date +%s%N)
  echo "  run $i: $(( (e - s) / 1000 )) µs"
done
echo "  unpacked layers after listing: $(ls "$IMGFS_ROOT/unpacked" | wc -l)"

echo "2a. find -printf, warm"
remount
hyperfine -N --warmup 2 --runs "$runs" --export-json "$W/j" "find $N -printf '%p %s %m\n'" "find $I -printf '%p %s %m\n'" >/dev/null
report "$W/j"
echo "2b. find -printf, cold (fresh mount, caches dropped before every run)"
hyperfine -N --runs "$runs" --export-json "$W/j" \
  --prepare "bash -c 'sync; echo 3 >/proc/sys/vm/drop_caches'" "find $N -printf '%p %s %m\n'" \
  --prepare "bash -c 'fusermount3 -u -z $M; $IMGFS mount $M; sync; echo 3 >/proc/sys/vm/drop_caches'" "find $I -printf '%p %s %m\n'" >/dev/null
report "$W/j"

echo "3a. grep -r, first time (imgfs: unpack cache emptied, fresh mount; both: caches dropped)"
hyperfine -N --runs "$runs" --export-json "$W/j" -i \
  --prepare "bash -c 'sync; echo 3 >/proc/sys/vm/drop_caches'" "grep -r -c zzqqxx_not_there $N" \
  --prepare "bash -c 'fusermount3 -u -z $M; rm -f $IMGFS_ROOT/unpacked/*; $IMGFS mount $M; sync; echo 3 >/proc/sys/vm/drop_caches'" "grep -r -c zzqqxx_not_there $I" >/dev/null
report "$W/j"
echo "3b. grep -r, warm"
remount
hyperfine -N -i --warmup 2 --runs "$runs" --export-json "$W/j" "grep -r -c zzqqxx_not_there $N" "grep -r -c zzqqxx_not_there $I" >/dev/null
report "$W/j"

echo "4. tar -cf - . | cat >/dev/null, warm"
hyperfine --warmup 2 --runs "$runs" --export-json "$W/j" "tar -C $N -cf - . | cat >/dev/null" "tar -C $I -cf - . | cat >/dev/null" >/dev/null
report "$W/j"

echo "5. daemon RSS after walking and reading 10 images"
for i in $(seq 1 10); do
  python3 - "$B/minbase-oci" "$W/oci$i" "$i" <<'PY'
import hashlib, json, os, shutil, sys
src, dst, n = sys.argv[1], sys.argv[2], sys.argv[3]
shutil.copytree(src, dst, symlinks=True)
def blob(h): return os.path.join(dst, 'blobs/sha256', h)
idx = json.load(open(os.path.join(dst, 'index.json')))
m = json.load(open(blob(idx['manifests'][0]['digest'][7:])))
cfg = json.load(open(blob(m['config']['digest'][7:])))
cfg.setdefault('config', {})['Labels'] = {'copy': n}  # a distinct image ID, same layer
def put(d):
    d = json.dumps(d).encode(); h = hashlib.sha256(d).hexdigest(); open(blob(h), 'wb').write(d); return h, len(d)
h, s = put(cfg); m['config'] = dict(m['config'], digest='sha256:' + h, size=s)
h, s = put(m); idx['manifests'][0] = dict(idx['manifests'][0], digest='sha256:' + h, size=s)
json.dump(idx, open(os.path.join(dst, 'index.json'), 'w'))
PY
  "$IMGFS" load -q --name bench/copy$i "$W/oci$i" >/dev/null
done
remount
for i in $(seq 1 10); do
  find "$M/bench/copy$i/latest" -type f -print0 | xargs -0 cat >/dev/null
done
pid=$(pgrep -f "imgfs mount $M" | head -1)
echo "  images: $("$IMGFS" images -q | sort -u | wc -l), daemon VmRSS: $(awk '/VmRSS/ {print int($2/1024) " MB"}' /proc/$pid/status), VmHWM: $(awk '/VmHWM/ {print int($2/1024) " MB"}' /proc/$pid/status)"
