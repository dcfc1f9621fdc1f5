#!/usr/bin/env bash
# imgfs against a hostile registry (tests/e2e/hostile_registry.py), docs/threat-model.md:
# token realms, redirects and foreign URLs that name gopher://, dict:// or file:// reach
# nothing; a blob, config, manifest or token longer than allowed stops at its bound; a
# registry that trickles fails the pull within a deadline while prune and rmi run; a
# 500 on the first ping is retried and a lasting one is named; login with a credential
# helper keeps the secret out of config.json.
source "$(dirname "$0")/lib.sh"
need python3 curl
cd "$T"
H="python3 $HERE/hostile_registry.py"
P=$(free_port)
echo none >mode
$H serve "$P" "$T/mode" "$T/server.log" &
CLEANUP_PIDS="${CLEANUP_PIDS:-} $!"
L=$(free_port)
$H listen "$L" "$T/listener.log" &
CLEANUP_PIDS="$CLEANUP_PIDS $!"
wait_port "$P"
wait_port "$L"
sleep 0.2
: >"$T/listener.log"  # wait_port's own probe
REG=127.0.0.1:$P
export DOCKER_CONFIG=$T/docker
fresh() { export IMGFS_ROOT=$T/store-$1; : >"$T/server.log"; : >"$T/listener.log"; echo "$2" >"$T/mode"; }
nothing_stored() { [[ $(find "$IMGFS_ROOT/blobs" -type f 2>/dev/null | wc -l) -eq 0 ]]; }
listener_silent() { [[ ! -s "$T/listener.log" ]]; }

fresh ok none
check "a well-behaved hostile server: pull works" "$IMGFS" pull -q "$REG/img:1"
check "  and the file is there" bash -c "[[ \$('$IMGFS' cat '$REG/img:1' /hello.txt) == 'hello from a hostile registry' ]]"
blob_size=$(curl -s "http://$REG/v2/img/manifests/1" | python3 -c 'import json,sys; print(json.load(sys.stdin)["layers"][-1]["size"])')
first=$(curl -s "http://$REG/v2/two/manifests/1" | python3 -c 'import json,sys; print(json.load(sys.stdin)["layers"][0]["digest"])')
two_config=$(curl -s "http://$REG/v2/two/manifests/1" | python3 -c 'import json,sys; print(json.load(sys.stdin)["config"]["digest"])')
two_layers=$(curl -s "http://$REG/v2/two/manifests/1" | python3 -c 'import json,sys; print(" ".join(l["digest"] for l in json.load(sys.stdin)["layers"]))')

# 13.1: protocol smuggling through the token realm, redirects and foreign URLs.
for scheme in gopher dict; do
  fresh "realm-$scheme" "realm $scheme://127.0.0.1:$L/_SMUGGLED%0d%0aQUIT"
  expect_fail "a $scheme:// token realm is refused, saying why" "token realm .*only http and https" \
    "$IMGFS" pull "$REG/img:1"
  check "  nothing reached the local port it names" listener_silent
  check "  nothing stored" nothing_stored
done
fresh realm-file "realm file:///etc/passwd"
expect_fail "a file:// token realm is refused, saying why" "token realm \"file:///etc/passwd\": only http and https" \
  "$IMGFS" pull "$REG/img:1"
fresh realm-ftp "realm FTP://127.0.0.1:$L/x"
expect_fail "an upper-case FTP:// realm is refused too" "only http and https" "$IMGFS" pull "$REG/img:1"
check "  nothing reached the local port" listener_silent
for scheme in gopher ftp; do  # (libcurl's default allows ftp:// redirects)
  fresh "redirect-$scheme" "redirect-blob $scheme://127.0.0.1:$L/_SMUGGLED"
  expect_fail "a blob redirected to $scheme:// fails with curl's protocol refusal" \
    "^imgfs: pull: $REG/img:1: layer sha256:[0-9a-f]+: GET http://$REG/v2/img/blobs/sha256:[0-9a-f]+: .*(Protocol \"$scheme\" not supported)" \
    "$IMGFS" pull "$REG/img:1"
  check "  nothing reached the local port" listener_silent
done
fresh redirect-file "redirect-blob file:///etc/passwd"
expect_fail "a blob redirected to file:// is refused" "(file|Protocol)" "$IMGFS" pull "$REG/img:1"
fresh foreign "foreign gopher://127.0.0.1:$L/_SMUGGLED"
check "a gopher:// foreign layer URL is skipped: the registry serves the layer" "$IMGFS" pull -q "$REG/img:1"
check "  nothing reached the local port" listener_silent
expect_fail "a gopher:// registry mirror is refused before any request" \
  "registry mirror \"gopher://127.0.0.1:$L/_x\": only http and https URLs are allowed" \
  "$IMGFS" pull --registry-mirror "gopher://127.0.0.1:$L/_x" busybox:1
