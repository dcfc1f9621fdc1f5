#!/usr/bin/env bash
# Differential test of `imgfs build` against Debian's buildah (`buildah bud --isolation
# chroot --format docker`, its own vfs storage in $T): the same Dockerfiles (COPY, ADD,
# ENV, ARG, WORKDIR, USER, LABEL, EXPOSE, VOLUME, STOPSIGNAL, HEALTHCHECK, SHELL, CMD,
# ENTRYPOINT; RUN creating, changing and deleting files and replacing a directory;
# multi-stage with COPY --from and --target; COPY/ADD --chown by user and group name,
# also of a user a RUN added) on the same base: a busybox-static rootfs
# as an OCI layout (umoci), read by buildah as oci:DIR:base and by `imgfs load DIR`.
# Compared: the image trees (buildah's image pushed to an OCI layout and unpacked by
# umoci; imgfs's through its mount), listed by tree.py, and the config fields.
# Ignored, and why:
#   - mtime of every directory and of paths a RUN wrote: they are the time the step
#     ran (each tool's own clock), not an input;
#   - nlink of directories: overlayfs/FUSE and umoci's unpack count differently
#     (tree.py writes directory nlink as it sees it);
#   - buildah's history, created, container config and the `org.opencontainers.*` and
#     `io.buildah.*` labels it adds of its own: not Dockerfile inputs.
source "$(dirname "$0")/lib.sh"
require_fuse
need python3 buildah umoci busybox runc tar
[[ $(id -u) -eq 0 ]] || { echo "not ok - needs root (runc, buildah, overlayfs)"; exit 1; }
cd "$T"
# buildah takes an oci: path with capitals for an image name: a lower-case work dir
# (TMPDIR itself may have capitals: mktemp's, as in mutation_check).
LC_PARENT=${TMPDIR:-/tmp}
[[ $LC_PARENT == *[A-Z]* ]] && LC_PARENT=/tmp
LC=$LC_PARENT/imgfs-bh-$$-$RANDOM
mkdir "$LC"
on_exit "rm -rf '$LC'"
BH=(buildah --root "$T/bh/root" --runroot "$T/bh/run" --storage-driver vfs)
on_exit "${BH[*]} rm -a >/dev/null 2>&1; ${BH[*]} rmi -a -f >/dev/null 2>&1; umount -R '$T/bh/root' 2>/dev/null || true"

