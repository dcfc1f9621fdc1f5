#!/usr/bin/env bash
# imgfs pull through a faulty front between imgfs and a real registry, and kill -9 of
# pulls at several points: a flipped byte fails with a digest error and stores nothing;
# a blob cut halfway resumes with a Range request; 500 then 200 and 429 with
# Retry-After are retried; a trickle still completes; a killed pull completes on the
# next try from what was verified, and `imgfs verify` calls the store clean.
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
$TOOLS proxy "$F" "$P" "$T/mode" "$T/proxy.log" &
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
s=$SECONDS
check "429 with Retry-After: retried, completes" "$IMGFS" pull -q "$REF"
check "  (the fault was injected)" grep -q "^inject=429" "$T/proxy.log"
check "  after honouring Retry-After (≥ 1 s)" test $((SECONDS - s)) -ge 1
fresh trickle trickle
check "a slow trickle still completes" "$IMGFS" pull -q "$REF"
check "  exact" same

# Two pulls of one image at once through the front: each layer blob is downloaded once.
fresh twice none
"$IMGFS" pull -q "$REF" >/dev/null 2>&1 &
pa=$!
"$IMGFS" pull -q "$REF" >/dev/null 2>&1 &
pb=$!
rca=0; rcb=0
wait $pa || rca=$?
wait $pb || rcb=$?
check "two pulls at once both succeed" test "$rca $rcb" = "0 0"
layers=$(curl -s -H 'Accept: application/vnd.oci.image.manifest.v1+json' "http://127.0.0.1:$P/v2/test/img/manifests/v3" |
  python3 -c 'import json, sys; print(" ".join(l["digest"] for l in json.load(sys.stdin)["layers"]))')
once_each() {
  for l in $layers; do
    [[ $(grep -c "^GET /v2/test/img/blobs/$l " "$T/proxy.log") -eq 1 ]] || { echo "$l: $(grep -c "blobs/$l " "$T/proxy.log") GETs"; return 1; }
  done
}
check "  and each of the $(wc -w <<<"$layers") layer blobs was downloaded once" once_each
check "  exact" same

# kill -9 at several points of a slow pull, then pull again.
for delay in 0.3 0.8 1.5 2.5; do
  fresh "kill$delay" trickle
  "$IMGFS" pull -q "$REF" >/dev/null 2>&1 &
  pid=$!
  sleep "$delay"
  kill -9 "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  echo none >"$T/mode"
  check "kill -9 after ${delay}s: verify clean" "$IMGFS" verify
  check "  the next pull completes" "$IMGFS" pull -q "$REF"
  check "  exact" same
  check "  verify clean" "$IMGFS" verify
done
finish
