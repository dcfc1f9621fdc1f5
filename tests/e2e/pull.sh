#!/usr/bin/env bash
# imgfs pull against Debian's docker-registry (distribution 2.8) on loopback ports,
# started and stopped here: plain HTTP, htpasswd Basic auth, TLS with a CA made here,
# Bearer tokens from a token service, and a faulty front. Images are pushed by a small
# pusher over the registry API (tests/e2e/registry_tools.py) and by skopeo.
source "$(dirname "$0")/lib.sh"
need umoci skopeo python3 busybox docker-registry htpasswd openssl
cd "$T"
TOOLS="python3 $HERE/registry_tools.py"
build_test_images >/dev/null
skopeo copy -q --dest-compress-format zstd oci:oci:v1 oci:zoci:v1
skopeo copy -q --dest-decompress oci:oci:v1 oci:plainoci:v1

P=$(free_port)
start_registry plain "$P"
REG=127.0.0.1:$P
BASE=http://$REG
read -r d3 s3 t3 < <($TOOLS push-layout $BASE test/multi v3 oci v3)
read -r d2 s2 t2 < <($TOOLS push-layout $BASE test/docker v2 oci v2 --docker)
$TOOLS push-layout $BASE test/zstd v1 zoci v1 >/dev/null
$TOOLS push-layout $BASE test/plain v1 plainoci v1 >/dev/null
read -r da sa ta < <($TOOLS push-layout $BASE test/multi amd64 oci v1)
read -r db sb tb < <($TOOLS push-layout $BASE test/multi arm64 oci v1 --arch arm64)
$TOOLS push-index $BASE test/multi both "$da:$sa:$ta:linux/amd64" "$db:$sb:$tb:linux/arm64" >/dev/null
$TOOLS push-index $BASE test/list both "$da:$sa:$ta:linux/amd64" "$db:$sb:$tb:linux/arm64" --docker >/dev/null 2>&1 ||
  { $TOOLS push-layout $BASE test/list amd64 oci v1 >/dev/null; $TOOLS push-layout $BASE test/list arm64 oci v1 --arch arm64 >/dev/null;
    $TOOLS push-index $BASE test/list both "$da:$sa:$ta:linux/amd64" "$db:$sb:$tb:linux/arm64" --docker >/dev/null; }
skopeo copy -q --dest-tls-verify=false oci:oci:v2 docker://$REG/test/skopeo:v2

same_as() {  # same_as IMAGE REFERENCE_ROOTFS
  "$IMGFS" ls -R --format tsv --sha256 "$1" / >"$T/raw" && python3 "$HERE/tree.py" imgfs "$T/raw" >"$T/got" &&
    python3 "$HERE/tree.py" native "$2" >"$T/want" && diff -q "$T/want" "$T/got" >/dev/null
}

