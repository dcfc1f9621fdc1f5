#!/usr/bin/env bash
# imgfs build vs buildah bud (--isolation chroot, vfs storage) on the same Dockerfile
# (a COPY, three RUNs, config steps) over the same busybox-static base (an OCI layout
# both read). Cold = --no-cache (every RUN runs), cached = an unchanged rebuild.
# Runs alternate (imgfs, buildah, imgfs, …) so both see the same machine load; the
# median wall time and the CPU seconds (user+sys of the tool and its children, from
# /usr/bin/time) are printed, with the load average. Needs root.
# Usage: bench/build.sh [path/to/imgfs]   (RUNS=5 by default)
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
IMGFS=$(readlink -f "${1:-$HERE/../build/imgfs}")
runs=${RUNS:-5}
W=$(mktemp -d "${TMPDIR:-/var/tmp}/imgfs-bench-build.XXXXXX")
L=${TMPDIR:-/var/tmp}/imgfs-bench-build-lc-$$  # buildah: no capitals in an oci: path
mkdir -p "$L"
BH=(buildah --root "$W/bh/root" --runroot "$W/bh/run" --storage-driver vfs)
cleanup() { "${BH[@]}" rmi -a -f >/dev/null 2>&1 || true; rm -rf "$W" "$L"; }
trap cleanup EXIT
cd "$W"
export IMGFS_ROOT=$W/store
mkdir -p rootfs/bin rootfs/etc rootfs/tmp ctx
cp "$(command -v busybox)" rootfs/bin/busybox
for a in sh echo cat rm mkdir touch seq; do ln -s busybox "rootfs/bin/$a"; done
printf 'root:x:0:0:root:/root:/bin/sh\n' >rootfs/etc/passwd
umoci init --layout "$L/oci" >/dev/null
umoci new --image "$L/oci:base" >/dev/null
umoci unpack --image "$L/oci:base" ub >/dev/null
cp -a rootfs/. ub/rootfs/
umoci repack --image "$L/oci:base" ub >/dev/null
"$IMGFS" load "$L/oci" >/dev/null
"$IMGFS" tag "$("$IMGFS" images -q --no-trunc | head -1)" bench/base:1
"${BH[@]}" tag "$("${BH[@]}" pull -q "oci:$L/oci:base")" localhost/benchbase:1
head -c 20000000 /dev/urandom >ctx/blob
cat >ctx/Dockerfile <<'DF'
ARG BASE
FROM $BASE
ENV A=1
COPY blob /data/blob
RUN mkdir -p /out && for i in $(seq 1 200); do echo $i >/out/f$i; done
RUN rm /data/blob && echo gone >/data/note
RUN cat /etc/passwd >/out/passwd
WORKDIR /out
CMD ["/bin/sh"]
DF
t() {  # t FILE COMMAND...: append "wall cpu" to FILE
  local f=$1
  shift
  /usr/bin/time -f '%e %U %S' -o "$W/t" "$@" >/dev/null 2>&1
  awk '{print $1, $2 + $3}' "$W/t" >>"$W/$f"
}
# Warm-up: fills both caches (buildah caches RUN layers only with --layers).
"$IMGFS" build --build-arg BASE=bench/base:1 -t bench/x:1 ctx >/dev/null
"${BH[@]}" bud --isolation chroot --layers --build-arg BASE=localhost/benchbase:1 -t bench/x ctx >/dev/null 2>&1
for ((i = 0; i < runs; i++)); do
  t imgfs.cold "$IMGFS" build --no-cache --build-arg BASE=bench/base:1 -t bench/x:1 ctx
  t buildah.cold "${BH[@]}" bud --isolation chroot --no-cache --build-arg BASE=localhost/benchbase:1 -t bench/x ctx
  t imgfs.cached "$IMGFS" build --build-arg BASE=bench/base:1 -t bench/x:1 ctx
  t buildah.cached "${BH[@]}" bud --isolation chroot --layers --build-arg BASE=localhost/benchbase:1 -t bench/x ctx
done
med() { sort -n -k"$2" "$W/$1" | awk -v k="$2" '{a[NR]=$k} END {print a[int((NR+1)/2)]}'; }
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg); runs: $runs (median)"
printf '%-16s %10s %10s\n' "" "wall s" "cpu s"
for n in imgfs.cold buildah.cold imgfs.cached buildah.cached; do
  printf '%-16s %10s %10s\n' "$n" "$(med "$n" 1)" "$(med "$n" 2)"
done
