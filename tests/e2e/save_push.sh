#!/usr/bin/env bash
# load/import from stdin, save and push, with real clients: skopeo and umoci read what
# `imgfs save` writes, Debian's docker-registry receives what `imgfs push` sends, and
# skopeo and `imgfs pull` read it back. The digests that must survive a round trip do:
# the image ID always, the manifest digest for OCI archives and pushes.
source "$(dirname "$0")/lib.sh"
need umoci skopeo python3 docker-registry gzip script
cd "$T"
build_test_images >/dev/null
"$IMGFS" load -q --name test/layout oci >/dev/null
skopeo copy -q oci:oci:v3 docker-archive:$T/da.tar:test/da:v3
id3=$("$IMGFS" images -q --no-trunc test/layout:v3)
man3=$("$IMGFS" inspect test/layout:v3 | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["Manifest"])')
fresh() { rm -rf "$T/s-$1"; echo "$T/s-$1"; }  # a new, empty store
ingest_empty() { [[ -z $(ls -A "$1/ingest") ]]; }
same_as_ref() {  # same_as_ref OCI_LAYOUT_DIR TAG REF_DIR: umoci unpack equals the reference
  rm -rf "$T/un" && umoci unpack --image "$1:$2" "$T/un" >/dev/null &&
    diff <(python3 "$HERE/tree.py" native "$T/un/rootfs") <(python3 "$HERE/tree.py" native "$3") >/dev/null
}
state_of() { ROOT=$1 IMGFS_ROOT=$1 store_state; }
id_in() { "$IMGFS" --root "$1" images -q --no-trunc "$2"; }

# 1. load and import from stdin.
S=$(fresh a)
check "load < FILE (stdin is a regular file)" bash -c "'$IMGFS' --root '$S' load <da.tar | grep -qx 'Loaded image: test/da:v3'"
check "  the image ID is the config's" test "$(id_in "$S" test/da:v3)" = "$id3"
S=$(fresh b)
check "cat FILE | load (a pipe)" bash -c "cat da.tar | '$IMGFS' --root '$S' load | grep -qx 'Loaded image: test/da:v3'"
check "  same image ID" test "$(id_in "$S" test/da:v3)" = "$id3"
check "  the spooled copy is gone from ingest/" ingest_empty "$S"
S=$(fresh c)
check "gzip -c FILE | load -i - (a compressed pipe)" bash -c "gzip -c da.tar | '$IMGFS' --root '$S' load -i - | grep -qx 'Loaded image: test/da:v3'"
check "  same image ID" test "$(id_in "$S" test/da:v3)" = "$id3"
check "  the spooled copy is gone" ingest_empty "$S"
before=$(state_of "$S")
expect_fail "random bytes on stdin: one line" "load: stdin: not a tar archive" bash -c "head -c 100000 /dev/urandom | '$IMGFS' --root '$S' load"
expect_fail "a root filesystem tar piped to load is refused at its first file" "not a docker-archive or OCI archive \(a member named" \
  bash -c "tar -C ref-v1/rootfs -cf - . | '$IMGFS' --root '$S' load -"
expect_fail "an empty pipe" "load: stdin: empty input" bash -c ": | '$IMGFS' --root '$S' load"
check "  the store is as it was" test "$(state_of "$S")" = "$before"
check "  ingest/ is empty" ingest_empty "$S"
tar -C ref-v3/rootfs -cf rootfs.tar .
check "cat TAR | import - REPO:TAG (streamed)" bash -c "cat rootfs.tar | '$IMGFS' import - imp/pipe:1 >/dev/null"
"$IMGFS" import rootfs.tar imp/file:1 >/dev/null
diff_ids() { "$IMGFS" inspect "$1" | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["RootFS"]["Layers"])'; }
check "  the same layer (diff_id) as importing the file" test "$(diff_ids imp/pipe:1)" = "$(diff_ids imp/file:1)"
check "  the same tree" diff <("$IMGFS" ls -R --format tsv imp/pipe:1 /) <("$IMGFS" ls -R --format tsv imp/file:1 /)
expect_fail "import - of an empty pipe" "import: stdin: empty input" bash -c ": | '$IMGFS' import - imp/empty:1"

# 2. save.
check "save IMAGE | ... (docker-archive to a pipe)" bash -c "'$IMGFS' save test/layout:v3 | cat >s.tar"
check "  skopeo: the config digest is the image ID" \
  test "sha256:$(skopeo inspect --config --raw docker-archive:s.tar | sha256sum | cut -d' ' -f1)" = "$id3"
