#!/usr/bin/env bash
# Lazy pulls of zstd:chunked layers with a tar-split (issue 9), the form newer
# containers/storage writers (podman, buildah) push, against Debian's docker-registry
# through the counting front of registry_tools.py. Debian 12's skopeo writes no
# tar-split, so tests/zstd_tarsplit.py adds one to skopeo's layers, its digest in an
# annotation (containers/storage 1.4x) or in the TOC (newer writers). `pull --lazy`
# fetches each layer's TOC and tar-split and nothing else; the lazy entry table is the
# full pull's, field for field (the tar headers are the tar-split's: non-UTF-8 names
# and nanosecond times included); `find` in the mount fetches nothing; every file reads
# right (umoci unpack); a plain pull completes the image (verify clean, lazy/ gone); a
# tar-split that does not match its digest fails the pull and stores nothing.
source "$(dirname "$0")/lib.sh"
need umoci python3 busybox docker-registry skopeo zstd
require_fuse
cd "$T"
TOOLS="python3 $HERE/registry_tools.py"
zstd_chunked_registry
for v in annotation toc bad; do
  args=(--digest-in annotation)
  [[ $v == toc ]] && args=(--digest-in toc)
  [[ $v == bad ]] && args+=(--bad-tarsplit)
  /usr/bin/python3 "$HERE/../zstd_tarsplit.py" z "zt-$v" v3 "${args[@]}"
  skopeo copy -q --dest-tls-verify=false "oci:zt-$v:v3" "docker://127.0.0.1:$P/test/ts:$v"
done
F=$(free_port)
echo none >mode
$TOOLS proxy "$F" "$P" "$T/mode" "$T/proxy.log" &
CLEANUP_PIDS="$CLEANUP_PIDS $!"
wait_port "$F"
sent() { awk '$1=="sent" {s+=$2} END {print s+0}' "$T/proxy.log"; }
blob_gets() { grep -c '^GET .*/blobs/' "$T/proxy.log" || true; }
# layer_field LAYOUT FIELD: per layer of LAYOUT's v3, "digest" or the sum of the
# compressed TOC and tar-split lengths ("meta"); "config": the config's size
layer_field() {
  python3 - "$1" "$2" <<'PY'
import json, sys
lay, field = sys.argv[1:]
i = json.load(open(lay + '/index.json'))['manifests'][0]['digest'].split(':')[1]
m = json.load(open(lay + '/blobs/sha256/' + i))
if field == 'config':
    print(m['config']['size'])
for l in m['layers'] if field != 'config' else []:
    a = l['annotations']
    p = 'io.github.containers.zstd-chunked.'
    if field == 'digest':
        print(l['digest'])
    else:
        print(int(a[p + 'manifest-position'].split(':')[1]) + int(a[p + 'tarsplit-position'].split(':')[1]))
PY
}
IMGFS_ROOT=$T/full "$IMGFS" pull -q "127.0.0.1:$F/test/lazy:v3" >/dev/null
for v in annotation toc; do
  REF=127.0.0.1:$F/test/ts:$v
  export IMGFS_ROOT=$T/store-$v
  check "$v: the registry's manifest kept the tar-split annotations" bash -c \
    "curl -fsS -H 'Accept: application/vnd.oci.image.manifest.v1+json' http://127.0.0.1:$P/v2/test/ts/manifests/$v | grep -q 'zstd-chunked.tarsplit-position'"
  : >proxy.log
  check "$v: pull --lazy" "$IMGFS" pull -q --lazy "$REF"
  n=$(layer_field "zt-$v" digest | wc -l)
  meta=$(layer_field "zt-$v" meta | awk '{s+=$1} END {print s}')
  echo "# $v: pull --lazy fetched $(sent) blob bytes in $(blob_gets) requests ($n layers; TOCs and tar-splits: $meta bytes)"
  check "  it asked for each layer's TOC and tar-split, one range each, and the config" \
    test "$(blob_gets)" -eq $((2 * n + 1))
  check "  no multi-range request (no tar header read from the blob)" \
    bash -c "! grep -E '^GET .*range=bytes=[0-9]+-[0-9]+,' proxy.log"
  cfg=$(layer_field "zt-$v" config)
  check "  the layer bytes it fetched are exactly the TOCs and tar-splits ($meta)" \
    test "$(($(sent) - cfg))" -eq "$meta"
  check "  imgfs images marks it partial" bash -c "'$IMGFS' images | grep -q 'partial: '"
  # The entry table from the tar-split's headers is the full pull's: listing metadata
  # (no content read) equals it, names that are not UTF-8 and nanosecond mtimes included.
  check "  its metadata listing equals a full pull's (from the same tar)" \
    diff <("$IMGFS" ls -R --format tsv "$REF" /) \
    <(IMGFS_ROOT=$T/full "$IMGFS" ls -R --format tsv "127.0.0.1:$F/test/lazy:v3" /)
  check "  (that listing fetched nothing)" test "$(blob_gets)" -eq $((2 * n + 1))
  if [[ $v == annotation ]]; then
    MP=$T/mp
    mount_store "$MP" -o complete=off
    IMG=$MP/127.0.0.1:$F/test/ts/$v
    : >proxy.log
    check "  find of the tree through the mount" bash -c "find '$IMG' | wc -l | grep -qv '^0$'"
    check "  (no blob fetched)" test "$(blob_gets)" -eq 0
    check "  a file reads right through the mount" cmp "$IMG/data/random.bin" ref-v3/rootfs/data/random.bin
    check "  a file whose name is not UTF-8 reads right" \
      cmp "$IMG/data/$(printf 'caf\xe9')" "ref-v3/rootfs/data/$(printf 'caf\xe9')"
    fusermount3 -u "$MP"
    check "  unmounted" wait_unmounted "$MP"
  fi
  check "  every file, read lazily, equals umoci's unpack" same_tree_v3 "$REF"
  : >proxy.log
  check "  a plain pull completes it" "$IMGFS" pull -q "$REF"
  check "  nothing lazy left, verify clean" bash -c "
    [[ -z \$(ls '$IMGFS_ROOT/lazy' 2>/dev/null) ]] && '$IMGFS' verify >/dev/null"
  check "  the completed tree equals umoci's unpack" same_tree_v3 "$REF"
