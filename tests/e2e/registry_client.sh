#!/usr/bin/env bash
# The registry client and puller below the happy path, against Debian's docker-registry
# and the faulty front of registry_tools.py (loopback only): redirects (and that no
# credentials follow them), a 200 answer to a Range request, giving up after the retry
# limit, faults on manifest and token requests, token expiry, anonymous Bearer, Bearer
# over TLS, client certificates, mirrors, platform variants, attestation manifests,
# Docker schema 1. Every registry here serves one storage directory (pushed once).
source "$(dirname "$0")/lib.sh"
need umoci python3 busybox docker-registry openssl htpasswd curl
cd "$T"
TOOLS="python3 $HERE/registry_tools.py"
build_test_images >/dev/null

P=$(free_port)
start_registry plain "$P"
B=http://127.0.0.1:$P
$TOOLS push-layout $B test/img v3 oci v3 >/dev/null
$TOOLS push-layout $B test/img v1 oci v1 >/dev/null
$TOOLS push-layout $B library/mirrored v1 oci v1 >/dev/null
read -r d6 s6 t6 < <($TOOLS push-layout $B test/img arm-v6 oci v1 --arch arm --variant v6)
read -r d7 s7 t7 < <($TOOLS push-layout $B test/img arm-v7 oci v1 --arch arm --variant v7)
read -r d8 s8 t8 < <($TOOLS push-layout $B test/img arm64-v8 oci v1 --arch arm64 --variant v8)
read -r da sa ta < <($TOOLS push-layout $B test/img amd64 oci v1)
# Listed v6 first: a variant-less linux/arm must still take v7 (docker's default).
$TOOLS push-index $B test/img variants "$d6:$s6:$t6:linux/arm/v6" "$d7:$s7:$t7:linux/arm/v7" \
  "$d8:$s8:$t8:linux/arm64/v8" >/dev/null
# An attestation manifest (unknown/unknown, a real image manifest underneath) listed first.
$TOOLS push-index $B test/img attest "$d8:$s8:$t8:unknown/unknown" "$da:$sa:$ta:linux/amd64" >/dev/null

# shared_registry NAME PORT [YAML...]: a registry on the storage pushed above.
shared_registry() {
  mkdir -p "$T/$1" && ln -sfn "$T/plain/data" "$T/$1/data"
  start_registry "$@"
}
# front NAME UPSTREAM_PORT [MODE]: a faulty front; sets FRONT to its port. Mode in
# $T/NAME.mode, log in $T/NAME.log.
front() {
  FRONT=$(free_port)
  echo "${3:-none}" >"$T/$1.mode"
  : >"$T/$1.log"
  $TOOLS proxy "$FRONT" "$2" "$T/$1.mode" "$T/$1.log" &
  CLEANUP_PIDS="$CLEANUP_PIDS $!"
  wait_port "$FRONT"
}
same_as() {  # same_as IMAGE REFERENCE_ROOTFS
  "$IMGFS" ls -R --format tsv --sha256 "$1" / >"$T/raw" && python3 "$HERE/tree.py" imgfs "$T/raw" >"$T/got" &&
    python3 "$HERE/tree.py" native "$2" >"$T/want" && diff -q "$T/want" "$T/got" >/dev/null
}
store() { export IMGFS_ROOT=$T/store-$1; }
# The store's state without ingest/locks/ (empty per-blob lock files a pull leaves).
state() { ROOT=$IMGFS_ROOT store_state | grep -v '/ingest/locks/'; }
arch_of() { "$IMGFS" inspect "$1" | python3 -c 'import json,sys; d=json.load(sys.stdin)[0]; print(d["Os"] + "/" + d["Architecture"] + ("/" + d["Variant"] if d.get("Variant") else ""))'; }
export DOCKER_CONFIG=$T/docker-none  # no credentials unless a test sets some
LAYERS3=$(curl -s -H 'Accept: application/vnd.oci.image.manifest.v1+json' "$B/v2/test/img/manifests/v3" |
  python3 -c 'import json, sys; print(" ".join(l["digest"] for l in json.load(sys.stdin)["layers"]))')

