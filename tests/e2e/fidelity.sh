#!/usr/bin/env bash
# What docker accepts, byte for byte (docs/layer-rules.md), through the real command and
# a real mount, compared with GNU tar, umoci and the kernel's overlayfs where they agree
# with docker: ".." that stays inside, names as bytes (NFC/NFD twins, Latin-1, pax
# hdrcharset=BINARY, GNU long names, ustar prefixes), tar order inside a layer,
# whiteouts under a lower layer's symlink, negative fractional mtimes, empty layers, and
# refused NULs and overlong symlink targets.
source "$(dirname "$0")/lib.sh"
need python3 umoci tar gzip zstd fusermount3
cd "$T"
TOOLS=$HERE/fidelity_tools.py
layout() { python3 "$TOOLS" layout "$@"; }
tree() { python3 "$TOOLS" tree "$1"; }

mkdir -p mnt
"$IMGFS" mount mnt >/dev/null 2>mount.err || { cat mount.err; echo "cannot mount (this suite needs FUSE and root)"; exit 1; }
CLEANUP_MOUNTS="$T/mnt"
view() { echo "$T/mnt/fid/$1/latest"; }

# Layers written with Python's tarfile, which keeps names as bytes (surrogateescape).
python3 - <<'PY'
import io, tarfile
def entry(t, name, data=b"", **kw):
    ti = tarfile.TarInfo(name)
    for k, v in kw.items():
        setattr(ti, k, v)
    if ti.type == tarfile.REGTYPE:
        ti.size = len(data)
    t.addfile(ti, io.BytesIO(data) if data else None)
def layer(path, fmt, entries, **kw):
    with tarfile.open(path, "w", format=fmt, encoding="utf-8", errors="surrogateescape", **kw) as t:
        for e in entries:
            entry(t, *e[:2], **(e[2] if len(e) > 2 else {}))
nfc, nfd = "caf\u00e9", "cafe\u0301"
latin1 = b"caf\xe9".decode("utf-8", "surrogateescape")
longdir = "d" * 120 + "/" + nfd
P, G, U = tarfile.PAX_FORMAT, tarfile.GNU_FORMAT, tarfile.USTAR_FORMAT
layer("names-pax.tar", P, [(nfc, b"nfc\n"), (nfd, b"nfd\n"), (latin1 + "-bin", b"latin1\n"),
      ("to-nfd", b"", dict(type=tarfile.SYMTYPE, linkname=nfd)),
      ("hard-nfd", b"", dict(type=tarfile.LNKTYPE, linkname=nfd)),
      ("neg", b"n", dict(mtime=-1.5)), ("neg2", b"n", dict(mtime=-0.25)),
      ("late", b"l", dict(mtime=4102444800.5))])
layer("names-gnu.tar", G, [(longdir + "-gnu", b"gnu\n"),
      (latin1 + "-gnu-link", b"", dict(type=tarfile.SYMTYPE, linkname=longdir + "-target"))])
layer("names-ustar.tar", U, [("p" * 100 + "/" + nfd + "-ustar", b"ustar\n")])
# ".." that stays inside the root.
layer("dotdot.tar", P, [("./data/../data/f.txt", b"inside\n"), ("/../rooted", b"r\n"),
      ("link", b"", dict(type=tarfile.LNKTYPE, linkname="./data/x/../f.txt"))])
layer("escape.tar", P, [("ok", b"o"), ("a/../../escaped", b"e")])
# Tar order: a hard link to a lower file, then (later in the same tar) its whiteout.
layer("lower.tar", P, [("bin/tool", b"tool content\n"), ("usr/lib/libc.so", b"c"),
      ("usr/lib/x", b"x"), ("lib", b"", dict(type=tarfile.SYMTYPE, linkname="usr/lib"))])
layer("order.tar", P, [("usr/bin/tool", b"", dict(type=tarfile.LNKTYPE, linkname="bin/tool")),
      ("bin/.wh.tool", b"")])
