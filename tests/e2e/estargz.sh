#!/usr/bin/env bash
# eStargz layers (issue 9) pulled and loaded as the plain gzip layers they also are: the
# test images' layers rewritten by tests/estargz_writer.py (a gzip member per file and
# per 1 MB chunk, the TOC member stargz.index.json, the 51-byte footer; the manifest
# carries the toc.digest and uncompressed-size annotations), pushed to a loopback
# docker-registry. Non-lazy pulls show the layer as docker does (it just untars): the
# TOC file and the landmark file are in the tree, as in `umoci unpack`.
source "$(dirname "$0")/lib.sh"
require_fuse
need umoci python3 busybox docker-registry
cd "$T"
TOOLS="python3 $HERE/registry_tools.py"
WRITER="python3 $HERE/../estargz_writer.py"
build_test_images >/dev/null

check "the writer converts the test image's layers to eStargz" \
  bash -c "$WRITER convert-layout oci v3 v3-esgz --chunk-size 1000000 >esgz.digest"
check "  umoci unpacks the result (diff_ids match the new layers)" \
  bash -c "umoci unpack --image oci:v3-esgz ref-esgz >/dev/null"
man=$(cat esgz.digest)
layer_facts() {  # every layer: the footer points at a member holding stargz.index.json,
  # whose JSON has the annotated digest; as many chunk entries as the original layers'
  # files of over 1 MB need
  python3 - "$man" <<'EOF'
import gzip, hashlib, io, json, sys, tarfile
blob = lambda d: open('oci/blobs/' + d.replace(':', '/'), 'rb').read()
m = json.loads(blob(sys.argv[1]))
idx = json.load(open('oci/index.json'))
orig = json.loads(blob([d['digest'] for d in idx['manifests']
                        if d['annotations']['org.opencontainers.image.ref.name'] == 'v3'][0]))
want = 0
for l in orig['layers']:
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(blob(l['digest'])))) as t:
        want += sum((f.size - 1) // 1000000 for f in t if f.isreg() and f.size)
chunks = 0
for l in m['layers']:
    b = blob(l['digest'])
    f = b[-51:]
    assert f[:4] == b'\x1f\x8b\x08\x04' and f[12:16] == b'SG\x16\x00' and f[32:38] == b'STARGZ', f
    toc_tar = gzip.decompress(b[int(f[16:32], 16):-51])
    t = tarfile.open(fileobj=io.BytesIO(toc_tar))
    e = t.next()
    assert e.name == 'stargz.index.json', e.name
    j = t.extractfile(e).read()
    a = l['annotations']
    assert a['containerd.io/snapshot/stargz/toc.digest'] == 'sha256:' + hashlib.sha256(j).hexdigest()
    assert int(a['io.containers.estargz.uncompressed-size']) == len(gzip.decompress(b))
    chunks += sum(1 for x in json.loads(j)['entries'] if x['type'] == 'chunk')
assert len(m['layers']) == 3 and want >= 2 and chunks == want, (len(m['layers']), chunks, want)
EOF
}
check "  each layer: footer, TOC member, annotations right; the big file is chunked" layer_facts
check "  the unpacked tree has the TOC and landmark files (docker's view)" \
  test -s ref-esgz/rootfs/stargz.index.json -a -s ref-esgz/rootfs/.no.prefetch.landmark
same_but_toc() {  # the original image's tree, attribute by attribute, plus those two files
  python3 "$HERE/tree.py" native ref-v3/rootfs >want.tree &&
    python3 "$HERE/tree.py" native ref-esgz/rootfs | grep -av -e $'^stargz.index.json\t' -e $'^.no.prefetch.landmark\t' >got.tree &&
    diff -u want.tree got.tree && [[ $(wc -l <want.tree) -gt 20 ]]
}
check "  and otherwise the tree of the original image" same_but_toc

P=$(free_port)
start_registry reg "$P"
check "push the eStargz image to docker-registry" \
  bash -c "$TOOLS push-layout http://127.0.0.1:$P test/esgz v3 oci v3-esgz >/dev/null"
REF=127.0.0.1:$P/test/esgz:v3
compare() {  # compare IMAGE REFERENCE_ROOTFS
  "$IMGFS" ls -R --format tsv --sha256 "$1" / >"$T/raw" || return 1
  python3 "$HERE/tree.py" imgfs "$T/raw" >"$T/got"
  python3 "$HERE/tree.py" native "$2" >"$T/want"
  diff -u "$T/want" "$T/got" >"$T/diff" || { head -40 "$T/diff"; return 1; }
  [[ $(wc -l <"$T/want") -gt 20 ]]
}
check "imgfs pull of the eStargz image" "$IMGFS" pull -q "$REF"
check "  the tree equals umoci unpack of the same image" compare "$REF" ref-esgz/rootfs
check "  the landmark holds its one byte 0x0f" \
  bash -c "[[ \$('$IMGFS' cat '$REF' /.no.prefetch.landmark | od -An -tx1 | tr -d ' ') == 0f ]]"
check "load of the eStargz OCI layout" "$IMGFS" load -q --name test/esgz-layout oci
check "  equals umoci unpack too" compare test/esgz-layout:v3-esgz ref-esgz/rootfs

M=$T/mnt
check "mount the store" mount_store "$M"
D=$M/127.0.0.1:$P/test/esgz/v3
[[ -d $D ]] || D=$(find "$M" -maxdepth 5 -type d -path '*test/esgz/v3' | head -1)
check "  the chunked 3 MB file reads right through the mount" cmp "$D/data/random.bin" ref-esgz/rootfs/data/random.bin
check "  a small file too" cmp "$D/etc/passwd" ref-esgz/rootfs/etc/passwd
check "  the TOC file is the top layer's" cmp "$D/stargz.index.json" ref-esgz/rootfs/stargz.index.json
check "imgfs verify: store clean" "$IMGFS" verify
finish