# --- Persistent failures take the whole retry schedule: start them first, in parallel.
front blob500 "$P" 500-always
FB=$FRONT
front man500 "$P" manifest-500-always
FM=$FRONT
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=imgfs-token -keyout tok.key -out tok.crt 2>/dev/null
K2=$(free_port)
echo 500-always >"$T/tok2.mode"
TOKEN_LOG=$T/tok2.log TOKEN_MODE_FILE=$T/tok2.mode $TOOLS token-server "$K2" tok.key tok.crt &
CLEANUP_PIDS="$CLEANUP_PIDS $!"
wait_port "$K2"
B2=$(free_port)
shared_registry bearer2 "$B2" "auth:" "  token: {realm: http://127.0.0.1:$K2/token, service: imgfs-registry, issuer: imgfs-test, rootcertbundle: $T/tok.crt}"
store giveup
"$IMGFS" pull -q 127.0.0.1:$P/test/img:v1 >/dev/null
before_giveup=$(state)
bg() {  # bg NAME COMMAND...: runs in the background; rc in NAME.rc, stderr in NAME.err
  local n=$1; shift
  ( s=$(date +%s.%N); rc=0; "$@" >/dev/null 2>"$T/$n.err" || rc=$?; echo "$rc" >"$T/$n.rc"
    python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.1f}')" "$s" "$(date +%s.%N)" >"$T/$n.secs" ) &
  BG_PIDS="${BG_PIDS:-} $!"
}
bg giveup "$IMGFS" pull 127.0.0.1:$FB/test/img:v3
bg mangiveup env IMGFS_ROOT=$T/store-mangiveup "$IMGFS" pull 127.0.0.1:$FM/test/img:v3
bg tokgiveup env IMGFS_ROOT=$T/store-tokgiveup "$IMGFS" pull 127.0.0.1:$B2/test/img:v1

# --- Redirects: blob GETs answered 307/302 to another port and another loopback
# address. The origin needs Basic credentials; they must not follow the redirect.
htpasswd -Bbn alice s3cret >"$T/htpasswd" 2>/dev/null
PA=$(free_port)
shared_registry auth "$PA" "auth:" "  htpasswd: {realm: imgfs-test, path: $T/htpasswd}"
front target1 "$P"
R1=$FRONT
R2=$(free_port)
echo none >"$T/target2.mode"; : >"$T/target2.log"
PROXY_BIND=127.0.0.2 $TOOLS proxy "$R2" "$P" "$T/target2.mode" "$T/target2.log" &
CLEANUP_PIDS="$CLEANUP_PIDS $!"
for _ in $(seq 100); do curl -s -o /dev/null "http://127.0.0.2:$R2/v2/" && break; sleep 0.05; done
front redir "$PA" "redirect http://127.0.0.1:$R1"
FR=$FRONT
mkdir -p "$T/docker-alice"
printf '{"auths": {"127.0.0.1:%s": {"auth": "%s"}}}\n' "$FR" "$(printf alice:s3cret | base64)" >"$T/docker-alice/config.json"
store redirect
check "redirect 307 to another port: the pull completes" \
  env DOCKER_CONFIG="$T/docker-alice" "$IMGFS" pull -q 127.0.0.1:$FR/test/img:v3
check "  (the origin redirected, and got the credentials)" \
  bash -c "grep -q '^inject=redirect' '$T/redir.log' && grep -q 'blobs/sha256.* auth=Basic' '$T/redir.log'"
