#!/usr/bin/env bash
# Read-ahead of a listed directory's files (LayerReader::Prefetch), and `-o readahead`:
# listing a directory of a gzip layer queues its files' spans for the helper thread, so
# spans are decoded before they are read (the unmount's log line counts them); with
# `-o readahead=off` none is. A bad value is refused.
source "$(dirname "$0")/lib.sh"
require_fuse
unset IMGFS_READAHEAD  # the default is under test
cd "$T"
mkdir -p src/d
for i in $(seq 1 30); do head -c 200000 /dev/urandom >"src/d/f$i"; done
tar -C src -czf l.tar.gz . && "$IMGFS" import l.tar.gz t/ra:1 >/dev/null
M=$T/mnt
mkdir -p "$M"
CLEANUP_MOUNTS="$M"
# by_readahead [MOUNT_OPTIONS]: list d, read one file, unmount; prints the spans the
# read-ahead decoded (from the unmount's "spans: N decoded (M by read-ahead)" line).
by_readahead() {
  "$IMGFS" mount -f ${1:+-o "$1"} "$M" 2>mount.log &
  local pid=$!
  wait_mounted "$M" || return 1
  ls "$M/t/ra/1/d" >/dev/null
  sleep 1
  cmp "$M/t/ra/1/d/f30" src/d/f30 || echo "f30 differs" >&2
  fusermount3 -u "$M"
  wait "$pid"
  sed -n 's/.*spans: [0-9]* decoded (\([0-9]*\) by read-ahead).*/\1/p' mount.log
}
on=$(by_readahead)
echo "# read-ahead decoded $on spans by default"
check "by default, listing a directory decodes its files' spans ahead ($on)" test "${on:-0}" -gt 0
off=$(by_readahead readahead=off)
check "with -o readahead=off, none ($off)" test "$off" = 0
check "a bad value is refused" bash -c "! '$IMGFS' mount -f -o readahead=maybe '$M' 2>err && grep -q 'readahead is on or off' err"
finish