check "  nothing reached the local port" listener_silent
fresh token none
echo "token-500" >mode
check "a valid http realm still works (token service answered 500 once: retried)" "$IMGFS" pull -q "$REG/img:1"
check "  (the 500 was served)" grep -q "^GET /token.* status=500" server.log

# 13.3: stop at the declared size.
max_ingest=0
watch_ingest() {  # the largest file seen in ingest/ while $1 runs
  while kill -0 "$1" 2>/dev/null; do
    local s
    s=$(find "$IMGFS_ROOT/ingest" -maxdepth 1 -type f -printf '%s\n' 2>/dev/null | sort -n | tail -1 || true)
    [[ -n $s && $s -gt $max_ingest ]] && max_ingest=$s
    sleep 0.02
  done
  return 0
}
for m in blob-oversize blob-oversize-cl; do
  fresh "$m" "$m"
  max_ingest=0
  "$IMGFS" pull "$REG/img:1" >/dev/null 2>"$T/err" &
  pid=$!
  watch_ingest $pid
  rc=0; wait $pid || rc=$?
  check "$m: the pull fails" test $rc -ne 0
  check "  saying the registry sent more than the descriptor's $blob_size bytes" \
    grep -q "larger than the $blob_size bytes its descriptor declares" "$T/err"
  check "  ingest/ never held more than size + 64 KiB (largest: $max_ingest)" test "$max_ingest" -le $((blob_size + 65536))
  check "  nothing stored" nothing_stored
done
config_size=$(curl -s "http://$REG/v2/img/manifests/1" | python3 -c 'import json,sys; print(json.load(sys.stdin)["config"]["size"])')
fresh config-oversize config-oversize
expect_fail "a config longer than its descriptor says stops at its size" "blobs/sha256:[0-9a-f]+: the response is larger than the $config_size-byte limit" \
  "$IMGFS" pull "$REG/img:1"
check "  (the server did not get to send all 64 MiB)" bash -c "! grep -q 'sent=6710' server.log"
fresh manifest-oversize manifest-oversize
expect_fail "a 6 MiB manifest stops at 4 MiB" "manifests/1: the response is larger than the 4194304-byte limit" \
  "$IMGFS" pull "$REG/img:1"
# More layers than an image may have (Store::kMaxImageLayers, 1,000; docker takes 125):
# refused from the manifest, before any blob is asked for. The limit itself pulls, the
# one repeated layer fetched once.
fresh many-layers "many-layers 1001"
expect_fail "a manifest listing 1,001 layers is refused" "manifest lists 1001 layers; imgfs takes at most 1000" \
  "$IMGFS" pull "$REG/two:1"
check "  no blob was asked for" bash -c "! grep -q '/blobs/' server.log"
check "  nothing stored" nothing_stored
fresh many-ok "many-layers 1000"
check "1,000 layers, one blob repeated: the pull works" "$IMGFS" pull -q "$REG/two:1"
check "  its file is there" bash -c "[[ \$('$IMGFS' cat '$REG/two:1' /second.txt) == 'second layer' ]]"
check "  the repeated blob was fetched once" test "$(grep -c "^GET /v2/two/blobs/$(curl -s "http://$REG/v2/two/manifests/1" | python3 -c 'import json,sys; print(json.load(sys.stdin)["layers"][-1]["digest"])') " server.log)" -eq 1
check "  verify is clean" "$IMGFS" verify
fresh token-oversize token-oversize
expect_fail "a 64 MiB token response stops at 1 MiB" "token service: GET http://$REG/token.*larger than the 1048576-byte limit" \
  "$IMGFS" pull "$REG/img:1"

# Issue 14: the config is fetched while the first layers' requests go out; the layers
# are read only once it is verified, so a bad config still leaves the store as it was.
no_partial() { [[ $(find "$IMGFS_ROOT/ingest" -name 'partial-*' 2>/dev/null | wc -l) -eq 0 ]]; }
line_of() { grep -n -m1 -e "$1" server.log | cut -d: -f1; }
layers_early() {  # every layer GET of `two` ended (was logged) before the config's
  local c l
  c=$(line_of "^GET /v2/two/blobs/$two_config ")
  [[ -n $c ]] || return 1
  for l in $two_layers; do
    l=$(line_of "^GET /v2/two/blobs/$l ")
    [[ -n $l && $l -lt $c ]] || return 1
  done
}
fresh config-bad "config-bad 1"
expect_fail "a config that does not match its digest fails the pull, naming it" \
  "blob $two_config: digest mismatch: content hashes to sha256:[0-9a-f]{64}$" "$IMGFS" pull "$REG/two:1"
