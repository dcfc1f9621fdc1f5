#!/usr/bin/env bash
# Builds the benchmark inputs once into $BENCH_DIR (default /var/tmp/imgfs-bench):
#   minbase.tar / minbase.tar.gz   a Debian bookworm minbase rootfs (debootstrap, apt lists
#                                  removed as Docker's debian images do): ~128 MB, ~6,700 entries
#   minbase-docker-gz.tar          a docker-archive holding that gzip layer
#   minbase-docker.tar             the same image as `skopeo copy … docker-archive:` writes it
#   minbase-oci/                   the same image as an OCI layout (gzip layer)
# Needs Debian's mirror (debootstrap) the first time; everything else is local.
set -euo pipefail
B=${BENCH_DIR:-/var/tmp/imgfs-bench}
mkdir -p "$B" && cd "$B"
if [[ ! -f minbase.tar ]]; then
  rm -rf rootfs
  debootstrap --variant=minbase bookworm rootfs http://deb.debian.org/debian >debootstrap.log
  rm -rf rootfs/var/lib/apt/lists/* rootfs/var/cache/apt/archives/*.deb
  tar --numeric-owner --xattrs -C rootfs -cf minbase.tar .
fi
[[ -f minbase.tar.gz ]] || gzip -6 -c minbase.tar >minbase.tar.gz
if [[ ! -f minbase-docker-gz.tar ]]; then
  python3 - <<'PY'
import hashlib, io, json, tarfile
layer = open('minbase.tar.gz', 'rb').read()
diff = hashlib.sha256(open('minbase.tar', 'rb').read()).hexdigest()
cfg = json.dumps({"architecture": "amd64", "os": "linux", "created": "2025-05-20T00:00:00Z",
                  "config": {"Cmd": ["/bin/bash"]},
                  "rootfs": {"type": "layers", "diff_ids": ["sha256:" + diff]}}).encode()
cfgname = hashlib.sha256(cfg).hexdigest() + ".json"
man = json.dumps([{"Config": cfgname, "RepoTags": ["bench/minbase:latest"],
                   "Layers": ["layer/layer.tar.gz"]}]).encode()
with tarfile.open('minbase-docker-gz.tar', 'w') as t:
    for name, data in ((cfgname, cfg), ("layer/layer.tar.gz", layer), ("manifest.json", man)):
        ti = tarfile.TarInfo(name); ti.size = len(data); t.addfile(ti, io.BytesIO(data))
PY
fi
if [[ ! -d minbase-oci ]]; then
  umoci init --layout minbase-oci
  umoci new --image minbase-oci:latest
  umoci unpack --image minbase-oci:latest bundle >/dev/null
  tar -C bundle/rootfs -xf minbase.tar
  umoci repack --image minbase-oci:latest bundle >/dev/null
  rm -rf bundle
fi
[[ -f minbase-docker.tar ]] || skopeo copy -q oci:minbase-oci:latest docker-archive:minbase-docker.tar:bench/minbase:latest
ls -la "$B"
