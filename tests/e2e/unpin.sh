#!/usr/bin/env bash
# Pinned blobs of removed images (issue 12): with -o open=daemon, a mount lets go of a
# removed layer's blob once no open file needs it and the store's generation has moved;
# a file kept open across the `imgfs rmi` reads to its end (through the descriptor it
# had: reopening /dev/fd/N would be a new open of a removed image). Without opens (the default
# open=kernel) a blob stays pinned while the kernel holds an inode of its image (checked
# below with a file open; the release once it forgets them: tests/e2e/unpin_kernel.sh).
source "$(dirname "$0")/lib.sh"
require_fuse
need python3
cd "$T"

# Four one-layer images: gzip (read through the seek index) and plain tar (read in place).
for n in a b c d; do
  mkdir -p "src-$n" && head -c 3000000 /dev/urandom >"src-$n/f"
done
tar -C src-a -czf a.tar.gz . && tar -C src-b -cf b.tar . && tar -C src-c -cf c.tar . &&
  tar -C src-d -czf d.tar.gz .
"$IMGFS" import a.tar.gz t/a:1 >/dev/null && "$IMGFS" import b.tar t/b:1 >/dev/null &&
  "$IMGFS" import c.tar t/c:1 >/dev/null && "$IMGFS" import d.tar.gz t/d:1 >/dev/null
blob() { "$IMGFS" inspect "$1" | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["Layers"][0]["Digest"][7:])'; }
A=$(blob t/a:1) B=$(blob t/b:1) C=$(blob t/c:1) D=$(blob t/d:1)

M=$T/mnt
check "mount -o open=daemon" mount_store "$M" -o open=daemon
pid=$(pgrep -f "imgfs mount -o open=daemon $M" | head -1)
held() { ls -l "/proc/$pid/fd" 2>/dev/null | grep -q "blobs/sha256/$1"; }  # held BLOB
eventually() {  # eventually COMMAND...: true within 10 s, the mount root listed each try
  local deadline=$((SECONDS + 10))
  until "$@"; do
    ((SECONDS < deadline)) || return 1
    ls "$M" >/dev/null
    sleep 0.2
  done
}
exec 3<"$M/t/a/1/f" 4<"$M/t/c/1/f"
check "a closed file of b reads right" cmp "$M/t/b/1/f" src-b/f
check "a closed file of d reads right" cmp "$M/t/d/1/f" src-d/f
check "the daemon holds the four blobs" bash -c "$(declare -f held); pid=$pid; held $A && held $B && held $C && held $D"
"$IMGFS" rmi t/a:1 t/b:1 t/c:1 t/d:1 >/dev/null
check "rmi deleted the blobs" bash -c "[[ ! -e $ROOT/blobs/sha256/$A && ! -e $ROOT/blobs/sha256/$B ]]"
check "the blobs of closed files are let go (b, plain tar)" eventually eval "! held $B"
check "the blobs of closed files are let go (d, gzip)" eventually eval "! held $D"
check "blobs of open files are still held" bash -c "$(declare -f held); pid=$pid; held $A && held $C"
check "a file open across rmi reads right (a, gzip)" bash -c "cmp - src-a/f <&3"
check "a file open across rmi reads right (c, plain tar)" bash -c "cmp - src-c/f <&4"
exec 3<&- 4<&-
check "once closed, their blobs are let go" eventually eval "! held $A && ! held $C"
check "no deleted blob left open" bash -c "! ls -l /proc/$pid/fd | grep -q '(deleted)'"

# The default (open=kernel): the daemon cannot see opens, so it keeps the pin.
"$IMGFS" import b.tar t/e:1 >/dev/null
M2=$T/mnt2
check "mount (open=kernel)" mount_store "$M2"
pid=$(pgrep -f "imgfs mount $M2" | head -1)
exec 3<"$M2/t/e/1/f"
"$IMGFS" rmi t/e:1 >/dev/null
sleep 1; ls "$M2" >/dev/null; sleep 0.5; ls "$M2" >/dev/null
check "open=kernel: the blob stays pinned" held "$B"
check "open=kernel: a file open across rmi reads right" bash -c "cmp - src-b/f <&3"
exec 3<&-
finish
