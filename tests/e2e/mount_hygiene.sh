#!/usr/bin/env bash
# Mount hygiene on real FUSE mounts: fstab's generic options are accepted (also through
# mount.imgfs and mount(8) with an fstab line), a second imgfs mount on the same
# directory is refused, the store is the mount's source (findmnt and `umount STORE`
# tell stores apart), `imgfs umount` refuses what is not an imgfs mount (a tmpfs, as
# root; util-linux's umount matches a directory argument only as a target, so
# `imgfs umount STORE` is the way to name a store), and auto_unmount clears the mount when the daemon dies.
source "$(dirname "$0")/lib.sh"
require_fuse
need findmnt mount umount python3
cd "$T"
mkdir -p rf/etc && echo hygiene >rf/etc/hello && tar -C rf -cf rf.tar .
"$IMGFS" import rf.tar test/h:1 >/dev/null
S2=$T/store2
"$IMGFS" --root "$S2" import rf.tar other/h:1 >/dev/null
count_at() { grep -c " $1 fuse.imgfs " /proc/mounts || true; }

M=$T/m
check "mount -o with fstab's generic options" mount_store "$M" -o defaults,noatime,nodiratime,relatime,_netdev,nofail,noauto,user,x-systemd.automount,x-systemd.requires=network.target,comment=x
check "  serves" test "$(cat "$M/test/h/1/etc/hello")" = hygiene
check "  findmnt: the source is the store" test "$(findmnt -n -o SOURCE "$M")" = "$ROOT"
check "  findmnt: the type is fuse.imgfs" test "$(findmnt -n -o FSTYPE "$M")" = fuse.imgfs
expect_fail "a second mount on the same directory is refused" "mount: $M: already an imgfs mount \(of $ROOT\)" "$IMGFS" mount "$M"
check "  still one mount there" test "$(count_at "$M")" = 1
check "  and it still serves" test -f "$M/test/h/1/etc/hello"
expect_fail "an unknown option is refused" 'unknown option "bogus"' "$IMGFS" mount -o bogus "$T/m-unused"
mkdir -p "$T/sl"
CLEANUP_MOUNTS="$CLEANUP_MOUNTS $T/sl"
check "  with --sloppy (mount -s) it is ignored with a warning" bash -c "'$IMGFS' mount --sloppy -o bogus,noatime '$T/sl' 2>sl.err && grep -q 'ignoring unknown option \"bogus\"' sl.err"
check "  and that mount serves" bash -c "$(declare -f wait_mounted); wait_mounted '$T/sl' && test -f '$T/sl/test/h/1/etc/hello'"
check "  imgfs umount of it" bash -c "$(declare -f wait_unmounted); '$IMGFS' umount '$T/sl' && wait_unmounted '$T/sl'"

# Two stores, told apart by their source.
M2=$T/m2
check "a second store mounted elsewhere" bash -c "mkdir -p '$M2' && '$IMGFS' --root '$S2' mount '$M2'"
CLEANUP_MOUNTS="$CLEANUP_MOUNTS $M2"
check "  findmnt --source finds each store's mount" bash -c "[[ \$(findmnt -n -o TARGET --source '$S2') == '$M2' && \$(findmnt -n -o TARGET --source '$ROOT') == '$M' ]]"
check "imgfs umount STORE unmounts that store's mount" bash -c "$(declare -f wait_unmounted); '$IMGFS' umount '$S2' && wait_unmounted '$M2'"
check "  and not the other" test "$(count_at "$M")" = 1

# umount touches only imgfs mounts, also as root.
if [[ $(id -u) == 0 ]]; then
  mkdir -p "$T/tmpfs"
  mount -t tmpfs -o size=1m imgfs-test-tmpfs "$T/tmpfs"
  on_exit "umount '$T/tmpfs'"
  expect_fail "umount refuses a tmpfs (as root)" "umount: $T/tmpfs: not an imgfs mount \(it is tmpfs\); refusing" "$IMGFS" umount "$T/tmpfs"
  check "  the tmpfs is still mounted" bash -c "findmnt -n -o FSTYPE '$T/tmpfs' | grep -qx tmpfs"
  expect_fail "  also with -z" "not an imgfs mount" "$IMGFS" umount -z "$T/tmpfs"
else
  not_ok "the tmpfs check needs root"
fi
expect_fail "umount of a directory with no mount" "umount: $T/rf: not mounted" "$IMGFS" umount "$T/rf"
check "imgfs umount MOUNTPOINT" bash -c "$(declare -f wait_unmounted); '$IMGFS' umount '$M' && wait_unmounted '$M'"

