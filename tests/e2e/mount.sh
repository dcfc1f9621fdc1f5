#!/usr/bin/env bash
# imgfs mount with real clients on a real FUSE mount: every attribute of every path
# against `umoci unpack`, ls/find/stat/du/grep/tar/rsync/cp/getfattr/chroot/runc on the
# tag directory itself, EROFS for every write, live names, parallel readers during
# imports and removals, SIGTERM, two mounts, the mount(8) helper, a corrupt layer.
source "$(dirname "$0")/lib.sh"
require_fuse
need umoci skopeo python3 busybox rsync getfattr setfattr runc
cd "$T"
build_test_images >/dev/null
"$IMGFS" load -q --name test/layout oci >/dev/null
skopeo copy -q oci:oci:v3 docker-archive:$T/da.tar:test/da:v3 && "$IMGFS" load -q da.tar >/dev/null

M=$T/mnt
check "mount returns once the mount answers" mount_store "$M"
opts=$(grep " $M fuse.imgfs " /proc/mounts | cut -d' ' -f4)
check "safe defaults: ro,nosuid,nodev,default_permissions ($opts)" \
  bash -c "[[ ,$opts, == *,ro,* && ,$opts, == *,nosuid,* && ,$opts, == *,nodev,* && ,$opts, == *,default_permissions,* ]]"
check "fsname (the store) and subtype" grep -q "^$ROOT $M fuse.imgfs " /proc/mounts

