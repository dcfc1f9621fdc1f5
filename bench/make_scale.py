#!/usr/bin/env python3
"""Writes an OCI layout of N images on shared bases (bench/scale.sh).

usage: make_scale.py OUT N BASE.tar.gz [BASE2.tar.gz ...]
Image i has two layers: base[i % len(bases)] (gzip, shared) and its own tiny
uncompressed layer (opt/app/id with its number, etc/app.conf). Its index entry is
named "t<i>" (org.opencontainers.image.ref.name), so `imgfs load --name REPO OUT`
tags it REPO:t<i>.
"""
import gzip, hashlib, io, json, os, sys, tarfile

out, n, bases = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
os.makedirs(out + "/blobs/sha256", exist_ok=True)


def put(data):
    h = hashlib.sha256(data).hexdigest()
    p = f"{out}/blobs/sha256/{h}"
    if not os.path.exists(p):
        with open(p, "wb") as f:
            f.write(data)
    return h


base_desc = []
for b in bases:
    data = open(b, "rb").read()
    h = put(data)
    diff = hashlib.sha256(gzip.decompress(data)).hexdigest()
    base_desc.append((h, len(data), diff))

manifests = []
for i in range(n):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as t:
        for name, kind, body in (("opt", "d", None), ("opt/app", "d", None),
                                 ("opt/app/id", "f", f"image {i}\n".encode()),
                                 ("etc/app.conf", "f", f"name=app{i}\n".encode())):
            ti = tarfile.TarInfo(name)
            ti.mtime = 1700000000
            if kind == "d":
                ti.type, ti.mode = tarfile.DIRTYPE, 0o755
                t.addfile(ti)
            else:
                ti.size, ti.mode = len(body), 0o644
                t.addfile(ti, io.BytesIO(body))
    top = buf.getvalue()
    th = put(top)
    bh, bsize, bdiff = base_desc[i % len(base_desc)]
    cfg = json.dumps({"architecture": "amd64", "os": "linux",
                      "created": "2025-05-20T00:00:00Z", "config": {"Cmd": ["/bin/sh"]},
                      "rootfs": {"type": "layers",
                                 "diff_ids": ["sha256:" + bdiff, "sha256:" + th]}}).encode()
    ch = put(cfg)
    man = json.dumps({"schemaVersion": 2,
                      "mediaType": "application/vnd.oci.image.manifest.v1+json",
                      "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                                 "digest": "sha256:" + ch, "size": len(cfg)},
                      "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                                  "digest": "sha256:" + bh, "size": bsize},
                                 {"mediaType": "application/vnd.oci.image.layer.v1.tar",
                                  "digest": "sha256:" + th, "size": len(top)}]}).encode()
    mh = put(man)
    manifests.append({"mediaType": "application/vnd.oci.image.manifest.v1+json",
                      "digest": "sha256:" + mh, "size": len(man),
                      "annotations": {"org.opencontainers.image.ref.name": f"t{i}"}})
with open(out + "/oci-layout", "w") as f:
    json.dump({"imageLayoutVersion": "1.0.0"}, f)
with open(out + "/index.json", "w") as f:
    json.dump({"schemaVersion": 2, "manifests": manifests}, f)
