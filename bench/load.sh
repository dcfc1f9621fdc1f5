#!/usr/bin/env bash
# Store benchmarks (issue 2), all in one run so the ratios compare like with like:
#   1. imgfs load of a docker-archive with the minbase gzip layer
#      vs `igzip -dc layer.tar.gz | openssl dgst -sha256` on the same layer (target ≤ 1.2×)
#   2. imgfs import of the same layer; imgfs load of skopeo's (uncompressed) docker-archive
#      and of an OCI layout; skopeo copy of the same OCI layout to a local dir for scale
#   3. imgfs images with 1,000 images (target ≤ 50 ms)
#   4. peak RSS of imgfs load for a 128 MB and a 13 MB layer (must not grow with size)
# Usage: bench/load.sh [path/to/imgfs]   (builds inputs with bench/make_minbase.sh)
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
IMGFS=$(readlink -f "${1:-$HERE/../build/imgfs}")
B=${BENCH_DIR:-/var/tmp/imgfs-bench}
bash "$HERE/make_minbase.sh" >/dev/null
cd "$B"
W=$(mktemp -d /var/tmp/imgfs-bench-run.XXXXXX)
trap 'rm -rf "$W"' EXIT
runs=${RUNS:-10}
hyperfine -N --warmup 1 --runs "$runs" --export-json "$W/load.json" \
  --prepare true -n 'igzip -dc | openssl sha256 (baseline)' "bash -c 'igzip -dc minbase.tar.gz | openssl dgst -sha256'" \
  --prepare "rm -rf $W/s" -n 'imgfs load docker-archive (gzip layer)' "$IMGFS -g $W/s load -q minbase-docker-gz.tar" \
  --prepare "rm -rf $W/s" -n 'imgfs import rootfs.tar.gz' "$IMGFS -g $W/s import minbase.tar.gz bench/x:1" \
  --prepare "rm -rf $W/s" -n 'imgfs load docker-archive (skopeo, uncompressed)' "$IMGFS -g $W/s load -q minbase-docker.tar" \
  --prepare "rm -rf $W/s" -n 'imgfs load OCI layout (gzip)' "$IMGFS -g $W/s load -q --name bench/oci minbase-oci" \
  --prepare "rm -rf $W/d" -n 'skopeo copy oci: to dir: (no indexing)' "skopeo copy -q oci:minbase-oci:latest dir:$W/d" \
  | grep -v '^ *Range\|^ *$'
python3 - "$W/load.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))['results']
base = r[0]['mean']
print('\nratio to the igzip|openssl baseline (mean):')
for x in r:
    print(f"  {x['command']:<50} {x['mean']*1000:8.1f} ms  {x['mean']/base:5.2f}x")
PY

# 1,000 images: distinct one-file layers imported into one store.
mkdir -p "$W/many"
for i in $(seq 1 1000); do
  printf 'image %d\n' "$i" >"$W/many/f" && tar -C "$W/many" -cf "$W/many/$i.tar" f
done
for i in $(seq 1 1000); do "$IMGFS" -g "$W/m" import "$W/many/$i.tar" many/img:$i >/dev/null; done
echo
echo "images in store: $("$IMGFS" -g "$W/m" images -q | wc -l)"
hyperfine -N --warmup 3 --runs 30 "$IMGFS -g $W/m images" "$IMGFS -g $W/m images --format json" | grep -v '^ *Range\|^ *$'

# Peak memory against layer size: the same two entries at 32 MB and at 256 MB of
# content (memory may grow with the number of entries, never with bytes), then the
# real minbase layer.
mkdir -p "$W/rss-small" "$W/rss-big"
head -c $((32 << 20)) /dev/urandom >"$W/rss-small/blob" && printf x >"$W/rss-small/x"
head -c $((256 << 20)) /dev/urandom >"$W/rss-big/blob" && printf x >"$W/rss-big/x"
tar -C "$W/rss-small" -czf "$W/32MB.tar.gz" . && tar -C "$W/rss-big" -czf "$W/256MB.tar.gz" .
echo
for f in "$W/32MB.tar.gz" "$W/256MB.tar.gz" minbase.tar.gz; do
  rm -rf "$W/r"
  rss=$(/usr/bin/time -f '%M' "$IMGFS" -g "$W/r" import "$f" bench/rss:1 2>&1 >/dev/null | tail -1)
  echo "peak RSS of imgfs import $(basename "$f") ($(($(stat -c %s "$f") >> 20)) MB, $(tar -tzf "$f" | wc -l) entries): $((rss / 1024)) MB"
done