# Whiteout and opaque marker under the lower layer's symlink lib -> usr/lib.
layer("wh-symlink.tar", P, [("lib/.wh.x", b"")])
layer("opq-symlink.tar", P, [("lib/.wh..wh..opq", b"")])
# Refused: a NUL inside a pax path; a symlink target longer than PATH_MAX.
buf = io.BytesIO()
with tarfile.open(fileobj=buf, mode="w", format=P) as t:
    ti = tarfile.TarInfo("x"); ti.pax_headers = {"path": "a\x00b"}; t.addfile(ti)
open("nul.tar", "wb").write(buf.getvalue())
layer("longlink.tar", P, [("s", b"", dict(type=tarfile.SYMTYPE, linkname="a" * 4096))])
layer("one-file.tar", P, [("hello", b"hello\n")])
PY

# GNU tar's reading of every header kind is the reference for names and mtimes.
load_one() {  # load_one NAME BLOB...: an image fid/NAME:latest
  rm -rf "L-$1" && layout "L-$1" latest "${@:2}" && "$IMGFS" load --name "fid/$1" "L-$1" >/dev/null
}
for n in names-pax names-gnu names-ustar; do
  mkdir "ref-$n" && tar -C "ref-$n" -xf "$n.tar" 2>/dev/null
  check "$n: loads" load_one "$n" "$n.tar"
  check "$n: the mount matches GNU tar byte for byte" \
    diff <(tree "ref-$n") <(tree "$(view "$n")")
done
check "NFC and NFD twins are two files" \
  test "$(cat "$(view names-pax)/$(printf 'caf\xc3\xa9')")-$(cat "$(view names-pax)/$(printf 'cafe\xcc\x81')")" = nfc-nfd
check "the symlink to the NFD name reads the NFD file" \
  test "$(cat "$(view names-pax)/to-nfd")" = nfd
check "mtime -1.5 is tv_sec -2, tv_nsec 500000000" \
  test "$(python3 -c 'import os,sys; s=os.lstat(sys.argv[1]); print(int(s.st_mtime_ns))' "$(view names-pax)/neg")" = -1500000000
check "mtime -1.5 as GNU tar extracts it" \
  test "$(stat -c %.9Y "$(view names-pax)/neg")" = "$(stat -c %.9Y ref-names-pax/neg)"
check "imgfs ls shows the Latin-1 name as bytes" \
  bash -c '"$0" ls fid/names-pax / | grep -q "$(printf "caf\xe9-bin")"' "$IMGFS"

# ".." that stays inside is cleaned; one that leaves is refused.
check "dotdot: loads" load_one dotdot dotdot.tar
check "dotdot: ./data/../data/f.txt is data/f.txt" \
  test "$("$IMGFS" cat fid/dotdot /data/f.txt)" = inside
check "dotdot: /../rooted stays at the root" test "$("$IMGFS" cat fid/dotdot /rooted)" = r
check "dotdot: the hard link through .. reaches data/f.txt" \
  test "$(cat "$(view dotdot)/link")" = inside
layout L-escape latest escape.tar
expect_fail "a name that leaves the root is refused" 'escapes the image root' \
  "$IMGFS" load --name fid/escape L-escape

# Tar order inside a layer, compared with umoci (which applies entries in tar order).
check "order: loads" load_one order lower.tar order.tar
umoci unpack --image L-order:latest ref-order >/dev/null 2>&1
check "order: the hard link keeps the content, the whiteout removes bin/tool" \
  test "$(cat "$(view order)/usr/bin/tool")" = "tool content" -a ! -e "$(view order)/bin/tool"
check "order: same tree as umoci unpack" diff <(tree ref-order/rootfs) <(tree "$(view order)")

