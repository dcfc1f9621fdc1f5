#!/usr/bin/env bash
# Rootless: an ordinary user (store in $XDG_DATA_HOME/imgfs, mounted through
# fusermount3) imports, mounts and browses with no root and no user namespace, and sees
# the image's real owners and modes. Run as root, the test creates that user and, since
# this machine leaves /dev/fuse at 0600 where stock Debian has 0666, sets 0666 for the
# duration (restored at exit); run as a normal user, it runs as that user.
source "$(dirname "$0")/lib.sh"
require_fuse
need busybox runuser
cd "$T"
user=imgfs-rootless
if [[ $(id -u) -eq 0 ]]; then
  if ! id "$user" >/dev/null 2>&1; then
    on_exit userdel "$user"
    useradd --no-create-home --shell /bin/bash "$user"
  fi
  old_mode=$(stat -c %a /dev/fuse)
  on_exit chmod "$old_mode" /dev/fuse
  chmod 0666 /dev/fuse
  as_user() { runuser -u "$user" -- env -i PATH=/usr/bin:/bin HOME="$T/home" XDG_DATA_HOME="$T/home/data" "$@"; }
else
  as_user() { env -i PATH=/usr/bin:/bin HOME="$T/home" XDG_DATA_HOME="$T/home/data" "$@"; }
fi
mkdir -p "$T/home/bin" "$T/home/mnt" "$T/home/rootfs/bin" "$T/home/rootfs/home/app"
cp "$IMGFS" "$T/home/bin/imgfs"
cp "$(command -v busybox)" "$T/home/rootfs/bin/busybox"
printf 'secret\n' >"$T/home/rootfs/bin/private"
printf 'hello\n' >"$T/home/rootfs/home/app/readme"
chmod 4755 "$T/home/rootfs/bin/busybox"
chmod 0600 "$T/home/rootfs/bin/private"
tar -C "$T/home/rootfs" --owner=0 --group=0 --exclude=./home -cf "$T/home/rootfs.tar" .
tar -C "$T/home/rootfs" --owner=4242 --group=4343 -rf "$T/home/rootfs.tar" ./home
chown -R "$user" "$T/home" 2>/dev/null || true
chmod 0755 "$T"
I=$T/home/bin/imgfs
M=$T/home/mnt
check "import as the user" as_user "$I" import "$T/home/rootfs.tar" app:1
check "the default store is \$XDG_DATA_HOME/imgfs" test -d "$T/home/data/imgfs/blobs/sha256"
CLEANUP_MOUNTS="${CLEANUP_MOUNTS:-} $M"
check "mount as the user (fusermount3)" as_user "$I" mount "$M"
# Everything below needs the mount: a machine where FUSE mounts fail must fail here,
# not pass checks that a missing mount would also satisfy.
check "the mount answers (a FUSE mount of type fuse.imgfs)" wait_mounted "$M"
check "the mount belongs to the user" bash -c "grep ' $M fuse.imgfs ' /proc/mounts | grep -q 'user_id=$(id -u "$user" 2>/dev/null || id -u)'"
ls_owners() { as_user ls -ln "$M/app/1/bin/busybox" | grep -Eq '^-rwsr-xr-x +1 +0 +0 '; }
check "ls -ln shows the image's real owners and modes" ls_owners
check "root-owned setuid file keeps owner 0 and mode 4755" test "$(as_user stat -c '%u %g %a' "$M/app/1/bin/busybox")" = "0 0 4755"
check "a file owned by 4242:4343 shows those ids" test "$(as_user stat -c '%u %g' "$M/app/1/home/app/readme")" = "4242 4343"
check "the user reads a world-readable file" test "$(as_user cat "$M/app/1/home/app/readme")" = hello
refused() {  # a real EACCES from the mount, not a missing file or a dead mount
  local err
  err=$(as_user cat "$M/app/1/bin/private" 2>&1 >/dev/null) && return 1
  [[ $err == *"Permission denied"* ]] || { echo "$err"; return 1; }
  as_user test -f "$M/app/1/bin/private"
}
check "a 0600 root-owned file is refused by the kernel (default_permissions)" refused
check "the user unmounts with imgfs umount" as_user "$I" umount "$M"
check "unmounted" wait_unmounted "$M"
finish
