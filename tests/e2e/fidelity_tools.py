#!/usr/bin/env python3
"""Helpers for tests/e2e/fidelity.sh.

  layout DIR TAG BLOB...   an OCI image layout whose image TAG has these layer blobs
                           (bottom first); the media type follows each blob's magic
                           bytes, and a 0-byte blob is declared tar+gzip; diff_ids are
                           computed from the uncompressed bytes.
  tree DIR                 one line per entry under DIR, names as escaped bytes:
                           type, mode, size, mtime_ns, link target, content sha256,
                           and the index of its hard-link group (from st_ino).
"""
import gzip
import hashlib
import json
import os
import stat
import subprocess
import sys


def uncompressed(data):
    if data[:2] == b"\x1f\x8b":
        return gzip.decompress(data), "application/vnd.oci.image.layer.v1.tar+gzip"
    if data[:4] == b"\x28\xb5\x2f\xfd":
        out = subprocess.run(["zstd", "-dc"], input=data, stdout=subprocess.PIPE, check=True)
        return out.stdout, "application/vnd.oci.image.layer.v1.tar+zstd"
    if not data:
        return b"", "application/vnd.oci.image.layer.v1.tar+gzip"
    return data, "application/vnd.oci.image.layer.v1.tar"


def put(d, data):
    h = hashlib.sha256(data).hexdigest()
    with open(os.path.join(d, "blobs", "sha256", h), "wb") as f:
        f.write(data)
    return "sha256:" + h


def layout(d, tag, blobs):
    os.makedirs(os.path.join(d, "blobs", "sha256"), exist_ok=True)
    with open(os.path.join(d, "oci-layout"), "w") as f:
        f.write('{"imageLayoutVersion":"1.0.0"}')
    layers, diff_ids = [], []
    for path in blobs:
        data = open(path, "rb").read()
        raw, media = uncompressed(data)
        diff_ids.append("sha256:" + hashlib.sha256(raw).hexdigest())
        layers.append({"mediaType": media, "digest": put(d, data), "size": len(data)})
    config = json.dumps({
        "architecture": "amd64", "os": "linux", "config": {},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    }).encode()
    manifest = json.dumps({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": put(d, config), "size": len(config)},
        "layers": layers,
    }).encode()
    index_path = os.path.join(d, "index.json")
    index = {"schemaVersion": 2, "manifests": []}
    if os.path.exists(index_path):
        index = json.load(open(index_path))
    index["manifests"].append({
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "digest": put(d, manifest), "size": len(manifest),
        "annotations": {"org.opencontainers.image.ref.name": tag},
    })
    with open(index_path, "w") as f:
        json.dump(index, f)


def tree(d):
    root = os.fsencode(d)
    groups = {}
    lines = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(dirnames + filenames):
            p = os.path.join(dirpath, name)
            rel = os.path.relpath(p, root)
            try:
                st = os.lstat(p)
            except FileNotFoundError:
                continue  # listed but not there: a whiteout in an overlay upper-only directory
            kind = stat.S_IFMT(st.st_mode)
            if kind == stat.S_IFCHR and st.st_rdev == 0:
                continue  # an overlay whiteout (only in extracted layer directories)
            link = os.readlink(p) if stat.S_ISLNK(st.st_mode) else b""
            digest = ""
            group = ""
            if stat.S_ISREG(st.st_mode):
                digest = hashlib.sha256(open(p, "rb").read()).hexdigest()[:16]
                if st.st_nlink > 1:
                    group = groups.setdefault(st.st_ino, len(groups))
            mtime = st.st_mtime_ns if not stat.S_ISDIR(st.st_mode) else ""
            lines.append("%r %o %d %s %r %s %s" % (rel, st.st_mode, 0 if stat.S_ISDIR(
                st.st_mode) else st.st_size, mtime, link, digest, group))
    print("\n".join(lines))


if __name__ == "__main__":
    cmd = sys.argv[1]
    if cmd == "layout":
        layout(sys.argv[2], sys.argv[3], sys.argv[4:])
    elif cmd == "tree":
        tree(sys.argv[2])
    else:
        sys.exit("unknown command " + cmd)
