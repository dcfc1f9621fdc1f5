#!/usr/bin/env bash
# Seekable layers (issue 8), on the Debian minbase image of bench/make_minbase.sh
# (one 47 MB gzip layer, 128 MB of tar):
#   1. import time with checkpoints (default 1 MiB spans) and without (IMGFS_SEEK_SPAN=0),
#      i.e. the same one-pass pipeline a pull runs (registry/stage.cc);
#   2. first read of one small file (`imgfs cat`, a cold process) right after a fresh
#      import, page cache dropped when root; `imgfs ls` of the same path (everything
#      but the content read) for scale; 2c: the same file read with `cat` through a
#      mount whose daemon was started (empty span cache) before the caches were
#      dropped, next to `cat` of a native file after the same drop, and with
#      IMGFS_READAHEAD=0 (no warm-up of the layers while the tree is built); the same read with IMGFS_WHOLE=1 (the old
#      whole-layer unpack, via /work/main's binary when BASE_IMGFS is set);
#   3. python3-indexed-gzip (zran, 1 MiB spacing) reading the same file from the same
#      blob, its index built beforehand and imported (a cold process, like ours);
#   4. store growth after reading every file once (through a FUSE mount, tar of the
#      whole tree), and the same for multi-frame zstd;
#   5. zstd:chunked (skopeo) and multi-frame zstd first reads;
#   6. grep -r cold and warm, tar warm, through a FUSE mount vs the native tree
#      (bench/seek_tree.sh; root).
# Usage: bash bench/seek.sh [IMGFS]    (BENCH_DIR as make_minbase.sh; W: work dir)
set -euo pipefail
IMGFS=$(readlink -f "${1:-build/imgfs}")
HERE=$(cd "$(dirname "$0")" && pwd)
B=${BENCH_DIR:-/var/tmp/imgfs-bench}
W=${W:-${TMPDIR:-/var/tmp}/imgfs-seek-bench}
FILE=usr/share/doc/bash/copyright
RUNS=${RUNS:-10}
[[ -f $B/minbase.tar.gz ]] || { echo "run bench/make_minbase.sh first" >&2; exit 1; }
rm -rf "$W" && mkdir -p "$W" && cd "$W"
# hyperfine -N runs --prepare without a shell too: one script.
printf 'sync\n' >drop.sh
if [[ $(id -u) == 0 ]]; then echo 'echo 3 >/proc/sys/vm/drop_caches' >>drop.sh; fi
drop="bash $W/drop.sh"
S=$W/store

echo "== 1. import (the pull/load pass) with and without checkpoints"
hyperfine -N -w 1 -r "$RUNS" --prepare "rm -rf $S" --export-markdown import.md \
  "env IMGFS_SEEK_SPAN=0 $IMGFS --root $S import $B/minbase.tar.gz m:1" \
  "$IMGFS --root $S import $B/minbase.tar.gz m:1"
cat import.md
rm -rf "$S" && "$IMGFS" --root "$S" import "$B/minbase.tar.gz" m:1 >/dev/null
diff_id=$(ls "$S/seek")
blob=$(find "$S/blobs" -type f -size +10M)
echo "blob $(stat -c %s "$blob") bytes, seek index $(stat -c %s "$S/seek/$diff_id") bytes," \
  "$(python3 -c "import sys;d=open(sys.argv[1],'rb').read(64);print(int.from_bytes(d[24:32],'little'))" "$S/seek/$diff_id") checkpoints"

echo "== 2. first read of /$FILE, cold process, caches dropped"
"$IMGFS" --root "$S" cat m:1 "/$FILE" | sha256sum
hyperfine -N -w 1 -r "$RUNS" --prepare "$drop" --export-markdown read.md \
  "$IMGFS --root $S ls m:1 /$FILE" \
  "$IMGFS --root $S cat m:1 /$FILE"
cat read.md
if [[ -n ${BASE_IMGFS:-} ]]; then
  # The old path: the first read unpacks the whole layer (removed before each run).
  printf 'rm -rf %s/unpacked\n' "$S" >>drop-old.sh && cat drop.sh >>drop-old.sh
  hyperfine -N -r 5 --prepare "bash $W/drop-old.sh" --export-markdown read-old.md \
    "$BASE_IMGFS --root $S cat m:1 /$FILE"
  cat read-old.md
  rm -rf "$S/unpacked"
fi

echo "== 2b. the same, page cache warm (the blob was just written), cold process"
hyperfine -N -w 2 -r $((RUNS * 2)) --export-markdown read-warm.md \
  "$IMGFS --root $S ls m:1 /$FILE" \
  "$IMGFS --root $S cat m:1 /$FILE"
cat read-warm.md