check "  skopeo finds it by the name it was saved with" bash -c "skopeo inspect -n docker-archive:s.tar:test/layout:v3 >/dev/null"
check "  skopeo copy to OCI, umoci unpack: the reference tree" \
  bash -c "skopeo copy -q docker-archive:s.tar oci:sk:v3 && $(declare -f same_as_ref); HERE='$HERE' T='$T' same_as_ref sk v3 ref-v3/rootfs"
S=$(fresh d)
check "  imgfs load of it: same image ID, same name" bash -c "'$IMGFS' --root '$S' load <s.tar >/dev/null && test \"\$('$IMGFS' --root '$S' images -q --no-trunc test/layout:v3)\" = '$id3'"
check "save -o FILE --format oci-archive IMAGE IMAGE" "$IMGFS" save --format oci-archive -o o.tar test/layout:v3 test/layout:v1
check "  skopeo inspect: the local manifest digest" test "$(skopeo inspect --format '{{.Digest}}' oci-archive:o.tar:v3)" = "$man3"
check "  umoci unpack of each image: the reference trees" \
  bash -c "mkdir ou && tar -C ou -xf o.tar && $(declare -f same_as_ref); HERE='$HERE' T='$T' same_as_ref ou v3 ref-v3/rootfs && HERE='$HERE' T='$T' same_as_ref ou v1 ref-v1/rootfs"
S=$(fresh e)
"$IMGFS" --root "$S" load -q o.tar >/dev/null || true
check "  imgfs load of it: same manifest digest and image ID" \
  bash -c "'$IMGFS' --root '$S' inspect test/layout:v3 | grep -q '\"Manifest\": \"$man3\"' && test \"\$('$IMGFS' --root '$S' images -q --no-trunc test/layout:v3)\" = '$id3'"
check "  and the second image" test "$(id_in "$S" test/layout:v1)" = "$("$IMGFS" images -q --no-trunc test/layout:v1)"
check "  docker-archive of the same image saved from there: byte for byte the first" \
  bash -c "'$IMGFS' --root '$S' save test/layout:v3 | cmp -s - s.tar"
check "save to a terminal is refused (exit 2, nothing written)" \
  bash -c "out=\$(script -qec '$IMGFS save test/layout:v3' /dev/null); rc=\$?; [[ \$rc == 2 && \$out == *'refusing to write an archive to a terminal'* && \${#out} -lt 300 ]]"
expect_fail "save of an unknown image" "save: no such image: nope:1" "$IMGFS" save -o x.tar nope:1
check "  leaves no file" bash -c "! ls x.tar* 2>/dev/null"

S=$T/s-d  # loaded from s.tar above; its largest blob is a layer
blob=$(ls -S "$S/blobs/sha256" | head -1)
chmod u+w "$S/blobs/sha256/$blob" && printf 'X' | dd of="$S/blobs/sha256/$blob" bs=1 seek=1000 conv=notrunc status=none
expect_fail "save of a blob damaged on disk fails, naming it" "content hashes to .*run imgfs verify" "$IMGFS" --root "$S" save -o c.tar test/layout:v3
expect_fail "  also as oci-archive" "content hashes to" "$IMGFS" --root "$S" save --format oci-archive -o c.tar test/layout:v3
check "  and leaves no file" bash -c "! ls c.tar* 2>/dev/null"

# 3. push to a real registry.
PORT=$(free_port)
start_registry reg "$PORT"
REG=127.0.0.1:$PORT
check "push an image loaded from OCI" bash -c "'$IMGFS' push test/layout:v3 $REG/test/app:v3 >push1.out"
check "  docker's last line: TAG: digest: DIGEST size: N" grep -q "^v3: digest: $man3 size: [0-9]" push1.out
check "  skopeo inspect: the registry's digest is the local manifest digest" \
  test "$(skopeo inspect --tls-verify=false --format '{{.Digest}}' docker://$REG/test/app:v3)" = "$man3"
check "  skopeo copy pulls it back: the reference tree" \
  bash -c "skopeo copy -q --src-tls-verify=false docker://$REG/test/app:v3 oci:pulled:v3 && $(declare -f same_as_ref); HERE='$HERE' T='$T' same_as_ref pulled v3 ref-v3/rootfs"
idimp=$("$IMGFS" images -q --no-trunc imp/file:1)
check "push an imported image (no manifest of its own) in 64 KiB chunks" bash -c "'$IMGFS' push -q --chunk-size 64K imp/file:1 $REG/test/imp:1 | grep -qx $REG/test/imp:1"
check "  skopeo: its config digest is the image ID" \
  test "sha256:$(skopeo inspect --tls-verify=false --config --raw docker://$REG/test/imp:1 | sha256sum | cut -d' ' -f1)" = "$idimp"