rc=0; out=$("$IMGFS" pull $REG/test/multi:v3) || rc=$?
check "pull by tag (OCI, 3 gzip layers)" test "$rc" = 0
check "it prints the digest" grep -qx "Digest: $d3" <<<"$out"
check "and Downloaded newer image" grep -qx "Status: Downloaded newer image for $REG/test/multi:v3" <<<"$out"
check "one line per layer event in a pipe" bash -c "[[ \$(grep -c ': Pull complete$' <<<'$out') -eq 3 ]]"
check "the pulled tree equals umoci unpack" same_as $REG/test/multi:v3 ref-v3/rootfs
check "a second pull is up to date" bash -c "'$IMGFS' pull $REG/test/multi:v3 | grep -qx 'Status: Image is up to date for $REG/test/multi:v3'"
check "images --digests shows the repo digest" bash -c "'$IMGFS' images --digests $REG/test/multi | grep -q '$d3'"
check "inspect lists the repo digest" bash -c "'$IMGFS' inspect $REG/test/multi:v3 | grep -q '\"$REG/test/multi@$d3\"'"
check "pull by digest" "$IMGFS" pull -q $REG/test/multi@$d3
check "pull Docker schema 2" "$IMGFS" pull -q $REG/test/docker:v2
check "  equals umoci unpack" same_as $REG/test/docker:v2 ref-v2/rootfs
check "pull what skopeo pushed" "$IMGFS" pull -q $REG/test/skopeo:v2
check "pull zstd layers" "$IMGFS" pull -q $REG/test/zstd:v1
check "  equals umoci unpack" same_as $REG/test/zstd:v1 ref-v1/rootfs
# docker's rmi rule (moby ImageDelete): removing the last tag of a repository removes that
# repository's digest references too; the image goes when no name is left.
rmi_last_tag() {
  local r=$T/rmi-store out
  IMGFS_ROOT=$r "$IMGFS" pull -q $REG/test/zstd:v1 >/dev/null || return 1
  IMGFS_ROOT=$r "$IMGFS" tag $REG/test/zstd:v1 other/name:x || return 1
  out=$(IMGFS_ROOT=$r "$IMGFS" rmi $REG/test/zstd:v1) || return 1
  [[ $out == *"Untagged: $REG/test/zstd@sha256:"* && $out != *Deleted:* ]] || { echo "$out"; return 1; }
  ! IMGFS_ROOT=$r "$IMGFS" images --digests | grep -q test/zstd || return 1
  out=$(IMGFS_ROOT=$r "$IMGFS" rmi other/name:x) || return 1
  [[ $out == *Deleted:* && -z $(IMGFS_ROOT=$r "$IMGFS" images -q) ]] || { echo "$out"; return 1; }
  IMGFS_ROOT=$r "$IMGFS" verify >/dev/null
}
check "rmi of a pulled tag takes its repository's digest reference along, then the image" rmi_last_tag
check "pull uncompressed layers" "$IMGFS" pull -q $REG/test/plain:v1
check "  equals umoci unpack" same_as $REG/test/plain:v1 ref-v1/rootfs
out=$("$IMGFS" pull $REG/test/multi:arm64)  # another config, the layers of v1
check "a layer shared with an earlier image: Already exists" grep -q ': Already exists$' <<<"$out"
check "  and nothing was downloaded for it" bash -c "! grep -q ': Pull complete$' <<<'$out'"
check "index: the host's platform by default" bash -c "'$IMGFS' pull -q $REG/test/multi:both && [[ \$('$IMGFS' inspect $REG/test/multi:both | grep -c '\"Architecture\": \"amd64\"') -eq 1 ]]"
check "index: --platform linux/arm64" bash -c "'$IMGFS' pull -q --platform linux/arm64 $REG/test/list:both && '$IMGFS' inspect $REG/test/list:both | grep -q '\"Architecture\": \"arm64\"'"
expect_fail "index: a platform it lacks lists what it offers" "linux/s390x.*offers: linux/amd64, linux/arm64" \
  "$IMGFS" pull --platform linux/s390x $REG/test/multi:both
printf '{"schemaVersion":1,"name":"test/old","tag":"v1","fsLayers":[],"history":[]}' >s1.json
$TOOLS push-raw $BASE test/old v1 application/vnd.docker.distribution.manifest.v1+json s1.json >/dev/null 2>&1 || true
expect_fail "Docker schema 1: a clear not-supported error" "schema 1|not found|unknown" "$IMGFS" pull $REG/test/old:v1
expect_fail "a tag that does not exist" "not found" "$IMGFS" pull $REG/test/multi:nope
expect_fail "a registry that does not answer" "not reachable" "$IMGFS" pull 127.0.0.1:$(free_port)/x:1
expect_fail "plain HTTP to a non-loopback host needs --insecure-registry" "insecure-registry" \
  "$IMGFS" pull --max-concurrent-downloads 1 nonexistent.invalid:5000/x:1
$TOOLS push-layout $BASE library/mirrored v1 oci v1 >/dev/null
check "--registry-mirror serves docker.io names (no internet here)" \
  bash -c "'$IMGFS' pull -q --registry-mirror $BASE mirrored:v1 | grep -qx docker.io/library/mirrored:v1"
check "  listed under its familiar name" bash -c "'$IMGFS' images mirrored | grep -q '^mirrored '"
check "verify: clean" "$IMGFS" verify

