#!/usr/bin/env bash
# The FUSE adapter's reply paths on real mounts: -o open=daemon (open, opendir and
# release go to the daemon), a directory far larger than one readdir buffer (listed
# completely through readdirplus and readdir), xattrs larger than the caller's buffer
# (ERANGE; a size query answers the size), -o cache_size= bounding unpacked/, and
# -o spin=0 (libfuse's loop) answering as the default (fs/fuse_loop.h's) does.
source "$(dirname "$0")/lib.sh"
require_fuse
need python3
cd "$T"

# An image: 5,000 files with 200-byte names in one directory, a file with a 3,000-byte
# xattr and 40 xattr names, and some content. Made with python's tarfile (PAX xattrs).
python3 - <<'EOF'
import io, os, tarfile
rnd = os.urandom(1 << 20)
with tarfile.open('big.tar.gz', 'w:gz', format=tarfile.PAX_FORMAT) as t:
    def add(name, data=b'', pax=None, kind=tarfile.REGTYPE):
        i = tarfile.TarInfo(name); i.type = kind; i.mode = 0o755 if kind == tarfile.DIRTYPE else 0o644
        i.size = len(data) if kind == tarfile.REGTYPE else 0
        if pax: i.pax_headers = pax
        t.addfile(i, io.BytesIO(data) if kind == tarfile.REGTYPE else None)
    add('many', kind=tarfile.DIRTYPE)
    names = ['%04d-' % k + 'x' * 195 for k in range(5000)]
    for n in names:
        add('many/' + n, n[:4].encode())
    open('names.want', 'w').write('\n'.join(sorted(names)) + '\n')
    pax = {'SCHILY.xattr.user.big': 'v' * 3000}
    for k in range(40):
        pax['SCHILY.xattr.user.attribute-name-%02d' % k] = 'small'
    add('x', b'xattrs', pax)
    add('data/random.bin', rnd)
    add('data/text', b'hello\n' * 1000)
    open('random.bin', 'wb').write(rnd)
EOF
"$IMGFS" import big.tar.gz big:v1 >/dev/null

LOG=$T/debug.log
MP=$T/mnt-daemon
mkdir -p "$MP" "$T/mnt"
CLEANUP_MOUNTS="$MP"
"$IMGFS" mount -o debug,open=daemon "$MP" >"$LOG" 2>&1 &
CLEANUP_PIDS="${CLEANUP_PIDS:-} $!"
wait_mounted "$MP"
mount_store "$T/mnt"
D=$MP/big/v1
K=$T/mnt/big/v1

# open=daemon: files and directories opened by the daemon, released, same bytes.
check "open=daemon: a file reads the same as the source" cmp "$D/data/random.bin" random.bin
check "  and the same as through a default (open=kernel) mount" cmp "$D/data/random.bin" "$K/data/random.bin"
check "  a second file too" cmp "$D/data/text" "$K/data/text"
check "  a directory lists the same" test "$(ls -a "$D/data")" = "$(ls -a "$K/data")"
count_op() { grep -c "opcode: $1 " "$LOG" || true; }
check "  (open, opendir, release and releasedir went to the daemon)" \
  bash -c "[[ $(count_op OPEN) -ge 2 && $(count_op OPENDIR) -ge 1 && $(count_op RELEASE) -ge 2 && $(count_op RELEASEDIR) -ge 1 ]]"

# -o spin=0: libfuse's multithreaded loop instead of fs/fuse_loop.h's (the default: one
# thread answering, a pool for what waits): the same answers; mount.log names the loop.
# A value that is not a number of microseconds from 0 to 10000 is refused.
check "a default mount runs fs/fuse_loop.h's loop, polling 50 us (mount.log)" \
  grep -q "on $T/mnt (session loop: one thread polling 50 us" "$IMGFS_ROOT/mount.log"
mount_store "$T/mnt-libfuse" -o spin=0
M0=$T/mnt-libfuse/big/v1
check "-o spin=0 runs libfuse's loop (mount.log)" \
  grep -q "on $T/mnt-libfuse (session loop: libfuse's multithreaded)" "$IMGFS_ROOT/mount.log"
check "  a file reads the same as the source" cmp "$M0/data/random.bin" random.bin
check "  a 5,000-name directory lists the same" \
  bash -c "ls -f '$M0/many' | grep -v '^\.\.\?\$' | sort | cmp - names.want"
check "  an xattr reads the same" \
  test "$(python3 -c 'import os,sys; print(len(os.getxattr(sys.argv[1], "user.big")))' "$M0/x")" = 3000
"$IMGFS" umount "$T/mnt-libfuse"
mkdir -p "$T/mnt-bad"
for v in x -1 +5 10001 ''; do
  check "-o spin=$v is refused with a message" \
    bash -c "! '$IMGFS' mount -o 'spin=$v' '$T/mnt-bad' 2>err.txt && grep -q 'spin is a number of microseconds' err.txt"
done