# auto_unmount: the kernel mount goes when the daemon is killed. fusermount3 alone
# left a dead mount when the daemon's socket to it closed before /dev/fuse (about one
# kill in six on a busy machine); the guard (fs/auto_unmount.h) holds that socket until
# the daemon has wholly exited.
check "mount -o auto_unmount" mount_store "$M" -o auto_unmount
pid=$(pgrep -f "imgfs mount -o auto_unmount $M" | head -1)
check "  its guard holds fusermount3's socket" bash -c "g=\$(pgrep -x -f 'imgfs-auto-unmount $pid') && ls -l /proc/\$g/fd | grep -q 'socket:'"
kill -9 "$pid"
check "  kill -9 of the daemon: the mount is gone" wait_unmounted "$M"
guard_gone() { for _ in $(seq 100); do pgrep -f "imgfs-auto-unmount $1\$" >/dev/null || return 0; sleep 0.05; done; return 1; }
check "  and so is the guard" guard_gone "$pid"
left=0
for round in 1 2 3 4 5 6 7 8; do
  mount_store "$M" -o auto_unmount || { left=$((left + 1)); continue; }
  kill -9 "$(pgrep -f "imgfs mount -o auto_unmount $M" | head -1)"
  wait_unmounted "$M" || { left=$((left + 1)); umount -l "$M" 2>/dev/null || true; }
done
check "  8 more kill -9 rounds: no mount left behind" test "$left" = 0
check "  no guard was missing (mount.log)" bash -c "! grep -q 'no guard process' '$ROOT/mount.log'"
# A guard that cannot start is said in the log (here /proc/self/exe is the dynamic
# loader, which cannot run "imgfs-auto-unmount PID"); the mount still works.
LDSO=$(ldd "$IMGFS" | awk '$1 ~ /^\/.*ld-linux/ {print $1; exit}')
if [[ -x $LDSO ]]; then
  check "a guard that cannot start: the mount still comes up" bash -c "$(declare -f wait_mounted); '$LDSO' '$IMGFS' mount -o auto_unmount '$M' && wait_mounted '$M'"
  check "  and the log says there is no guard" grep -q 'auto_unmount: no guard process (it did not start watching' "$ROOT/mount.log"
  check "  imgfs umount of it" bash -c "$(declare -f wait_unmounted); '$IMGFS' umount '$M' && wait_unmounted '$M'"
else
  not_ok "the dynamic loader of $IMGFS was not found (ldd)"
fi
expect_fail "the guard refuses to run by hand" "started by imgfs mount -o auto_unmount only" \
  bash -c "exec -a imgfs-auto-unmount '$IMGFS' 1"

# mount.imgfs -s (as mount(8) runs it) and an fstab line with generic options.
HELPER=$(dirname "$IMGFS")/mount.imgfs
check "mount.imgfs -s STORE DIR -o defaults,noatime,_netdev,x-systemd.automount,bogus" \
  bash -c "$(declare -f wait_mounted); '$HELPER' '$ROOT' '$M' -s -o defaults,noatime,_netdev,x-systemd.automount,bogus 2>/dev/null && wait_mounted '$M'"
check "  serves" test -f "$M/test/h/1/etc/hello"
"$IMGFS" umount "$M" && wait_unmounted "$M"
# mount(8) finds helpers only in /sbin; another suite may hold that name for a while.
for _ in $(seq 120); do [[ -e /sbin/mount.imgfs || -e /sbin/mount.fuse.imgfs ]] || break; sleep 0.5; done
if [[ -x $HELPER && ! -e /sbin/mount.imgfs && ! -e /sbin/mount.fuse.imgfs ]]; then
  on_exit rm -f /sbin/mount.imgfs /sbin/mount.fuse.imgfs
  ln -s "$HELPER" /sbin/mount.imgfs && ln -s "$HELPER" /sbin/mount.fuse.imgfs
  echo "$ROOT $M fuse.imgfs defaults,noatime,nodiratime,_netdev,nofail,noauto,x-systemd.automount,x-systemd.idle-timeout=60,auto_unmount 0 0" >fstab
  check "an fstab line with generic options (mount -T FSTAB DIR)" bash -c "$(declare -f wait_mounted); mount -T fstab '$M' && wait_mounted '$M' && test -f '$M/test/h/1/etc/hello'"
  check "  findmnt --fstab --source STORE names it" test "$(findmnt -n -F fstab -o TARGET --source "$ROOT")" = "$M"
  check "  umount DIR (util-linux)" bash -c "$(declare -f wait_unmounted); umount '$M' && wait_unmounted '$M'"
  rm -f /sbin/mount.imgfs /sbin/mount.fuse.imgfs
else
  not_ok "the fstab test needs $HELPER and a /sbin free of another mount.imgfs"
fi
finish
