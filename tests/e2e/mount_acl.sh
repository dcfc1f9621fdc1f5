#!/usr/bin/env bash
# POSIX ACLs through the mount. An image file's system.posix_acl_access xattr (a layer's
# SCHILY.xattr.system.posix_acl_access, as docker and buildah write it) is an ACL the
# kernel enforces, as on the overlayfs a container runtime would unpack to: the mount
# asks for FUSE_POSIX_ACL, so a user the ACL names may read a file its mode bits alone
# would refuse. The kernel then also caches each inode's ACLs (and their absence), and an
# absent SELinux label is ENOTSUP, which ls remembers per mount: a second `ls -l` asks
# the daemon once (the label of the first file), where it asked twice per file, most of
# the cost of `ls -l` on a large directory (issue 12: 10,000 tags).
# Needs root (setpriv to another uid, allow_other).
source "$(dirname "$0")/lib.sh"
require_fuse
need python3 setpriv getfattr
if [[ $(id -u) -ne 0 ]]; then
  not_ok "this suite needs root (another uid reads through an allow_other mount)"
  finish
fi
cd "$T"
chmod 0755 "$T"  # the other uid must reach the mount point (the store stays 0700)

# One layer: `shared` (0640 root:root, an ACL granting uid 65534 read), `private` (0640,
# no ACL), and a directory of 300 files for the request count. Written by Python's
# tarfile: GNU tar stores ACLs as SCHILY.acl.* text, not as the xattr images carry.
/usr/bin/python3 - <<'EOF'
import io, struct, tarfile
U = 0xffffffff  # ACL_UNDEFINED_ID
entries = [(0x01, 6, U), (0x02, 4, 65534), (0x04, 0, U), (0x10, 4, U), (0x20, 0, U)]
acl = struct.pack('<I', 2) + b''.join(struct.pack('<HHI', t, p, i) for t, p, i in entries)
open('acl.bin', 'wb').write(acl)
with tarfile.open('l.tar', 'w', format=tarfile.PAX_FORMAT) as t:
    def add(name, data=b'', mode=0o644, xattr=None):
        ti = tarfile.TarInfo(name)
        ti.size, ti.mode = len(data), mode
        if xattr:
            ti.pax_headers = {'SCHILY.xattr.system.posix_acl_access':
                              xattr.decode('utf-8', 'surrogateescape')}
        t.addfile(ti, io.BytesIO(data))
    add('shared', b'for nobody\n', 0o640, acl)
    add('private', b'root only\n', 0o640)
    d = tarfile.TarInfo('many'); d.type, d.mode = tarfile.DIRTYPE, 0o755
    t.addfile(d)
    for i in range(300):
        add(f'many/f{i}', b'x')
    ti = tarfile.TarInfo('labeled'); ti.size = 1
    ti.pax_headers = {'SCHILY.xattr.security.selinux': 'system_u:object_r:bin_t:s0'}
    t.addfile(ti, io.BytesIO(b'y'))
EOF
"$IMGFS" import l.tar t/acl:1 >/dev/null
M=$T/mnt
mkdir -p "$M"
CLEANUP_MOUNTS="$M"
# -o debug: libfuse prints every request, so the second `ls -l` below can be counted.
"$IMGFS" mount -f -o allow_other,debug "$M" 2>debug.log &
CLEANUP_PIDS=$!
wait_mounted "$M"
nobody() { setpriv --reuid=65534 --regid=65534 --clear-groups "$@"; }
check "the ACL reads back byte for byte" bash -c \
  "getfattr -n system.posix_acl_access -e hex '$M/t/acl/1/shared' | grep -qx \"system.posix_acl_access=0x$(od -An -tx1 -v acl.bin | tr -d ' \n')\""
check "ls -l marks the file that has an ACL with +" bash -c "ls -l '$M/t/acl/1' | grep -q '^-rw-r-----+ .* shared$'"
check "the user the ACL names reads the file" test "$(nobody cat "$M/t/acl/1/shared")" = "for nobody"
check "the same user is refused a file with the same mode and no ACL" \
  bash -c "! setpriv --reuid=65534 --regid=65534 --clear-groups cat '$M/t/acl/1/private' 2>/dev/null"