check "  (the layers were asked for while the config was on its way)" layers_early
check "  nothing stored" nothing_stored
check "  no partial file left" no_partial
check "  no image recorded" bash -c "[[ -z \$('$IMGFS' images -q) ]]"
fresh config-bad-stall "config-bad-stall 1"
start=$SECONDS
expect_fail "a bad config while the layers' server sends nothing: the pull fails, naming the config" \
  "blob $two_config: digest mismatch: content hashes to sha256:[0-9a-f]{64}$" "$IMGFS" pull "$REG/two:1"
took=$((SECONDS - start))
check "  within 10 s (took ${took}s; the stalled layer requests are stopped, not waited for)" test $took -lt 10
check "  nothing stored" nothing_stored
check "  no partial file left" no_partial
fresh config-diffids config-diffids
expect_fail "a config whose diff_ids match no layer fails the pull, naming both digests" \
  "diff_id mismatch: uncompressed content hashes to sha256:[0-9a-f]{64}, the config says sha256:0{64}$" \
  "$IMGFS" pull "$REG/two:1"
check "  nothing stored" nothing_stored
check "  no partial file left" no_partial
fresh config-late "config-late 1"
check "a config that comes 1 s late: the pull works" "$IMGFS" pull -q "$REG/two:1"
check "  both layers were fetched while it was on its way" layers_early
check "  its files are readable" bash -c "[[ \$('$IMGFS' cat '$REG/two:1' /second.txt) == 'second layer' ]]"
check "  verify is clean" "$IMGFS" verify

# Token answers and the token cache (<store>/tokens/SHA256(host \n scope)).
token_gets() { grep -c '^GET /token' server.log; }
fresh token-expiry token-expiry-huge
check "a token with expires_in 2^63: the pull works" "$IMGFS" pull -q "$REG/img:1"
check "  its cache file is readable, expiring within a year" bash -c \
  "e=\$(head -qn1 '$IMGFS_ROOT'/tokens/* | head -1 | sed -n 's/^imgfs-token 1 \\([0-9]*\\)\$/\\1/p'); [[ -n \$e ]] && ((e > \$(date +%s) && e <= \$(date +%s) + 366 * 86400))"
: >server.log
check "  a second pull takes the token from the cache" "$IMGFS" pull -q "$REG/img:1"
check "  (no token request: $(token_gets))" test "$(token_gets)" -eq 0
fresh token-ctl token-ctl
expect_fail "a token with control characters is refused" \
  "GET http://$REG/token.*: token service returned a token with control characters" "$IMGFS" pull "$REG/img:1"
check "  no request carried the injected header" bash -c "! grep -q header-injected server.log"
fresh token-huge token-huge
expect_fail "a 100,000-byte token is refused" "token service returned a token of 100000 bytes \(more than 32768\)" \
  "$IMGFS" pull "$REG/img:1"
fresh challenge-5k "token-challenge-huge 5000"
check "a challenge with 5,000 extra parameters (64 KB): the pull works, in under 10 s" \
  timeout 10 "$IMGFS" pull -q "$REG/img:1"
fresh challenge-12k "token-challenge-huge 12000"
expect_fail "a challenge line over curl's 100 KiB limit is named as such (not a TLS error)" \
  "GET http://127.0.0.1:[0-9]*/v2/: the HTTP 401 response has a header line longer than 100 KiB" \
  "$IMGFS" pull "$REG/img:1"

# 7.6: a transient 500 on the first request.
fresh ping500 ping-500
check "a 500 on the first /v2/ ping is retried: the pull works" "$IMGFS" pull -q "$REG/img:1"
check "  (the 500 was served)" grep -q "^GET /v2/ mode=ping-500 status=500" server.log
fresh ping500x ping-500-always
expect_fail "a lasting 500 is named with its URL, not as an SSL error" \
  "pull: registry $REG: GET http://$REG/v2/: HTTP 500 .*after [0-9]+ attempts$" "$IMGFS" pull "$REG/img:1"

# 13.4: a registry that trickles. Pull `other` first (rmi will remove it during the stall).
fresh stall none
check "(set-up) pull another image" "$IMGFS" pull -q "$REG/other:1"
other_id=$("$IMGFS" images -q --no-trunc "$REG/other")
echo trickle >mode
start=$SECONDS
IMGFS_LOW_SPEED_TIME=1 "$IMGFS" pull "$REG/img:1" >/dev/null 2>"$T/err" &
pull=$!
until grep -q "^GET /v2/img/blobs/.* mode=trickle" server.log || ! kill -0 $pull 2>/dev/null; do sleep 0.1; done
sleep 0.5
check "while a pull is stalled, prune completes" timeout 8 "$IMGFS" prune
check "  and rmi of another image completes" timeout 8 "$IMGFS" rmi "$other_id"
check "  (which is gone)" bash -c "! '$IMGFS' inspect '$other_id' >/dev/null 2>&1"
check "  (the pull was still running)" kill -0 $pull
while kill -0 $pull 2>/dev/null && ((SECONDS - start < 90)); do sleep 0.2; done
kill $pull 2>/dev/null || true  # a pull that never gives up fails the bound below
rc=0; wait $pull || rc=$?
took=$((SECONDS - start))
check "the stalled pull fails (rc=$rc) within the bound (took ${took}s; 6 attempts at 1 s + backoff)" \
  test $rc -ne 0 -a $took -lt 60
