#!/usr/bin/env bash
# Lazy pulls of eStargz images (issue 9) against Debian's docker-registry, through the
# counting front of registry_tools.py: `pull --lazy` fetches the footer and the TOC
# (checked against the toc.digest annotation) and no file content; `find`/`stat` in the
# mount fetch nothing; a one-file read gives the right bytes and fetches little; the TOC
# file (its bytes came with the pull) reads with no request; a flipped byte in a fetched
# chunk fails the read (EIO) and is not kept; every file reads right (umoci unpack); a
# plain pull completes the image (the entry table replaced by the tar's, verify clean,
# lazy/ gone, tree equal to umoci's); a TOC that lies about one file (its own digest
# right) fails that file's read, and completion marks the image broken.
# Mounts use -o complete=off: this suite counts what reads fetch, and the daemon's
# background completion (lazy_complete.sh) would fetch the rest meanwhile.
source "$(dirname "$0")/lib.sh"
need umoci python3 busybox docker-registry
require_fuse
cd "$T"
TOOLS="python3 $HERE/registry_tools.py"
WRITER="python3 $HERE/../estargz_writer.py"
build_test_images >/dev/null
# 256 KiB chunks: the 3 MB random file is 12 of them
$WRITER convert-layout oci v3 v3-esgz --chunk-size 262144 >esgz.digest
umoci unpack --image oci:v3-esgz ref-esgz >/dev/null
cp -a oci oci-lie
ESTARGZ_WRITER_LIE=etc/passwd $WRITER convert-layout oci-lie v3 v3-lie --chunk-size 262144 >lie.digest
P=$(free_port)
start_registry reg "$P"
$TOOLS push-layout http://127.0.0.1:$P test/esgz v3 oci v3-esgz >/dev/null
$TOOLS push-layout http://127.0.0.1:$P test/lie v3 oci-lie v3-lie >/dev/null
F=$(free_port)
echo none >mode
$TOOLS proxy "$F" "$P" "$T/mode" "$T/proxy.log" &
CLEANUP_PIDS="$CLEANUP_PIDS $!"
wait_port "$F"
REF=127.0.0.1:$F/test/esgz:v3
layers=$(python3 -c "
import json
m=json.load(open('oci/blobs/sha256/'+open('esgz.digest').read().split(':')[1].strip()))
print('|'.join(l['digest'] for l in m['layers']), sum(l['size'] for l in m['layers']))")
blob_total=${layers#* }
layers=${layers% *}
sent() { awk '$1=="sent" {s+=$2} END {print s+0}' "$T/proxy.log"; }
blob_gets() { grep -c '^GET .*/blobs/' "$T/proxy.log" || true; }
same_tree() {  # same_tree REF [json]: every file's metadata and content against umoci's
  # unpack; `json`: names as a TOC holds them (bytes that are not UTF-8 as U+FFFD)
  "$IMGFS" ls -R --format tsv --sha256 "$1" / >"$T/raw" && python3 "$HERE/tree.py" imgfs "$T/raw" >"$T/got" &&
    python3 "$HERE/tree.py" native ref-esgz/rootfs >"$T/want" || return 1
  if [[ ${2:-} == json ]]; then
    python3 -c '
import sys
rows = []
for line in open(sys.argv[1], "rb"):
    name, rest = line.split(b"\t", 1)
    rows.append(name.decode("utf-8", "replace").encode() + b"\t" + rest)
sys.stdout.buffer.write(b"".join(sorted(rows)))' "$T/want" >"$T/want.json" && mv "$T/want.json" "$T/want"
    grep -q $'\xef\xbf\xbd' "$T/want" || { echo "# (no non-UTF-8 name in the test image?)"; return 1; }
  fi
  { diff "$T/want" "$T/got" >"$T/tree.diff" || { head -20 "$T/tree.diff"; false; }; } &&
    [[ $(wc -l <"$T/want") -gt 20 ]]
}

# --- pull --lazy
: >proxy.log
check "pull --lazy of an eStargz image succeeds" "$IMGFS" pull -q --lazy "$REF"
pull_bytes=$(sent)
echo "# pull --lazy: $pull_bytes blob bytes of $blob_total in $(blob_gets) requests"
check "  it fetched part of the blobs (footer, TOC): 0 < $pull_bytes < a quarter of $blob_total" \
  test "$pull_bytes" -gt 0 -a "$pull_bytes" -lt $((blob_total / 4))
check "  every layer blob GET was a Range request" \
  bash -c "grep -E '^GET .*/blobs/($layers)' proxy.log | grep -q range=bytes && ! grep -E '^GET .*/blobs/($layers)' proxy.log | grep -q 'range=-'"
check "  lazy/ holds the 3 layers" bash -c "[[ \$(ls '$ROOT/lazy' | wc -l) -eq 3 ]]"
check "  imgfs images marks it partial" bash -c "'$IMGFS' images | grep -q 'partial: .* of .* local'"

# --- the mount
MP=$T/mp
mount_store "$MP" -o complete=off
IMG=$MP/127.0.0.1:$F/test/esgz/v3
: >proxy.log
check "find of the whole tree through the mount" \
  bash -c "[[ \$(find '$IMG' -printf '%p %s %m %U %G\n' | wc -l) -gt 20 ]]"
check "stat of a file gives its size" bash -c "[[ \$(stat -c %s '$IMG/data/random.bin') == 3000000 ]]"
check "  no blob was fetched for find/stat" test "$(blob_gets)" -eq 0
: >proxy.log
check "a one-file read gives the right bytes" \
  bash -c "head -c 4096 '$IMG/data/random.bin' | cmp - <(head -c 4096 ref-esgz/rootfs/data/random.bin)"
one=$(sent)
echo "# head -c 4096 of the 3 MB file: $one bytes in $(blob_gets) request(s)"
check "  it fetched little: 0 < $one <= 1 MiB" test "$one" -gt 0 -a "$one" -le $((1 << 20))
: >proxy.log
check "the TOC file reads right with no request (its bytes came with the pull)" \
  bash -c "cmp '$IMG/stargz.index.json' ref-esgz/rootfs/stargz.index.json && [[ \$(grep -c '^GET .*/blobs/' '$T/proxy.log') -eq 0 ]]"

# --- a flipped byte on the way: EIO, nothing kept
echo flip >mode
: >proxy.log
check "a read of a chunk flipped on the way fails (EIO)" \
  bash -c "cat '$IMG/bin/busybox' 2>&1 >/dev/null | grep -q 'Input/output error'"
check "  (the fault was injected)" grep -q "^inject=flip" proxy.log
check "  mount.log says the chunk does not match the table of contents" \
  grep -q "does not match the digest in the table of contents" "$ROOT/mount.log"
echo none >mode
check "  with the registry honest again, the file reads right (nothing bad kept)" \
  cmp "$IMG/bin/busybox" ref-esgz/rootfs/bin/busybox
check "every file's metadata and content equal umoci unpack's (names in JSON form)" same_tree "$REF" json

# --- a plain pull completes it (the mount stays up across it)
: >proxy.log
check "a plain pull completes the lazily pulled image" "$IMGFS" pull -q "$REF"
check "  the running mount reads a file of a layer it read lazily before, right" \
  cmp "$IMG/etc/passwd" ref-esgz/rootfs/etc/passwd
check "  and another" cmp "$IMG/data/random.hard" ref-esgz/rootfs/data/random.hard
"$IMGFS" umount "$MP"
check "  lazy/ is empty afterwards" bash -c "[[ \$(ls '$ROOT/lazy' | wc -l) -eq 0 ]]"
check "  imgfs images no longer says partial" bash -c "! '$IMGFS' images | grep -q partial"
check "  imgfs verify calls the store clean" "$IMGFS" verify
check "  the tree (from the tar's entry table now) equals umoci unpack's" same_tree "$REF"

# --- a mount across completion, reading bytes that were not local before it
export IMGFS_ROOT=$T/store-mc
"$IMGFS" pull -q --lazy "$REF" >/dev/null
ROOT=$IMGFS_ROOT mount_store "$T/mp3" -o complete=off
IMG3=$T/mp3/127.0.0.1:$F/test/esgz/v3
check "a mount that read part of a lazy file" \
  bash -c "head -c 4096 '$IMG3/data/random.bin' | cmp - <(head -c 4096 ref-esgz/rootfs/data/random.bin)"
"$IMGFS" pull -q "$REF" >/dev/null
check "  reads the whole file right after a plain pull completed the layer" \
  cmp "$IMG3/data/random.bin" ref-esgz/rootfs/data/random.bin
"$IMGFS" umount "$T/mp3"

# --- a manifest whose toc.digest annotation is not the TOC's
python3 - oci v3-esgz <<'PY'
import hashlib, json, os, sys
lay, tag = sys.argv[1], sys.argv[2]
bp = lambda d: os.path.join(lay, 'blobs', *d.split(':'))
idx = json.load(open(os.path.join(lay, 'index.json')))
d = [m for m in idx['manifests'] if m['annotations']['org.opencontainers.image.ref.name'] == tag][0]
man = json.load(open(bp(d['digest'])))
man['layers'][0]['annotations']['containerd.io/snapshot/stargz/toc.digest'] = 'sha256:' + '0' * 64
b = json.dumps(man).encode()
dg = 'sha256:' + hashlib.sha256(b).hexdigest()
open(bp(dg), 'wb').write(b)
idx['manifests'].append({'mediaType': d['mediaType'], 'digest': dg, 'size': len(b),
                         'annotations': {'org.opencontainers.image.ref.name': 'v3-badtoc'}})
json.dump(idx, open(os.path.join(lay, 'index.json'), 'w'))
PY
$TOOLS push-layout http://127.0.0.1:$P test/badtoc v3 oci v3-badtoc >/dev/null
export IMGFS_ROOT=$T/store-badtoc
expect_fail "a toc.digest annotation that is not the TOC's: pull --lazy fails naming it" \
  "sha256:0000000000000000000000000000000000000000000000000000000000000000" \
  "$IMGFS" pull -q --lazy "127.0.0.1:$F/test/badtoc:v3"
check "  and records no image" bash -c "[[ -z \$('$IMGFS' images -q 2>/dev/null) ]]"
# (the other layers' lazy/ dirs, prepared in parallel, are named by no layer: prune's)
check "  imgfs prune removes what the failed pull left in lazy/" \
  bash -c "'$IMGFS' prune >/dev/null && [[ \$(ls '$IMGFS_ROOT/lazy' 2>/dev/null | wc -l) -eq 0 ]]"

# --- a TOC that lies about one file (its digest annotation right)
export IMGFS_ROOT=$T/store-lie
LREF=127.0.0.1:$F/test/lie:v3
check "a TOC with a wrong file digest: pull --lazy succeeds" "$IMGFS" pull -q --lazy "$LREF"
expect_fail "  reading that file fails: its content does not match the TOC" \
  "does not match the digest in the table of contents" "$IMGFS" cat "$LREF" /etc/passwd
check "  another file of that layer reads right" \
  bash -c "'$IMGFS' cat '$LREF' /data/random.bin | cmp - ref-esgz/rootfs/data/random.bin"
expect_fail "  a plain pull completes the layer and finds the mismatch" \
  "is broken: .*table of contents does not match the tar" "$IMGFS" pull -q "$LREF"
check "  imgfs images marks it broken" bash -c "'$IMGFS' images 2>/dev/null | grep -q '(broken)'"
check "  imgfs verify exits 1" bash -c "! '$IMGFS' verify >/dev/null 2>&1"
finish
