#!/usr/bin/env bash
# Local hardening (issue 13): what another local user, a hostile file, a deep tree or
# bad timing can do to a store, checked on the real binary.
#   13.2  the store is private: another user reads no blob; an old store is tightened
#   13.5  a tree 80,000 directories deep: import, verify, ls -R, ls, the mount's find
#   13.6  prune while `imgfs cat` and mount reads unpack: zero failures
#   13.7  a compressed non-archive is refused before it is inflated (ulimit -f bound)
#   13.8  a FIFO or a device given to load/import is refused at once
#   13.9  after kill -9 of the mount daemon, mount and umount clear the dead endpoint
#   13.11 names with newlines, tabs, escapes and backslashes are quoted by ls
# Run as root for the other-user checks (a test user is created and removed).
source "$(dirname "$0")/lib.sh"
need python3 gzip zstd tar script
cd "$T"
chmod 0755 "$T"  # the test user must reach $ROOT itself: only the store's modes may stop it

# ---- 13.8: FIFOs and devices are refused without blocking -------------------------
mkfifo fifo
expect_fail "load of a FIFO is refused at once" "fifo: a FIFO" timeout 20 "$IMGFS" load fifo
expect_fail "import of a FIFO is refused at once" "fifo: a FIFO" timeout 20 "$IMGFS" import fifo x:1
expect_fail "load of a device is refused" "/dev/null: a device" timeout 20 "$IMGFS" load /dev/null
expect_fail "import of a device is refused" "/dev/zero: a device" timeout 20 "$IMGFS" import /dev/zero x:1

# ---- 13.7: a compressed non-archive is refused before it is inflated --------------
# Each load runs with a 32 MiB file-size limit: the old code inflated everything into
# ingest/ first and died of SIGXFSZ / "File too large" instead of naming the problem.
head -c $((100 << 20)) /dev/zero | gzip -1 >zeros.gz
mkdir -p big && head -c $((100 << 20)) /dev/zero >big/zero && tar -C big -cf - . | gzip -1 >rootfs.tar.gz
bounded() { (ulimit -f $((32 << 10)); "$IMGFS" load "$1"); }
expect_fail "gzip of zeros: refused as not a tar, within the size bound" "zeros.gz: not a tar archive" bounded zeros.gz
expect_fail "gzip of a rootfs tarball: refused by its member names" "rootfs.tar.gz: not a docker-archive or OCI archive \(a member named \"./zero\"\)" bounded rootfs.tar.gz
# An archive-looking tar whose layer is a zstd bomb (300 MiB of zeros in ~10 KB): the
# ratio cap (1100:1 + 64 MiB) stops it near 74 MiB, under a 128 MiB file-size limit.
python3 - <<'EOF' | zstd -q -3 -c >bomb.tar.zst
import io, sys, tarfile
t = tarfile.open(fileobj=sys.stdout.buffer, mode='w|', format=tarfile.PAX_FORMAT)
m = b'[{"Config":"c.json","RepoTags":["b:1"],"Layers":["' + b'a' * 64 + b'/layer.tar"]}]'
i = tarfile.TarInfo('manifest.json'); i.size = len(m); t.addfile(i, io.BytesIO(m))
i = tarfile.TarInfo('a' * 64 + '/layer.tar'); i.size = 300 << 20
class Zeros(io.RawIOBase):
    def __init__(self, n): self.n = n
    def readable(self): return True
    def readinto(self, b):
        k = min(len(b), self.n); b[:k] = bytes(k); self.n -= k; return k
t.addfile(i, io.BufferedReader(Zeros(i.size), 1 << 20))
t.close()
EOF
bomb_bounded() { (ulimit -f $((128 << 10)); "$IMGFS" load "$1"); }
expect_fail "a zstd bomb inside an archive: refused by the ratio cap" "bomb.tar.zst: inflates to more than 1100 times" bomb_bounded bomb.tar.zst
check "nothing is left in ingest/" test -z "$(ls -A "$ROOT/ingest")"

# ---- 13.11: names are quoted ------------------------------------------------------
python3 - <<'EOF'
import io, tarfile
names = ['plain', 'a\nb', 'tab\there', 'esc\x1b[31mred', 'back\\slash', 'sp ace', 'caf\xe9'.encode('latin-1').decode('utf-8', 'surrogateescape')]
with open('names.tar', 'wb') as f:
    t = tarfile.open(fileobj=f, mode='w', format=tarfile.PAX_FORMAT, encoding='utf-8', errors='surrogateescape')
    for n in names:
        i = tarfile.TarInfo(n); i.size = 1; t.addfile(i, io.BytesIO(b'x'))
    i = tarfile.TarInfo('link'); i.type = tarfile.SYMTYPE; i.linkname = 'to\nthere'; t.addfile(i)
    t.close()
