#!/usr/bin/env bash
# The imgfs command as a docker user meets it: import, images, inspect, tag, rmi, ls,
# cat, prune, verify, --root aliases, --help everywhere.
source "$(dirname "$0")/lib.sh"
need busybox python3 zstd
cd "$T"

mkdir -p rootfs/bin rootfs/etc
cp "$(command -v busybox)" rootfs/bin/busybox
for c in sh ls cat; do ln -s busybox rootfs/bin/$c; done
printf 'root:x:0:0:root:/root:/bin/sh\n' >rootfs/etc/passwd
tar -C rootfs -czf rootfs.tar.gz .
tar -C rootfs -cf rootfs.tar .

check "--version" bash -c "'$IMGFS' --version | grep -q '^imgfs version '"
check "--help lists every command" bash -c "'$IMGFS' --help | grep -q import && '$IMGFS' --help | grep -q verify"
for c in load import images inspect tag rmi ls cat prune verify; do
  check "$c --help" bash -c "'$IMGFS' $c --help | grep -q '^Usage: imgfs $c'"
done
expect_fail "unknown command exits with one line" "unknown command" "$IMGFS" frobnicate
expect_fail "unknown flag exits with one line" "unknown flag" "$IMGFS" images --frob

id=$("$IMGFS" import rootfs.tar.gz demo:v1)
check "import prints the image ID" bash -c "[[ '$id' =~ ^sha256:[0-9a-f]{64}$ ]]"
check "images shows the familiar name" bash -c "'$IMGFS' images | grep -Eq '^demo +v1 +${id:7:12} '"
check "images header as docker's" bash -c "'$IMGFS' images | head -1 | grep -Eq '^REPOSITORY +TAG +IMAGE ID +CREATED +SIZE$'"
check "images --digests adds a DIGEST column" bash -c "'$IMGFS' images --digests | head -1 | grep -q DIGEST"
check "images -q prints the short ID" test "$("$IMGFS" images -q)" = "${id:7:12}"
check "images --format json is JSON per line" bash -c "'$IMGFS' images --format json | python3 -c 'import json,sys; l=[json.loads(l) for l in sys.stdin]; assert len(l)==1 and l[0][\"Repository\"]==\"demo\", l'"
check "images REPO filters" bash -c "'$IMGFS' images nothere | wc -l | grep -qx 1"

check "inspect is a JSON array with Id and RepoTags" bash -c "'$IMGFS' inspect demo:v1 | python3 -c 'import json,sys; d=json.load(sys.stdin)[0]; assert d[\"Id\"]==\"$id\"; assert d[\"RepoTags\"]==[\"demo:v1\"]; assert len(d[\"RootFS\"][\"Layers\"])==1; assert d[\"Layers\"][0][\"Entries\"]==8'"
check "inspect by short ID" bash -c "'$IMGFS' inspect ${id:7:12} | grep -q '\"Id\": \"$id\"'"
check "--root, -g and --graph are the same" bash -c "'$IMGFS' --root '$ROOT' images -q | grep -q . && '$IMGFS' -g '$ROOT' images -q | grep -q . && '$IMGFS' --graph='$ROOT' images -q | grep -q ."

check "tag" "$IMGFS" tag demo:v1 tools/bb:1
check "tag to a registry host" "$IMGFS" tag demo:v1 localhost:5000/app:v1
check "both names listed" bash -c "'$IMGFS' images | grep -q '^tools/bb ' && '$IMGFS' images | grep -q '^localhost:5000/app '"
check "ls -l /bin" bash -c "'$IMGFS' ls -l tools/bb:1 /bin | grep -Eq '^lrwxrwxrwx +1 0 +0 .* sh -> busybox$'"
check "ls follows /bin/sh to a file" bash -c "'$IMGFS' ls tools/bb:1 /bin | sort | tr '\n' ' ' | grep -q 'busybox cat ls sh'"
check "cat /etc/passwd" test "$("$IMGFS" cat demo:v1 /etc/passwd)" = "root:x:0:0:root:/root:/bin/sh"
check "cat of the busybox binary is byte-exact" cmp <("$IMGFS" cat demo:v1 /bin/busybox) rootfs/bin/busybox
check "cat made no uncompressed copy; the gzip layer has its seek index" bash -c "[[ -z \$(ls -A '$ROOT/unpacked' 2>/dev/null) ]] && ls '$ROOT'/seek/* >/dev/null"
expect_fail "cat of a missing file" "no such file" "$IMGFS" cat demo:v1 /nope
expect_fail "cat of a directory" "not a regular file" "$IMGFS" cat demo:v1 /etc

# The same rootfs imported uncompressed is the same layer (same diff_id), read in place.
id2=$("$IMGFS" import rootfs.tar plain:v1)
check "uncompressed import shares nothing but reads in place" cmp <("$IMGFS" cat plain:v1 /bin/busybox) rootfs/bin/busybox

check "rmi of one of several names only untags" bash -c "'$IMGFS' rmi tools/bb:1 | grep -qx 'Untagged: tools/bb:1'"
check "image still there" "$IMGFS" inspect demo:v1
expect_fail "rmi by ID of an image in two repositories needs -f" "must be forced" "$IMGFS" rmi "${id:7:12}"
check "rmi -f by ID deletes" bash -c "'$IMGFS' rmi -f '${id:7:12}' | grep -q '^Deleted: $id'"
check "image gone" bash -c "! '$IMGFS' inspect demo:v1 2>/dev/null"
check "its config blob is gone" test ! -e "$ROOT/blobs/sha256/${id:7}"
check "the other image survives" cmp <("$IMGFS" cat plain:v1 /bin/busybox) rootfs/bin/busybox

# A single-frame zstd layer over 4 MiB is still unpacked whole on first read; rmi of its
# last image removes that copy (named by diff_id, not by blob digest).
mkdir -p bigfs && head -c 5000000 /dev/urandom >bigfs/big && tar -C bigfs -cf - . | zstd -q -c >big.tar.zst
"$IMGFS" import big.tar.zst big:1 >/dev/null
check "cat of a single-frame zstd layer unpacks it whole" bash -c "cmp <('$IMGFS' cat big:1 /big) bigfs/big && [[ \$(ls '$ROOT/unpacked' | wc -l) -eq 1 ]]"
check "rmi removes the unpacked copy of a layer no image has" bash -c "'$IMGFS' rmi big:1 >/dev/null && [[ -z \$(ls -A '$ROOT/unpacked') ]]"

# prune: orphan blobs, unpacked caches and stale ingest files go; live blobs stay.
printf 'orphan' >orphan && o=$(sha256sum orphan | cut -d' ' -f1) && cp orphan "$ROOT/blobs/sha256/$o"
printf 'partial' >"$ROOT/ingest/999999-1.part"
check "prune" bash -c "'$IMGFS' prune | grep -q 'Deleted 1 blobs'"
check "orphan blob removed" test ! -e "$ROOT/blobs/sha256/$o"
check "stale ingest file removed" test ! -e "$ROOT/ingest/999999-1.part"
check "live image still verifies" "$IMGFS" verify

# verify detects a damaged blob.
layer_blob=$("$IMGFS" inspect plain:v1 | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["Layers"][0]["Digest"][7:])')
chmod u+w "$ROOT/blobs/sha256/$layer_blob"
printf 'X' | dd of="$ROOT/blobs/sha256/$layer_blob" bs=1 seek=600 conv=notrunc status=none
check "verify reports the damaged blob and exits 1" bash -c "! '$IMGFS' verify 2>err && grep -q 'content hashes to' err"
finish