echo "== 2c. first read through a mount: fresh daemon (empty span cache), caches dropped"
# The daemon is up before the drop, as on a machine whose mount runs while images are
# pulled; the read includes the lookups of m/1/... from the cold store.
mkdir -p mnt
trap 'mountpoint -q "$W/mnt" 2>/dev/null && { "$IMGFS" umount "$W/mnt" || fusermount3 -u -z "$W/mnt"; }' EXIT
mount_read() {  # MDFILE PATH-IN-MOUNT [ENV...]: hyperfine of `cat` through a fresh daemon
  local md=$1 path=$2
  shift 2
  {
    echo "set -e"
    echo "if mountpoint -q $W/mnt; then $IMGFS umount $W/mnt; fi"
    echo "env $* $IMGFS --root $S mount $W/mnt"
    echo "for i in \$(seq 100); do mountpoint -q $W/mnt && break; sleep 0.05; done"
    cat drop.sh
  } >remount.sh
  bash remount.sh
  cat "$W/mnt/$path" | sha256sum
  hyperfine -N -w 1 -r "$RUNS" --prepare "bash $W/remount.sh" --export-markdown "$md" \
    "cat $W/mnt/$path"
  cat "$md"
  "$IMGFS" umount "$W/mnt"
}
mount_read read-mount.md "m/1/$FILE"
# The same without the warm-up of the image's layers during its tree build (and without
# read-ahead, which this read does not use): IMGFS_READAHEAD=0 turns both off.
mount_read read-mount-nowarm.md "m/1/$FILE" IMGFS_READAHEAD=0
if [[ -f /$FILE ]]; then
  hyperfine -N -w 1 -r "$RUNS" --prepare "$drop" --export-markdown read-native.md "cat /$FILE"
  cat read-native.md
fi

echo "== 3. indexed_gzip (zran, 1 MiB spacing) on the same blob"
python3 - "$B/minbase.tar" "$FILE" >offset.txt <<'PY'
import sys, tarfile
t = tarfile.open(sys.argv[1])
m = t.getmember("./" + sys.argv[2])
print(m.offset_data, m.size)
PY
read -r off size <offset.txt
echo "file at tar offset $off, $size bytes"
/usr/bin/python3 -c "
import indexed_gzip as ig
f = ig.IndexedGzipFile('$blob', spacing=1 << 20)
f.build_full_index(); f.export_index('$W/zran.idx')"
echo "zran index: $(stat -c %s "$W/zran.idx") bytes"
cat >zran_read.py <<PY
import indexed_gzip as ig, sys
f = ig.IndexedGzipFile('$blob', index_file='$W/zran.idx')
f.seek($off); sys.stdout.buffer.write(f.read($size))
PY
/usr/bin/python3 zran_read.py | sha256sum
hyperfine -N -w 1 -r "$RUNS" --prepare "$drop" --export-markdown zran.md \
  "/usr/bin/python3 -c pass" "/usr/bin/python3 zran_read.py"
cat zran.md
hyperfine -N -w 2 -r $((RUNS * 2)) --export-markdown zran-warm.md \
  "/usr/bin/python3 -c pass" "/usr/bin/python3 zran_read.py"
cat zran-warm.md

echo "== 4. store growth after reading every file (tar through a mount)"
before=$(du -sb "$S" | cut -f1)
mkdir -p mnt
"$IMGFS" --root "$S" mount mnt
for i in $(seq 50); do mountpoint -q mnt && break; sleep 0.1; done
t0=$(date +%s.%N)
tar -C mnt/m/1 -cf - . | wc -c >/dev/null
t1=$(date +%s.%N)
tar -C mnt/m/1 -cf - . | wc -c >/dev/null
t2=$(date +%s.%N)
"$IMGFS" umount mnt || fusermount3 -u mnt
after=$(du -sb "$S" | cut -f1)
echo "tar of the whole tree: first $(echo "$t1 - $t0" | bc) s, warm $(echo "$t2 - $t1" | bc) s"
echo "store: $before -> $after bytes (+$((after - before)))"

echo "== 5. zstd: multi-frame (one frame per 1 MiB of tar) and zstd:chunked"
split -b 1048576 -d -a 4 "$B/minbase.tar" part.
for p in part.*; do zstd -q -3 --rm "$p" -o "$p.zst"; done
cat part.*.zst >multi.tar.zst && rm part.*.zst
rm -rf "$S" && "$IMGFS" --root "$S" import multi.tar.zst z:1 >/dev/null
hyperfine -N -w 1 -r "$RUNS" --prepare "$drop" --export-markdown zstd.md \
  "$IMGFS --root $S cat z:1 /$FILE"
cat zstd.md
mount_read zstd-mount.md "z/1/$FILE"
if command -v skopeo >/dev/null && [[ -d $B/minbase-oci ]]; then
  skopeo copy -q --dest-compress-format zstd:chunked "oci:$B/minbase-oci:latest" "oci:$W/chunked:latest"
  rm -rf "$S" && "$IMGFS" --root "$S" load "$W/chunked" >/dev/null
  img=$("$IMGFS" --root "$S" images -q | head -1)
  "$IMGFS" --root "$S" cat "$img" "/$FILE" | sha256sum
  hyperfine -N -w 1 -r "$RUNS" --prepare "$drop" --export-markdown chunked.md \
    "$IMGFS --root $S cat $img /$FILE"
  cat chunked.md
  mount_read chunked-mount.md ".id/$img/$FILE"
  echo "seek index: $(du -sb "$S/seek" | cut -f1) bytes; unpacked/: $(du -sb "$S/unpacked" 2>/dev/null | cut -f1)"
fi
rm -rf "$W"

echo "== 6. grep -r cold/warm, tar warm: mount vs native tree"
cd / && RUNS=$RUNS bash "$HERE/seek_tree.sh" "$IMGFS"
