#!/usr/bin/env bash
# A docker, podman and skopeo user's credentials, registries.conf and TLS set-up, against
# Debian's docker-registry and the fronts of registry_tools.py (loopback only):
# auth.json in each place podman and docker keep it, in their order; --creds;
# identity tokens (OAuth2 refresh at the token endpoint); login through --authfile and a
# credential helper, its -p warning and its terminal prompt; registries.conf short-name
# search, aliases, mirror fallback to the origin, location rewriting, blocked
# registries; client certificates (mutual TLS) from --cert-dir with several *.crt, and
# --tls-verify=false.
source "$(dirname "$0")/lib.sh"
need umoci python3 docker-registry openssl htpasswd curl skopeo
cd "$T"
TOOLS="python3 $HERE/registry_tools.py"

# A one-layer image, small and quick to make.
umoci init --layout oci >/dev/null
umoci new --image oci:base >/dev/null
umoci unpack --image oci:base b >/dev/null
echo hello >b/rootfs/hello
umoci repack --image oci:v1 b >/dev/null

P=$(free_port)
start_registry plain "$P"
$TOOLS push-layout http://127.0.0.1:$P tiny v1 oci v1 >/dev/null
$TOOLS push-layout http://127.0.0.1:$P team/app v1 oci v1 >/dev/null
shared_registry() {  # a registry on the storage pushed above
  mkdir -p "$T/$1" && ln -sfn "$T/plain/data" "$T/$1/data"
  start_registry "$@"
}
front() {  # front NAME UPSTREAM_PORT: a logging front; sets FRONT to its port
  FRONT=$(free_port)
  echo none >"$T/$1.mode"
  : >"$T/$1.log"
  $TOOLS proxy "$FRONT" "$2" "$T/$1.mode" "$T/$1.log" &
  CLEANUP_PIDS="$CLEANUP_PIDS $!"
  wait_port "$FRONT"
}
# No credentials, no registries.conf, no certificates but what a test sets.
export HOME=$T/home XDG_CONFIG_HOME= XDG_RUNTIME_DIR=$T/run DOCKER_CONFIG=$T/docker
unset REGISTRY_AUTH_FILE
export CONTAINERS_REGISTRIES_CONF=$T/none.conf
: >"$T/none.conf"
mkdir -p "$HOME" "$XDG_RUNTIME_DIR"
fresh() { export IMGFS_ROOT=$T/store-$1; }

