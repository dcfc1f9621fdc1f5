#!/usr/bin/env bash
# Pinned blobs of removed images under the default open=kernel (issue 12): the daemon
# sees no opens, so it counts the kernel's references to each image instance (lookup
# replies and readdirplus entries minus FORGETs). A removed layer's blob is let go once
# the store's generation moved and the kernel has forgotten every inode of the
# instances that use it. The daemon makes the kernel drop the names of removed images
# (MountFs::set_invalidator), so that comes at once for an image nothing holds open;
# an image with a file open needs the caches dropped once the file is closed;
# a file kept open across the `imgfs rmi` holds its inode, so its blob stays and it
# reads to its end. Needs root (drop_caches).
source "$(dirname "$0")/lib.sh"
require_fuse
need python3
if [[ ! -w /proc/sys/vm/drop_caches ]]; then
  not_ok "this suite needs to write /proc/sys/vm/drop_caches (root)"
  finish
fi
cd "$T"

# One-layer images: gzip (read through the seek index) and plain tar (read in place),
# and one that stays.
for n in a b k; do
  mkdir -p "src-$n" && head -c 3000000 /dev/urandom >"src-$n/f"
done
tar -C src-a -czf a.tar.gz . && tar -C src-b -cf b.tar . && tar -C src-k -cf k.tar .
"$IMGFS" import a.tar.gz t/a:1 >/dev/null && "$IMGFS" import b.tar t/b:1 >/dev/null &&
  "$IMGFS" import k.tar t/k:1 >/dev/null
blob() { "$IMGFS" inspect "$1" | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["Layers"][0]["Digest"][7:])'; }
A=$(blob t/a:1) B=$(blob t/b:1) K=$(blob t/k:1)

M=$T/mnt
check "mount (default open=kernel)" mount_store "$M"
pid=$(pgrep -f "imgfs mount $M" | head -1)
held() { ls -l "/proc/$pid/fd" 2>/dev/null | grep -q "blobs/sha256/$1"; }  # held BLOB
forget() { sync; echo 2 >/proc/sys/vm/drop_caches; ls "$M" >/dev/null; }  # drop dentries and inodes
# A name operation only: the daemon sees the generation move and invalidates the names
# of removed images the kernel holds (FUSE_NOTIFY_INVAL_ENTRY); nothing drops caches.
look() { ls "$M" >/dev/null; }
eventually() {  # eventually NUDGE COMMAND...: true within 15 s, NUDGE run before each retry
  local nudge=$1 deadline=$((SECONDS + 15))
  shift
  until "$@"; do
    ((SECONDS < deadline)) || return 1
    "$nudge"
    sleep 0.2
  done
}
exec 3<"$M/t/a/1/f"
check "a file of b reads right" cmp "$M/t/b/1/f" src-b/f
check "a file of k reads right" cmp "$M/t/k/1/f" src-k/f
check "the daemon holds the three blobs" bash -c "$(declare -f held); pid=$pid; held $A && held $B && held $K"
"$IMGFS" rmi t/a:1 t/b:1 >/dev/null
check "rmi deleted the blobs" bash -c "[[ ! -e $ROOT/blobs/sha256/$A && ! -e $ROOT/blobs/sha256/$B ]]"
check "the blob of b is let go once the daemon invalidated b's names (no cache dropped)" \
  eventually look eval "! held $B"
forget
check "the blob of a file open across rmi is still held (a)" held "$A"
check "a file open across rmi reads right (a, gzip)" bash -c "cmp - src-a/f <&3"
check "the blob of the image kept is still held" held "$K"
exec 3<&-
check "once closed and forgotten, a's blob is let go" eventually forget eval "! held $A"
check "no deleted blob left open" bash -c "! ls -l /proc/$pid/fd | grep -q '(deleted)'"
check "the image kept still reads right" cmp "$M/t/k/1/f" src-k/f
check "a removed image is gone from the mount" bash -c "[[ ! -e $M/t/a/1 ]]"
finish
