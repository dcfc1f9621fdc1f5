#!/usr/bin/env bash
# imgfs commit, imgfs diff and the per-layer views, on a real kernel overlayfs whose
# lowerdir is an image directory of a running imgfs mount: changes made in the merged
# directory (a modified file, chmod, deleted file and directory, an opaque directory,
# a hard link to a lower file, xattrs, a FIFO, a device, a symlink, new owners) are
# committed from the upper directory; the new image, as the same mount shows it, must
# equal the overlay's merged view, and `umoci unpack` of the image (exported as an OCI
# layout by hand from the store's blobs) must equal it too. `imgfs diff` must list
# exactly the changes made; /.layers/<diff_id>/ must equal the upper directory.
source "$(dirname "$0")/lib.sh"
require_fuse
need umoci python3 getfattr setfattr tar mount umount busybox runc
[[ $(id -u) -eq 0 ]] || { echo "not ok - needs root (kernel overlayfs, devices, trusted.* xattrs)"; exit 1; }
cd "$T"

# The base image, made with GNU tar and `imgfs import` (not with commit).
mkdir -p base/etc base/opt/app/sub base/del/deep base/data base/bin base/proc base/sys base/dev base/tmp
cp "$(command -v busybox)" base/bin/busybox && ln -s busybox base/bin/sh
printf 'hello\n' >base/etc/hello
printf 'motd\n' >base/etc/motd
printf 'bye\n' >base/etc/remove-me
printf 'old app\n' >base/opt/app/old
printf 'sub\n' >base/opt/app/sub/f
printf 'x\n' >base/del/deep/x
head -c 300000 /dev/urandom >base/data/big
printf 'keep\n' >base/data/keep
setfattr -n user.lower -v lower base/data/keep
touch -d '2001-02-03 04:05:06' base/etc/* base/data/* base/opt/app/old
tar --xattrs --xattrs-include='user.*' --numeric-owner -C base -cf base.tar .
"$IMGFS" import base.tar test/base:1 >/dev/null

M=$T/mnt
check "the store mounts" mount_store "$M"
LOWER=$M/test/base/1
[[ -f $LOWER/etc/hello ]] || { not_ok "the base image is not in the mount"; finish; exit 1; }

# overlay_on NAME EXTRA_OPTIONS: an overlay of the base image at $T/NAME/merged.
overlay_on() {
  mkdir -p "$T/$1/up" "$T/$1/work" "$T/$1/merged"
  # overlayfs splits lowerdir at ':' (a registry port in a name would need "\:").
  mount -t overlay overlay -o "lowerdir=${LOWER//:/\\:},upperdir=$T/$1/up,workdir=$T/$1/work,index=off,$2" "$T/$1/merged"
}
unmount_overlays() { local m; for m in "$T"/ov*/merged; do mountpoint -q "$m" && umount -l "$m"; done; return 0; }
on_exit unmount_overlays
check "an overlay mounts on the imgfs image directory" overlay_on ov "redirect_dir=off,metacopy=off"

