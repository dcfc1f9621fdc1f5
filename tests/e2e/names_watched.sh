#!/usr/bin/env bash
# The mount watches the store's generation (a thread, every 100 ms) and invalidates in
# the kernel the names that moved or went away (FUSE_NOTIFY_INVAL_ENTRY). So the
# dentry of an image root under a tag is cached as long as image content, not for the
# 0.5 s name timeout: a path walk through it sends no LOOKUP for the tag once
# cached; a retag still shows its new image at once; and a removed image's blob is let
# go with nothing touching the mount at all.
source "$(dirname "$0")/lib.sh"
require_fuse
need python3
cd "$T"
for n in a b c; do mkdir -p "src-$n" && echo "image $n" >"src-$n/f" && tar -C "src-$n" -cf "$n.tar" .; done
"$IMGFS" import a.tar t/x:1 >/dev/null && "$IMGFS" import b.tar t/b:1 >/dev/null &&
  "$IMGFS" import c.tar t/c:1 >/dev/null
M=$T/mnt
mkdir -p "$M"
CLEANUP_MOUNTS="$M"
"$IMGFS" mount -f -o debug "$M" 2>debug.log & # -o debug: every request, to count lookups
CLEANUP_PIDS=$!
pid=$!
wait_mounted "$M"
check "t/x/1 shows image a" test "$(cat "$M/t/x/1/f")" = "image a"
check "t/c/1 shows image c" test "$(cat "$M/t/c/1/f")" = "image c"
x_ino=$(stat -c %i "$M/t/x")
sleep 1.2 # past the 0.5 s name timeout
before=$(wc -l <debug.log)
stat "$M/t/x/1/f" >/dev/null
sleep 0.2
lookups_in_x=$(tail -n +"$((before + 1))" debug.log | grep -c "opcode: LOOKUP (1), nodeid: $x_ino," || true)
check "a walk through t/x/1 after 1.2 s sends no LOOKUP for the tag ($lookups_in_x)" test "$lookups_in_x" -eq 0

"$IMGFS" tag t/b:1 t/x:1
shows_b() { [[ $(cat "$M/t/x/1/f" 2>/dev/null) == "image b" ]]; }
check "a retag shows the new image within 3 s" until_within 3 shows_b

blob() { "$IMGFS" inspect "$1" | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["Layers"][0]["Digest"][7:])'; }
C=$(blob t/c:1)
held() { ls -l "/proc/$pid/fd" 2>/dev/null | grep -q "blobs/sha256/$C"; }
check "the daemon holds image c's blob" held
"$IMGFS" rmi t/c:1 >/dev/null
# Nothing touches the mount from here on: only the watcher can notice the removal.
check "image c's blob is let go within 5 s with no access to the mount" until_within 5 eval '! held'
"$IMGFS" umount "$M" && wait_unmounted "$M"
finish