check "  the target was asked for the blobs" grep -q "^GET /v2/test/img/blobs/sha256:" "$T/target1.log"
check "  and got no credentials" bash -c "! grep -v ' auth=-$' '$T/target1.log' | grep -q '^GET'"
check "  the tree is exact" same_as 127.0.0.1:$FR/test/img:v3 ref-v3/rootfs
echo "redirect302 http://127.0.0.2:$R2" >"$T/redir.mode"
store redirect2
check "redirect 302 to another loopback address: completes" \
  env DOCKER_CONFIG="$T/docker-alice" "$IMGFS" pull -q 127.0.0.1:$FR/test/img:v3
check "  the target was asked for the blobs" grep -q "^GET /v2/test/img/blobs/sha256:" "$T/target2.log"
check "  and got no credentials" bash -c "! grep -v ' auth=-$' '$T/target2.log' | grep -q '^GET'"
check "  the tree is exact" same_as 127.0.0.1:$FR/test/img:v3 ref-v3/rootfs

# --- Blobs redirected to signed URLs that expire: the first signed URL of each blob
# answers 403 (as S3 does); the client asks the registry again for a fresh one.
front signed "$P"
echo "signed http://127.0.0.1:$FRONT" >"$T/signed.mode"
store signed
check "signed blob URLs, the first of each blob expired (403): the pull completes" \
  "$IMGFS" pull -q 127.0.0.1:$FRONT/test/img:v3
check "  (each blob's first signed URL was refused, and another asked for)" bash -c \
  "[[ \$(grep -c '^inject=expired' '$T/signed.log') -ge 1 && \$(grep -c '^inject=signed-redirect' '$T/signed.log') -eq 2*\$(grep -c '^inject=expired' '$T/signed.log') ]]"
check "  the tree is exact" same_as 127.0.0.1:$FRONT/test/img:v3 ref-v3/rootfs

# --- A 200 answer to a Range request: each blob is cut halfway, the resume asks for
# a Range and gets the whole body with 200; the client must drop what it already has.
front r200 "$P" range200
store range200
check "200 to a Range request: the pull completes" "$IMGFS" pull -q 127.0.0.1:$FRONT/test/img:v3
check "  (cut, then a Range request answered with 200)" \
  bash -c "grep -q '^inject=cut' '$T/r200.log' && grep -q 'range=bytes=[1-9]' '$T/r200.log' && grep -q '^inject=range200' '$T/r200.log'"
check "  the tree is exact" same_as 127.0.0.1:$FRONT/test/img:v3 ref-v3/rootfs
check "  verify: clean" "$IMGFS" verify

# --- Faults on manifest requests: 500 once per manifest, then served.
front m500 "$P" manifest-500
store man500
check "manifest GET: 500 then 200 is retried" "$IMGFS" pull -q 127.0.0.1:$FRONT/test/img:v3
check "  (the fault was injected)" grep -q "^inject=manifest-500 /v2/test/img/manifests/v3" "$T/m500.log"
check "  the tree is exact" same_as 127.0.0.1:$FRONT/test/img:v3 ref-v3/rootfs

# --- Bearer: an anonymous token service (gives tokens without credentials), a token
# service that fails once, and a token that expires in the middle of a pull.
K1=$(free_port)
echo none >"$T/tok1.mode"
TOKEN_LOG=$T/tok1.log TOKEN_MODE_FILE=$T/tok1.mode $TOOLS token-server "$K1" tok.key tok.crt &
CLEANUP_PIDS="$CLEANUP_PIDS $!"
wait_port "$K1"
PB=$(free_port)
shared_registry bearer "$PB" "auth:" "  token: {realm: http://127.0.0.1:$K1/token, service: imgfs-registry, issuer: imgfs-test, rootcertbundle: $T/tok.crt}"
store anon
check "anonymous Bearer: pull without credentials" "$IMGFS" pull -q 127.0.0.1:$PB/test/img:v1
check "  a token was fetched, without credentials" \
  bash -c "grep -q 'scope=repository:test/img:pull' '$T/tok1.log' && ! grep -qv '^token auth=- ' '$T/tok1.log'"