EOF
"$IMGFS" import names.tar names:1 >/dev/null
"$IMGFS" ls names:1 / >ls.out
printf '%s\n' 'a\nb' 'back\\slash' "$(printf 'caf\351')" 'esc\033[31mred' link plain 'sp ace' 'tab\there' >ls.want
check "ls to a pipe: one line per name, control bytes and backslash C-escaped" cmp ls.out ls.want
"$IMGFS" ls -l names:1 /link >lsl.out
check "ls -l escapes a symlink target too" grep -q -- '-> to\\nthere$' lsl.out
script -qec "$IMGFS ls names:1 /" /dev/null | tr -d '\r' >tty.out
cat >tty.want <<'EOF'
'a'$'\n''b'
'back\slash'
'caf'$'\351'
'esc'$'\033''[31mred'
link
plain
'sp ace'
'tab'$'\t''here'
EOF
check "ls on a terminal: shell-escape quoting, as GNU ls" cmp tty.out tty.want
check "ls on a terminal: no raw escape byte" bash -c "! grep -q \$'\\x1b' tty.out"
"$IMGFS" ls -R --format tsv names:1 / >tsv.out
tsv_ok() {
  python3 - "$@" <<'EOF'
import codecs, sys
lines = open('tsv.out', 'rb').read().split(b'\n')[:-1]
assert len(lines) == 8, len(lines)
names = set()
for l in lines:
    f = l.split(b'\t')
    assert len(f) == 13, f
    names.add(codecs.escape_decode(f[12])[0])
    if f[0] == b'l':
        assert codecs.escape_decode(f[9])[0] == b'to\nthere', f[9]
want = {b'plain', b'a\nb', b'tab\there', b'esc\x1b[31mred', b'back\\slash', b'sp ace', b'caf\xe9', b'link'}
assert names == want, names
EOF
}
check "tsv: 13 fields per line, names and targets decode back to their bytes" tsv_ok

# ---- 13.5: trees 20,000 and 80,000 directories deep --------------------------------
# Symlink targets stay under PATH_MAX: s1 → a/…/a (2,000 levels), s1/s2 → 2,000 more,
# … up to 40 links (the most a path may cross), then a file at the bottom. ls -R
# writes every directory's path (output quadratic in depth: 6.4 GB at 80,000 levels),
# so ls -R runs on the 20,000-level tree with a 1 MiB stack (the recursive ls of
# before crashed there, and at 50,000+ levels with the default 8 MiB); the merge,
# verify and cat run at 80,000. IMGFS_DEEP_FULL=1 also lists and walks (find on the
# mount) the 80,000-level tree (minutes on a loaded machine).
deep_tar() {  # deep_tar FILE LINKS
  python3 - "$@" <<'EOF'
import io, sys, tarfile
out, K, L = sys.argv[1], int(sys.argv[2]), 2000
deep = '/'.join(['a'] * L)
with open(out, 'wb') as f:
    t = tarfile.open(fileobj=f, mode='w', format=tarfile.PAX_FORMAT)
    for k in range(1, K + 1):
        i = tarfile.TarInfo('/'.join('s%d' % j for j in range(1, k + 1)))
        i.type = tarfile.SYMTYPE; i.linkname = deep; t.addfile(i)
    i = tarfile.TarInfo('/'.join('s%d' % j for j in range(1, K + 1)) + '/bottom'); i.size = 5
    t.addfile(i, io.BytesIO(b'deep\n'))
    t.close()
EOF
}
deep_tar deep80.tar 40 && deep_tar deep20.tar 10
check "import of an 80,000-level tree (merge, tree encode)" "$IMGFS" import deep80.tar deep:80
check "import of a 20,000-level tree" "$IMGFS" import deep20.tar deep:20
check "verify decodes both" "$IMGFS" verify
s40=$(seq -s/ -f 's%g' 1 40)
check "cat through 40 symlinks to the bottom, 80,001 levels down" test "$("$IMGFS" cat deep:80 "$s40/bottom")" = deep
check "ls of the bottom directory" test "$("$IMGFS" ls deep:80 "$s40")" = bottom
ls_r_20k() { (ulimit -s 1024; "$IMGFS" ls -R deep:20 / >/dev/null); }
check "ls -R of 20,000 levels with a 1 MiB stack" ls_r_20k
tsv_20k() { (ulimit -s 1024; "$IMGFS" ls -R --format tsv deep:20 / | wc -l); }
check "ls -R --format tsv of 20,000 levels lists all 20,011 entries" test "$(tsv_20k)" = 20011
if [[ -e /dev/fuse ]] && command -v fusermount3 >/dev/null; then
  MD=$T/mntdeep
  mount_store "$MD"
  check "find on the mount walks the 20,000-level tree (20,012 names)" test "$(find "$MD/deep/20" -printf . | wc -c)" = 20012
  check "and finds the bottom at depth 20,001" test "$(find "$MD/deep/20" -name bottom -printf %d)" = 20001
  if [[ ${IMGFS_DEEP_FULL:-0} == 1 ]]; then
    check "find on the mount walks the 80,000-level tree" test "$(find "$MD/deep/80" -printf . | wc -c)" = 80042
    ls_r_80k() { (ulimit -s 8192; "$IMGFS" ls -R deep:80 / >/dev/null); }
    check "ls -R of 80,000 levels with an 8 MiB stack" ls_r_80k
  fi
  "$IMGFS" umount "$MD" && wait_unmounted "$MD"