# A foreign layer (Docker's rootfs.foreign type, with urls): fetched from its URL, verified.
PF=$(free_port)
start_registry foreign-reg "$PF" "validation:" "  manifests:" "    urls:" "      allow: ['^http://127\\.0\\.0\\.1']"
PW=$(free_port)
mkdir -p "$T/www"
(cd "$T/www" && exec python3 -m http.server --bind 127.0.0.1 "$PW" >"$T/www.log" 2>&1) &
CLEANUP_PIDS="$CLEANUP_PIDS $!"
wait_port "$PW"
$TOOLS push-layout http://127.0.0.1:$PF test/foreign v3 oci v3 --docker --foreign "http://127.0.0.1:$PW|$T/www" >/dev/null
export IMGFS_ROOT=$T/store-foreign
check "a foreign layer is fetched from its URL" "$IMGFS" pull -q 127.0.0.1:$PF/test/foreign:v3
check "  (the URL was asked)" grep -q "GET /sha256:" "$T/www.log"
check "  and the tree equals umoci unpack" same_as 127.0.0.1:$PF/test/foreign:v3 ref-v3/rootfs
for f in "$T"/www/sha256:*; do printf 'not the layer' >"$f"; done
export IMGFS_ROOT=$T/store-foreign2
expect_fail "a foreign layer with wrong bytes is rejected" "mismatch|gzip|not a" "$IMGFS" pull 127.0.0.1:$PF/test/foreign:v3
export IMGFS_ROOT=$T/store

# (Two pulls of one image at once: pull_faults.sh, through a slow front that makes them
# overlap, and asserts that they did.)

# 5-layer images for the parallel path, and --max-concurrent-downloads 1 still works.
export IMGFS_ROOT=$T/store2
check "pull with one download at a time" "$IMGFS" pull -q --max-concurrent-downloads 1 $REG/test/docker:v2
# On a terminal, per-layer lines are redrawn in place (script(1) provides the TTY).
export IMGFS_ROOT=$T/store-tty
script -qec "'$IMGFS' pull $REG/test/multi:v3" /dev/null >"$T/tty.out" 2>&1
check "TTY progress: lines updated in place (cursor movement)" grep -q $'\x1b\\[[0-9]*A' "$T/tty.out"
check "TTY progress: the final Status line" grep -q "Status: Downloaded newer image" "$T/tty.out"

# Basic auth (htpasswd), credentials in docker's config.json.
export IMGFS_ROOT=$T/store3 DOCKER_CONFIG=$T/docker
htpasswd -Bbn alice s3cret >"$T/htpasswd"
PA=$(free_port)
start_registry auth "$PA" "auth:" "  htpasswd: {realm: imgfs-test, path: $T/htpasswd}"
$TOOLS push-layout http://$REG/ test/multi v3 oci v3 >/dev/null
$TOOLS push-layout http://127.0.0.1:$PA test/secret v1 oci v1 --auth alice:s3cret >/dev/null
expect_fail "Basic auth without credentials says how to log in" "imgfs login" "$IMGFS" pull 127.0.0.1:$PA/test/secret:v1
expect_fail "login with a wrong password fails" "unauthorized|failed" \
  bash -c 'echo wrong | "$1" login -u alice --password-stdin "$2"' _ "$IMGFS" 127.0.0.1:$PA
check "login" bash -c "echo s3cret | '$IMGFS' login -u alice --password-stdin 127.0.0.1:$PA | grep -qx 'Login Succeeded'"
check "config.json is mode 0600" test "$(stat -c %a "$T/docker/config.json")" = 600
check "the password is not in plain text" bash -c "! grep -q s3cret '$T/docker/config.json'"
check "pull with stored credentials" "$IMGFS" pull -q 127.0.0.1:$PA/test/secret:v1
check "logout" "$IMGFS" logout 127.0.0.1:$PA
# A credential helper (docker-credential-NAME get), chosen by credHelpers for this host.
mkdir -p "$T/helpers" "$T/docker-helper"
printf '#!/bin/sh\n[ "$1" = get ] || exit 1\nread host\n[ "$host" = "127.0.0.1:%s" ] || { echo "credentials not found"; exit 1; }\necho "{\\"Username\\":\\"alice\\",\\"Secret\\":\\"s3cret\\"}"\n' "$PA" \
  >"$T/helpers/docker-credential-imgfstest"