done
export IMGFS_ROOT=$T/store-bad
expect_fail "a tar-split not matching its digest: pull --lazy fails" \
  "layer sha256:[0-9a-f]{64}: tar-split hashes to sha256:[0-9a-f]{64}, expected sha256:[0-9a-f]{64}$" \
  "$IMGFS" pull --lazy "127.0.0.1:$F/test/ts:bad"
check "  nothing stored" bash -c "
  [[ \$(find '$T/store-bad/blobs' '$T/store-bad/lazy' -type f 2>/dev/null | wc -l) -eq 0 && -z \$('$IMGFS' images -q) ]]"
check "  a plain pull of it works (the blob itself is right; the tar-split is not read)" \
  "$IMGFS" pull -q "127.0.0.1:$F/test/ts:bad"
check "  same tree as umoci's unpack" same_tree_v3 "127.0.0.1:$F/test/ts:bad"

# A name component of 100 bytes that are not UTF-8 is 300 bytes in a TOC (U+FFFD, 3
# bytes, for each), past NAME_MAX: pull --lazy pulls that layer in full, with a
# warning, where it used to fail the pull.
long=$(printf '\xe9%.0s' $(seq 100))
mkdir -p longname/d && echo "long name" >"longname/d/$long"
tar -C longname -cf longname.tar .
IMGFS_ROOT=$T/store-mk "$IMGFS" import longname.tar test/long:1 >/dev/null
IMGFS_ROOT=$T/store-mk "$IMGFS" save --format oci-archive -o longname.oci test/long:1
skopeo copy -q --dest-compress --dest-compress-format zstd:chunked oci-archive:longname.oci oci:zlong:1
# (skopeo 1.9 keeps the source's diff_id for the long name it rewrites: see the tool.)
/usr/bin/python3 "$HERE/../zstd_tarsplit.py" zlong zlong-ts 1 --diff-ids-from-blobs
skopeo copy -q --dest-tls-verify=false oci:zlong-ts:1 "docker://127.0.0.1:$P/test/long:1"
export IMGFS_ROOT=$T/store-long
LREF=127.0.0.1:$F/test/long:1
check "a name of 100 bytes that are not UTF-8 (300 in the TOC): pull --lazy succeeds" \
  bash -c "'$IMGFS' pull -q --lazy '$LREF' 2>'$T/long.err' || { cat '$T/long.err'; exit 1; }"
check "  and says the layer was pulled in full" grep -q 'not UTF-8.*pulled in full' "$T/long.err"
check "  nothing lazy left" bash -c "[[ -z \$(ls '$IMGFS_ROOT/lazy' 2>/dev/null) ]]"
check "  the file reads right" bash -c "[[ \$('$IMGFS' cat '$LREF' 'd/$long') == 'long name' ]]"
finish
