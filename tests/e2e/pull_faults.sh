#!/usr/bin/env bash
# imgfs pull through a faulty front between imgfs and a real registry, and kill -9 of
# pulls at several points: a flipped byte fails with a digest error and stores nothing;
# a blob cut halfway resumes with a Range request; 500 then 200 and 429 with
# Retry-After are retried (no sooner than Retry-After, on the front's clock); a trickle
# still completes; two overlapping pulls download each blob once; a pull killed
# mid-transfer completes on the next try without downloading again what was verified,
# and `imgfs verify` calls the store clean.
source "$(dirname "$0")/lib.sh"
need umoci python3 busybox docker-registry
cd "$T"
TOOLS="python3 $HERE/registry_tools.py"
build_test_images >/dev/null
P=$(free_port)
start_registry reg "$P"
$TOOLS push-layout http://127.0.0.1:$P test/img v3 oci v3 >/dev/null
$TOOLS push-layout http://127.0.0.1:$P test/img v1 oci v1 >/dev/null
F=$(free_port)
echo none >mode
PROXY_TIMES=1 $TOOLS proxy "$F" "$P" "$T/mode" "$T/proxy.log" &
CLEANUP_PIDS="$CLEANUP_PIDS $!"
wait_port "$F"
REF=127.0.0.1:$F/test/img:v3
same() {
  "$IMGFS" ls -R --format tsv --sha256 "$REF" / >"$T/raw" && python3 "$HERE/tree.py" imgfs "$T/raw" >"$T/got" &&
    python3 "$HERE/tree.py" native ref-v3/rootfs | diff -q - "$T/got" >/dev/null
}
fresh() { export IMGFS_ROOT=$T/store-$1; : >"$T/proxy.log"; echo "$2" >"$T/mode"; }

fresh flip flip
before=$(store_state)
expect_fail "a flipped byte: one-line digest error" "digest mismatch|diff_id mismatch|gzip" "$IMGFS" pull "$REF"
check "  nothing was stored" bash -c "[[ \$(find '$IMGFS_ROOT/blobs' -type f | wc -l) -eq 0 ]] && ! '$IMGFS' inspect '$REF' >/dev/null 2>&1"
check "  no partial file left in ingest/" bash -c "[[ \$(ls '$IMGFS_ROOT/ingest' | wc -l) -eq 0 ]]"
check "  (the fault was injected)" grep -q "^inject=flip" "$T/proxy.log"

fresh flipm flip-manifest
expect_fail "a manifest that does not hash to the pinned digest" "hashes to" \
  "$IMGFS" pull "127.0.0.1:$F/test/img@$(curl -s -o /dev/null -D - -H 'Accept: application/vnd.oci.image.manifest.v1+json' http://127.0.0.1:$P/v2/test/img/manifests/v3 | awk -F': ' 'tolower($1)=="docker-content-digest" {print $2}' | tr -d '\r')"

fresh cut cut
check "a blob cut halfway: the pull completes" "$IMGFS" pull -q "$REF"
check "  (the fault was injected)" grep -q "^inject=cut" "$T/proxy.log"
check "  by resuming with a Range request" grep -q "range=bytes=[1-9]" "$T/proxy.log"
check "  and the tree is exact" same

fresh e500 500
check "500 then 200: retried, completes" "$IMGFS" pull -q "$REF"
check "  (the fault was injected)" grep -q "^inject=500" "$T/proxy.log"
check "  exact" same
fresh e429 429
check "429 with Retry-After: retried, completes" "$IMGFS" pull -q "$REF"
check "  (the fault was injected)" grep -q "^inject=429" "$T/proxy.log"
# For each blob answered 429, the seconds until its next GET, on the front's clock.
retry_waits() {
  python3 - "$T/proxy.log" <<'PY'
import re, sys
injected, waits = {}, {}
for line in open(sys.argv[1]):
    t = float(re.search(r' t=([0-9.]+)$', line).group(1))
    m = re.match(r'inject=429 (\S+)', line)
    if m:
        injected[m.group(1)] = t
        continue
    m = re.match(r'GET (\S+) ', line)
    if m and m.group(1) in injected and m.group(1) not in waits:
        waits[m.group(1)] = t - injected[m.group(1)]
for p, w in waits.items():
    print(f'{w:.3f} {p}')
if not injected or len(waits) != len(injected):
    sys.exit(f'{len(injected)} blobs answered 429, {len(waits)} retried')
PY
}
honours_retry_after() {
  local w
  w=$(retry_waits) || return 1
  echo "$w" | awk '$1 < 1.0 { print "retried after " $1 " s: " $2; bad = 1 } END { exit bad }'
}
check "  each retry came at least Retry-After (1 s) after its 429" honours_retry_after
fresh trickle trickle
check "a slow trickle still completes" "$IMGFS" pull -q "$REF"
check "  exact" same

