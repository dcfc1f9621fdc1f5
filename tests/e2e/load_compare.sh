#!/usr/bin/env bash
# Images built by umoci (3 layers: every file type, setuid, sticky, hard links, xattrs,
# devices, a FIFO, odd names, deletions), exported by skopeo as an OCI layout, a
# docker-archive, an OCI archive and with zstd layers, loaded into imgfs; the merged
# tree imgfs serves must equal `umoci unpack` of the same image, attribute by
# attribute and byte by byte.
source "$(dirname "$0")/lib.sh"
need umoci skopeo python3 busybox
cd "$T"

build_test_images

skopeo copy -q oci:oci:v3 docker-archive:$T/da.tar:test/da:v3
skopeo copy -q oci:oci:v3 oci-archive:$T/oa.tar:test/oa:v3
skopeo copy -q --dest-compress-format zstd oci:oci:v3 oci:zoci:v3
gzip -c da.tar >da.tar.gz

check "load OCI layout" "$IMGFS" load -q --name test/layout oci
check "load docker-archive" "$IMGFS" load -q da.tar
check "load docker-archive (gzip)" "$IMGFS" load -q da.tar.gz
check "load OCI archive" "$IMGFS" load -q oa.tar
check "load OCI layout with zstd layers" "$IMGFS" load -q --name test/zstd zoci

compare() {  # compare IMAGE REFERENCE_ROOTFS
  "$IMGFS" ls -R --format tsv --sha256 "$1" / >"$T/raw" || return 1
  python3 "$HERE/tree.py" imgfs "$T/raw" >"$T/got"
  python3 "$HERE/tree.py" native "$2" >"$T/want"
  if ! diff -u "$T/want" "$T/got" >"$T/diff"; then
    head -40 "$T/diff"
    return 1
  fi
  [[ $(wc -l <"$T/want") -gt 20 ]]
}
for v in v1 v2 v3; do check "test/layout:$v equals umoci unpack" compare test/layout:$v ref-$v/rootfs; done
check "docker-archive equals umoci unpack" compare test/da:v3 ref-v3/rootfs
check "OCI archive equals umoci unpack" compare test/oa:v3 ref-v3/rootfs
check "zstd image equals umoci unpack" compare test/zstd:v3 ref-v3/rootfs

# The same image ID whatever the transport: the config is the same bytes.
id_layout=$("$IMGFS" images -q --no-trunc test/layout:v3)
check "docker-archive has the same image ID" test "$("$IMGFS" images -q --no-trunc test/da:v3)" = "$id_layout"
check "zstd re-compression keeps the image ID" test "$("$IMGFS" images -q --no-trunc test/zstd:v3)" = "$id_layout"

# ls -lR lists the same names as ls -R of the reference, directory by directory.
"$IMGFS" ls -R test/layout:v3 / | grep -av "^$" | grep -av ":$" | LC_ALL=C sort >names-got
(cd ref-v3/rootfs && ls -RA . | grep -av "^$" | grep -av ":$" | LC_ALL=C sort) >names-want
check "ls -R lists the same names as the unpacked tree" diff -q names-want names-got
check "ls -lR runs and shows setuid and sticky bits" bash -c "'$IMGFS' ls -lR test/layout:v1 / | grep -q -- '-rwsr-xr-x' && '$IMGFS' ls -l test/layout:v1 / | grep -q 'drwxrwxrwt'"
check "cat through a symlinked path" bash -c "'$IMGFS' cat test/layout:v1 /usr/lib/os-release | grep -q 'imgfs test'"
check "imgfs verify: store clean" "$IMGFS" verify
finish