check "root reads both" bash -c "cat '$M/t/acl/1/shared' '$M/t/acl/1/private' >/dev/null"
# The GETXATTR and LISTXATTR requests (debug.log) one `ls -l` of `many` sends.
xattr_requests() { grep -c -E 'opcode: (GET|LIST)XATTR' debug.log; }
ls_requests() {
  sleep 0.2
  local before
  before=$(xattr_requests)
  ls -l "$M/t/acl/1/many" >/dev/null
  sleep 0.2
  echo $(($(xattr_requests) - before))
}
cold=$(ls_requests)
asked=$(ls_requests)
echo "# ls -l of 300 files: $cold GETXATTR and LISTXATTR requests, then $asked"
# Each file's ACL is asked for once and cached by the kernel. An absent SELinux label is
# ENOTSUP, so ls asks for it once per process: 301 requests cold, 1 warm (coreutils up to
# 9.5, as in Debian 12; from 9.6 ls sends a LISTXATTR per file instead, and this fails).
# With ENODATA for the label ls asked for it per file: 601 cold, 301 warm; before
# FUSE_POSIX_ACL the kernel also sent every ACL lookup on (603 warm).
check "a cold ls -l asks once per file and once for the label ($cold for 300)" test "$cold" -le 302
check "a second ls -l asks at most for the label ($asked)" test "$asked" -le 1
check "an absent SELinux label is 'not supported'" bash -c \
  "getfattr -n security.selinux '$M/t/acl/1/private' 2>&1 | grep -q 'Operation not supported'"
check "another absent xattr is 'no such attribute'" bash -c \
  "getfattr -n user.none '$M/t/acl/1/private' 2>&1 | grep -q 'No such attribute'"
check "a label an image carries is served" bash -c \
  "getfattr --only-values -n security.selinux '$M/t/acl/1/labeled' | grep -qx 'system_u:object_r:bin_t:s0'"
check "the mount says the kernel enforces ACLs (mount.log)" \
  grep -q 'POSIX ACLs enforced' debug.log
"$IMGFS" umount "$M" && wait_unmounted "$M"

# -o acl=off: the kernel enforces no ACL (mode bits only); an ACL an image carries still
# reads back, an absent one is "not supported", and ls -l asks for no ACL after the
# first (it remembers ENOTSUP per file system): a cold ls -l of 300 files sends a
# handful of xattr requests where the default sends 301.
"$IMGFS" mount -f -o allow_other,debug,acl=off "$M" 2>debug.log &
CLEANUP_PIDS="$CLEANUP_PIDS $!"
wait_mounted "$M"
check "acl=off: the mount says ACLs are not enforced" grep -q 'POSIX ACLs not enforced' debug.log
check "  the ACL reads back byte for byte" bash -c \
  "getfattr -n system.posix_acl_access -e hex '$M/t/acl/1/shared' | grep -qx \"system.posix_acl_access=0x$(od -An -tx1 -v acl.bin | tr -d ' \n')\""
check "  the user the ACL names is refused (mode bits only)" \
  bash -c "! setpriv --reuid=65534 --regid=65534 --clear-groups cat '$M/t/acl/1/shared' 2>/dev/null"
check "  an absent ACL is 'not supported'" bash -c \
  "getfattr -n system.posix_acl_access '$M/t/acl/1/private' 2>&1 | grep -q 'Operation not supported'"
cold=$(ls_requests)
echo "# acl=off: ls -l of 300 files: $cold GETXATTR and LISTXATTR requests"
check "  a cold ls -l of 300 files asks at most 3 times ($cold)" test "$cold" -le 3
check "  and lists them all" test "$(ls -l "$M/t/acl/1/many" | grep -c '^-')" = 300
"$IMGFS" umount "$M" && wait_unmounted "$M"
# fstab's spelling: noacl is acl=off.
"$IMGFS" mount -o noacl "$M"
wait_mounted "$M"  # INIT answered: the line is written
check "-o noacl: ACLs are not enforced (mount.log)" grep -q 'POSIX ACLs not enforced' "$IMGFS_ROOT/mount.log"
"$IMGFS" umount "$M" && wait_unmounted "$M"
finish