# wait_for DESCRIPTION COMMAND...: polls COMMAND (30 s deadline).
wait_for() {
  local d=$1 deadline=$((SECONDS + 30))
  shift
  until "$@"; do
    ((SECONDS < deadline)) || { echo "timed out waiting for $d"; return 1; }
    sleep 0.02
  done
}
log_count() { grep -c "$1" "$T/proxy.log" || true; }
blob_count() { find "$IMGFS_ROOT/blobs" -type f 2>/dev/null | wc -l; }
layers=$(curl -s -H 'Accept: application/vnd.oci.image.manifest.v1+json' "http://127.0.0.1:$P/v2/test/img/manifests/v3" |
  python3 -c 'import json, sys; print(" ".join(l["digest"] for l in json.load(sys.stdin)["layers"]))')

# Two pulls of one image at once through a slow front: the second starts while the
# first is downloading, both succeed, and each layer blob is downloaded once.
fresh twice trickle
"$IMGFS" pull -q "$REF" >/dev/null 2>&1 &
pa=$!
wait_for "the first pull's layer downloads" eval '[[ $(log_count "^GET /v2/test/img/blobs/") -ge 3 ]]'
# ...and until its download jobs hold their blobs' locks (a lock file exists once its
# job took it). Before that, its early requests go out with no lock file to hold (a
# pull whose config then fails must leave the store as it was), and a second pull
# starting in that window may send early requests of its own: a wasted request, not a
# second download, but not what this check is about.
wait_for "the first pull's blob locks" eval '[[ $(ls "$IMGFS_ROOT/ingest/locks" 2>/dev/null | wc -l) -ge $(wc -w <<<"$layers") ]]'
"$IMGFS" pull -q "$REF" >/dev/null 2>&1 &
pb=$!
rca=0; rcb=0
wait $pa || rca=$?
wait $pb || rcb=$?
check "two pulls at once both succeed" test "$rca $rcb" = "0 0"
# Overlap, from the front's log: the second manifest GET (the second pull) came before
# the last blob body was sent (the first pull still downloading).
overlapped() {
  python3 - "$T/proxy.log" <<'PY'
import re, sys
man, done = [], []
for line in open(sys.argv[1]):
    t = float(re.search(r' t=([0-9.]+)$', line).group(1))
    if re.match(r'GET /v2/test/img/manifests/', line): man.append(t)
    if line.startswith('done /v2/test/img/blobs/'): done.append(t)
if len(man) < 2 or not done or not man[1] < max(done):
    sys.exit(f'no overlap: manifest GETs at {man}, last blob sent at {max(done, default=None)}')
print(f'the second pull started {max(done) - man[1]:.2f} s before the last blob was sent')
PY
}
check "  and they overlapped (the second began while the first downloaded)" overlapped
once_each() {
  for l in $layers; do
    [[ $(grep -c "^GET /v2/test/img/blobs/$l " "$T/proxy.log") -eq 1 ]] ||
      { echo "$l: $(grep -c "^GET /v2/test/img/blobs/$l " "$T/proxy.log") GETs; the front's log:"; cat "$T/proxy.log"; return 1; }
  done
}
check "  and each of the $(wc -w <<<"$layers") layer blobs was downloaded once" once_each
check "  exact" same
check "  verify clean (one copy of each blob)" "$IMGFS" verify

# Two pulls of one image at once, the second starting in the first's early window: the
# front holds the config 2 s, so the first pull's early layer requests are out with no
# blob lock taken (nothing is created before the config is verified), and the second
# pull's manifest GET comes before the first's config is answered. Its own early
# requests then race the first pull's for the same blobs: both succeed, the store holds
# one verified copy of each blob and no partial file, and the tree is exact.
config=$(curl -s -H 'Accept: application/vnd.oci.image.manifest.v1+json' "http://127.0.0.1:$P/v2/test/img/manifests/v3" |
  python3 -c 'import json, sys; print(json.load(sys.stdin)["config"]["digest"])')
