#!/usr/bin/env bash
# What a pull reuses (issue 14), seen from a request-logging front:
#   - Bearer tokens are kept in the store until they expire: a second pull of the same
#     repository asks the token service nothing and its first request carries a token;
#     a cached token the registry rejects is replaced; the file is 0600 and the token
#     is never printed.
#   - Connections: one per concurrent download, not one per request.
#   - A pull killed mid-transfer leaves its partial file; the next pull resumes it
#     with a Range request (fewer bytes fetched), also from a registry that ignores
#     Range (answered 200: the bytes already held are dropped), and a partial file
#     whose bytes are bad is verified, thrown away and fetched again from 0.
source "$(dirname "$0")/lib.sh"
need umoci python3 busybox docker-registry openssl
cd "$T"
TOOLS="python3 $HERE/registry_tools.py"
build_test_images >/dev/null

openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=imgfs-token -keyout tok.key -out tok.crt 2>/dev/null
K=$(free_port)
TOKEN_LOG=$T/tok.log $TOOLS token-server "$K" tok.key tok.crt &
CLEANUP_PIDS="${CLEANUP_PIDS:-} $!"
wait_port "$K"
: >"$T/tok.log"
P=$(free_port)
start_registry reg "$P" "auth:" "  token: {realm: http://127.0.0.1:$K/token, service: imgfs-registry, issuer: imgfs-test, rootcertbundle: $T/tok.crt}"
PLAIN=$(free_port)
mkdir -p "$T/plain" "$T/reg/data" && ln -sfn "$T/reg/data" "$T/plain/data"
start_registry plain "$PLAIN"
$TOOLS push-layout http://127.0.0.1:$PLAIN test/img v3 oci v3 >/dev/null
$TOOLS push-layout http://127.0.0.1:$PLAIN test/img v1 oci v1 >/dev/null
F=$(free_port)
echo none >"$T/mode"
PROXY_CONNS=1 $TOOLS proxy "$F" "$P" "$T/mode" "$T/proxy.log" &
CLEANUP_PIDS="${CLEANUP_PIDS:-} $!"
wait_port "$F"
REF=127.0.0.1:$F/test/img:v3
same() {
  "$IMGFS" ls -R --format tsv --sha256 "$REF" / >"$T/raw" && python3 "$HERE/tree.py" imgfs "$T/raw" >"$T/got" &&
    python3 "$HERE/tree.py" native ref-v3/rootfs | diff -q - "$T/got" >/dev/null
}
fresh() { export IMGFS_ROOT=$T/store-$1; : >"$T/proxy.log"; : >"$T/tok.log"; echo "$2" >"$T/mode"; }
count() { grep -c "$1" "$2" || true; }

# --- Bearer tokens kept in the store.
fresh tok none
check "a pull through Bearer auth" "$IMGFS" pull "127.0.0.1:$F/test/img:v1" >"$T/out1" 2>&1
check "  asked the token service" test "$(count '^token ' "$T/tok.log")" -ge 1
tokfile=$(find "$IMGFS_ROOT/tokens" -type f 2>/dev/null | head -1)
check "  and kept the token in the store, mode 0600" test "$(stat -c %a "$tokfile" 2>/dev/null)" = 600
check "  in a directory of mode 0700" test "$(stat -c %a "$IMGFS_ROOT/tokens" 2>/dev/null)" = 700
tok=$(sed -n 2p "$tokfile" | cut -d' ' -f2)
: >"$T/tok.log"; : >"$T/proxy.log"
check "a second pull (another image of the repository)" "$IMGFS" pull "$REF" >"$T/out2" 2>&1
check "  asked the token service nothing" test "$(count '^token ' "$T/tok.log")" -eq 0
first_auth() { grep -m1 '^GET /v2/test/img/' "$T/proxy.log" | grep -q 'auth=Bearer$'; }
check "  its first request already carried the token" first_auth
check "  and no request was answered with a challenge first" test "$(count '^GET /v2/test/img/.*auth=-$' "$T/proxy.log")" -eq 0
check "  the token never reached the output" bash -c "[[ -n '$tok' ]] && ! grep -qF '$tok' '$T/out1' '$T/out2'"
check "  exact" same
# A cached token the registry refuses (revoked, say): replaced, the pull completes.
sed -i '2s/.*/Bearer not-a-valid-token/' "$tokfile"
"$IMGFS" rmi "$REF" >/dev/null
: >"$T/tok.log"
check "a rejected cached token: the pull completes" "$IMGFS" pull -q "$REF"
check "  with one new token" test "$(count '^token ' "$T/tok.log")" -eq 1
check "  which replaced the bad one" bash -c "! grep -q not-a-valid-token '$tokfile'"