check "  the tree is exact" same_as 127.0.0.1:$PB/test/img:v1 ref-v1/rootfs
echo 500-once >"$T/tok1.mode"; : >"$T/tok1.log"
store tok500
check "token service: 500 then a token is retried" "$IMGFS" pull -q 127.0.0.1:$PB/test/img:v1
check "  (two token requests)" test "$(grep -c '^token' "$T/tok1.log")" -ge 2
echo none >"$T/tok1.mode"
front exp "$PB" expire
: >"$T/tok1.log"
store expire
check "a token that expires mid-pull: a new one is fetched, the pull completes" \
  "$IMGFS" pull -q 127.0.0.1:$FRONT/test/img:v3
check "  (the old token was refused with a fresh challenge)" grep -q "^inject=expire .*status=401" "$T/exp.log"
check "  (a second token was fetched)" test "$(grep -c '^token' "$T/tok1.log")" -ge 2
check "  the tree is exact" same_as 127.0.0.1:$FRONT/test/img:v3 ref-v3/rootfs

# --- TLS: a CA made here; the server certificate also serves the token service.
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=imgfs-test-ca -keyout ca.key -out ca.crt 2>/dev/null
openssl req -newkey rsa:2048 -nodes -subj /CN=127.0.0.1 -keyout srv.key -out srv.csr 2>/dev/null
printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\n' >san.ext
openssl x509 -req -in srv.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 2 -extfile san.ext -out srv.crt 2>/dev/null
openssl req -newkey rsa:2048 -nodes -subj /CN=imgfs-client -keyout client.key -out client.csr 2>/dev/null
printf 'extendedKeyUsage=clientAuth\n' >client.ext
openssl x509 -req -in client.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 2 -extfile client.ext -out client.cert 2>/dev/null

# Bearer over TLS: the registry and its token realm both HTTPS, credentials required.
KT=$(free_port)
TOKEN_USER=bob:hunter2 TOKEN_LOG=$T/tokt.log TOKEN_TLS_CERT=$T/srv.crt TOKEN_TLS_KEY=$T/srv.key \
  $TOOLS token-server "$KT" tok.key tok.crt &
CLEANUP_PIDS="$CLEANUP_PIDS $!"
wait_port "$KT"
PT=$(free_port)
shared_registry tlsbearer "$PT" "  tls: {certificate: $T/srv.crt, key: $T/srv.key}" "auth:" \
  "  token: {realm: https://localhost:$KT/token, service: imgfs-registry, issuer: imgfs-test, rootcertbundle: $T/tok.crt}"
mkdir -p "/etc/docker/certs.d/localhost:$PT" "$T/docker-bob"
CLEANUP_DIRS="${CLEANUP_DIRS:-} /etc/docker/certs.d/localhost:$PT"
cp ca.crt "/etc/docker/certs.d/localhost:$PT/ca.crt"
printf '{"auths": {"localhost:%s": {"auth": "%s"}}}\n' "$PT" "$(printf bob:hunter2 | base64)" >"$T/docker-bob/config.json"
store tlsbearer
check "Bearer over TLS (registry and token realm on HTTPS)" \
  env DOCKER_CONFIG="$T/docker-bob" "$IMGFS" pull -q localhost:$PT/test/img:v1
check "  the credentials went to the token realm" grep -q "^token auth=Basic scope=repository:test/img:pull" "$T/tokt.log"
check "  the tree is exact" same_as localhost:$PT/test/img:v1 ref-v1/rootfs
store tlsbearer-nocreds
expect_fail "  without credentials: authentication failed" "authentication failed" \
  "$IMGFS" pull localhost:$PT/test/img:v1