fresh early "lazy-config-slow $config 2"
"$IMGFS" pull -q "$REF" >/dev/null 2>&1 &
pa=$!
CLEANUP_PIDS="$CLEANUP_PIDS $pa"
# The config's GET and at least one early layer GET, the config not answered yet.
wait_for "the first pull's early layer requests" eval \
  '[[ $(grep -c "^GET /v2/test/img/blobs/sha256:" "$T/proxy.log") -ge 2 ]]'
"$IMGFS" pull -q "$REF" >/dev/null 2>&1 &
pb=$!
CLEANUP_PIDS="$CLEANUP_PIDS $pb"
rca=0; rcb=0
wait $pa || rca=$?
wait $pb || rcb=$?
check "two pulls at once, the second in the first's early window: both succeed" test "$rca $rcb" = "0 0"
# From the front's log: the second manifest GET came before the first config answer,
# and the layers had more GETs than layers (both pulls' early requests went out).
in_window() {
  python3 - "$T/proxy.log" $layers <<'PY'
import sys
lines = open(sys.argv[1]).read().splitlines()
man = [i for i, l in enumerate(lines) if l.startswith('GET /v2/test/img/manifests/')]
ans = [i for i, l in enumerate(lines) if l.startswith('inject=lazy-config-slow ')]
gets = sum(1 for l in lines for d in sys.argv[2:] if l.startswith(f'GET /v2/test/img/blobs/{d} '))
if len(man) < 2 or not ans or not man[1] < ans[0]:
    sys.exit(f'not in the window: manifest GETs at lines {man}, configs answered at lines {ans}')
if gets <= len(sys.argv) - 2:
    sys.exit(f'{gets} layer GETs for {len(sys.argv) - 2} layers: the second pull sent no early request')
print(f'{gets} layer GETs for {len(sys.argv) - 2} layers')
PY
}
check "  and it started in that window, its early requests racing the first's" in_window
check "  exact" same
check "  verify clean (one copy of each blob)" "$IMGFS" verify
check "  no partial download left in ingest/" bash -c "! ls '$IMGFS_ROOT/ingest' | grep -v '^locks$'"

# kill -9 of a slow pull at several points of its transfer, then pull again: the kill
# must land mid-transfer (the image not stored, a blob body not fully sent), and the
# next pull must not download again any blob the killed one had committed.
for k in 0 1 2; do
  fresh "kill$k" trickle
  "$IMGFS" pull -q "$REF" >/dev/null 2>&1 &
  pid=$!
  CLEANUP_PIDS="$CLEANUP_PIDS $pid"
  wait_for "the layer downloads" eval '[[ $(log_count "^GET /v2/test/img/blobs/") -ge 4 ]]'
  wait_for "$k committed blobs" eval '[[ $(blob_count) -ge $k ]]'
  kill -9 "$pid" 2>/dev/null || true  # (already gone: the check below says so)
  wait "$pid" 2>/dev/null || true
  echo none >"$T/mode"
  committed=$(find "$IMGFS_ROOT/blobs" -type f -printf '%f\n' 2>/dev/null | sort)
  interrupted() {
    if "$IMGFS" inspect "$REF" >/dev/null 2>&1; then echo "the image was stored: the kill came too late"; return 1; fi
    [[ $(log_count "^done /v2/test/img/blobs/") -lt $(log_count "^GET /v2/test/img/blobs/") ]] ||
      { echo "every blob body was sent before the kill:"; cat "$T/proxy.log"; return 1; }
  }
  check "kill -9 with $k blob(s) committed ($(wc -w <<<"$committed") found): the pull was cut mid-transfer" interrupted
  check "  verify clean" "$IMGFS" verify
  : >"$T/proxy.log"
  check "  the next pull completes" "$IMGFS" pull -q "$REF"
  not_again() {
    local d
    for d in $committed; do
      if grep -q "^GET /v2/test/img/blobs/sha256:$d " "$T/proxy.log"; then echo "sha256:$d downloaded again"; return 1; fi
    done
  }
  check "  and downloads none of the $(wc -w <<<"$committed") blob(s) committed before the kill" not_again
  check "  but does download the rest" grep -q "^GET /v2/test/img/blobs/" "$T/proxy.log"
  check "  exact" same
  check "  verify clean" "$IMGFS" verify
done
finish