# --- Connections: one pull, one download at a time, makes two connections (the config
# is fetched beside the first layer's request, then the handles are reused).
fresh conn none
check "a pull, one download at a time" "$IMGFS" pull -q --max-concurrent-downloads 1 "$REF"
reqs=$(count '^GET ' "$T/proxy.log")
conns=$(count '^connect ' "$T/proxy.log")
check "  made $reqs requests over two connections ($conns)" test "$reqs" -ge 5 -a "$conns" -eq 2
fresh conn3 none
check "a pull, three downloads at once" "$IMGFS" pull -q "$REF"
reqs=$(count '^GET ' "$T/proxy.log")
conns=$(count '^connect ' "$T/proxy.log")
check "  made $reqs requests over at most 4 connections ($conns)" test "$reqs" -ge 5 -a "$conns" -le 4

# --- Resume across processes. wait_for DESCRIPTION COMMAND...: polls (30 s deadline).
wait_for() {
  local d=$1 deadline=$((SECONDS + 30))
  shift
  until "$@"; do
    ((SECONDS < deadline)) || { echo "timed out waiting for $d"; return 1; }
    sleep 0.02
  done
}
partial_bytes() { find "$IMGFS_ROOT/ingest" -maxdepth 1 -name 'partial-*' -size +100k 2>/dev/null | head -1; }
# kill_mid_transfer NAME: a pull through the trickling front, killed once a partial
# file holds more than 100 KB; sets PART (its path), HAVE (its size), BLOB (its digest).
kill_mid_transfer() {
  fresh "$1" trickle
  "$IMGFS" pull -q "$REF" >/dev/null 2>&1 &
  local pid=$!
  CLEANUP_PIDS="${CLEANUP_PIDS:-} $pid"
  wait_for "a partial file" eval '[[ -n $(partial_bytes) ]]'
  kill -9 "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  PART=$(partial_bytes)
  HAVE=$(stat -c %s "$PART" 2>/dev/null || echo 0)
  BLOB=sha256:${PART##*partial-}
  : >"$T/proxy.log"
}
kill_mid_transfer resume
check "kill -9 mid-transfer leaves a partial file ($HAVE bytes)" test "$HAVE" -gt 0
size=$(curl -s -o /dev/null -w '%{size_download}' "http://127.0.0.1:$PLAIN/v2/test/img/blobs/$BLOB")
check "  shorter than its blob ($size bytes)" test "$HAVE" -lt "$size"
echo none >"$T/mode"
check "  the next pull completes" "$IMGFS" pull -q "$REF" >/dev/null
check "  asking only for the rest: Range: bytes=$HAVE-" grep -q "^GET /v2/test/img/blobs/$BLOB range=bytes=$HAVE- " "$T/proxy.log"
check "  and never for the whole blob" bash -c "! grep '^GET /v2/test/img/blobs/$BLOB ' '$T/proxy.log' | grep -q 'range=- '"
check "  exact" same
check "  verify clean" "$IMGFS" verify
check "  no partial file left" bash -c "[[ -z \$(ls '$IMGFS_ROOT/ingest' | grep partial-) ]]"

kill_mid_transfer norange
echo norange >"$T/mode"
check "a registry that ignores Range (200, whole body): the resumed pull completes" "$IMGFS" pull -q "$REF"
check "  (it asked with Range and got 200)" grep -q "^inject=norange /v2/test/img/blobs/$BLOB" "$T/proxy.log"
check "  with that one GET of the blob (the bytes held were dropped, not refetched)" \
  test "$(count "^GET /v2/test/img/blobs/$BLOB " "$T/proxy.log")" -eq 1
check "  exact" same
check "  verify clean" "$IMGFS" verify

kill_mid_transfer badpart
# A torn partial file: its bytes are not the blob's. Verified, thrown away, fetched again.
printf 'garbage!' | dd of="$PART" bs=1 seek=1000 conv=notrunc status=none
echo none >"$T/mode"
check "a partial file with bad bytes: the pull completes" "$IMGFS" pull -q "$REF"
check "  after resuming it" grep -q "^GET /v2/test/img/blobs/$BLOB range=bytes=$HAVE- " "$T/proxy.log"
check "  then fetching the whole blob again" grep -q "^GET /v2/test/img/blobs/$BLOB range=- " "$T/proxy.log"
check "  exact" same
check "  verify clean" "$IMGFS" verify

kill_mid_transfer prune
check "prune keeps a partial file whose blob lock a pull holds" \
  bash -c "flock '$IMGFS_ROOT/ingest/locks/${BLOB#sha256:}' '$IMGFS' prune >/dev/null && [[ -s '$PART' ]]"
check "prune removes a partial file nobody is writing" bash -c "'$IMGFS' prune >/dev/null && [[ ! -e '$PART' ]]"
finish
