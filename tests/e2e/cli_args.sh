#!/usr/bin/env bash
# The command-line parser as a table: command lines that must be accepted (exit 0,
# and where it shows, the flag took effect) and command lines that must be refused
# (exit 2, one stderr line naming the cause). Nothing here needs a network or FUSE.
source "$(dirname "$0")/lib.sh"
need busybox python3
cd "$T"
mkdir -p rootfs/etc && printf 'root:x:0:0:root:/root:/bin/sh\n' >rootfs/etc/passwd
mkdir -p rootfs/sub && printf 'x' >rootfs/sub/file
tar -C rootfs -cf rootfs.tar .
id=$("$IMGFS" import rootfs.tar demo:v1)

# accept "COMMAND LINE" [EXPECTED_STDOUT_REGEX]: exit 0 (and stdout matches).
accept() {
  local line=$1 want=${2:-} out rc=0 args
  read -ra args <<<"$line"
  out=$("$IMGFS" "${args[@]}" 2>"$T/err") || rc=$?
  if [[ $rc -eq 0 && ( -z $want || $out =~ $want ) ]]; then
    ok "accepted: imgfs $line"
  else
    not_ok "accepted: imgfs $line (rc=$rc, stdout: ${out:0:200}, stderr: $(cat "$T/err"))"
  fi
}
# refuse "COMMAND LINE" PATTERN: exit 2 with one stderr line matching PATTERN.
refuse() {
  local line=$1 pat=$2 err rc=0 args
  read -ra args <<<"$line"
  err=$("$IMGFS" "${args[@]}" 2>&1 >/dev/null) || rc=$?
  if [[ $rc -eq 2 && $(printf '%s\n' "$err" | wc -l) -eq 1 && $err =~ $pat ]]; then
    ok "refused: imgfs $line"
  else
    not_ok "refused: imgfs $line (rc=$rc, stderr: $err)"
  fi
}
short=${id:7:12}
accept "images" "^REPOSITORY"
accept "images -q" "^$short$"
accept "images --quiet" "^$short$"
accept "images -qa" "^$short$"
accept "images -a -q" "^$short$"
accept "images --all --quiet" "^$short$"
accept "images --digests" "DIGEST"
accept "images --no-trunc -q" "^sha256:${id:7}$"
accept "images --format json" '^\{.*"Repository":"demo"'
accept "images --format=json" '^\{.*"Repository":"demo"'
accept "images demo" "demo +v1"
accept "images -- demo" "demo +v1"
accept "images -q demo:v1" "^$short$"
accept "images demo:v1 -q" "^$short$"
accept "images --help" "^Usage: imgfs images"
accept "images -h" "^Usage: imgfs images"
accept "--root $ROOT images -q" "^$short$"
accept "--root=$ROOT images -q" "^$short$"
accept "-g $ROOT images -q" "^$short$"
accept "--graph $ROOT images -q" "^$short$"
accept "--graph=$ROOT images -q" "^$short$"
accept "images -q --root $ROOT" "^$short$"
accept "ls demo:v1 /sub" "^file$"
accept "ls -lR demo:v1 /" "sub:"
accept "ls -l -R demo:v1 /" "sub:"
accept "ls --long --recursive demo:v1 /" "sub:"
accept "ls -Rl demo:v1 /" "sub:"
accept "ls --format tsv demo:v1 /sub" $'\tfile$'
accept "ls --format=tsv demo:v1 /sub" $'\tfile$'
accept "ls --format tsv --sha256 demo:v1 /sub" "2d711642b726b04401627ca9fbac32f5c8530fb1903cc4db02258717921a4881"
accept "cat demo:v1 /sub/file" "^x$"
accept "inspect demo:v1" '"Id": "'"$id"'"'
accept "--version" "^imgfs version "
accept "-v" "^imgfs version "
accept "--help" "Commands:"
accept "pull --help" "^Usage: imgfs pull"
accept "mount --help" "^Usage: imgfs mount"

