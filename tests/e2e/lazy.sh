#!/usr/bin/env bash
# Lazy pulls of zstd:chunked images (issue 9) against Debian's docker-registry, through
# the faulty front of registry_tools.py, which logs every blob request and the bytes it
# sent: `pull --lazy` fetches only the tables of contents and tar headers; `find` and
# `stat` in the mount fetch nothing; a one-file read fetches a few hundred KiB; every
# file reads right (against `umoci unpack`); a registry that ignores Range (200) still
# serves right bytes; a flipped byte in a fetched range fails the read (EIO) and nothing
# of it is kept; offline, a read fails with EIO within a bounded wait and one mount.log
# line naming the registry; a plain pull completes the image, fetching only the bytes
# lazy/ does not hold (verify clean, lazy/ gone);
# a gzip layer under --lazy is pulled in full with one stderr line; a TOC whose checksum
# is right but which describes other content fails that file's reads and, at completion,
# marks the image broken (images, verify, reads); kill -9 of the daemon mid-fetch and a
# remount read right; a read waiting on a stalled registry holds up no other request.
# Mounts use -o complete=off: this suite counts what reads fetch, and the daemon's
# background completion (lazy_complete.sh) would fetch the rest meanwhile.
source "$(dirname "$0")/lib.sh"
need umoci python3 busybox docker-registry skopeo
require_fuse
cd "$T"
TOOLS="python3 $HERE/registry_tools.py"
zstd_chunked_registry
$TOOLS push-layout http://127.0.0.1:$P test/gz v3 oci v3 >/dev/null
F=$(free_port)
echo none >mode
$TOOLS proxy "$F" "$P" "$T/mode" "$T/proxy.log" &
PROXY=$!
CLEANUP_PIDS="$CLEANUP_PIDS $PROXY"
wait_port "$F"
REF=127.0.0.1:$F/test/lazy:v3
sent() { awk '$1=="sent" {s+=$2} END {print s+0}' "$T/proxy.log"; }
blob_gets() { grep -c '^GET .*/blobs/' "$T/proxy.log" || true; }
# same_tables REDIR: `images --digests` (the direct table) equals its template table.
# The test images are seconds old, so CREATED ("8 seconds ago") may tick between the two
# runs: up to three tries.
same_tables() {
  local i
  for i in 1 2 3; do
    diff <(eval "'$IMGFS' images --digests $1") \
      <(eval "'$IMGFS' images --digests --format 'table {{.Repository}}\t{{.Tag}}\t{{.Digest}}\t{{.ID}}\t{{.CreatedSince}}\t{{.Size}}' $1") && return 0
  done
  return 1
}

# --- pull --lazy
: >proxy.log
check "pull --lazy of a zstd:chunked image succeeds" "$IMGFS" pull -q --lazy "$REF"
pull_bytes=$(sent)
echo "# pull --lazy: $pull_bytes blob bytes of $blob_total"
check "  it fetched part of the blobs (TOC, headers): 0 < $pull_bytes < half of $blob_total" \
  test "$pull_bytes" -gt 0 -a "$pull_bytes" -lt $((blob_total / 2))
