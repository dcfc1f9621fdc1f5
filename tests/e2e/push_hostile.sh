#!/usr/bin/env bash
# imgfs push against a hostile registry: Debian's docker-registry (Basic auth) behind the
# faulty front (tests/e2e/registry_tools.py proxy, push modes). An upload Location on
# another host gets the blob but no credentials, a non-http(s) or huge Location and
# huge headers are refused, a wrong Docker-Content-Digest, an upload offset that goes
# backwards, endless 202s and a redirect loop each fail: one stderr line naming the
# cause, within a bound, and no Authorization header ever reaches another host.
# Errors name the request's real method (PUT, PATCH), not GET.
source "$(dirname "$0")/lib.sh"
need python3 docker-registry htpasswd
cd "$T"
export DOCKER_CONFIG=$T/docker
htpasswd -Bbn alice s3cret >"$T/htpasswd" 2>/dev/null
PR=$(free_port)
start_registry reg "$PR" "auth:" "  htpasswd: {realm: imgfs-test, path: $T/htpasswd}"
PX=$(free_port)
echo push >mode
python3 "$HERE/registry_tools.py" proxy "$PX" "$PR" "$T/mode" "$T/proxy.log" &
CLEANUP_PIDS="$CLEANUP_PIDS $!"
L=$(free_port)
python3 "$HERE/hostile_registry.py" listen "$L" "$T/listener.log" &
CLEANUP_PIDS="$CLEANUP_PIDS $!"
wait_port "$PX"
wait_port "$L"
REG=127.0.0.1:$PX
echo s3cret | "$IMGFS" login -u alice --password-stdin "$REG" >/dev/null

# An image with one layer of 200 KB that does not compress (chunked pushes need several
# PATCHes), and a second one, so that each case has a blob the registry lacks.
mkdir -p rootfs && head -c 200000 /dev/urandom >rootfs/data && echo hello >rootfs/hello
tar -C rootfs -cf rootfs.tar .
"$IMGFS" import rootfs.tar local/img:1 >/dev/null
n=0
fresh_image() {  # a new image (a new layer) for each case: nothing of it is in the registry yet
  n=$((n + 1))
  head -c 100000 /dev/urandom >rootfs/data
  tar -C rootfs -cf rootfs.tar . && "$IMGFS" import rootfs.tar "local/img:$n" >/dev/null
  : >"$T/listener.log"
  : >"$T/proxy.log"
  echo "$1" >"$T/mode"
}
# within SECONDS COMMAND...: the command's status, and it took at most SECONDS
# (a watchdog kills it at 3x that, so a push that never ends fails instead of hanging).
within() {
  local limit=$1 start=$SECONDS rc=0; shift
  timeout $((limit * 3)) "$@" || rc=$?
  if ((SECONDS - start > limit)); then echo "took $((SECONDS - start)) s (limit $limit s)" >&2; return 124; fi
  return $rc
}
no_auth_at_listener() { ! grep -qi '^authorization:' "$T/listener.log"; }

check "a push through the front (credentials from login) works" \
  bash -c "'$IMGFS' push -q local/img:1 $REG/t/app:1 >/dev/null"
check "  the registry got Basic credentials" grep -q 'auth=Basic' "$T/proxy.log"

fresh_image "loc http://127.0.0.1:$L/elsewhere"
expect_fail "an upload Location on another host: the blob goes there, the push fails in one line naming PUT and the URL" \
  "blob sha256:[0-9a-f]{64}: PUT http://127.0.0.1:$L/elsewhere\?digest=sha256:[0-9a-f]{64}: Empty reply from server" \
  within 40 "$IMGFS" push "local/img:$n" "$REG/t/app:$n"
check "  the other host got the upload" grep -q "^PUT /elsewhere?digest=sha256:" "$T/listener.log"
check "  but no Authorization header" no_auth_at_listener

fresh_image "loc gopher://127.0.0.1:$L/_x"
expect_fail "a gopher:// upload Location is refused" \
  'upload Location "gopher://127.0.0.1:[0-9]+/_x": only http and https URLs are allowed' \
  within 30 "$IMGFS" push "local/img:$n" "$REG/t/app:$n"