refuse "images --frob" "^imgfs: images: unknown flag --frob"
refuse "images -z" "unknown flag -z"
refuse "images -qz" "unknown flag -z"
refuse "images --dig" "unknown flag --dig"          # a prefix of --digests in the help
refuse "images --for json" "unknown flag --for"     # a prefix of --format
accept "images --quiet=false" "^REPOSITORY"         # a boolean given false is off
accept "images --quiet=true" "^$short$"
accept "images -q=1" "^$short$"                     # pflag's -x=VALUE
accept "images -q --quiet=0" "^REPOSITORY"          # the last one wins
accept "images --format=" "^REPOSITORY"             # empty: the default table
accept "images -f dangling=false -q" "^$short$"
accept "inspect -f {{.Id}} demo:v1" "^$id$"
accept "inspect --format={{.Os}} demo:v1" "^linux$"
accept "help images" "^Usage: imgfs images"
accept "help system df" "^Usage: imgfs system df"
accept "image ls -q" "^$short$"
accept "image inspect -f {{.Id}} demo:v1" "^$id$"
accept "history -q demo:v1" "^$short$"
accept "history -H=false --format {{.Size}} demo:v1" "^[0-9]+$"
accept "system df" "^TYPE +TOTAL"
refuse "images --digests=yes" "invalid value \"yes\" for --digests: want true or false"
refuse "images --quiet=maybe" "invalid value \"maybe\" for --quiet"
refuse "images --format" "--format needs a value"
refuse "images --format {{.Nope" "template: :1:8: unclosed action"
refuse "images --format {{nope}}" "template: :1:3: function \"nope\" not defined"
refuse "inspect -f {{if}} demo:v1" "template: :1:5: missing value for command"
refuse "images -f nope=1" "invalid filter 'nope'"
refuse "images -f dangling=maybe" "invalid filter 'dangling=maybe'"
refuse "images --filter" "--filter needs a value"
refuse "history -x demo:v1" "unknown flag -x"
refuse "history --human=2 demo:v1" "invalid value \"2\" for --human"
refuse "history" "want exactly one IMAGE"
refuse "help frob" "help: unknown command \"frob\""
refuse "image" "image: want a subcommand"
refuse "image frob" "image: unknown subcommand \"frob\""
refuse "system frob" "system: unknown subcommand \"frob\""
accept "image --help" "image prune"
refuse "image prune --until 1h" "unknown flag --until"
refuse "image prune -f --filter dangling=true" "invalid filter 'dangling'"
refuse "system df --all" "unknown flag --all"
refuse "ls --sha demo:v1 /" "unknown flag --sha"
refuse "ls -x demo:v1 /" "unknown flag -x"
refuse "verify -q" "unknown flag -q"
refuse "prune --force" "unknown flag --force"
refuse "pull --platform" "--platform needs a value"
refuse "pull --max-concurrent-downloads" "needs a value"
refuse "pull --registry-mirror" "needs a value"
refuse "pull --plat linux/amd64 x" "unknown flag --plat"
refuse "pull --max-concurrent-downloads=abc x" "max-concurrent-downloads"
refuse "login -u" "--username needs a value"
refuse "pull --tls-verify=maybe x" "invalid value \"maybe\" for --tls-verify"
refuse "login --tls-verify=maybe x" "invalid value \"maybe\" for --tls-verify"
# --tls-verify is a boolean: bare, it is true and takes not the next word as its value.
"$IMGFS" pull --tls-verify 127.0.0.1:1/tls/bare:v1 >/dev/null 2>"$T/tlsbare.err" || true
check "pull --tls-verify REF: REF is the image, not the flag's value" \
  grep -q 'registry 127.0.0.1:1 is not reachable' "$T/tlsbare.err"
check "  and no warning (the check stays on)" bash -c "! grep -q WARNING '$T/tlsbare.err'"
refuse "login --password-stdin=x" "invalid value \"x\" for --password-stdin"
refuse "mount -o" "--options needs a value"
refuse "mount --cache" "unknown flag --cache"
refuse "--root" "--root needs a directory"
refuse "-g" "-g needs a directory"
refuse "frobnicate" "unknown command \"frobnicate\""
check "no command: the usage on stderr, exit 2" bash -c "'$IMGFS' 2>&1 >/dev/null | head -1 | grep -q '^Usage: imgfs'; '$IMGFS' >/dev/null 2>&1; [[ \$? -eq 2 ]]"

# After "--" every word is an argument: "--root DIR" there chooses no store.
"$IMGFS" images -q -- --root "$T/elsewhere" >/dev/null 2>&1 || true
check "--root after -- is an argument, not the store" test ! -e "$T/elsewhere"

# The store is as it was: no refused command line changed anything.
check "the refused command lines left the image alone" bash -c "'$IMGFS' images -q | grep -qx '$short'"
finish