# The changes: first by a container (runc, its root the merged directory), then by
# host tools in the merged directory.
O=$T/ov/merged
mkdir -p bundle && (cd bundle && runc spec) && python3 - "$O" <<'PY'
import json, sys
c = json.load(open('bundle/config.json'))
c['root'] = {'path': sys.argv[1], 'readonly': False}
c['process']['args'] = ['/bin/sh', '-c', 'echo changed >/etc/hello && rm /etc/remove-me && mkdir -p /var/log && echo from-runc >/var/log/runc.log && echo done']
c['process']['terminal'] = False
json.dump(c, open('bundle/config.json', 'w'))
PY
ctr=imgfs-commit-$$
check "a runc container changes the overlay" bash -c "timeout 60 runc run --bundle bundle $ctr | grep -qx done"
runc delete -f $ctr >/dev/null 2>&1 || true
setfattr -n user.added -v v1 "$O/etc/hello"
chmod 0600 "$O/etc/motd"
rm -r "$O/del"
rm -r "$O/opt/app" && mkdir "$O/opt/app" && printf 'new app\n' >"$O/opt/app/new"
ln "$O/data/big" "$O/data/big.link"
mkfifo "$O/run.fifo"
mknod "$O/dev/zero" c 1 5
ln -s ../etc/hello "$O/data/link"
printf 'owned\n' >"$O/data/owned" && chown 1234:5678 "$O/data/owned" && chmod 4751 "$O/data/owned"
touch -d '2010-01-01 00:00:00' "$O/data/owned"
# Directory nlink differs by design (overlayfs reports 1 for merged directories).
listing() { python3 "$HERE/tree.py" native "$1" | awk -F'\t' -v OFS='\t' '$2 == "d" { $8 = "-" } { print }'; }
listing "$O" >merged.list
# Without index=on (which needs file handles from the lower filesystem), overlayfs gives
# the two names of a hard link to a lower file different st_ino: the merged view's link
# groups are not comparable, so they are cut from the comparisons with it.
no_links() { cut -f1-12 "$1"; }
check "the overlay has an opaque directory in its upper dir" \
  bash -c "[[ \$(getfattr --absolute-names -n trusted.overlay.opaque --only-values '$T/ov/up/opt/app') == y ]]"
check "and whiteouts (0/0 character devices)" test "$(stat -c '%F %t:%T' "$T/ov/up/etc/remove-me")" = "character special file 0:0"
umount "$O"

id=$("$IMGFS" commit --base test/base:1 -m "my change" -c 'ENV X=1' -c 'CMD ["/bin/true"]' \
  "$T/ov/up" test/child:1) || { not_ok "imgfs commit failed"; finish; exit 1; }
ok "imgfs commit of the upper directory"
C=$M/test/child/1
check "the new image appears in the running mount" test -f "$C/opt/app/new"
listing "$C" >child.list
check "the committed image, mounted, equals the overlay's merged view" diff -u <(no_links merged.list) <(no_links child.list)
check "file contents equal" cmp "$T/ov/up/data/big" "$C/data/big.link"
check "hard links stay links" test "$(stat -c %i "$C/data/big")" = "$(stat -c %i "$C/data/big.link")"
check "no overlay xattr leaks into the image" bash -c "! getfattr -R -h -d -m - '$C' 2>/dev/null | grep -q overlay"
check "an added xattr is kept" test "$(getfattr --absolute-names -n user.added --only-values "$C/etc/hello")" = v1