# A directory of 5,000 long names: many readdir buffers.
before_rd=$(count_op READDIR); before_rdp=$(count_op READDIRPLUS)
ls -f "$D/many" | grep -v '^\.\.\?$' | sort >names.ls
check "readdir: ls -f lists all 5,000 names, exactly" cmp names.ls names.want
rd=$(( $(count_op READDIR) - before_rd )); rdp=$(( $(count_op READDIRPLUS) - before_rdp ))
check "  over many buffers ($rdp readdirplus + $rd readdir requests)" test $((rd + rdp)) -ge 10
check "  both readdirplus and plain readdir were used" bash -c "[[ $rdp -ge 1 && $rd -ge 1 ]]"
scandir() { python3 -c 'import os,sys; n=sorted(e.name for e in os.scandir(sys.argv[1])); sys.stdout.write("\n".join(n) + "\n")' "$1"; }
check "os.scandir through open=kernel lists them all, exactly" cmp <(scandir "$K/many") names.want
check "  and stat of every entry agrees (readdirplus attributes)" python3 -c '
import os, sys
d = sys.argv[1]
bad = [e.name for e in os.scandir(d) if e.stat().st_size != 4 or not e.is_file()]
sys.exit(1 if bad else 0)' "$K/many"
check "  a file read back names itself" test "$(cat "$K/many/4999-$(printf 'x%.0s' $(seq 195))")" = 4999

# xattrs larger than the caller's buffer.
xattr_py='
import ctypes, errno, sys
libc = ctypes.CDLL(None, use_errno=True)
p, mode = sys.argv[1].encode(), sys.argv[2]
def call(size):  # (return value, errno, bytes) of getxattr(user.big) or listxattr
    buf = ctypes.create_string_buffer(max(size, 1))
    ctypes.set_errno(0)
    if mode == "get":
        n = libc.getxattr(p, b"user.big", buf if size else None, ctypes.c_size_t(size))
    else:
        n = libc.listxattr(p, buf if size else None, ctypes.c_size_t(size))
    return n, ctypes.get_errno(), buf.raw[:max(n, 0)]
names = [b"user.big"] + [b"user.attribute-name-%02d" % i for i in range(40)]
want = b"v" * 3000 if mode == "get" else None
full, _, _ = call(0)
n_small, e_small, _ = call(100)
n_short, e_short, _ = call(full - 1)
n_full, _, data = call(full)
value_ok = data == want if mode == "get" else sorted(data.split(b"\0")[:-1]) == sorted(names)
want_len = 3000 if mode == "get" else sum(len(x) + 1 for x in names)
print(mode, "size", full, "small", n_small, e_small, "short", n_short, e_short, "full", n_full)
sys.exit(0 if (full == want_len and n_small == -1 and e_small == errno.ERANGE and n_short == -1 and
               e_short == errno.ERANGE and n_full == full and value_ok) else 1)'
for m in "$D" "$K"; do
  check "getxattr: size query answers 3000, a short buffer gets ERANGE, the right one the value ($(basename "$(dirname "$(dirname "$m")")"))" \
    python3 -c "$xattr_py" "$m/x" get
  check "listxattr: the same for the name list" python3 -c "$xattr_py" "$m/x" list
done

fusermount3 -u "$MP" && wait_unmounted "$MP"
fusermount3 -u "$T/mnt" && wait_unmounted "$T/mnt"

# -o cache_size: four one-layer gzip images of ~1 MiB each, a limit of 2.5 MiB.
export IMGFS_ROOT=$T/store-cache
ROOT=$IMGFS_ROOT
for k in 1 2 3 4; do
  mkdir -p "l$k" && head -c 1000000 /dev/urandom >"l$k/f$k"
  tar -C "l$k" -czf "l$k.tgz" .
  "$IMGFS" import "l$k.tgz" "c$k:v1" >/dev/null
done
LIMIT=$((2560 * 1024))
mount_store "$T/mc" -o cache_size=2560K,whole_layers  # the whole-layer path (no seek indexes)
unpacked_bytes() { find "$ROOT/unpacked" -name '*.tar' -printf '%s\n' 2>/dev/null | awk '{s += $1} END {print s + 0}'; }
within() {
  local b; b=$(unpacked_bytes)
  [[ $b -le $LIMIT ]] || { echo "unpacked/ holds $b bytes > $LIMIT"; return 1; }
}
right=1
for round in 1 2; do
  for k in 1 2 3 4; do
    [[ $round -eq 1 ]] || "$IMGFS" tag "c$k:v1" "c$k:r$round"  # a new name: new inodes, no page cache
    tag=v1; [[ $round -eq 1 ]] || tag=r$round
    cmp -s "$T/mc/c$k/$tag/f$k" "l$k/f$k" || { echo "c$k:$tag differs"; right=0; }
    within || right=0
  done
done
check "cache_size=2560K: every read is right, unpacked/ stays within the bound after each" test $right = 1
check "  (four layers read, at most two copies kept: $(ls "$ROOT/unpacked" | wc -l) left)" \
  bash -c "[[ \$(ls '$ROOT/unpacked' | wc -l) -le 2 ]] && grep -q . <<<\"\$(ls '$ROOT/unpacked')\""
# The default path (seek indexes): the same reads make no uncompressed copy at all.
fusermount3 -u "$T/mc"
wait_unmounted "$T/mc"
rm -rf "$ROOT/unpacked"
mount_store "$T/mc" -o cache_size=2560K
right=1
for k in 1 2 3 4; do cmp -s "$T/mc/c$k/v1/f$k" "l$k/f$k" || right=0; done
check "default mount: every read right through the seek indexes" test $right = 1
check "  and unpacked/ stays empty" bash -c "[[ -z \$(ls -A '$ROOT/unpacked' 2>/dev/null) ]]"
finish