# 1. Attribute by attribute, byte by byte, against umoci unpack.
same_tree() {  # same_tree MOUNTED_DIR REFERENCE_DIR
  python3 "$HERE/tree.py" native "$1" >"$T/got" && python3 "$HERE/tree.py" native "$2" >"$T/want" || return 1
  diff -u "$T/want" "$T/got" >"$T/diff" || { head -30 "$T/diff"; return 1; }
  [[ $(wc -l <"$T/want") -gt 20 ]]
}
for v in v1 v2 v3; do check "mount test/layout/$v equals umoci unpack" same_tree "$M/test/layout/$v" ref-$v/rootfs; done
check "docker-archive image equals umoci unpack" same_tree "$M/test/da/v3" ref-v3/rootfs
id=$("$IMGFS" images -q --no-trunc test/layout:v3); id=${id#sha256:}
check ".id/<image id> equals umoci unpack" same_tree "$M/.id/$id" ref-v3/rootfs
check ".id/<12-hex prefix> resolves" test -f "$M/.id/${id:0:12}/etc/passwd"
check ".id/<11-hex prefix> does not" bash -c "[[ -d '$M/.id/${id:0:12}' && ! -e '$M/.id/${id:0:11}' ]]"
check ".repositories.json maps names to IDs" python3 -c "import json; d=json.load(open('$M/.repositories.json'))['Repositories']; assert d['test/layout']['test/layout:v3']=='sha256:$id'"

# 2. Real clients, each given the tag directory itself.
D=$M/test/layout/v3
R=ref-v3/rootfs
find_list() { (cd "$1" && find . -printf '%p %y %m %U %G %T@ %l\n' | LC_ALL=C sort); }
check "find -printf" diff <(find_list "$R") <(find_list "$D")
check "ls -lR runs over the whole tree" bash -c "ls -lR '$D' >/dev/null && [[ \$(ls -lR '$D' | wc -l) -eq \$(ls -lR '$R' | wc -l) ]]"
check "stat of a setuid file" test "$(stat -c '%A %u %g %s %Y %h' "$D/bin/busybox")" = "$(stat -c '%A %u %g %s %Y %h' "$R/bin/busybox")"
check "du -s counts the content" bash -c "(( \$(du -s -B1 '$D' | cut -f1) >= \$(stat -c %s '$R/data/random.bin') ))"
check "grep -r finds the same lines" diff <(cd "$R" && grep -ra "imgfs test" . | sort) <(cd "$D" && grep -ra "imgfs test" . | sort)
check "tar -c | tar -t lists the same entries" diff <(tar -C "$R" -cf - . | tar -tf - | LC_ALL=C sort) <(tar -C "$D" -cf - . | tar -tf - | LC_ALL=C sort)
check "rsync -aHAX out of the mount reproduces the tree" bash -c "rsync -aHAX '$D/' '$T/rsynced/' && python3 '$HERE/tree.py' native '$T/rsynced' | diff -q - <(python3 '$HERE/tree.py' native '$R')"
check "cp -a out of the mount, then diff -r" bash -c "cp -a '$D' '$T/copied' && diff -r --no-dereference '$R' '$T/copied' 2>&1 | grep -v 'special file' | grep -v fifo | (! grep .)"
check "getfattr shows security.capability" bash -c "getfattr -d -m - -e hex '$D/bin/busybox' 2>/dev/null | grep -q '^security.capability=0x0100000200200000'"
check "getfattr shows a binary user xattr" bash -c "getfattr -n user.note -e hex '$M/test/layout/v1/data/empty' 2>/dev/null | grep -q 'user.note=0x68656c6c6f0062696e'"
check "hard links share an inode" test "$(stat -c %i "$D/etc/passwd")" = "$(stat -c %i "$D/etc/passwd.hard")"
check "a hard link to a lower layer shares the inode" test "$(stat -c '%i %h' "$D/data/random.bin")" = "$(stat -c '%i %h' "$D/data/random.hard")"
check "a character device keeps its numbers" test "$(stat -c '%F %t:%T' "$D/dev/null")" = "character special file 1:3"
check "symlinks are verbatim, even escaping ones" test "$(readlink "$D/usr/lib/escape")" = "../../../../outside"
check "statfs answers" bash -c "stat -f '$D' | grep -q 'Type: fuseblk\|Type: fuse'"
check "chroot into an image" test "$(chroot "$M/test/layout/v1" /bin/sh -c 'echo ok')" = ok

# runc: an image without file capabilities (busybox in the test image has one whose
# effective bit asks for CAP_NET_RAW, which runc's default bounding set lacks: the
# kernel then refuses the exec, as it should).
mkdir -p rc/bin rc/etc rc/proc rc/sys rc/dev rc/tmp && cp "$(command -v busybox)" rc/bin/busybox && ln -s busybox rc/bin/sh
printf 'NAME="imgfs runc"\n' >rc/etc/os-release && tar -C rc -czf rc.tar.gz . && "$IMGFS" import rc.tar.gz runc/img:1 >/dev/null
mkdir -p bundle && (cd bundle && runc spec) && python3 - "$M/runc/img/1" <<'PY'
import json, sys
c = json.load(open('bundle/config.json'))
c['root'] = {'path': sys.argv[1], 'readonly': True}
c['process']['args'] = ['/bin/sh', '-c', 'echo ok from runc; cat /etc/os-release']
c['process']['terminal'] = False
json.dump(c, open('bundle/config.json', 'w'))
PY
ctr=imgfs-e2e-$$
check "runc runs a container from the mount (root.readonly)" bash -c "timeout 60 runc run --bundle bundle $ctr | grep -q 'ok from runc'"
runc delete -f $ctr >/dev/null 2>&1 || true

# 3. Every write fails with EROFS.
erofs() { local out; out=$("$@" 2>&1) && return 1; [[ $out == *"Read-only file system"* ]] || { echo "$out"; return 1; }; }
check "touch: EROFS" erofs touch "$D/new"
check "mkdir: EROFS" erofs mkdir "$D/newdir"
check "rm: EROFS" erofs rm -f "$D/etc/motd"
check "chmod: EROFS" erofs chmod 000 "$D/etc/passwd"
check "setfattr: EROFS" erofs setfattr -n user.x -v y "$D/etc/passwd"
check "truncate: EROFS" erofs truncate -s 0 "$D/etc/passwd"
check "open(O_WRONLY): EROFS" erofs python3 -c "open('$D/etc/passwd', 'w')"
check "mkdir in a name directory: EROFS" erofs mkdir "$M/test/newrepo"

# 4. Names change live; an open file keeps reading.
mkdir -p extra && printf 'live\n' >extra/f && tar -C extra -cf extra.tar .
"$IMGFS" import extra.tar live/img:1 >/dev/null
check "an import shows within a second" bash -c "for i in \$(seq 20); do [[ -f '$M/live/img/1/f' ]] && exit 0; sleep 0.05; done; exit 1"
"$IMGFS" tag test/layout:v1 live/img:2
check "a tag shows within a second" bash -c "for i in \$(seq 20); do [[ -f '$M/live/img/2/etc/passwd' ]] && exit 0; sleep 0.05; done; exit 1"
exec 3<"$M/live/img/2/etc/os-release"
"$IMGFS" tag live/img:1 live/img:2
check "a retag shows the new image within a second" bash -c "sleep 0.7; [[ -f '$M/live/img/2/f' && ! -e '$M/live/img/2/etc/passwd' ]]"
check "a file opened before the retag still reads the old image" bash -c "cat <&3 | grep -q 'imgfs test'"
exec 3<&-
exec 3<"$M/live/img/1/f"
"$IMGFS" rmi -f live/img:1 >/dev/null
check "rmi removes the name within a second" bash -c "sleep 0.7; [[ ! -e '$M/live/img/1' && -f '$M/live/img/2/f' ]]"
check "a file opened before rmi keeps reading" bash -c "cat <&3 | grep -qx live"
exec 3<&-

# 5. Eight parallel readers read every file while another image is imported and removed.
(cd "$R" && find . -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum) >"$T/want.sums"
reader() { (cd "$D" && find . -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum) >"$T/got.$1" 2>&1; }
churn() { for i in 1 2 3 4 5; do "$IMGFS" import extra.tar churn/img:$i >/dev/null && "$IMGFS" rmi churn/img:$i >/dev/null || return 1; done; }
sync && echo 3 >/proc/sys/vm/drop_caches 2>/dev/null || true
pids=()
for r in 1 2 3 4 5 6 7 8; do reader $r & pids+=($!); done
churn & churn_pid=$!
readers_ok=1
for p in "${pids[@]}"; do wait "$p" || readers_ok=0; done
check "churn of imports and removals succeeded" wait $churn_pid
check "8 parallel readers: no error" test $readers_ok = 1
for r in 1 2 3 4 5 6 7 8; do diff -q "$T/want.sums" "$T/got.$r" >/dev/null || readers_ok=0; done
check "8 parallel readers: every byte right" test $readers_ok = 1

# 6. A corrupt, not yet unpacked layer: EIO and a log line, never wrong bytes.
mkdir -p bad && head -c 200000 /dev/urandom >bad/blob && tar -C bad -czf bad.tar.gz .
"$IMGFS" import bad.tar.gz bad/img:1 >/dev/null
layer=$("$IMGFS" inspect bad/img:1 | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["Layers"][0]["Digest"][7:])')
chmod u+w "$ROOT/blobs/sha256/$layer" && printf '\xde\xad\xbe\xef' | dd of="$ROOT/blobs/sha256/$layer" bs=1 seek=5000 conv=notrunc status=none
check "reading a file of a corrupt layer fails with EIO" bash -c "out=\$(cat '$M/bad/img/1/blob' 2>&1 >/dev/null); [[ \$out == *'Input/output error'* ]]"
check "the failure is logged" grep -q "uncompressed content hashes to\|gzip" "$ROOT/mount.log"
check "listing still works without unpacking" test "$(ls "$M/bad/img/1")" = blob

# 7. A second mount of the same store; SIGTERM unmounts cleanly.
check "a second mount of the same store" mount_store "$T/mnt2"
check "both serve the same bytes" cmp "$M/test/layout/v1/bin/busybox" "$T/mnt2/test/layout/v1/bin/busybox"
pid=$(pgrep -f "imgfs mount $T/mnt2" | head -1)
kill -TERM "$pid"
check "SIGTERM unmounts" wait_unmounted "$T/mnt2"
check "imgfs umount" "$IMGFS" umount "$M"
check "unmounted" wait_unmounted "$M"

# 8. Foreground mode, and mount(8) with the helper (mount -t imgfs / fuse.imgfs, fstab).
mkdir -p "$T/fg"
# (bash starts background jobs with SIGINT ignored, and a program keeps an ignored
# signal ignored; restore the default first, as a terminal would have it.)
python3 -c 'import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); os.execv(sys.argv[1], sys.argv[1:])' \
  "$IMGFS" mount -f "$T/fg" 2>"$T/fg.log" &
fg_pid=$!
CLEANUP_MOUNTS="$CLEANUP_MOUNTS $T/fg"
check "foreground mount" wait_mounted "$T/fg"
check "foreground mount serves" test -f "$T/fg/test/layout/v1/etc/passwd"
kill -INT $fg_pid
check "SIGINT ends a foreground mount" bash -c "wait_pid() { for i in \$(seq 100); do kill -0 $fg_pid 2>/dev/null || return 0; sleep 0.05; done; return 1; }; wait_pid"
check "and unmounts" wait_unmounted "$T/fg"
fg_rc=0
wait "$fg_pid" || fg_rc=$?
check "  exiting 0 (a stop asked for is not a failure)" test "$fg_rc" = 0

HELPER=$(dirname "$IMGFS")/mount.imgfs
if [[ -x $HELPER && ! -e /sbin/mount.imgfs && ! -e /sbin/mount.fuse.imgfs ]]; then
  on_exit rm -f /sbin/mount.imgfs /sbin/mount.fuse.imgfs
  ln -s "$HELPER" /sbin/mount.imgfs && ln -s "$HELPER" /sbin/mount.fuse.imgfs
  mkdir -p "$T/h"
  CLEANUP_MOUNTS="$CLEANUP_MOUNTS $T/h"
  check "mount -t imgfs STORE DIR" mount -t imgfs "$ROOT" "$T/h"
  check "serves" test -f "$T/h/test/layout/v1/etc/passwd"
  check "umount DIR" umount "$T/h"
  check "mount -t fuse.imgfs -o allow_other" mount -t fuse.imgfs -o allow_other "$ROOT" "$T/h"
  check "allow_other is set" grep -q " $T/h fuse.imgfs .*allow_other" /proc/mounts
  umount "$T/h"
  check "an fstab line (mount -T FSTAB DIR)" bash -c "echo '$ROOT $T/h imgfs defaults,noauto,nofail 0 0' >'$T/fstab' && mount -T '$T/fstab' '$T/h' && test -f '$T/h/test/layout/v1/etc/passwd' && umount '$T/h'"
  rm -f /sbin/mount.imgfs /sbin/mount.fuse.imgfs
else
  not_ok "mount helper test needs $HELPER and a /sbin free of another mount.imgfs"
fi
# The layer corrupted in part 6 must be reported, and nothing else.
only_the_corrupt_layer() {
  local out problems
  out=$("$IMGFS" verify 2>&1) && { echo "verify passed a store with a corrupt layer"; return 1; }
  problems=$(grep -v 'problem(s) found$' <<<"$out")
  grep -q "sha256:$layer" <<<"$problems" || { echo "$out"; return 1; }
  ! grep -v "sha256:$layer" <<<"$problems"
}
check "imgfs verify: the corrupt layer is the store's only problem after it all" only_the_corrupt_layer
finish
