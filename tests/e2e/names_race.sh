#!/usr/bin/env bash
# Watched names (image roots under tags cached like content, moved names invalidated)
# under the two races of MountFs::HandOut:
#  - a LOOKUP or READDIRPLUS reply built from the names before a retag that reaches
#    the kernel after the mount checked the move (and found nothing held) gets the
#    0.5 s name timeout, however late it comes: the name shows the new image soon
#    after, not a year later. IMGFS_TEST_NAME_REPLY_DELAY_MS holds the first such
#    lookup and readdirplus entry back 4 s while the test retags: longer than the 2 s
#    of rechecks after a move that the mount used to rely on.
#  - a moved name whose old image the kernel keeps (a file open in it) is invalidated
#    once, not again at every later store change (each would drop the name's current
#    dentry: a LOOKUP again, ACLs fetched again). Counted from the -o debug trace.
source "$(dirname "$0")/lib.sh"
require_fuse
cd "$T"
for n in a b c; do mkdir -p "src-$n" && echo "image $n" >"src-$n/f" && tar -C "src-$n" -cf "$n.tar" .; done
"$IMGFS" import a.tar t/x:1 >/dev/null && "$IMGFS" import b.tar t/b:1 >/dev/null &&
  "$IMGFS" import c.tar t/c:1 >/dev/null && "$IMGFS" tag t/x:1 t/y:1
M=$T/mnt
mkdir -p "$M"
CLEANUP_MOUNTS="$M"
IMGFS_TEST_NAME_REPLY_DELAY_MS=4000 "$IMGFS" mount -f -o debug "$M" 2>debug.log &
pid=$!
CLEANUP_PIDS=$pid
wait_mounted "$M"
shows() { [[ $(cat "$M/$1/f" 2>/dev/null) == "$2" ]]; } # shows NAME TEXT

# A lookup of t/x/1 is built now (image a) and held back 4 s; the retag lands meanwhile.
cat "$M/t/x/1/f" >lookup.out 2>&1 &
looker=$!
sleep 0.5
"$IMGFS" tag t/b:1 t/x:1
check "the retag of t/x/1 landed while its lookup was held back" kill -0 "$looker"
wait "$looker"
check "the held-back lookup answered from the names it was built from" test "$(cat lookup.out)" = "image a"
check "then t/x/1 shows the new image within 5 s (not cached for a year)" until_within 5 shows t/x/1 "image b"

# The same for a readdirplus entry (ls -l of a name directory, first listing).
ls -l "$M/t/y" >ls.out 2>&1 &
lister=$!
sleep 0.5
"$IMGFS" tag t/c:1 t/y:1
check "the retag of t/y/1 landed while its listing was held back" kill -0 "$lister"
wait "$lister"
check "the held-back listing shows t/y/1" grep -q ' 1$' ls.out
check "then t/y/1 shows the new image within 5 s (not cached for a year)" until_within 5 shows t/y/1 "image c"

# A held, moved name: t/c/1 (image c) has a file open, then moves to image b.
c_dir=$(stat -c %i "$M/t/c")
exec 3<"$M/t/c/1/f"
"$IMGFS" tag t/b:1 t/c:1
check "t/c/1 shows the new image within 5 s" until_within 5 shows t/c/1 "image b"
sleep 0.5
before=$(wc -l <debug.log)
for i in 1 2 3 4; do # store changes elsewhere, each seen by the watcher
  "$IMGFS" tag t/b:1 "t/z:$i"
  sleep 0.5
  shows t/c/1 "image b" || echo "t/c/1 did not show image b after move $i" >>debug.log
done
check "a held file of the old image still reads" bash -c "cmp - src-c/f <&3"
exec 3<&-
lookups=$(tail -n +"$((before + 1))" debug.log | grep -c "opcode: LOOKUP (1), nodeid: $c_dir," || true)
check "no LOOKUP of t/c/1 at the four later store changes ($lookups)" test "$lookups" -eq 0
inval=$(grep -c "notify inval_entry parent $c_dir name 1:" debug.log || true)
check "t/c/1 was invalidated once for its move, not at every later one ($inval)" test "$inval" -eq 1
check "t/c/1 showed image b after every later move" bash -c "! grep -q 'did not show' debug.log"
"$IMGFS" umount "$M" && wait_unmounted "$M"
wait "$pid" 2>/dev/null || true
check "the unmount log counts the invalidations" grep -q "names: [0-9]* entry invalidations sent" debug.log
finish