check "  nothing reached the port it names" test ! -s "$T/listener.log"

fresh_image "loc-huge 50000"
expect_fail "a 50 KB upload Location is refused" "registry sent an upload Location of 50004 bytes \(more than 8192\)" \
  within 30 "$IMGFS" push "local/img:$n" "$REG/t/app:$n"

fresh_image "headers-huge"
expect_fail "2 MB of response headers: refused at 256 KiB" \
  "POST http://$REG/v2/t/app/blobs/uploads/: the response headers are larger than 262144 bytes" \
  within 30 "$IMGFS" push "local/img:$n" "$REG/t/app:$n"

fresh_image "digest-wrong"
expect_fail "a wrong Docker-Content-Digest for the manifest" \
  "registry stored the manifest as \"sha256:0{64}\", expected sha256:[0-9a-f]{64}$" \
  within 30 "$IMGFS" push "local/img:$n" "$REG/t/app:$n"

fresh_image "range-back"
expect_fail "a chunked upload whose offset goes backwards" \
  "PATCH upload of sha256:[0-9a-f]{64}: the registry holds 10 bytes after 65536 were sent \(Range \"0-9\"\)" \
  within 30 "$IMGFS" push --chunk-size 64K "local/img:$n" "$REG/t/app:$n"
check "  one PATCH, then it stopped" test "$(grep -c '^PATCH ' "$T/proxy.log")" = 1

fresh_image "put-202"
expect_fail "endless 202s to the final PUT: fails at the first" "PUT blob sha256:[0-9a-f]{64}: HTTP 202" \
  within 30 "$IMGFS" push "local/img:$n" "$REG/t/app:$n"

fresh_image "redirect-loop"
expect_fail "a redirect loop on the upload PUT: 10 redirects, named PUT" \
  "PUT http://$REG/v2/t/app/blobs/uploads/[^ ]*: Maximum \(10\) redirects followed" \
  within 60 "$IMGFS" push "local/img:$n" "$REG/t/app:$n"
check "  a bounded number of requests (3 attempts x 11)" \
  bash -c "(( \$(grep -c '^inject=redirect-loop' '$T/proxy.log') <= 33 ))"
expect_fail "  also chunked (named PATCH)" \
  "PATCH http://$REG/v2/t/app/blobs/uploads/[^ ]*: Maximum \(10\) redirects followed" \
  within 60 "$IMGFS" push --chunk-size 64K "local/img:$n" "$REG/t/app:$n"

fresh_image "redirect-to http://127.0.0.1:$L"
expect_fail "the upload PUT redirected to another host: fails in one line" "PUT http://$REG/v2/t/app/blobs/uploads/[^ ]*: Empty reply from server" \
  within 40 "$IMGFS" push "local/img:$n" "$REG/t/app:$n"
check "  the other host got the PUT (the body sent again after the 307)" grep -q "^PUT /v2/t/app/blobs/uploads/" "$T/listener.log"
check "  without the Authorization header the registry got" no_auth_at_listener

fresh_image "reset-put"
expect_fail "a connection closed under the upload PUT: the error names PUT and the upload URL" \
  "PUT http://$REG/v2/t/app/blobs/uploads/[^ ]*digest=sha256:[0-9a-f]{64}: Empty reply from server" \
  within 30 "$IMGFS" push "local/img:$n" "$REG/t/app:$n"

fresh_image "err-escape"
"$IMGFS" push "local/img:$n" "$REG/t/app:$n" >/dev/null 2>"$T/err-escape" && echo "push succeeded" >>"$T/err-escape"
check "an error body with terminal escapes: the one line names the POST and the body's words" \
  grep -Eq "POST /v2/t/app/blobs/uploads/: HTTP 400: denied\?\]0;pwned\?\?\[2J\?\[31m red  line two" "$T/err-escape"
check "  and holds no escape or other control byte" bash -c "! LC_ALL=C grep -q \$'[\\x01-\\x08\\x0b-\\x1f\\x7f]' '$T/err-escape'"

fresh_image push
check "after all that, a push through the front works" \
  bash -c "'$IMGFS' push -q local/img:$n $REG/t/app:$n >/dev/null"
finish
