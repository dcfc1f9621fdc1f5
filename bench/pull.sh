#!/usr/bin/env bash
# Pull benchmarks (issue 3), from one loopback registry (Debian's docker-registry), in
# the same run:
#   1. imgfs pull vs skopeo copy docker://… oci:DIR of the minbase image (1 gzip layer,
#      ~47 MB / 128 MB) — target ≤ 1.3×; and vs podman pull (overlay, unpacks eagerly)
#      when podman is installed — target ≤ 0.15×
#   2. a 5-layer image with 3 downloads at once vs one at a time — target ≥ 1.5× faster
#   3. peak RSS of imgfs pull — target ≤ 64 MB
# Usage: bench/pull.sh [path/to/imgfs]   (inputs from bench/make_minbase.sh)
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
IMGFS=$(readlink -f "${1:-$HERE/../build/imgfs}")
B=${BENCH_DIR:-/var/tmp/imgfs-bench}
bash "$HERE/make_minbase.sh" >/dev/null
W=$(mktemp -d /var/tmp/imgfs-bench-pull.XXXXXX)
REG_PID=
cleanup() {
  [[ -n $REG_PID ]] && kill "$REG_PID" 2>/dev/null
  command -v podman >/dev/null && podman --root "$W/pd" --runroot "$W/pdr" system reset -f >/dev/null 2>&1
  grep -o " $W[^ ]*" /proc/mounts | xargs -r umount -l 2>/dev/null
  rm -rf "$W"
}
trap cleanup EXIT
P=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat >"$W/reg.yml" <<YML
version: 0.1
log: {level: error}
storage: {filesystem: {rootdirectory: $W/reg}}
http: {addr: 127.0.0.1:$P}
YML
docker-registry serve "$W/reg.yml" >"$W/reg.log" 2>&1 &
REG_PID=$!
until curl -s -o /dev/null "http://127.0.0.1:$P/v2/"; do sleep 0.1; done
REG=127.0.0.1:$P
skopeo copy -q --dest-tls-verify=false "oci:$B/minbase-oci:latest" "docker://$REG/bench/minbase:latest"

# A 5-layer image: minbase split by top-level directory into five stacked layers.
if [[ ! -d $B/five-oci ]]; then
  umoci init --layout "$B/five-oci" && umoci new --image "$B/five-oci:l0"
  prev=l0
  mkdir -p "$W/split" && tar -C "$W/split" -xf "$B/minbase.tar"
  i=1
  for part in usr/lib usr/share usr/bin "usr/sbin usr/include usr/libexec usr/local usr/games usr/src" "etc var bin sbin lib lib64 root home opt srv mnt media run tmp boot"; do
    umoci unpack --image "$B/five-oci:$prev" "$W/b$i" >/dev/null
    for p in $part; do
      [[ -e $W/split/$p ]] || continue
      mkdir -p "$W/b$i/rootfs/$(dirname "$p")" && cp -a "$W/split/$p" "$W/b$i/rootfs/$p"
    done
    umoci repack --image "$B/five-oci:l$i" "$W/b$i" >/dev/null
    rm -rf "$W/b$i"
    prev=l$i
    i=$((i + 1))
  done
  umoci tag --image "$B/five-oci:l5" latest
fi
skopeo copy -q --dest-tls-verify=false "oci:$B/five-oci:latest" "docker://$REG/bench/five:latest"
runs=${RUNS:-10}
cmds=(--prepare "rm -rf $W/sk" -n "skopeo copy docker:// to oci:" "skopeo copy -q --src-tls-verify=false docker://$REG/bench/minbase:latest oci:$W/sk:latest"
      --prepare "rm -rf $W/s" -n "imgfs pull" "$IMGFS -g $W/s pull -q $REG/bench/minbase:latest")
if command -v podman >/dev/null; then
  cmds+=(--prepare "bash -c 'podman --root $W/pd --runroot $W/pdr --storage-driver overlay rmi -a -f >/dev/null 2>&1 || true'"
         -n "podman pull (overlay)" "podman --root $W/pd --runroot $W/pdr --storage-driver overlay pull -q --tls-verify=false $REG/bench/minbase:latest")
fi
hyperfine -N --warmup 1 --runs "$runs" --export-json "$W/pull.json" "${cmds[@]}" | grep -v '^ *Range\|^ *$'
hyperfine -N --warmup 1 --runs "$runs" --export-json "$W/five.json" \
  --prepare "rm -rf $W/s" -n "5 layers, 1 download at a time" "$IMGFS -g $W/s pull -q --max-concurrent-downloads 1 $REG/bench/five:latest" \
  --prepare "rm -rf $W/s" -n "5 layers, 3 downloads at once" "$IMGFS -g $W/s pull -q $REG/bench/five:latest" \
  | grep -v '^ *Range\|^ *$'
python3 - "$W/pull.json" "$W/five.json" <<'PY'
import json, sys
r = {x['command']: x['mean'] for x in json.load(open(sys.argv[1]))['results']}
f = {x['command']: x['mean'] for x in json.load(open(sys.argv[2]))['results']}
sk, im = r['skopeo copy docker:// to oci:'], r['imgfs pull']
print(f"\nimgfs pull / skopeo copy: {im*1000:.0f} ms / {sk*1000:.0f} ms = {im/sk:.2f}x")
if 'podman pull (overlay)' in r:
    pd = r['podman pull (overlay)']
    print(f"imgfs pull / podman pull: {im*1000:.0f} ms / {pd*1000:.0f} ms = {im/pd:.2f}x")
one, three = f['5 layers, 1 download at a time'], f['5 layers, 3 downloads at once']
print(f"5 layers: one at a time {one*1000:.0f} ms, 3 at once {three*1000:.0f} ms: {one/three:.2f}x faster")
PY
rm -rf "$W/s"
rss=$(/usr/bin/time -f '%M' "$IMGFS" -g "$W/s" pull -q "$REG/bench/minbase:latest" 2>&1 >/dev/null | tail -1)
echo "peak RSS of imgfs pull (minbase): $((rss / 1024)) MB"
rm -rf "$W/s"
rss=$(/usr/bin/time -f '%M' "$IMGFS" -g "$W/s" pull -q "$REG/bench/five:latest" 2>&1 >/dev/null | tail -1)
echo "peak RSS of imgfs pull (5 layers, 3 at once): $((rss / 1024)) MB"
