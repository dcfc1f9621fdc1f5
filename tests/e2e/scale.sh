#!/usr/bin/env bash
# Issue 12: a store of thousands of images on shared bases, through a real mount.
# 3,000 images on two bases (~2,000 entries each, with a hard link and a symlink), each
# with its own top layer; every 7th top layer whites out a base file. Checks: the index
# stays small (no per-image tree), the names, the contents of a sample of images against
# the layers they were made from, hard links and whiteouts per image, and a bounded
# daemon after reading a file in every image with -o tree_cache=8M.
source "$(dirname "$0")/lib.sh"
require_fuse
need python3
cd "$T"
N=3000
python3 - "$T/oci" "$N" <<'PY'
import gzip, hashlib, io, json, os, sys, tarfile
out, n = sys.argv[1], int(sys.argv[2])
os.makedirs(out + "/blobs/sha256", exist_ok=True)
def put(data):
    h = hashlib.sha256(data).hexdigest()
    with open(f"{out}/blobs/sha256/{h}", "wb") as f:
        f.write(data)
    return h
def tar(entries):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as t:
        for name, kind, body in entries:
            ti = tarfile.TarInfo(name)
            ti.mtime = 1700000000
            if kind == "d":
                ti.type, ti.mode = tarfile.DIRTYPE, 0o755
                t.addfile(ti)
            elif kind == "l":
                ti.type, ti.linkname = tarfile.SYMTYPE, body
                t.addfile(ti)
            elif kind == "h":
                ti.type, ti.linkname = tarfile.LNKTYPE, body
                t.addfile(ti)
            else:
                ti.size, ti.mode = len(body), 0o644
                t.addfile(ti, io.BytesIO(body))
    return buf.getvalue()
bases = []
for b in range(2):
    ents = []
    for j in range(50):
        ents.append((f"d{j}", "d", None))
        for k in range(40):
            ents.append((f"d{j}/f{k}", "f", f"base{b} {j} {k}\n".encode()))
    ents += [("d0/hard", "h", "d0/f0"), ("d0/sym", "l", "f1")]
    raw = tar(ents)
    gz = gzip.compress(raw, 1)
    bases.append((put(gz), len(gz), hashlib.sha256(raw).hexdigest()))
manifests = []
for i in range(n):
    ents = [("opt", "d", None), ("opt/app", "d", None), ("opt/app/id", "f", f"image {i}\n".encode())]
    if i % 7 == 0:
        ents.append(("d1/.wh.f1", "f", b""))
    top = tar(ents)
    th = put(top)
    bh, bsize, bdiff = bases[i % 2]
    cfg = json.dumps({"architecture": "amd64", "os": "linux", "created": "2025-05-20T00:00:00Z",
                      "rootfs": {"type": "layers", "diff_ids": ["sha256:" + bdiff, "sha256:" + th]}}).encode()
    ch = put(cfg)
    man = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                      "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                                 "digest": "sha256:" + ch, "size": len(cfg)},
                      "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                                  "digest": "sha256:" + bh, "size": bsize},
                                 {"mediaType": "application/vnd.oci.image.layer.v1.tar",
                                  "digest": "sha256:" + th, "size": len(top)}]}).encode()
    mh = put(man)
    manifests.append({"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": "sha256:" + mh,
                      "size": len(man), "annotations": {"org.opencontainers.image.ref.name": f"t{i}"}})
json.dump({"imageLayoutVersion": "1.0.0"}, open(out + "/oci-layout", "w"))
json.dump({"schemaVersion": 2, "manifests": manifests}, open(out + "/index.json", "w"))
PY
check "load of $N images in one run" bash -c "'$IMGFS' load -q --name scale/app oci >/dev/null"
check "imgfs images lists $N" test "$("$IMGFS" images -q | wc -l)" -eq "$N"
check "imgfs images: the direct table is its template's, $N rows" \
  bash -c "diff <('$IMGFS' images) <('$IMGFS' images --format 'table {{.Repository}}\\t{{.Tag}}\\t{{.ID}}\\t{{.CreatedSince}}\\t{{.Size}}')"
index_kb=$(( $(stat -c %s "$ROOT/index/data.mdb") / 1024 ))
# A materialised tree per image would be ~200 KB each (600 MB); root records are bytes.
check "the index grows with unique content ($index_kb KB for $N images)" test "$index_kb" -lt 20480

M=$T/mnt
mkdir -p "$M"
CLEANUP_MOUNTS="${CLEANUP_MOUNTS:-} $M"
"$IMGFS" mount -f -o tree_cache=8M "$M" 2>"$T/mount.log" &
DAEMON=$!
CLEANUP_PIDS="${CLEANUP_PIDS:-} $DAEMON"
wait_mounted "$M"
rss_mb() { echo $(( $(awk '/VmRSS/{print $2}' /proc/$DAEMON/status) / 1024 )); }
check "ls -l lists $N tag directories" test "$(ls -l "$M/scale/app" | grep -c '^d')" -eq "$N"
check ".id/ lists $N images" test "$(ls "$M/.id" | wc -l)" -eq "$N"
check "listing names built no tree (daemon RSS $(rss_mb) MB)" test "$(rss_mb)" -lt 60
sample() {  # every 97th image: content of its own layers, its base's, whiteouts, links
  python3 - "$M/scale/app" "$N" <<'PY'
import os, sys
d, n = sys.argv[1], int(sys.argv[2])
for i in range(0, n, 97):
    r = f"{d}/t{i}"
    b = i % 2
    assert open(f"{r}/opt/app/id").read() == f"image {i}\n", i
    assert open(f"{r}/d3/f5").read() == f"base{b} 3 5\n", i
    assert open(f"{r}/d49/f39").read() == f"base{b} 49 39\n", i
    assert os.path.exists(f"{r}/d1/f1") == (i % 7 != 0), i
    assert os.stat(f"{r}/d0/f0").st_ino == os.stat(f"{r}/d0/hard").st_ino, i
    assert os.stat(f"{r}/d0/f0").st_nlink == 2, i
    assert os.readlink(f"{r}/d0/sym") == "f1", i
    assert len(os.listdir(f"{r}/d7")) == 40, i
PY
}
check "a sample of images shows its own layers (content, whiteouts, hard links)" sample
check "one file read in each of $N images" python3 - "$M/scale/app" "$N" <<'PY'
import sys
d, n = sys.argv[1], int(sys.argv[2])
for i in range(n):
    assert open(f"{d}/t{i}/opt/app/id").read() == f"image {i}\n", i
PY
check "the daemon stays bounded after reading every image ($(rss_mb) MB)" test "$(rss_mb)" -lt 100
check "evicted trees come back the same" sample
fusermount3 -u "$M"
wait "$DAEMON" || true
out=$("$IMGFS" prune --compact 2>&1)
check "prune --compact reports what the index returned" grep -q "^Index: .* returned" <<<"$out"
check "the store is whole after compaction" test "$("$IMGFS" images -q | wc -l)" -eq "$N"
check "and reads after it" test "$("$IMGFS" cat scale/app:t42 opt/app/id)" = "image 42"
finish