# Client certificates: certs.d/HOST:PORT/client.cert + client.key.
PM=$(free_port)
shared_registry mtls "$PM" "  tls:" "    certificate: $T/srv.crt" "    key: $T/srv.key" "    clientcas: [$T/ca.crt]"
mkdir -p "/etc/docker/certs.d/localhost:$PM"
CLEANUP_DIRS="$CLEANUP_DIRS /etc/docker/certs.d/localhost:$PM"
cp ca.crt "/etc/docker/certs.d/localhost:$PM/ca.crt"
store mtls-none
expect_fail "client certificate required, none in certs.d: fails (the TLS detail varies)" "not reachable: GET https://localhost:$PM/v2/" \
  "$IMGFS" pull localhost:$PM/test/img:v1
# With an unrelated key and a certificate without its key beside them: NAME.cert goes
# with NAME.key.
openssl genrsa -out "/etc/docker/certs.d/localhost:$PM/aaa-unrelated.key" 2048 2>/dev/null
cp ca.crt "/etc/docker/certs.d/localhost:$PM/zzz-nokey.cert"
cp client.cert client.key "/etc/docker/certs.d/localhost:$PM/"
store mtls
check "client certificate from certs.d/HOST:PORT/client.cert+client.key (not another .key)" "$IMGFS" pull -q localhost:$PM/test/img:v1
check "  the tree is exact" same_as localhost:$PM/test/img:v1 ref-v1/rootfs

# --- Mirrors (docker.io names only). The origin (registry-1.docker.io) is not
# reachable here, so only the choice among mirrors is tested.
front mirror1 "$P"
M1=$FRONT
front mirror2 "$P"
M2=$FRONT
store mirror
check "mirrors: the first one given is asked first" \
  "$IMGFS" pull -q --registry-mirror http://127.0.0.1:$M1 --registry-mirror http://127.0.0.1:$M2 mirrored:v1
check "  (mirror 1 served the manifest, mirror 2 was not asked)" \
  bash -c "grep -q '^GET /v2/library/mirrored/manifests/v1' '$T/mirror1.log' && ! grep -q manifests '$T/mirror2.log'"
store mirror-down
check "a mirror that does not answer: the next one is used" \
  "$IMGFS" pull -q --registry-mirror http://127.0.0.1:$(free_port) --registry-mirror http://127.0.0.1:$M2 mirrored:v1
check "  (mirror 2 served it)" grep -q '^GET /v2/library/mirrored/manifests/v1' "$T/mirror2.log"
# A mirror that answers but lacks the image: the origin is asked next (docker.io, not
# reachable here; the fallback itself is tested against a reachable origin in
# registry_auth.sh).
store mirror-lacks
expect_fail "a mirror that lacks the image: the origin (docker.io) is asked next" \
  "after mirror 127.0.0.1:$M1 \(manifest for 127.0.0.1:$M1/library/absent:v1 not found\), then the origin: " \
  "$IMGFS" pull --registry-mirror http://127.0.0.1:$M1 absent:v1

# --- Platforms: variants and attestation manifests.
pf() { store "plat-$1"; "$IMGFS" pull -q ${2:+--platform $2} 127.0.0.1:$P/test/img:${3:-variants} >/dev/null && arch_of 127.0.0.1:$P/test/img:${3:-variants}; }
check "--platform linux/arm/v7 picks arm/v7" test "$(pf a linux/arm/v7)" = linux/arm/v7
check "--platform linux/arm/v6 picks arm/v6" test "$(pf b linux/arm/v6)" = linux/arm/v6
check "--platform linux/arm64/v8 picks arm64/v8" test "$(pf c linux/arm64/v8)" = linux/arm64/v8
check "--platform linux/arm64 (no variant) picks arm64/v8" test "$(pf d linux/arm64)" = linux/arm64/v8
check "--platform linux/arm (no variant) picks arm/v7, docker's default, not the first listed" \
  test "$(pf e linux/arm)" = linux/arm/v7