check "  the manifest is the one save --format oci-archive writes" \
  bash -c "'$IMGFS' save --format oci-archive -o imp.tar imp/file:1 && test \"\$(skopeo inspect --format '{{.Digest}}' oci-archive:imp.tar:1)\" = \"\$(skopeo inspect --tls-verify=false --format '{{.Digest}}' docker://$REG/test/imp:1)\""
S=$(fresh f)
check "  imgfs pull of it into an empty store: same image ID" \
  bash -c "'$IMGFS' --root '$S' pull -q $REG/test/imp:1 >/dev/null && test \"\$('$IMGFS' --root '$S' images -q --no-trunc $REG/test/imp:1)\" = '$idimp'"
"$IMGFS" tag test/layout:v3 "$REG/test/app:v3"
check "push to another repository of the registry" bash -c "'$IMGFS' push test/layout:v3 $REG/test/other:v3 >push2.out"
check "  every blob is mounted from test/app, none sent" test "$(grep -c ': Mounted from test/app$' push2.out)" = 4
check "  same digest there" test "$(skopeo inspect --tls-verify=false --format '{{.Digest}}' docker://$REG/test/other:v3)" = "$man3"
check "push again: every layer already exists" bash -c "'$IMGFS' push test/layout:v3 $REG/test/other:v3 | grep -c ': Layer already exists$' | grep -qx 4"
# Credentials as for pull: Basic (htpasswd) and Bearer (a token service), from login.
need htpasswd openssl
export DOCKER_CONFIG=$T/docker
htpasswd -Bbn alice s3cret >"$T/htpasswd" 2>/dev/null
PA=$(free_port)
start_registry auth "$PA" "auth:" "  htpasswd: {realm: imgfs-test, path: $T/htpasswd}"
expect_fail "push to a Basic-auth registry without credentials" "imgfs login" "$IMGFS" push -q test/layout:v3 127.0.0.1:$PA/test/sec:v3
echo s3cret | "$IMGFS" login -u alice --password-stdin 127.0.0.1:$PA >/dev/null
check "push with login's credentials (Basic)" bash -c "'$IMGFS' push -q test/layout:v3 127.0.0.1:$PA/test/sec:v3 >/dev/null"
check "  skopeo --creds reads the local manifest digest" \
  test "$(skopeo inspect --tls-verify=false --creds alice:s3cret --format '{{.Digest}}' docker://127.0.0.1:$PA/test/sec:v3)" = "$man3"
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=imgfs-token -keyout tok.key -out tok.crt 2>/dev/null
PK=$(free_port)
TOKEN_USER=bob:hunter2 python3 "$HERE/registry_tools.py" token-server "$PK" tok.key tok.crt &
CLEANUP_PIDS="$CLEANUP_PIDS $!"
wait_port "$PK"
PB=$(free_port)
start_registry bearer "$PB" "auth:" "  token: {realm: http://127.0.0.1:$PK/token, service: imgfs-registry, issuer: imgfs-test, rootcertbundle: $T/tok.crt}"
"$IMGFS" login -u bob -p hunter2 127.0.0.1:$PB >/dev/null 2>&1
check "push with a Bearer token" bash -c "'$IMGFS' push -q test/layout:v3 127.0.0.1:$PB/test/tok:v3 >/dev/null"
"$IMGFS" tag test/layout:v3 "127.0.0.1:$PB/test/tok:v3"
check "  to a second repository (a mount the token may not cover, else an upload)" \
  bash -c "'$IMGFS' push test/layout:v3 127.0.0.1:$PB/test/tok2:v3 | grep -q '^v3: digest: $man3 '"
check "  skopeo reads both with the local manifest digest" bash -c "for r in tok tok2; do
  [[ \$(skopeo inspect --tls-verify=false --creds bob:hunter2 --format '{{.Digest}}' docker://127.0.0.1:$PB/test/\$r:v3) == '$man3' ]] || exit 1; done"

expect_fail "push to a registry that is not there: one line" "not reachable" "$IMGFS" push test/layout:v3 127.0.0.1:1/x:1
expect_fail "push IMAGE-ID with no destination is a usage error" "not a local name: give a DESTINATION" "$IMGFS" push "${id3:7:12}"
expect_fail "push of an unknown image" "push: no such image: nope:1" "$IMGFS" push nope:1 "$REG/x:1"
finish