chmod +x "$T/helpers/docker-credential-imgfstest"
printf '{"credHelpers": {"127.0.0.1:%s": "imgfstest"}}\n' "$PA" >"$T/docker-helper/config.json"
export IMGFS_ROOT=$T/store3b
check "credentials from a credential helper (credHelpers)" \
  env PATH="$T/helpers:$PATH" DOCKER_CONFIG="$T/docker-helper" "$IMGFS" pull -q 127.0.0.1:$PA/test/secret:v1
export IMGFS_ROOT=$T/store3
expect_fail "after logout the registry refuses again" "imgfs login" "$IMGFS" pull 127.0.0.1:$PA/test/secret:v1@sha256:0000000000000000000000000000000000000000000000000000000000000000

# TLS with a CA made here: /etc/docker/certs.d/HOST:PORT/ca.crt.
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=imgfs-test-ca -keyout ca.key -out ca.crt 2>/dev/null
openssl req -newkey rsa:2048 -nodes -subj /CN=127.0.0.1 -keyout srv.key -out srv.csr 2>/dev/null
printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\n' >san.ext
openssl x509 -req -in srv.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 2 -extfile san.ext -out srv.crt 2>/dev/null
PT=$(free_port)
start_registry tls "$PT" "  tls: {certificate: $T/srv.crt, key: $T/srv.key}"
mkdir -p skopeo-certs && cp ca.crt skopeo-certs/ca.crt
skopeo copy -q --dest-cert-dir "$T/skopeo-certs" oci:oci:v1 docker://localhost:$PT/test/tls:v1
export IMGFS_ROOT=$T/store4
expect_fail "TLS with an unknown CA fails, saying why (no silent plain HTTP)" "certificate|SSL" \
  "$IMGFS" pull --max-concurrent-downloads 1 localhost:$PT/test/tls:v1 --insecure-registry none
mkdir -p /etc/docker/certs.d/localhost:$PT && cp ca.crt /etc/docker/certs.d/localhost:$PT/ca.crt
CLEANUP_DIRS="/etc/docker/certs.d/localhost:$PT"
check "TLS with certs.d/HOST:PORT/ca.crt" "$IMGFS" pull -q localhost:$PT/test/tls:v1
rm -rf /etc/docker/certs.d/localhost:$PT

# Bearer tokens from a token service (RS256 JWT with x5c), credentials sent there.
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=imgfs-token -keyout tok.key -out tok.crt 2>/dev/null
PK=$(free_port)
TOKEN_USER=bob:hunter2 python3 "$HERE/registry_tools.py" token-server "$PK" tok.key tok.crt &
CLEANUP_PIDS="$CLEANUP_PIDS $!"
wait_port "$PK"
PB=$(free_port)
start_registry bearer "$PB" "auth:" "  token: {realm: http://127.0.0.1:$PK/token, service: imgfs-registry, issuer: imgfs-test, rootcertbundle: $T/tok.crt}"
skopeo copy -q --dest-tls-verify=false --dest-creds bob:hunter2 oci:oci:v1 docker://127.0.0.1:$PB/test/tok:v1 2>"$T/skopeo-bearer.log" ||
  echo "skopeo push to the bearer registry failed: $(cat "$T/skopeo-bearer.log")"
export IMGFS_ROOT=$T/store5 DOCKER_CONFIG=$T/docker-bearer
expect_fail "Bearer: no credentials" "authentication failed|imgfs login" "$IMGFS" pull 127.0.0.1:$PB/test/tok:v1
check "Bearer: login through the token service" "$IMGFS" login -u bob -p hunter2 127.0.0.1:$PB
check "Bearer: pull with a token" "$IMGFS" pull -q 127.0.0.1:$PB/test/tok:v1
check "  equals umoci unpack" same_as 127.0.0.1:$PB/test/tok:v1 ref-v1/rootfs
finish
