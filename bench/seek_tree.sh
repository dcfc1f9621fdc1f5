#!/usr/bin/env bash
# Seekable layers (issue 8): whole-tree reads through a real FUSE mount vs the native tree.
# Debian minbase (bench/make_minbase.sh), fresh import into a fresh store, `imgfs mount`;
# the native tree is the same minbase.tar.gz extracted by GNU tar. Ratios are imgfs/native.
#   1. grep -r PRETTY_NAME, cold: page cache dropped before every run (needs root), imgfs
#      also remounted first so the daemon's span cache is empty;
#   2. the same with `-o cache_size=512M` (span cache larger than the 128 MB tar: no span
#      is decoded twice; grep walks in directory order, not tar order) and with
#      `-o whole_layers` (the old whole-layer unpack, unpacked/ emptied before each run);
#   3. grep -r PRETTY_NAME, warm;
#   4. tar -cf /dev/null . warm — GNU tar does not read file contents when the archive is
#      /dev/null (it only walks and stats), so also tar -cf - . | cat >/dev/null, warm.
# Usage: bash bench/seek_tree.sh [IMGFS]   (BENCH_DIR as make_minbase.sh; RUNS, default 5)
set -euo pipefail
IMGFS=$(readlink -f "${1:-build/imgfs}")
B=${BENCH_DIR:-/var/tmp/imgfs-bench}
RUNS=${RUNS:-5}
[[ -f $B/minbase.tar.gz ]] || { echo "run bench/make_minbase.sh first" >&2; exit 1; }
[[ $(id -u) == 0 ]] || { echo "seek_tree.sh: needs root to drop the page cache" >&2; exit 1; }
W=$(mktemp -d "${TMPDIR:-/var/tmp}/imgfs-seek-tree.XXXXXX")
S=$W/store M=$W/mnt N=$W/native
cleanup() {
  if mountpoint -q "$M" 2>/dev/null; then "$IMGFS" umount "$M" 2>/dev/null || fusermount3 -u -z "$M" || true; fi
  rm -rf "$W"
}
trap cleanup EXIT
mkdir -p "$M" "$N"
"$IMGFS" --root "$S" import "$B/minbase.tar.gz" m:1 >/dev/null
tar -xzf "$B/minbase.tar.gz" -C "$N"
I=$M/m/1
mountit() {  # mountit [-o OPTS]: a fresh daemon (empty span cache) on $M
  if mountpoint -q "$M"; then "$IMGFS" umount "$M" || fusermount3 -u -z "$M"; fi
  "$IMGFS" --root "$S" mount "$@" "$M"
  for _ in $(seq 100); do [[ -d $I/etc ]] && return 0; sleep 0.05; done
  echo "seek_tree.sh: mount did not come up" >&2; return 1
}
# hyperfine -N runs --prepare without a shell: one script per preparation.
printf 'sync\necho 3 >/proc/sys/vm/drop_caches\n' >"$W/drop.sh"
printf 'set -e\nsource %q\nmountit "$@"\nsource %q\n' "$W/fns.sh" "$W/drop.sh" >"$W/cold.sh"
printf 'set -e\nsource %q\nrm -rf %q/unpacked\nmountit -o whole_layers\nsource %q\n' \
  "$W/fns.sh" "$S" "$W/drop.sh" >"$W/cold-whole.sh"
{ declare -p IMGFS S M I; declare -f mountit; } >"$W/fns.sh"
report() {  # report JSON: each command after the first, as a ratio to the first (native)
  python3 - "$1" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))['results']
n = r[0]
print(f"  {n['command']:26} mean {n['mean']*1000:8.1f} ms  min {n['min']*1000:8.1f} ms")
for x in r[1:]:
    print(f"  {x['command']:26} mean {x['mean']*1000:8.1f} ms  min {x['min']*1000:8.1f} ms  "
          f"ratio mean {x['mean']/n['mean']:.2f}x  min {x['min']/n['min']:.2f}x")
PY
}
G="grep -r -D skip -c PRETTY_NAME"

mountit
echo "== same answer: files matching PRETTY_NAME (native vs mount)"
(cd "$N" && grep -r -D skip -l PRETTY_NAME . | sort) >"$W/n.txt" || true
(cd "$I" && grep -r -D skip -l PRETTY_NAME . | sort) >"$W/i.txt" || true
diff "$W/n.txt" "$W/i.txt" && echo "  $(wc -l <"$W/n.txt") files, identical"

echo "== 1+2. grep -r PRETTY_NAME, cold (caches dropped; imgfs: fresh mount)"
cmds=(--prepare "bash $W/drop.sh" -n native "$G $N" --prepare "bash $W/cold.sh" -n imgfs "$G $I")
if [[ -z ${SKIP_EXTRA:-} ]]; then
  cmds+=(--prepare "bash $W/cold.sh -o cache_size=512M" -n "imgfs -o cache_size=512M" "$G $I"
    --prepare "bash $W/cold-whole.sh" -n "imgfs -o whole_layers" "$G $I")
fi
hyperfine -N -r "$RUNS" --export-json "$W/j" "${cmds[@]}" >/dev/null
report "$W/j"
[[ ${SKIP_EXTRA:-} ]] || echo "  unpacked/ after the whole_layers runs: $(du -sb "$S/unpacked" | cut -f1) bytes"

echo "== 3. grep -r PRETTY_NAME, warm"
mountit
hyperfine -N -w 2 -r "$RUNS" --export-json "$W/j" -n native "$G $N" -n imgfs "$G $I" >/dev/null
report "$W/j"

echo "== 4a. tar -cf /dev/null . (walk + stat only: GNU tar skips reading for /dev/null), warm"
hyperfine -N -w 2 -r "$RUNS" --export-json "$W/j" \
  -n native "tar -C $N -cf /dev/null ." -n imgfs "tar -C $I -cf /dev/null ." >/dev/null
report "$W/j"
echo "== 4b. tar -cf - . | cat >/dev/null (reads every file), warm"
hyperfine -w 2 -r "$RUNS" --export-json "$W/j" \
  -n native "tar -C $N -cf - . | cat >/dev/null" -n imgfs "tar -C $I -cf - . | cat >/dev/null" >/dev/null
report "$W/j"