check "  with one clear line naming the stall" grep -Eqx "imgfs: pull: $REG/img:1: layer sha256:[0-9a-f]{64}: after [0-9]+ attempts: GET http://$REG/v2/img/blobs/sha256:[0-9a-f]{64}: stalled: Operation too slow\..* \(limit: 1024 bytes/s over 1 s\)" "$T/err"
cp "$T/err" "$T/err-stall"
check "  after retrying like a reset" test "$(grep -c "^GET /v2/img/blobs/.* mode=trickle" server.log)" -ge 3
check "  verify is clean" "$IMGFS" verify

# A prune during a pull removes a layer the pull verified and committed early but had
# not yet recorded: the pull notices under the lock, fetches it again and records a
# whole image.
fresh prune-race "delay-last 4"
"$IMGFS" pull -q "$REG/two:1" >"$T/out" 2>"$T/err" &
pull=$!
deadline=$((SECONDS + 20))
until [[ $(find "$IMGFS_ROOT/blobs" -type f 2>/dev/null | wc -l) -ge 1 ]] || ((SECONDS > deadline)); do sleep 0.05; done
check "a prune during a pull completes at once" timeout 3 "$IMGFS" prune
rc=0; wait $pull || rc=$?
check "  the pull still succeeds (rc=$rc: $(cat "$T/err"))" test $rc -eq 0
check "  after fetching the pruned layer again" test "$(grep -c "^GET /v2/two/blobs/$first " server.log)" -eq 2
check "  its files are readable" bash -c "[[ \$('$IMGFS' cat '$REG/two:1' /first.txt) == 'first layer' ]]"
check "  verify is clean" "$IMGFS" verify

# 13.10: login through a credential helper.
mkdir -p "$T/bin" "$DOCKER_CONFIG"
cat >"$T/bin/docker-credential-test" <<EOF
#!/bin/sh
# A fake credential helper: keeps what it is given in $T/helper.json.
case "\$1" in
  store) cat >"$T/helper.json" ;;
  get) [ -f "$T/helper.json" ] && cat "$T/helper.json" || { echo "credentials not found in native keychain"; exit 1; } ;;
  erase) rm -f "$T/helper.json" ;;
esac
EOF
chmod +x "$T/bin/docker-credential-test"
echo '{"credsStore": "test"}' >"$DOCKER_CONFIG/config.json"
SECRET=s3cret-Pa55
fresh login "basic alice:$SECRET"
check "login with credsStore=test succeeds" env PATH="$T/bin:$PATH" "$IMGFS" login -u alice --password "$SECRET" "$REG"
check "  the helper got the secret" grep -q "\"Secret\":\"$SECRET\"" "$T/helper.json"
check "  config.json holds no secret (plain or base64)" \
  bash -c "! grep -q -e '$SECRET' -e '$(printf 'alice:%s' "$SECRET" | base64)' '$DOCKER_CONFIG/config.json'"
check "  but names the server, as docker does" grep -q "\"$REG\":{}" "$DOCKER_CONFIG/config.json"
check "  a pull from the Basic-auth registry uses the helper's credentials" env PATH="$T/bin:$PATH" "$IMGFS" pull -q "$REG/img:1"
check "logout erases through the helper" env PATH="$T/bin:$PATH" "$IMGFS" logout "$REG"
check "  the helper's copy is gone" test ! -e "$T/helper.json"
check "  and config.json's entry" bash -c "! grep -q '$REG' '$DOCKER_CONFIG/config.json'"
echo "{\"credHelpers\": {\"$REG\": \"missing\"}}" >"$DOCKER_CONFIG/config.json"
# (--password-stdin: -p adds docker's warning line on stderr.)
expect_fail "login with a helper that is not installed fails (no plaintext fallback)" \
  "docker-credential-missing is not installed" \
  bash -c 'printf "%s\n" "$1" | "$2" login -u alice --password-stdin "$3"' _ "$SECRET" "$IMGFS" "$REG"
check "  config.json holds no secret" bash -c "! grep -q '$SECRET' '$DOCKER_CONFIG/config.json'"

# 13.11: no empty context (": : ") and no doubled one ("pull: pull") in the errors kept.
check "no error reads \": : \" or \"pull: pull\"" bash -c "! grep -q -e ': : ' -e 'pull: pull' '$T/err-stall' '$T/err'"
finish