layers=$(python3 -c "
import json
i=json.load(open('z/index.json'))['manifests'][0]['digest'].split(':')[1]
print('|'.join(l['digest'] for l in json.load(open('z/blobs/sha256/'+i))['layers']))")
check "  every layer blob GET was a Range request (only the config came whole)" \
  bash -c "grep -E '^GET .*/blobs/($layers)' proxy.log | grep -q range=bytes && ! grep -E '^GET .*/blobs/($layers)' proxy.log | grep -q 'range=-'"
check "  the layer blobs are not in blobs/ (lazy/ holds them)" \
  bash -c "[[ \$(ls '$ROOT/lazy' | wc -l) -eq 3 ]]"
check "  imgfs images marks it partial with what is local" \
  bash -c "'$IMGFS' images | grep -q 'partial: .* of .* local'"
check "  images --digests (the direct table) is the same table as its template" \
  same_tables ""

# --- the mount: metadata needs no network
MP=$T/mp
mount_store "$MP" -o complete=off
IMG=$MP/127.0.0.1:$F/test/lazy/v3
: >proxy.log
check "find of the whole tree through the mount" bash -c "find '$IMG' -printf '%p %s %m %U %G\n' | wc -l | grep -qv '^0$'"
check "stat of a file" stat "$IMG/data/random.bin"
check "  no blob was fetched for find/stat" test "$(blob_gets)" -eq 0
: >proxy.log
# (small files came with the tar headers: the pull fetched the blob ranges between file
# contents, grouped; a large file's content is not local)
check "a one-file read gives the right bytes" \
  bash -c "head -c 4096 '$IMG/data/random.bin' | cmp - <(head -c 4096 ref-v3/rootfs/data/random.bin)"
one=$(sent)
echo "# one small file: $one bytes in $(blob_gets) request(s)"
check "  it fetched a small range: 256 KiB <= $one <= 1 MiB (blobs total $blob_total)" \
  test "$one" -ge $((256 << 10)) -a "$one" -le $((1 << 20))
check "  a small file that came with the headers reads with no request" \
  bash -c ": >'$T/proxy.log'; cmp '$IMG/etc/passwd' ref-v3/rootfs/etc/passwd && ! grep -q '^GET .*/blobs/' '$T/proxy.log'"
: >proxy.log
check "a second read of it fetches nothing" \
  bash -c "head -c 4096 '$IMG/data/random.bin' | cmp - <(head -c 4096 ref-v3/rootfs/data/random.bin)"
check "  (no blob request)" test "$(blob_gets)" -eq 0

# --- a flipped byte in the fetched bytes: EIO, nothing kept
echo flip >mode
: >proxy.log
check "a read of bytes flipped on the way fails (EIO)" bash -c "! cat '$IMG/data/random.bin' >/dev/null 2>&1"
check "  (the fault was injected)" grep -q "^inject=flip" proxy.log
check "  mount.log says the chunk does not match the table of contents" \
  grep -q "does not match the digest in the table of contents" "$ROOT/mount.log"
echo none >mode
: >proxy.log
check "  with the registry honest again, the file reads right (the bad bytes were not kept)" \
  cmp "$IMG/data/random.bin" ref-v3/rootfs/data/random.bin
seq_gets=$(blob_gets)
echo "# a sequential read of the 3 MB file: $seq_gets blob request(s), $(sent) bytes"

# --- kill -9 of the daemon mid-fetch, then remount: the ranges it recorded are on disk
# and used, every byte right
local_bytes() { cat "$ROOT"/lazy/*/ranges | awk 'NF == 2 && $1 ~ /^[0-9]+$/ {s += $2 - $1} END {print s + 0}'; }
r0=$(local_bytes)
echo trickle >mode
: >proxy.log
( cat "$IMG/bin/busybox" >/dev/null 2>&1 || true ) &
reader=$!
deadline=$((SECONDS + 20))
until grep -q '^GET .*/blobs/.*range=bytes' proxy.log || ((SECONDS > deadline)); do sleep 0.1; done
sleep 2  # a few 256 KiB ranges complete (32 KiB per 50 ms each)
check "  (a fetch was under way)" grep -q '^GET .*/blobs/.*range=bytes' proxy.log
daemon=$(sed -n 's/.* imgfs\[\([0-9]*\)\]: mounted .*/\1/p' "$ROOT/mount.log" | tail -1)
check "kill -9 of the mount daemon while it fetches" kill -9 "$daemon"
wait "$reader" || true
r1=$(local_bytes)
echo "# local blob bytes: $r0 before the read, $r1 after the kill"
check "  the ranges it completed before the kill are on disk ($r1 > $r0)" test "$r1" -gt "$r0"
echo none >mode
check "  imgfs mount again over the dead mount" bash -c "'$IMGFS' mount -o complete=off '$MP' 2>/dev/null; sleep 0.5; grep -q ' $MP fuse.imgfs ' /proc/mounts"
: >proxy.log
check "  the file reads right after the remount" cmp "$IMG/bin/busybox" ref-v3/rootfs/bin/busybox
check "  imgfs verify: partial layers are no problem" "$IMGFS" verify

# --- every file, via imgfs ls --sha256 (the same read path), against umoci's unpack
check "every file's metadata and content equal umoci unpack's" same_tree_v3 "$REF"
"$IMGFS" umount "$MP"

# --- a registry that ignores Range and answers 200 with the whole blob
export IMGFS_ROOT=$T/store-norange
echo none >mode
"$IMGFS" pull -q --lazy "$REF" >/dev/null
echo norange >mode
: >proxy.log
check "a registry that ignores Range (200): cat still gives the right bytes" \
  bash -c "'$IMGFS' cat '$REF' /data/random.bin | cmp - ref-v3/rootfs/data/random.bin"
check "  (the fault was injected)" grep -q "^inject=norange" proxy.log
echo none >mode

# --- blobs redirected to signed URLs that expire: the first signed URL of each blob
# answers 403; the fetch asks the registry again for a fresh one
export IMGFS_ROOT=$T/store-signed
echo "signed http://127.0.0.1:$F" >mode
: >proxy.log
check "signed blob URLs that expire (403): pull --lazy succeeds" "$IMGFS" pull -q --lazy "$REF"
check "  and cat of a file not yet local gives the right bytes" \
  bash -c "'$IMGFS' cat '$REF' /data/random.bin | cmp - ref-v3/rootfs/data/random.bin"
check "  (signed URLs expired, and were asked for again)" bash -c \
  "[[ \$(grep -c '^inject=expired' proxy.log) -ge 1 && \$(grep -c '^inject=signed-redirect' proxy.log) -gt \$(grep -c '^inject=expired' proxy.log) ]]"
echo none >mode

# --- a read that waits on the registry holds up no other request: the loop thread
# answers statfs, xattrs and lookups while the read waits on a pool thread
# (fs/fuse_loop.h, the default loop, named here; libfuse's, -o spin=0, has a thread per
# request anyway). The registry's front is stopped (SIGSTOP): its socket accepts the
# request and answers nothing until SIGCONT.
export IMGFS_ROOT=$T/store-stall
"$IMGFS" pull -q --lazy "$REF" >/dev/null
ROOT=$IMGFS_ROOT mount_store "$T/mp3" -o complete=off,spin=50
IMG3=$T/mp3/127.0.0.1:$F/test/lazy/v3
stat "$IMG3/data/random.bin" "$IMG3/etc" >/dev/null
: >proxy.log
kill -STOP "$PROXY"
cmp "$IMG3/data/random.bin" ref-v3/rootfs/data/random.bin &
reader=$!
sleep 1
check "while a read waits on a stopped registry, statfs, listxattr and a lookup answer within 3 s" \
  timeout 3 python3 -c 'import os, sys; os.statvfs(sys.argv[1]); os.listxattr(sys.argv[1]); os.lstat(sys.argv[1] + "/etc/passwd")' "$IMG3"
check "  (the read is still waiting on the registry)" kill -0 "$reader"
kill -CONT "$PROXY"
check "  once the registry answers, the read ends with the right bytes" wait "$reader"
"$IMGFS" umount "$T/mp3"
export IMGFS_ROOT=$ROOT

# --- offline: EIO after a bounded wait, one mount.log line naming the registry
export IMGFS_ROOT=$T/store-offline
F2=$(free_port)
$TOOLS proxy "$F2" "$P" "$T/mode" "$T/proxy2.log" &
P2=$!
CLEANUP_PIDS="$CLEANUP_PIDS $P2"
wait_port "$F2"
"$IMGFS" pull -q --lazy "127.0.0.1:$F2/test/lazy:v3" >/dev/null
kill "$P2"
ROOT=$IMGFS_ROOT mount_store "$T/mp2" -o complete=off
start=$SECONDS
check "offline: a read of bytes not local fails with EIO" \
  bash -c "cat '$T/mp2/127.0.0.1:$F2/test/lazy/v3/data/random.bin' 2>&1 >/dev/null | grep -q 'Input/output error'"
waited=$((SECONDS - start))
echo "# offline read failed after ${waited}s"
check "  within a bounded wait (${waited}s <= 30s)" test "$waited" -le 30
check "  one mount.log line naming the registry" \
  test "$(grep -c "127.0.0.1:$F2/test/lazy" "$IMGFS_ROOT/mount.log")" -eq 1
check "  ls and stat still work offline" ls -l "$T/mp2/127.0.0.1:$F2/test/lazy/v3/data"
"$IMGFS" umount "$T/mp2"

# --- a plain pull completes the lazy image
export IMGFS_ROOT=$ROOT
# What the completion reuses: local ranges of 256 KiB or more (shorter ones are fetched
# again with their neighbours). One byte of the layer with the least of it is damaged
# on disk: the completion must not trust it (the blob digest fails, that blob is
# fetched whole).
read -r had flipped flipped_size flipped_blob < <(python3 - "$ROOT/lazy" <<'PY'
import os, sys
best, total = None, 0
for d in os.listdir(sys.argv[1]):
    if not os.path.exists(f"{sys.argv[1]}/{d}/ranges"):
        continue
    rs = [tuple(map(int, l.split())) for l in open(f"{sys.argv[1]}/{d}/ranges")
          if len(l.split()) == 2 and not l.startswith("imgfs-ranges")]
    rs = [(s, e) for s, e in rs if e - s >= 256 << 10]
    n = sum(e - s for s, e in rs)
    total += n
    size = os.path.getsize(f"{sys.argv[1]}/{d}/data")
    # The smallest blob is damaged: the bound below (the rest plus that blob again)
    # stays under the total while the others' reusable bytes outweigh it. (Reads fetch
    # growing windows: the layer with the least local may be the biggest.)
    if rs and (best is None or size < best[3]):
        best = (n, d, rs[0][0], size)
n, d, at, size = best
with open(f"{sys.argv[1]}/{d}/data", "r+b") as f:
    f.seek(at); b = f.read(1); f.seek(at); f.write(bytes([b[0] ^ 0xff]))
print(total, n, size, d)
PY
)
: >proxy.log
check "a plain pull completes the lazily pulled image" "$IMGFS" pull -q "$REF"
got=$(sent)
echo "# completion: $got bytes sent; $had of $blob_total blob bytes local and reusable; the damaged layer: $flipped of $flipped_size"
# Sent at most: what was not reusable, plus the damaged layer's blob once more (its gaps
# first, then all of it).
bound=$((blob_total - had + flipped_size + (64 << 10)))
check "  it fetched only what was not local, and the damaged layer again whole: $got <= $bound" \
  test "$got" -le "$bound"
check "  (and that is less than all the blobs: $bound < $blob_total)" test "$bound" -lt "$blob_total"
check "  the damaged layer's blob was fetched whole after its digest failed" \
  grep -q "^GET .*/blobs/sha256:$flipped_blob .*range=-" proxy.log
check "  lazy/ is empty afterwards" bash -c "[[ \$(ls '$ROOT/lazy' | wc -l) -eq 0 ]]"
check "  imgfs images no longer says partial" bash -c "! '$IMGFS' images | grep -q partial"
check "  imgfs verify calls the store clean" "$IMGFS" verify
check "  the tree equals umoci unpack's" same_tree_v3 "$REF"

# --- a gzip image under --lazy: pulled in full, said once
export IMGFS_ROOT=$T/store-gz
err=$("$IMGFS" pull -q --lazy "127.0.0.1:$F/test/gz:v3" 2>&1 >/dev/null)
check "--lazy of a gzip image pulls it in full, one stderr line saying so" \
  bash -c "[[ \$(printf '%s\n' \"\$1\" | grep -c 'pulled in full') -eq 1 ]]" _ "$err"
check "  and it is a complete image" bash -c "! '$IMGFS' images | grep -q partial && '$IMGFS' verify"
# --- a TOC that describes content the tar does not have (its own checksum right): the
# file's reads fail; completion marks the image broken and says why
cat >tamper.py <<'PY'
import hashlib, json, os, struct, subprocess, sys
lay, tag, victim = sys.argv[1], sys.argv[2], sys.argv[3]
def blob(d): return os.path.join(lay, 'blobs/sha256', d.split(':')[1])
def put(b):
    d = 'sha256:' + hashlib.sha256(b).hexdigest()
    open(blob(d), 'wb').write(b)
    return d
idx = json.load(open(os.path.join(lay, 'index.json')))
md = idx['manifests'][0]
man = json.load(open(blob(md['digest'])))
for l in man['layers']:
    a = l['annotations']
    pre = 'io.containers.zstd-chunked.' if 'io.containers.zstd-chunked.manifest-position' in a else 'io.github.containers.zstd-chunked.'
    off, ln, usz, typ = map(int, a[pre + 'manifest-position'].split(':'))
    b = open(blob(l['digest']), 'rb').read()
    toc = json.loads(subprocess.run(['zstd', '-dc'], input=b[off:off + ln], capture_output=True, check=True).stdout)
    hit = [e for e in toc['entries'] if e.get('name') == victim and e['type'] == 'reg']
    if not hit: continue
    fake = 'sha256:' + hashlib.sha256(b'not the content').hexdigest()
    for e in hit:
        e['digest'] = fake
        if 'chunkDigest' in e: e['chunkDigest'] = fake
    raw = json.dumps(toc).encode()
    new = subprocess.run(['zstd', '-c', '-q'], input=raw, capture_output=True, check=True).stdout
    nb = b[:off - 8] + struct.pack('<II', 0x184D2A50, len(new)) + new + b[off + ln:]
    l['digest'] = put(nb); l['size'] = len(nb)
    a[pre + 'manifest-position'] = f'{off}:{len(new)}:{len(raw)}:{typ}'
    a[pre + 'manifest-checksum'] = 'sha256:' + hashlib.sha256(new).hexdigest()
    break
else:
    sys.exit('victim not found')
mb = json.dumps(man).encode()
md['digest'] = put(mb); md['size'] = len(mb)
json.dump(idx, open(os.path.join(lay, 'index.json'), 'w'))
PY
cp -a z zt
python3 tamper.py zt v3 etc/passwd
skopeo copy -q --dest-tls-verify=false oci:zt:v3 "docker://127.0.0.1:$P/test/tampered:v3"
export IMGFS_ROOT=$T/store-tampered
TREF=127.0.0.1:$F/test/tampered:v3
check "a TOC with a wrong file digest (its checksum right): pull --lazy succeeds" \
  "$IMGFS" pull -q --lazy "$TREF"
expect_fail "  reading that file fails: its content does not match the TOC" \
  "does not match the digest in the table of contents" "$IMGFS" cat "$TREF" /etc/passwd
expect_fail "  a plain pull completes the layer and finds the mismatch" \
  "is broken: .*table of contents does not match the tar" "$IMGFS" pull -q "$TREF"
check "  imgfs images marks it broken and says why" \
  bash -c "'$IMGFS' images 2>&1 | grep -q '(broken)' && '$IMGFS' images 2>&1 >/dev/null | grep -q 'table of contents does not match the tar'"
check "  images --digests (the direct table) is the same table as its template" \
  same_tables "2>&1"
check "  imgfs verify exits 1 naming the mismatch" \
  bash -c "! '$IMGFS' verify 2>'$T/verify.err' >/dev/null && grep -q 'completion found a mismatch' '$T/verify.err'"
check "  reads of the layer fail (another file of it too)" \
  bash -c "'$IMGFS' cat '$TREF' '/data/with space' 2>&1 >/dev/null | grep -q 'completion found a mismatch'"
check "  files of the other layers still read" \
  bash -c "'$IMGFS' cat '$TREF' /etc/motd | cmp - ref-v3/rootfs/etc/motd"
# --- multi-range requests (registry/multipart_ranges.h): the tar-header ranges of a
# layer go in one request (IMGFS_LAZY_JOIN=0: no joining, the most ranges); a registry
# answering a single 206 or 200 to them still gives the same image; what came with the
# headers reads with the registry down (kept bytes right)
export IMGFS_ROOT=$ROOT
"$IMGFS" ls -R --format tsv "$REF" / >tree-full.tsv
lazy_pull_as() {  # lazy_pull_as MODE STORE [JOIN]: pull --lazy through the proxy in MODE
  echo "$1" >mode
  : >proxy.log
  IMGFS_ROOT=$T/$2 IMGFS_LAZY_JOIN=${3-0} "$IMGFS" pull -q --lazy "$REF" >/dev/null &&
    IMGFS_ROOT=$T/$2 "$IMGFS" ls -R --format tsv "$REF" / | diff -q tree-full.tsv - >/dev/null
}
layer_gets() { grep -cE "^GET .*/blobs/($layers)" proxy.log || true; }
check "multi-range: pull --lazy gives the same entry table as a full pull" lazy_pull_as none store-mr
mr_reqs=$(layer_gets) mr_bytes=$(sent)
check "  it asked for several ranges in one request" grep -qE "^GET .*/blobs/($layers).* range=bytes=[0-9]+-[0-9]+," proxy.log
check "  a server answering a single 206 (no multi-range): the same entry table" lazy_pull_as singlerange store-sr
sr_reqs=$(layer_gets) sr_bytes=$(sent)
check "    (the fault was injected)" grep -q "^inject=singlerange" proxy.log
check "  a server answering 200 (Range ignored): the same entry table" lazy_pull_as norange store-nr
nr_reqs=$(layer_gets)
check "    (the fault was injected)" grep -q "^inject=norange" proxy.log
echo none >mode
echo "# multi-range: $mr_reqs layer requests, $mr_bytes bytes; single 206: $sr_reqs, $sr_bytes; 200: $nr_reqs"
check "  multi-range needs fewer requests than one range each ($mr_reqs < $sr_reqs)" test "$mr_reqs" -lt "$sr_reqs"
check "  at most two per layer: TOC + one batch of ranges ($mr_reqs <= 6)" test "$mr_reqs" -le 6
check "  its bytes: a small part of the blobs ($mr_bytes <= $blob_total / 100)" test "$mr_bytes" -le $((blob_total / 100))
check "  and no more than one range each plus 200 bytes a part ($mr_bytes <= $sr_bytes + 200 * $sr_reqs)" \
  test "$mr_bytes" -le $((sr_bytes + 200 * sr_reqs))
check "  with the default join (small files come along): the same entry table" \
  lazy_pull_as none store-mrj ""
check "    (several ranges in one request)" grep -qE "^GET .*/blobs/($layers).* range=bytes=[0-9]+-[0-9]+," proxy.log
echo 500-always >mode
: >proxy.log
check "  a file that came in the multipart answer reads right with the registry failing" \
  bash -c "IMGFS_ROOT='$T/store-mrj' '$IMGFS' cat '$REF' /etc/passwd | cmp - ref-v3/rootfs/etc/passwd && ! grep -q '^GET .*/blobs/' proxy.log"
echo none >mode
# --- a lazy pull fetches the layers' TOCs and tar headers while its config is on its
# way (registry/puller.cc); a bad config fails the pull with one line naming it, stores
# nothing, and stops the header requests still running (the proxy stalls them 20 s); a
# bad TOC arriving after the other layers were fetched fails it too, storing nothing of
# them
config=$(python3 -c "
import json
i=json.load(open('z/index.json'))['manifests'][0]['digest'].split(':')[1]
print(json.load(open('z/blobs/sha256/'+i))['config']['digest'])")
stored_nothing() {  # no blob, no lazy/ directory, no image in store $1
  [[ $(find "$T/$1/blobs" "$T/$1/lazy" -type f 2>/dev/null | wc -l) -eq 0 &&
    -z $(IMGFS_ROOT=$T/$1 "$IMGFS" images -q) ]]
}
line_of() { grep -n -m1 -e "$1" proxy.log | cut -d: -f1; }
toc_before_config() {  # a layer's Range request was sent before the config was answered
  local c r
  c=$(line_of "^inject=lazy-config-bad ")
  r=$(line_of "^GET .*/blobs/sha256:.* range=bytes=")
  [[ -n $c && -n $r && $r -lt $c ]]
}
echo "lazy-config-bad $config" >mode
: >proxy.log
start=$(date +%s.%N)
expect_fail "pull --lazy with a bad config fails, naming it" \
  "blob $config: digest mismatch: content hashes to sha256:[0-9a-f]{64}$" \
  env IMGFS_ROOT="$T/store-cfg" "$IMGFS" pull --lazy "$REF"
took=$(echo "$(date +%s.%N) - $start" | bc)
check "  the layers' ranges were asked for while the config was on its way" toc_before_config
check "  header requests were in flight (stalled)" grep -q "^inject=stall" proxy.log
check "  within 8 s (took $took s; the stalled requests are stopped)" test "$(echo "$took < 8" | bc)" -eq 1
check "  nothing stored (no blob, no lazy/, no image)" stored_nothing store-cfg
# The early fetches' bytes are held until the config is verified: at most as many
# layers as downloads run at once are fetched before it (the others by their jobs).
early_layers() {  # distinct layer blobs with a Range request before the config's answer
  local c
  c=$(line_of "^inject=lazy-config-slow ")
  [[ -n $c ]] || return 1
  head -n "$((c - 1))" proxy.log | grep -E "^GET .* range=bytes=" |
    grep -oE "/blobs/sha256:[0-9a-f]{64}" | sort -u | wc -l
}
echo "lazy-config-slow $config" >mode
: >proxy.log
check "pull --lazy --max-concurrent-downloads 1 with the config 1 s late works" \
  bash -c "IMGFS_ROOT='$T/store-cfg1' '$IMGFS' pull -q --lazy --max-concurrent-downloads 1 '$REF' >/dev/null"
check "  one layer was fetched before the config's answer ($(early_layers))" test "$(early_layers)" -eq 1
echo lazy-toc-bad >mode
: >proxy.log
expect_fail "pull --lazy with a layer's TOC not matching the manifest fails, naming it" \
  "layer sha256:[0-9a-f]{64}: table of contents hashes to sha256:[0-9a-f]{64}, the manifest says sha256:[0-9a-f]{64}$" \
  env IMGFS_ROOT="$T/store-toc" "$IMGFS" pull --lazy "$REF"
check "  (the fault was injected)" grep -q "^inject=lazy-toc-bad" proxy.log
check "  (other layers' header ranges were fetched)" grep -qE "^GET .*/blobs/.* range=bytes=[0-9]+-[0-9]+," proxy.log
check "  nothing stored, the other layers' lazy/ included" stored_nothing store-toc
# A layer the store holds already under its diff_id (the gzip image's, pulled in full):
# a bad TOC of it fails nothing, nothing of it being needed. The zstd:chunked image with
# another config (so the config is fetched, beside the layers' TOCs) as test/lazy:other.
python3 - "$P" <<'PY'
import hashlib, json, sys, urllib.request
base = f'http://127.0.0.1:{sys.argv[1]}/v2/test/lazy'
mt = 'application/vnd.oci.image.manifest.v1+json'
def req(method, url, data=None, headers={}):
    return urllib.request.urlopen(urllib.request.Request(url, data, headers, method=method))
man = json.load(req('GET', base + '/manifests/v3', headers={'Accept': mt}))
cfg = json.load(req('GET', base + '/blobs/' + man['config']['digest']))
cfg['author'] = 'another config, the same layers'
data = json.dumps(cfg).encode()
digest = 'sha256:' + hashlib.sha256(data).hexdigest()
loc = req('POST', base + '/blobs/uploads/').headers['Location']
req('PUT', f"{loc}{'&' if '?' in loc else '?'}digest={digest}", data,
    {'Content-Type': 'application/octet-stream'})
man['config'].update(digest=digest, size=len(data))
req('PUT', base + '/manifests/other', json.dumps(man).encode(), {'Content-Type': mt})
PY
echo none >mode
IMGFS_ROOT=$T/store-held "$IMGFS" pull -q "127.0.0.1:$F/test/gz:v3" >/dev/null
echo "lazy-toc-bad held" >mode
: >proxy.log
check "a bad TOC of a layer held already (same diff_id, a gzip blob): pull --lazy works" \
  bash -c "IMGFS_ROOT='$T/store-held' '$IMGFS' pull -q --lazy '127.0.0.1:$F/test/lazy:other' >/dev/null"
check "  (the fault was injected)" grep -q "^inject=lazy-toc-bad" proxy.log
# A layer listed twice under one diff_id (two blobs of the same tar, made at two zstd
# levels): docker takes its content from either, so a bad TOC of one of them fails
# nothing, whether it comes after the good one or before it. Each pull --lazy is
# compared with a full pull of the same image (no fault) in another store.
skopeo copy -q --dest-compress --dest-compress-format zstd:chunked --dest-compress-level 1 \
  oci:oci:v3 oci:z1:v3
dup=$(python3 - "$P" <<'PY'
import json, sys, urllib.request
base = f'http://127.0.0.1:{sys.argv[1]}/v2/test/lazy'
mt = 'application/vnd.oci.image.manifest.v1+json'
def req(method, url, data=None, headers={}):
    return urllib.request.urlopen(urllib.request.Request(url, data, headers, method=method))
def blob(data):
    import hashlib
    digest = 'sha256:' + hashlib.sha256(data).hexdigest()
    loc = req('POST', base + '/blobs/uploads/').headers['Location']
    req('PUT', f"{loc}{'&' if '?' in loc else '?'}digest={digest}", data,
        {'Content-Type': 'application/octet-stream'})
    return digest
man = json.load(req('GET', base + '/manifests/v3', headers={'Accept': mt}))
# (Not pushed by skopeo: it would reuse the registry's blob of the same content.)
i = json.load(open('z1/index.json'))['manifests'][0]['digest'].split(':')[1]
other = json.load(open('z1/blobs/sha256/' + i))['layers'][0]
assert other['digest'] != man['layers'][0]['digest'], ('level 1 made the same blob', other, man['layers'])
assert blob(open('z1/blobs/sha256/' + other['digest'].split(':')[1], 'rb').read()) == other['digest']
cfg = json.load(req('GET', base + '/blobs/' + man['config']['digest']))
d0 = cfg['rootfs']['diff_ids'][0]
m = json.loads(json.dumps(man))  # the level-1 blob in place of the first layer
m['layers'][0] = other
req('PUT', base + '/manifests/z1', json.dumps(m).encode(), {'Content-Type': mt})
for tag, at in (('dup-last', len(man['layers'])), ('dup-first', 0)):
    c = json.loads(json.dumps(cfg))
    c['rootfs']['diff_ids'].insert(at, d0)
    data = json.dumps(c).encode()
    m = json.loads(json.dumps(man))
    m['config'].update(digest=blob(data), size=len(data))
    m['layers'].insert(at, other)
    req('PUT', base + '/manifests/' + tag, json.dumps(m).encode(), {'Content-Type': mt})
print(other['digest'])
PY
)
echo "lazy-toc-bad-of $dup alone" >mode
expect_fail "pull --lazy of the level-1 image with its TOC damaged fails (the fault is fatal alone)" \
  "layer $dup: table of contents hashes to sha256:[0-9a-f]{64}, the manifest says sha256:[0-9a-f]{64}$" \
  env IMGFS_ROOT="$T/store-dup0" "$IMGFS" pull --lazy "127.0.0.1:$F/test/lazy:z1"
for tag in dup-last dup-first; do
  echo "lazy-toc-bad-of $dup $tag" >mode
  : >proxy.log
  check "$tag: a bad TOC of a layer whose diff_id another layer has: pull --lazy works" \
    bash -c "IMGFS_ROOT='$T/store-$tag' '$IMGFS' pull -q --lazy --max-concurrent-downloads 8 '127.0.0.1:$F/test/lazy:$tag' >/dev/null"
  check "  (the fault was injected)" grep -q "^inject=lazy-toc-bad-of .*$dup" proxy.log
  check "  the damaged blob was asked for once (its twin's job took the diff_id)" \
    test "$(grep -c "^GET .*/blobs/$dup" proxy.log)" -eq 1
  echo none >mode
  IMGFS_ROOT=$T/store-full "$IMGFS" pull -q "127.0.0.1:$F/test/lazy:$tag" >/dev/null
  same_as_full() {
    diff <(IMGFS_ROOT=$T/store-$tag "$IMGFS" ls -R --format tsv --sha256 "127.0.0.1:$F/test/lazy:$tag" /) \
      <(IMGFS_ROOT=$T/store-full "$IMGFS" ls -R --format tsv --sha256 "127.0.0.1:$F/test/lazy:$tag" /)
  }
  check "  its tree, every file read, equals a full pull's" same_as_full
  : >proxy.log
  check "  a plain pull completes it" env IMGFS_ROOT="$T/store-$tag" "$IMGFS" pull -q "127.0.0.1:$F/test/lazy:$tag"
  check "  from the blob lazy/ held (the other blob of that diff_id not fetched)" \
    bash -c "! grep -q '^GET .*/blobs/$dup' proxy.log"
  check "  nothing lazy left, verify clean" bash -c "
    [[ -z \$(ls '$T/store-$tag/lazy' 2>/dev/null) ]] && IMGFS_ROOT='$T/store-$tag' '$IMGFS' verify >/dev/null"
  check "  the completed tree equals a full pull's" same_as_full
done
echo none >mode
check "  then, the registry right: the same pull works" bash -c "IMGFS_ROOT='$T/store-toc' '$IMGFS' pull -q --lazy '$REF' >/dev/null"
export IMGFS_ROOT=$ROOT
finish