# --- Credentials: a registry that wants Basic auth (htpasswd).
{ htpasswd -Bbn alice s3cret && htpasswd -Bbn bob pty-s3cret; } >"$T/htpasswd" 2>/dev/null
PA=$(free_port)
shared_registry auth "$PA" "auth:" "  htpasswd: {realm: imgfs-test, path: $T/htpasswd}"
A=127.0.0.1:$PA
authjson() {  # authjson FILE USER:PASS [KEY]
  mkdir -p "$(dirname "$1")"
  printf '{"auths": {"%s": {"auth": "%s"}}}\n' "${3:-$A}" "$(printf %s "$2" | base64)" >"$1"
}
# Each place in the order containers/image searches; good credentials in place i,
# wrong ones in every later place: only the right order succeeds.
places=(authfile env xdg-runtime xdg-config docker)
path_of() {
  case $1 in
    authfile) echo "$T/cli/auth.json" ;;
    env) echo "$T/env/auth.json" ;;
    xdg-runtime) echo "$XDG_RUNTIME_DIR/containers/auth.json" ;;
    xdg-config) echo "$HOME/.config/containers/auth.json" ;;
    docker) echo "$DOCKER_CONFIG/config.json" ;;
  esac
}
for ((i = 0; i < ${#places[@]}; i++)); do
  rm -f "$T/cli/auth.json" "$T/env/auth.json" "$XDG_RUNTIME_DIR/containers/auth.json" \
    "$HOME/.config/containers/auth.json" "$DOCKER_CONFIG/config.json"
  authjson "$(path_of "${places[i]}")" alice:s3cret
  for ((j = i + 1; j < ${#places[@]}; j++)); do authjson "$(path_of "${places[j]}")" alice:wrong; done
  args=()
  [[ ${places[i]} == authfile ]] && args=(--authfile "$T/cli/auth.json")
  envs=()
  [[ ${places[i]} == env || ${places[i]} == authfile ]] && envs=(REGISTRY_AUTH_FILE="$T/env/auth.json")
  [[ ${places[i]} == authfile ]] && authjson "$T/env/auth.json" alice:wrong
  fresh "place-$i"
  check "credentials from ${places[i]} ($(path_of "${places[i]}")), wrong ones in every later place" \
    env "${envs[@]}" "$IMGFS" pull -q "${args[@]}" $A/tiny:v1
done
rm -f "$T/cli/auth.json" "$T/env/auth.json" "$XDG_RUNTIME_DIR/containers/auth.json" \
  "$HOME/.config/containers/auth.json" "$DOCKER_CONFIG/config.json"
# A real client's file: skopeo login (containers/image, as podman login) writes
# ${XDG_RUNTIME_DIR}/containers/auth.json (when DOCKER_CONFIG is unset: skopeo 1.9 writes
# $DOCKER_CONFIG/config.json when it is set).
check "skopeo login succeeds" bash -c "env -u DOCKER_CONFIG skopeo login --tls-verify=false -u alice -p s3cret $A >/dev/null 2>&1"
check "  and wrote \${XDG_RUNTIME_DIR}/containers/auth.json" grep -q "$A" "$XDG_RUNTIME_DIR/containers/auth.json"
fresh skopeo
check "  imgfs pull uses skopeo's auth.json" "$IMGFS" pull -q $A/tiny:v1
rm -f "$XDG_RUNTIME_DIR/containers/auth.json"
authjson "$HOME/.docker/config.json" alice:s3cret
fresh home-docker
check "credentials from ~/.docker/config.json when DOCKER_CONFIG is unset" \
  env -u DOCKER_CONFIG "$IMGFS" pull -q $A/tiny:v1
rm -f "$HOME/.docker/config.json"
authjson "$XDG_RUNTIME_DIR/containers/auth.json" alice:s3cret "http://$A/v2/"
fresh key-form
check "an auths key in another form docker writes (http://HOST:PORT/v2/) is found" \
  "$IMGFS" pull -q $A/tiny:v1
authjson "$XDG_RUNTIME_DIR/containers/auth.json" alice:wrong
fresh authfile-only
expect_fail "--authfile: that file only (wrong there, right in the others): refused" "UNAUTHORIZED|unauthorized|authentication" \
  env REGISTRY_AUTH_FILE=/dev/null "$IMGFS" pull --authfile "$XDG_RUNTIME_DIR/containers/auth.json" $A/tiny:v1
fresh creds
check "--creds USER:PASS (the files' wrong credentials are not used)" "$IMGFS" pull -q --creds alice:s3cret $A/tiny:v1
fresh creds-bad
expect_fail "--creds with a wrong password: refused" "UNAUTHORIZED|unauthorized|authentication" \
  "$IMGFS" pull --creds alice:nope $A/tiny:v1
rm -f "$XDG_RUNTIME_DIR/containers/auth.json"

# --- login/logout with --authfile, through a credential helper, -p's warning.
fresh login
mkdir -p "$T/bin"
cat >"$T/bin/docker-credential-imgfstest" <<EOF
#!/bin/sh
# A credential helper keeping one secret per server in $T/helper/.
mkdir -p "$T/helper"
read -r input
case \$1 in
  store) printf '%s' "\$input" >"$T/helper/stored.json" ;;
  get) [ -f "$T/helper/stored.json" ] && cat "$T/helper/stored.json" || { echo "credentials not found in native keychain"; exit 1; } ;;
  erase) rm -f "$T/helper/stored.json" ;;
esac
EOF
chmod +x "$T/bin/docker-credential-imgfstest"
out=$("$IMGFS" login -u alice -p s3cret --authfile "$T/login/auth.json" "http://$A/v2/" 2>"$T/login.err")
check "login --authfile with docker's http://HOST:PORT/v2/ form: succeeds" test "$out" = "Login Succeeded"
check "  -p warns as docker does" grep -qx 'WARNING! Using --password via the CLI is insecure. Use --password-stdin.' "$T/login.err"
check "  the file has the credentials under HOST:PORT" \
  python3 -c "import json,sys,base64; a=json.load(open(sys.argv[1]))['auths'][sys.argv[2]]['auth']; sys.exit(base64.b64decode(a) != b'alice:s3cret')" "$T/login/auth.json" "$A"
check "  docker's config.json was not written" test ! -e "$DOCKER_CONFIG/config.json"
fresh login-use
check "  pull --authfile uses it" "$IMGFS" pull -q --authfile "$T/login/auth.json" $A/tiny:v1
check "logout --authfile removes it" bash -c "'$IMGFS' logout --authfile '$T/login/auth.json' $A | grep -q 'Removing login credentials' && ! grep -q '$A' '$T/login/auth.json'"
echo '{"credsStore": "imgfstest"}' >"$T/login/helper.json"
check "login through the credsStore of --authfile's file" \
  bash -c "printf 's3cret\n' | PATH='$T/bin':\$PATH '$IMGFS' login -u alice --password-stdin --authfile '$T/login/helper.json' $A >/dev/null"
check "  the helper got the secret" grep -q '"Secret":"s3cret"' "$T/helper/stored.json"
check "  the file has no secret (only the server's name)" \
  bash -c "grep -q '\"$A\":{}' '$T/login/helper.json' && ! grep -q 's3cret\|auth\"' '$T/login/helper.json'"
fresh helper-use
check "  pull finds the credentials through the helper" \
  env PATH="$T/bin:$PATH" "$IMGFS" pull -q --authfile "$T/login/helper.json" $A/tiny:v1
# A terminal: the password is asked for and not echoed.
cat >"$T/pty_run.py" <<'EOF'
import os, pty, sys, time
pid, fd = pty.fork()
if pid == 0:
    os.execv(sys.argv[1], sys.argv[1:])
out, sent = b'', False
deadline = time.time() + 30
while time.time() < deadline:
    try:
        data = os.read(fd, 4096)
    except OSError:
        break
    if not data:
        break
    out += data
    if not sent and b'Password:' in out:
        time.sleep(0.2)
        os.write(fd, b'pty-s3cret\n')
        sent = True
_, status = os.waitpid(pid, 0)
sys.stdout.write(out.decode(errors='replace'))
sys.exit(os.waitstatus_to_exitcode(status))
EOF
python3 "$T/pty_run.py" "$IMGFS" login -u bob --authfile "$T/login/tty.json" $A >"$T/tty.out" 2>&1 || true
check "login on a terminal without -p: asks for the password, succeeds" \
  bash -c "grep -q 'Password:' '$T/tty.out' && grep -q 'Login Succeeded' '$T/tty.out'"
check "  the password was not echoed" bash -c "! grep -q 'pty-s3cret' '$T/tty.out'"
check "  and was stored" grep -q "$(printf bob:pty-s3cret | base64)" "$T/login/tty.json"
expect_fail "login without a password and no terminal: a clear error" "want a username and a password" \
  "$IMGFS" login -u alice --authfile "$T/login/x.json" $A </dev/null

# --- Identity tokens: an auth.json entry with "identitytoken" is an OAuth2 refresh
# token, POSTed to the token endpoint; the password grant must not be used.
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=imgfs-token -keyout tok.key -out tok.crt 2>/dev/null
K=$(free_port)
TOKEN_USER=nobody:never TOKEN_REFRESH=refresh-abc TOKEN_LOG=$T/tok.log $TOOLS token-server "$K" tok.key tok.crt &
CLEANUP_PIDS="$CLEANUP_PIDS $!"
wait_port "$K"
PB=$(free_port)
shared_registry bearer "$PB" "auth:" "  token: {realm: http://127.0.0.1:$K/token, service: imgfs-registry, issuer: imgfs-test, rootcertbundle: $T/tok.crt}"
printf '{"auths": {"127.0.0.1:%s": {"auth": "%s", "identitytoken": "refresh-abc"}}}\n' "$PB" \
  "$(printf '<token>:' | base64)" >"$T/idtok.json"
fresh idtok
check "identitytoken: pull through the OAuth2 refresh grant" "$IMGFS" pull -q --authfile "$T/idtok.json" 127.0.0.1:$PB/tiny:v1
check "  (refresh_token POSTed and accepted, no password grant)" \
  bash -c "grep -q '^refresh ok scope=repository:tiny:pull' '$T/tok.log' && ! grep -q '^token' '$T/tok.log'"
sed -i 's/refresh-abc/refresh-stale/' "$T/idtok.json"
fresh idtok-bad
expect_fail "a refused identity token: a clear error" "identity token refused" \
  "$IMGFS" pull --authfile "$T/idtok.json" 127.0.0.1:$PB/tiny:v1

# --- registries.conf.
E=$(free_port)
start_registry empty "$E"  # has nothing
front mirror "$E"
M=$FRONT
front origin "$P"
O=$FRONT
cat >"$T/reg.conf" <<EOF
unqualified-search-registries = ["127.0.0.1:$E", "127.0.0.1:$P"]

[aliases]
"myalias" = "127.0.0.1:$P/team/app"

[[registry]]
prefix = "example.test/app"
location = "127.0.0.1:$O/team/app"

[[registry.mirror]]
location = "127.0.0.1:$M/team/app"

[[registry]]
prefix = "127.0.0.1:$P/team"
blocked = true
EOF
export CONTAINERS_REGISTRIES_CONF=$T/reg.conf
fresh search
check "short name: the search registries in order, the second has it" "$IMGFS" pull -q tiny:v1
check "  named by the registry that had it" bash -c '"$1" inspect "$2" >/dev/null' _ "$IMGFS" 127.0.0.1:$P/tiny:v1
fresh alias
expect_fail "alias to a blocked prefix: refused, naming registries.conf" "registry 127.0.0.1:$P/team is blocked in .*reg.conf" \
  "$IMGFS" pull myalias:v1
check "  nothing was stored" bash -c "[[ ! -d '$IMGFS_ROOT/blobs/sha256' || -z \$(ls '$IMGFS_ROOT/blobs/sha256') ]]"
sed -i 's/^blocked = true/blocked = false/' "$T/reg.conf"
check "alias: myalias:v1 is 127.0.0.1:$P/team/app:v1" "$IMGFS" pull -q myalias:v1
check "  named so" bash -c '"$1" inspect "$2" >/dev/null' _ "$IMGFS" 127.0.0.1:$P/team/app:v1
fresh mirror
check "a mirror that lacks the image: the origin (location) serves it" "$IMGFS" pull -q example.test/app:v1
check "  (the mirror was asked first and said 404)" grep -q '^GET /v2/team/app/manifests/v1' "$T/mirror.log"
check "  (the origin served the manifest and the blobs)" \
  bash -c "grep -q '^GET /v2/team/app/manifests/v1' '$T/origin.log' && grep -q '^GET /v2/team/app/blobs/' '$T/origin.log'"
check "  named by the reference given" bash -c '"$1" inspect "$2" >/dev/null' _ "$IMGFS" example.test/app:v1
fresh mirror-down
sed -i "s/^location = \"127.0.0.1:$M/location = \"127.0.0.1:$(free_port)/" "$T/reg.conf"
check "a mirror that does not answer: the origin serves it" "$IMGFS" pull -q example.test/app:v1
printf 'unqualified-search-registries = "docker.io"\n' >"$T/bad.conf"
expect_fail "registries.conf with a wrong type: a clear error naming the file" "bad.conf: unqualified-search-registries must be an array" \
  env CONTAINERS_REGISTRIES_CONF="$T/bad.conf" "$IMGFS" pull tiny:v1
printf '[[registry]\nprefix = "x"\n' >"$T/bad2.conf"
expect_fail "registries.conf that is not TOML: line and column" "bad2.conf:1:[0-9]+: " \
  env CONTAINERS_REGISTRIES_CONF="$T/bad2.conf" "$IMGFS" pull tiny:v1
export CONTAINERS_REGISTRIES_CONF=$T/none.conf

# --- TLS: a CA, a server certificate, a client certificate.
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=imgfs-test-ca -keyout ca.key -out ca.crt 2>/dev/null
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=other-ca -keyout other.key -out other.crt 2>/dev/null
openssl req -newkey rsa:2048 -nodes -subj /CN=127.0.0.1 -keyout srv.key -out srv.csr 2>/dev/null
printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\n' >san.ext
openssl x509 -req -in srv.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 2 -extfile san.ext -out srv.crt 2>/dev/null
openssl req -newkey rsa:2048 -nodes -subj /CN=imgfs-client -keyout client.key -out client.csr 2>/dev/null
printf 'extendedKeyUsage=clientAuth\n' >client.ext
openssl x509 -req -in client.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 2 -extfile client.ext -out client.cert 2>/dev/null
PM=$(free_port)
shared_registry mtls "$PM" "  tls:" "    certificate: $T/srv.crt" "    key: $T/srv.key" "    clientcas: [$T/ca.crt]"
# --cert-dir: the CA is the second of two *.crt (docker and podman read every one).
mkdir -p "$T/certs"
cp other.crt "$T/certs/a-other.crt"
cp ca.crt "$T/certs/b-ca.crt"
fresh mtls-nocert
expect_fail "mutual TLS, --cert-dir without a client certificate: refused" "not reachable: GET https://localhost:$PM/v2/" \
  "$IMGFS" pull --cert-dir "$T/certs" localhost:$PM/tiny:v1
cp client.cert client.key "$T/certs/"
fresh mtls
check "mutual TLS: --cert-dir DIR with every *.crt and client.cert+client.key" \
  "$IMGFS" pull -q --cert-dir "$T/certs" localhost:$PM/tiny:v1
mkdir -p "$HOME/.config/containers/certs.d/localhost:$PM"
cp "$T/certs/"* "$HOME/.config/containers/certs.d/localhost:$PM/"
fresh mtls-user
check "mutual TLS from ~/.config/containers/certs.d/HOST:PORT" "$IMGFS" pull -q localhost:$PM/tiny:v1
PS=$(free_port)
shared_registry tls "$PS" "  tls: {certificate: $T/srv.crt, key: $T/srv.key}"
fresh tls-unknown
expect_fail "TLS with an unknown CA: refused" "not reachable: GET https://localhost:$PS/v2/" \
  "$IMGFS" pull localhost:$PS/tiny:v1
printf '[[registry]]\nlocation = "localhost:%s"\ninsecure = true\n' "$PS" >"$T/insecure.conf"
fresh tls-insecure-conf
check "registries.conf insecure = true: the unknown CA is accepted" \
  env CONTAINERS_REGISTRIES_CONF="$T/insecure.conf" "$IMGFS" pull -q localhost:$PS/tiny:v1
fresh tls-noverify
"$IMGFS" pull -q --tls-verify=false localhost:$PS/tiny:v1 >/dev/null 2>"$T/noverify.err" && rc=0 || rc=$?
check "--tls-verify=false: the unknown CA is accepted" test "$rc" = 0
check "  with a warning" grep -q 'WARNING: --tls-verify=false' "$T/noverify.err"
# push reads the same registry flags (RegistryOptionsFor): refused against the unknown
# CA, accepted with --tls-verify=false; a bare --tls-verify keeps the check.
expect_fail "push to TLS with an unknown CA: refused" "localhost:$PS" \
  "$IMGFS" push localhost:$PS/tiny:v1 localhost:$PS/pushed:v1
expect_fail "push --tls-verify (bare: true) is refused the same" "localhost:$PS" \
  "$IMGFS" push --tls-verify localhost:$PS/tiny:v1 localhost:$PS/pushed:v1
check "push --tls-verify=false: the unknown CA is accepted" \
  "$IMGFS" push -q --tls-verify=false localhost:$PS/tiny:v1 localhost:$PS/pushed:v1
fresh tls-pushed
check "  and the pushed image pulls back" \
  "$IMGFS" pull -q --tls-verify=false localhost:$PS/pushed:v1
finish