# Whiteouts under a lower symlink: compared with the kernel's overlayfs of the layers.
overlay_of() {  # overlay_of NAME LOWER UPPER: mount the extracted layers at ov-NAME
  mkdir -p "ov-$1"/{lower,upper,merged}
  tar -C "ov-$1/lower" -xf "$2"
  python3 - "$3" "ov-$1/upper" <<'PY'
import os, sys, tarfile
with tarfile.open(sys.argv[1]) as t:
    for m in t.getmembers():
        d, b = os.path.split(m.name)
        os.makedirs(os.path.join(sys.argv[2], d), exist_ok=True)
        if b == ".wh..wh..opq":
            os.setxattr(os.path.join(sys.argv[2], d), "trusted.overlay.opaque", b"y")
        elif b.startswith(".wh."):
            os.mknod(os.path.join(sys.argv[2], d, b[4:]), 0o600 | 0o020000, 0)
        else:
            t.extract(m, sys.argv[2])
PY
  mount -t overlay overlay -o "lowerdir=$T/ov-$1/upper:$T/ov-$1/lower" "$T/ov-$1/merged"
}
# Kernel overlay mounts are not FUSE: unmount them before lib.sh's cleanup runs.
trap 'rc=$?; set +e; for m in "$T"/ov-*/merged; do mountpoint -q "$m" && umount -l "$m"; done; (exit $rc); cleanup' EXIT
for n in wh-symlink opq-symlink; do
  check "$n: loads" load_one "$n" lower.tar "$n.tar"
  if overlay_of "$n" lower.tar "$n.tar" 2>ov.err; then
    check "$n: same tree as the kernel's overlayfs" diff <(tree "ov-$n/merged") <(tree "$(view "$n")")
    umount "$T/ov-$n/merged"
  else
    not_ok "$n: overlayfs mount failed: $(cat ov.err)"
  fi
  check "$n: usr/lib is whole" test -e "$(view "$n")/usr/lib/x" -a -e "$(view "$n")/usr/lib/libc.so"
done

# Empty layers: a 0-byte blob, gzip and zstd of nothing, a tar of only the end blocks.
: >empty.bin
gzip -c </dev/null >empty.gz
zstd -q -c </dev/null >empty.zst
head -c 1024 /dev/zero >zero-blocks.tar
check "empty layers: load" load_one empty empty.bin one-file.tar empty.gz empty.zst zero-blocks.tar
check "empty layers: the real layer's file is there" test "$("$IMGFS" cat fid/empty /hello)" = hello
# The diff_id check still applies to an empty layer.
rm -rf L-baddiff && layout L-baddiff latest empty.gz
python3 - L-baddiff <<'PY'
import hashlib, json, os, sys
d = sys.argv[1]
def path(dg): return os.path.join(d, "blobs", "sha256", dg.split(":")[1])
idx = json.load(open(os.path.join(d, "index.json")))
m = json.load(open(path(idx["manifests"][0]["digest"])))
c = json.load(open(path(m["config"]["digest"])))
c["rootfs"]["diff_ids"] = ["sha256:" + "0" * 64]
data = json.dumps(c).encode()
h = hashlib.sha256(data).hexdigest()
open(os.path.join(d, "blobs", "sha256", h), "wb").write(data)
m["config"] = {"mediaType": m["config"]["mediaType"], "digest": "sha256:" + h, "size": len(data)}
md = json.dumps(m).encode()
mh = hashlib.sha256(md).hexdigest()
open(os.path.join(d, "blobs", "sha256", mh), "wb").write(md)
idx["manifests"][0].update(digest="sha256:" + mh, size=len(md))
json.dump(idx, open(os.path.join(d, "index.json"), "w"))
PY
expect_fail "an empty layer with the wrong diff_id is refused" 'diff_id|uncompressed' \
  "$IMGFS" load --name fid/baddiff L-baddiff

# Refused with one clear line.
layout L-nul latest nul.tar
expect_fail "a NUL inside a pax path is refused" 'NUL' "$IMGFS" load --name fid/nul L-nul
layout L-longlink latest longlink.tar
expect_fail "a symlink target longer than PATH_MAX is refused" 'PATH_MAX' \
  "$IMGFS" load --name fid/longlink L-longlink

"$IMGFS" umount mnt >/dev/null
finish