inspect() { "$IMGFS" inspect test/child:1 | python3 -c "import json,sys; d=json.load(sys.stdin); d=d[0] if isinstance(d,list) else d; $1"; }
check "config: ENV and CMD applied, history and rootfs extended" bash -c "
  [[ \$($(declare -f inspect); IMGFS='$IMGFS' inspect 'print(d[\"Config\"][\"Env\"], d[\"Config\"][\"Cmd\"], len(d[\"RootFS\"][\"Layers\"]))') == \"['X=1'] ['/bin/true'] 2\" ]]"
check "the history entry carries the message" bash -c "
  python3 -c 'import json,sys; c=json.load(open(sys.argv[1])); h=c[\"history\"][-1]; assert h[\"comment\"]==\"my change\" and h[\"created_by\"].startswith(\"imgfs commit\"), h' \
    '$ROOT/blobs/sha256/${id#sha256:}'"

# The same upper directory gives the same layer.
top=$(inspect 'print(d["RootFS"]["Layers"][-1])')
id2=$("$IMGFS" commit --base test/base:1 "$T/ov/up" test/child:again)
check "committing the same upper directory again gives the same diff_id" \
  test "$("$IMGFS" inspect test/child:again | python3 -c 'import json,sys; d=json.load(sys.stdin); d=d[0] if isinstance(d,list) else d; print(d["RootFS"]["Layers"][-1])')" = "$top"

# imgfs diff: exactly what was done.
cat >want.diff <<'EOF'
C /data
A /data/big.link
A /data/link
A /data/owned
D /del
C /dev
A /dev/zero
C /etc
C /etc/hello
C /etc/motd
D /etc/remove-me
C /opt
C /opt/app
A /opt/app/new
D /opt/app/old
D /opt/app/sub
A /run.fifo
A /var
A /var/log
A /var/log/runc.log
EOF
"$IMGFS" diff test/child:1 >got.diff
check "imgfs diff IMAGE lists exactly the changes made" diff -u want.diff got.diff
"$IMGFS" diff test/child:1 test/base:1 >got2.diff
check "imgfs diff IMAGE BASE agrees" diff -u want.diff got2.diff
# An independent docker-diff over the two mounted trees (stat + content hashes).
listing "$M/test/base/1" >base.list
python3 - base.list child.list >stat.diff <<'PY'
import sys
def rows(p):
    out = {}
    for line in open(p, "rb").read().split(b"\n"):
        if line:
            f = line.split(b"\t")
            out[b"/" + f[0]] = f
    return out
old, new = rows(sys.argv[1]), rows(sys.argv[2])
def parent(p):
    return p.rsplit(b"/", 1)[0] or b"/"
def differs(a, b):
    # type mode uid gid dev link xattrs; for non-directories also size, mtime, content
    if [a[i] for i in (1, 2, 3, 4, 8, 9, 11)] != [b[i] for i in (1, 2, 3, 4, 8, 9, 11)]:
        return True
    return a[1] != b"d" and [a[i] for i in (5, 6, 10)] != [b[i] for i in (5, 6, 10)]
kind = {}
for p in new:
    if p not in old:
        kind[p] = b"A"
    elif differs(old[p], new[p]):
        kind[p] = b"C"
for p in old:
    if p not in new and parent(p) in (new.keys() | {b"/"}):
        kind[p] = b"D"
for p in list(kind):
    q = parent(p)
    while q != b"/":
        kind.setdefault(q, b"C")
        q = parent(q)
for p in sorted(kind):
    sys.stdout.buffer.write(kind[p] + b" " + p + b"\n")
PY
check "imgfs diff agrees with a stat/content comparison of the two mounted trees" diff -u stat.diff got.diff
check "imgfs diff of an image against itself is empty" test -z "$("$IMGFS" diff test/child:1 test/child:1)"
check "imgfs diff --format json" bash -c "'$IMGFS' diff --format json test/child:1 | head -1 | grep -qx '{\"Path\":\"/data\",\"Kind\":0}'"

# /.layers/<diff_id>/: the layer's changeset as the upper directory shows it (overlay's
# bookkeeping xattrs other than the opaque mark aside).
L=$M/.layers/${top#sha256:}
check "/.layers lists the new layer" bash -c "ls '$M/.layers' | grep -qx '${top#sha256:}'"
updir_listing() { listing "$1" | python3 -c '
import sys
for line in sys.stdin.buffer:
    f = line.rstrip(b"\n").split(b"\t")
    if len(f) < 13:
        continue
    xs = [x for x in f[11].split(b",") if x != b"-" and (not x.startswith(b"trusted.overlay.") or x.startswith(b"trusted.overlay.opaque="))]
    f[11] = b",".join(xs) or b"-"
    if f[1] == b"c" and f[8] == b"0,0":  # overlayfs links its whiteouts to one shared inode
        f[7], f[12] = b"1", b"-"
    sys.stdout.buffer.write(b"\t".join(f) + b"\n")'; }
updir_listing "$T/ov/up" >up.list
updir_listing "$L" >layer.list || true  # a missing view fails the diff below
check "/.layers/<diff_id> equals the upper directory" diff -u up.list layer.list
check "a whiteout shows as a 0/0 character device" test "$(stat -c '%F %t:%T %a' "$L/etc/remove-me")" = "character special file 0:0 0"
check "an opaque directory has trusted.overlay.opaque=y" \
  test "$(getfattr --absolute-names -n trusted.overlay.opaque --only-values "$L/opt/app")" = y
base_layer=$("$IMGFS" inspect test/base:1 | python3 -c 'import json,sys; d=json.load(sys.stdin); d=d[0] if isinstance(d,list) else d; print(d["RootFS"]["Layers"][0][7:])')
check "/.layers/<diff_id> of the imported GNU tar layer equals the directory it was made from" \
  diff -u <(listing base) <(listing "$M/.layers/$base_layer")
check "/.layers/<not a layer> is missing" test ! -e "$M/.layers/$(printf '0%.0s' {1..64})"

# Cross-check with umoci: the image exported by hand as an OCI layout from the store.
# (imgfs has no `save` on this branch; the layout is made from the verified blobs.)
export_layout() {  # export_layout REF DIR TAG
  "$IMGFS" inspect "$1" | python3 -c '
import json, os, shutil, sys, hashlib
d = json.load(sys.stdin); d = d[0] if isinstance(d, list) else d
root, out, tag = sys.argv[1], sys.argv[2], sys.argv[3]
os.makedirs(out + "/blobs/sha256", exist_ok=True)
def put(digest):
    h = digest.split(":")[1]
    shutil.copyfile(root + "/blobs/sha256/" + h, out + "/blobs/sha256/" + h)
    return os.path.getsize(out + "/blobs/sha256/" + h)
cfg_size = put(d["Id"])
layers = [{"mediaType": l["MediaType"], "digest": l["Digest"], "size": put(l["Digest"])} for l in d["Layers"]]
m = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": d["Id"], "size": cfg_size},
                "layers": layers}).encode()
mh = hashlib.sha256(m).hexdigest()
open(out + "/blobs/sha256/" + mh, "wb").write(m)
open(out + "/oci-layout", "w").write("{\"imageLayoutVersion\":\"1.0.0\"}")
json.dump({"schemaVersion": 2, "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json",
           "digest": "sha256:" + mh, "size": len(m), "annotations": {"org.opencontainers.image.ref.name": tag}}]},
          open(out + "/index.json", "w"))' "$ROOT" "$2" "$3"
}
export_layout test/child:1 "$T/layout" child
umoci unpack --image "$T/layout:child" "$T/ref" >/dev/null 2>&1 || not_ok "umoci unpack of the committed image failed"
listing "$T/ref/rootfs" >umoci.list
check "umoci unpack of the committed image equals the overlay's merged view" diff -u <(no_links merged.list) <(no_links umoci.list)
check "umoci unpack of the committed image equals the mounted image (link groups too)" diff -u child.list umoci.list

# A plain directory, no base: a one-layer image equal to the directory.
"$IMGFS" commit base test/plain:1 >/dev/null
listing base >plain.want
listing "$M/test/plain/1" >plain.got
check "commit without --base: the image equals the directory" diff -u plain.want plain.got

# Refusals: a clear error, the store untouched.
check "an overlay with redirect_dir=on mounts" overlay_on ov2 "redirect_dir=on,metacopy=off"
mv "$T/ov2/merged/opt" "$T/ov2/merged/opt2"
umount "$T/ov2/merged"
before=$(store_state)
expect_fail "a renamed directory (redirect xattr) is refused" 'redirect_dir=off' \
  "$IMGFS" commit --base test/base:1 "$T/ov2/up" test/bad:1
expect_fail "an unsupported --change instruction is refused" 'unsupported instruction RUN' \
  "$IMGFS" commit --base test/base:1 -c 'RUN true' "$T/ov/up" test/bad:1
expect_fail "a missing directory is refused" 'nope' "$IMGFS" commit "$T/nope" test/bad:1
expect_fail "an unknown base is refused" 'base' "$IMGFS" commit --base no/such:image "$T/ov/up" test/bad:1
check "the store is as it was after the refusals" test "$before" = "$(store_state)"

finish