fi
# ---- 13.2: the store is private to its owner --------------------------------------
mkdir -p rootfs/etc rootfs/pub && printf 'TOPSECRET\n' >rootfs/etc/shadow && chmod 0600 rootfs/etc/shadow
printf 'public\n' >rootfs/pub/readme
tar -C rootfs --owner=0 --group=0 -cf secret.tar . && "$IMGFS" import secret.tar secret:1 >/dev/null
mode() { stat -c %a "$1"; }
check "store root is 0700" test "$(mode "$ROOT")" = 700
check "blobs/, blobs/sha256, ingest/, unpacked/ are 0700" test "$(stat -c %a "$ROOT/blobs" "$ROOT/blobs/sha256" "$ROOT/ingest" "$ROOT/unpacked" | sort -u)" = 700
check "blob files are 0400" test "$(find "$ROOT/blobs/sha256" -type f -printf '%m\n' | sort -u)" = 400
"$IMGFS" cat secret:1 /pub/readme >/dev/null  # leaves an unpacked copy? (plain tar: no)
chmod 0711 "$ROOT" && chmod 0755 "$ROOT/blobs" "$ROOT/blobs/sha256" "$ROOT/ingest"
"$IMGFS" images >/dev/null
check "an old store (0711 root, 0755 dirs) is tightened when opened" test "$(stat -c %a "$ROOT" "$ROOT/blobs" "$ROOT/blobs/sha256" "$ROOT/ingest" | sort -u)" = 700
if [[ $(id -u) -eq 0 ]] && command -v useradd >/dev/null && command -v runuser >/dev/null; then
  user=imgfs-lh-$$
  useradd --no-create-home --shell /bin/bash "$user"
  drop_user() { userdel "$user" 2>/dev/null || true; }
  on_exit drop_user
  as_user() { runuser -u "$user" -- "$@"; }
  no_blob_readable() {
    local b
    for b in "$ROOT"/blobs/sha256/*; do as_user cat "$b" >/dev/null 2>&1 && return 1; done
    ! as_user grep -rqs TOPSECRET "$ROOT" && ! as_user ls "$ROOT" >/dev/null 2>&1
  }
  check "another user can read no blob and not even list the store" no_blob_readable
  M=$T/mnt && mkdir -p "$M"
  if [[ -e /dev/fuse ]] && command -v fusermount3 >/dev/null; then
    mount_store "$M" -o allow_other
    check "with allow_other, another user reads a public file through the mount" test "$(as_user cat "$M/secret/1/pub/readme")" = public
    check "and is refused the 0600 file (default_permissions)" bash -c "! runuser -u $user -- cat $M/secret/1/etc/shadow 2>/dev/null"
    "$IMGFS" umount "$M" && wait_unmounted "$M"
  else
    echo "# no FUSE: the allow_other checks did not run (not counted)"
  fi
  drop_user
  check "the test user is removed" bash -c "! id $user >/dev/null 2>&1"
else
  echo "# not root: the other-user checks did not run (not counted)"
fi

# ---- 13.6: prune while cat and mount reads unpack ---------------------------------
# Two one-layer gzip images, 40 files of 256 KiB each: every unpack inflates 10 MiB and
# hashes it, and `imgfs prune` runs in a loop meanwhile. Before the fix prune removed
# temp files of unpacks in flight (cat: "rename …: No such file or directory"; mount:
# ENOENT from read(2)).
for img in pa pb; do
  mkdir -p "$img/d" && for i in $(seq 1 40); do head -c 262144 /dev/urandom >"$img/d/f$i"; done
  tar -C "$img" -czf "$img.tar.gz" . && "$IMGFS" import "$img.tar.gz" "$img:1" >/dev/null
done
pruner() { while [[ ! -e stop ]]; do "$IMGFS" prune >/dev/null 2>>prune.err || echo x >>prune.fail; done; }
catter() {  # catter N: 15 cats of image pa/pb alternately, each checked against its source
  local i img f fails=0
  for i in $(seq 1 15); do
    img=$([[ $(((i + $1) % 2)) -eq 0 ]] && echo pa || echo pb); f=f$(((i * 7 + $1) % 40 + 1))
    "$IMGFS" cat "$img:1" "/d/$f" 2>>"cat.err.$1" | cmp -s - "$img/d/$f" || fails=$((fails + 1))
  done
  echo "$fails" >"cat.fails.$1"
}
rm -f stop
pruner & ppid_=$!
CLEANUP_PIDS="${CLEANUP_PIDS:-} $ppid_"
cpids=""
for n in 1 2 3 4; do catter $n & cpids="$cpids $!"; done
for p in $cpids; do wait "$p" || true; done
cat_fails=$(cat cat.fails.* | awk '{ s += $1 } END { print s + 0 }')
check "60 imgfs cat during repeated prunes: 0 failed (got $cat_fails)" test "$cat_fails" = 0
if [[ -e /dev/fuse ]] && command -v fusermount3 >/dev/null; then
  M2=$T/mnt2 && mkdir -p "$M2"
  # cache_size=1: every switch between the two layers evicts the other, so reads keep
  # unpacking anew while prune runs.
  mount_store "$M2" -o cache_size=1
  mount_reads() {
    local i bad=0
    for i in $(seq 1 40); do
      cmp -s "$M2/pa/1/d/f$i" pa/d/f$i || bad=$((bad + 1))
      cmp -s "$M2/pb/1/d/f$i" pb/d/f$i || bad=$((bad + 1))
    done
    echo "$bad"
  }
  bad=$(mount_reads)
  check "80 mount reads during repeated prunes: 0 failed (got $bad)" test "$bad" = 0
  check "mount.log has no read error" bash -c "! grep -q 'read inode' '$ROOT/mount.log'"
  "$IMGFS" umount "$M2" && wait_unmounted "$M2"
fi
touch stop && wait "$ppid_"
check "every prune succeeded" test ! -e prune.fail

# ---- 13.9: kill -9 of the mount daemon --------------------------------------------
if [[ -e /dev/fuse ]] && command -v fusermount3 >/dev/null; then
  M3=$T/mnt3 && mkdir -p "$M3"
  CLEANUP_MOUNTS="${CLEANUP_MOUNTS:-} $M3"
  # statfs, not stat: the kernel answers stat from cached attributes for a while.
  dead() { local e; e=$(stat -f "$M3" 2>&1) && return 1; [[ $e == *"not connected"* ]]; }
  "$IMGFS" mount -f "$M3" 2>/dev/null & d=$!
  wait_mounted "$M3"
  kill -9 "$d"; wait "$d" 2>/dev/null || true
  check "kill -9 leaves a dead endpoint (ENOTCONN)" dead
  rc=0; "$IMGFS" mount "$M3" 2>mount.err || rc=$?
  check "mount on the dead endpoint succeeds" test "$rc" = 0
  check "and says it cleared it" grep -q "clearing a dead FUSE mount" mount.err
  check "the new mount serves files" test "$(cat "$M3/secret/1/pub/readme" 2>/dev/null)" = public
  "$IMGFS" umount "$M3" && wait_unmounted "$M3"
  "$IMGFS" mount -f "$M3" 2>/dev/null & d=$!
  wait_mounted "$M3" && cat "$M3/secret/1/pub/readme" >/dev/null
  kill -9 "$d"; wait "$d" 2>/dev/null || true
  check "killed again: dead at once (attributes were fresh)" dead
  rc=0; "$IMGFS" umount "$M3" 2>umount.err || rc=$?
  check "umount clears a dead endpoint" test "$rc" = 0
  check "and says so" grep -q "daemon is gone" umount.err
  check "the directory is a plain directory again" bash -c "stat '$M3' >/dev/null && ! grep -q ' $M3 fuse' /proc/mounts"
else
  echo "# no FUSE: the kill -9 checks did not run (not counted)"
fi

check "verify is clean at the end" "$IMGFS" verify
finish