store plat-f
expect_fail "--platform linux/arm/v5 (not offered): lists what is offered" \
  "linux/arm/v5.*offers: linux/arm/v6, linux/arm/v7, linux/arm64/v8" "$IMGFS" pull --platform linux/arm/v5 127.0.0.1:$P/test/img:variants
check "attestation listed first: the host's platform is picked" test "$(pf g "" attest)" = linux/amd64
store plat-h
expect_fail "--platform unknown/unknown never picks the attestation manifest" "no image for platform unknown/unknown.*offers: linux/amd64\)" \
  "$IMGFS" pull --platform unknown/unknown 127.0.0.1:$P/test/img:attest

# --- Docker schema 1, served by the front (docker-registry 2.8 no longer accepts it).
front s1 "$P" schema1
store schema1
expect_fail "schema 1 (v1+prettyjws): a clear not-supported error" "Docker schema 1 manifests are not supported" \
  "$IMGFS" pull 127.0.0.1:$FRONT/test/img:v1
check "  (the front served it)" grep -q "^inject=schema1 " "$T/s1.log"
echo schema1-json >"$T/s1.mode"
expect_fail "schema 1 (v1+json): a clear not-supported error" "Docker schema 1 manifests are not supported" \
  "$IMGFS" pull 127.0.0.1:$FRONT/test/img:v1
check "  (the front served it)" grep -q "^inject=schema1-json " "$T/s1.log"
check "  nothing was stored" bash -c "[[ ! -d '$IMGFS_ROOT/blobs/sha256' || -z \$(ls '$IMGFS_ROOT/blobs/sha256') ]]"

# --- The persistent failures started at the top.
for p in $BG_PIDS; do wait "$p" || true; done
one_line() {  # one_line NAME PATTERN: failed, one stderr line matching PATTERN
  [[ $(cat "$T/$1.rc") -ne 0 && $(wc -l <"$T/$1.err") -eq 1 ]] && grep -Eq "$2" "$T/$1.err" ||
    { echo "rc=$(cat "$T/$1.rc") stderr: $(cat "$T/$1.err")"; return 1; }
}
attempts_ok() {  # attempts_ok LOG PATTERN: 2 to 10 requests matched (retried, then gave up)
  local n; n=$(grep -c "$2" "$1") || true
  [[ $n -ge 2 && $n -le 10 ]] || { echo "$n requests matched $2"; return 1; }
}
store giveup
check "blob 500 forever: gives up with a clear error ($(cat "$T/giveup.secs") s)" one_line giveup "blob sha256:[0-9a-f]{64}: HTTP 500 \(UNKNOWN: injected\)"
# The config blob comes first and stops the pull; whichever blobs were asked, each was
# asked 2 to 10 times (retried, then given up).
per_blob() {
  local counts; counts=$(grep -o "^GET /v2/test/img/blobs/sha256:[0-9a-f]* " "$T/blob500.log" | sort | uniq -c | awk '{print $1}')
  [[ -n $counts ]] && ! awk '$1 < 2 || $1 > 10 {bad = 1} END {exit !bad}' <<<"$counts" ||
    { echo "GETs per blob: $(tr '\n' ' ' <<<"$counts")"; return 1; }
}
check "  each blob asked was retried a bounded number of times" per_blob
check "  the store is as it was (v1's blobs, nothing more)" \
  bash -c "[[ \$1 == *blobs/sha256/* && \$1 == \"\$2\" ]]" _ "$before_giveup" "$(state)"
check "manifest 500 forever: gives up with a clear error ($(cat "$T/mangiveup.secs") s)" one_line mangiveup "manifest v3: HTTP 500"
check "  a bounded number of attempts" attempts_ok "$T/man500.log" "^GET /v2/test/img/manifests/v3 "
check "token service 500 forever: gives up with a clear error ($(cat "$T/tokgiveup.secs") s)" one_line tokgiveup "token service.*500"
check "  a bounded number of attempts" attempts_ok "$T/tok2.log" "^token "
finish