# The base: busybox-static and a few files, as an OCI layout both tools read.
mkdir -p rootfs/bin rootfs/etc rootfs/tmp rootfs/opt/old rootfs/data
cp "$(command -v busybox)" rootfs/bin/busybox
for a in sh echo cat rm mkdir touch id env ls true false mv chmod ln; do ln -s busybox "rootfs/bin/$a"; done
printf 'root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:app:/home/app:/bin/sh\n' >rootfs/etc/passwd
printf 'root:x:0:\napp:x:1000:\nextra:x:2000:app\n' >rootfs/etc/group
printf 'motd\n' >rootfs/etc/motd
printf 'old\n' >rootfs/opt/old/f
printf 'keep\n' >rootfs/data/keep
chmod 1777 rootfs/tmp
touch -d '2001-02-03 04:05:06' rootfs/etc/* rootfs/opt/old/f rootfs/data/keep
umoci init --layout oci >/dev/null
umoci new --image oci:base >/dev/null
umoci unpack --image oci:base ub >/dev/null
cp -a rootfs/. ub/rootfs/
umoci repack --image oci:base ub >/dev/null
rm -rf ub
"$IMGFS" load oci >/dev/null
BASE_ID=$("$IMGFS" images -q --no-trunc | head -1)
"$IMGFS" tag "$BASE_ID" test/base:1
# buildah reads the same layout (by ID: an oci: path with capitals is no image name).
cp -a oci "$LC/oci"
BH_BASE=$("${BH[@]}" pull -q "oci:$LC/oci:base")
"${BH[@]}" tag "$BH_BASE" localhost/testbase:1

# The context and the Dockerfiles. FROM is an ARG so each tool gets its own base name.
mkdir -p ctx/dir/sub arch/pkg
printf 'hello\n' >ctx/hello.txt
printf 'sub\n' >ctx/dir/sub/f && chmod 0640 ctx/dir/sub/f
printf '#!/bin/sh\n' >ctx/dir/x.sh && chmod 0755 ctx/dir/x.sh
printf 'packed\n' >arch/pkg/p && chmod 0751 arch/pkg/p
touch -d '2011-11-11 11:11:11' ctx/hello.txt ctx/dir/sub/f ctx/dir/x.sh arch/pkg/p
tar --numeric-owner --owner=3 --group=4 -C arch -cf ctx/arch.tar pkg
cat >ctx/Dockerfile <<'DF'
ARG BASE
FROM $BASE AS builder
ARG V=1
RUN mkdir -p /out && echo "built $V" >/out/artifact && chmod 0600 /out/artifact

FROM $BASE
ARG V=2
ENV APP=/app PATH=/usr/local/bin:/usr/bin:/bin
WORKDIR /app
COPY hello.txt ./
COPY --chown=1000:1000 dir/ /app/dir/
ADD arch.tar /opt/
RUN echo "v$V" >/app/v && rm /etc/motd && rm -r /opt/old && mkdir /opt/old && echo n >/opt/old/n && echo changed >/data/keep
USER app
RUN touch /tmp/by-app
USER 0
COPY --chown=app hello.txt /app/by-name
COPY --chown=app:extra hello.txt /app/by-names
ADD --chown=1000:extra hello.txt /app/by-uid-group
RUN echo 'svc:x:3000:3001::/:/bin/sh' >>/etc/passwd
COPY --chown=svc dir/ /app/by-svc/
COPY --from=builder /out/artifact /artifact
LABEL a=b "c d"=e
EXPOSE 80 53/udp
VOLUME /data
STOPSIGNAL SIGINT
HEALTHCHECK --interval=5s --retries=2 CMD true
SHELL ["/bin/sh", "-c"]
ENTRYPOINT ["/bin/sh"]
CMD ["-c", "echo hi"]
DF

rc=0
"${BH[@]}" bud --isolation chroot --format docker --build-arg BASE=localhost/testbase:1 -t bh/full ctx >bh.out 2>&1 || rc=$?
check "buildah builds the Dockerfile" test $rc -eq 0
[[ $rc -eq 0 ]] || tail -20 bh.out
rc=0
"$IMGFS" build --build-arg BASE=test/base:1 -t test/full:1 ctx >imgfs.out 2>&1 || rc=$?
check "imgfs builds the Dockerfile" test $rc -eq 0
[[ $rc -eq 0 ]] || tail -20 imgfs.out
rc=0
"${BH[@]}" bud --isolation chroot --format docker --build-arg BASE=localhost/testbase:1 --target builder -t bh/builder ctx >bh2.out 2>&1 || rc=$?
"$IMGFS" build --build-arg BASE=test/base:1 --target builder -t test/builder:1 ctx >imgfs2.out 2>&1 || rc=$?
check "both build --target builder" test $rc -eq 0

M=$T/mnt
check "the store mounts" mount_store "$M"
# RUN-written paths: their mtimes are the time each tool ran the step.
RUN_PATHS='app/v opt/old/n data/keep tmp/by-app out/artifact artifact etc/passwd'
compare() {  # compare BUILDAH_IMAGE IMGFS_DIR NAME
  "${BH[@]}" push "$1" "oci:$LC/bh-oci:$3" >/dev/null 2>&1 || return 1
  umoci unpack --image "$LC/bh-oci:$3" "$T/bh-$3" >/dev/null || return 1
  python3 "$HERE/tree.py" native "$T/bh-$3/rootfs" >"$3.bh.list"
  python3 "$HERE/tree.py" native "$2" >"$3.imgfs.list"
  norm() {  # norm LIST [buildah]
    python3 - "$1" "$RUN_PATHS" "${2:-}" <<'PY'
import sys
run = set(sys.argv[2].split())
lines = [l.rstrip(b'\n').split(b'\t') for l in open(sys.argv[1], 'rb')]
paths = [f[0] for f in lines]
# buildah's chroot isolation leaves the mount points of its bind mounts in the image:
# empty /dev /proc /sys /run and empty /etc/hostname, /etc/hosts, /etc/resolv.conf.
# docker keeps those in the container's init layer; imgfs does not make them.
mountpoints = {b'dev', b'proc', b'sys', b'run', b'etc/hostname', b'etc/hosts', b'etc/resolv.conf'}
def empty(f):
    if f[1] == b'd':
        return not any(p.startswith(f[0] + b'/') for p in paths)
    return f[1] == b'f' and f[5] == b'0'
for f in lines:
    if sys.argv[3] == 'buildah' and f[0] in mountpoints and empty(f):
        continue
    if f[1] == b'd':
        f[6] = b'-'  # directory mtime
        f[7] = b'-'  # directory nlink
    if f[0].decode(errors='replace') in run:
        f[6] = b'-'
    sys.stdout.buffer.write(b'\t'.join(f) + b'\n')
PY
  }
  norm "$3.bh.list" buildah >"$3.bh.norm" && norm "$3.imgfs.list" >"$3.imgfs.norm" || return 1
  [[ $(wc -l <"$3.bh.norm") -gt 10 ]] || return 1  # never equal by being empty
  diff -u "$3.bh.norm" "$3.imgfs.norm"
}
check "the final stage's tree equals buildah's" compare bh/full "$M/test/full/1" full
check "the --target stage's tree equals buildah's" compare bh/builder "$M/test/builder/1" builder

fields() {  # fields CONFIG_JSON_FILE: the compared config fields, one per line
  python3 - "$1" <<'PY'
import json, sys
c = json.load(open(sys.argv[1]))
c = c.get('config') or c.get('Config') or {}
labels = {k: v for k, v in (c.get('Labels') or {}).items()
          if not k.startswith(('io.buildah.', 'org.opencontainers.'))}
for k in ['Env', 'Cmd', 'Entrypoint', 'WorkingDir', 'User', 'ExposedPorts', 'Volumes',
          'StopSignal', 'Healthcheck', 'Shell']:
    print(k, json.dumps(c.get(k) or None, sort_keys=True))
print('Labels', json.dumps(labels or None, sort_keys=True))
PY
}
"${BH[@]}" inspect --type image bh/full >bh.raw || true
python3 -c 'import json,sys; json.dump(json.load(open(sys.argv[1]))["Docker"], open(sys.argv[2],"w"))' bh.raw bh.cfg
[[ -n ${KEEP:-} ]] && cp -a "$T" "$KEEP"
"$IMGFS" inspect --format '{{json .}}' test/full:1 >imgfs.raw
python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); d=d[0] if isinstance(d,list) else d; json.dump({"config": d.get("Config")}, open(sys.argv[2],"w"))' imgfs.raw imgfs.cfg
fields bh.cfg >bh.fields
fields imgfs.cfg >imgfs.fields
check "buildah's config has the Dockerfile's fields" grep -q '^Healthcheck {' bh.fields
check "the config fields equal buildah's" diff -u bh.fields imgfs.fields
finish
