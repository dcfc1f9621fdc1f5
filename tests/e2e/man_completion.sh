#!/usr/bin/env bash
# The manual page and the bash completion follow the command tables: imgfs.1 (made by
# the build with `imgfs help --man`) documents every command --help lists and reads
# cleanly with man(1); `imgfs help CMD` is CMD's help; the completion offers the
# commands, a command's flags and the store's image names.
source "$(dirname "$0")/lib.sh"
need man python3
cd "$T"
SRC=$(cd "$HERE/../.." && pwd)
"$IMGFS" help --man >imgfs.1
# A command's name is what stands before the two spaces: "image prune", "system df".
cmds=$("$IMGFS" --help | awk -F '  +' '/^Commands:/ { on = 1; next } on && /^  [a-z]/ { print $2 }')
check "--help lists commands" test "$(wc -l <<<"$cmds")" -ge 15
missing() { local c; while read -r c; do grep -q "^\.SS $c\$" imgfs.1 || echo "$c"; done <<<"$cmds"; }
check "imgfs.1 has a section for every command" test -z "$(missing)"
check "man renders it without warnings" bash -c "man --warnings -l imgfs.1 2>&1 >/dev/null | (! grep .)"
check "  and the options read as ASCII (--chunk-size)" bash -c "MANWIDTH=200 man -l imgfs.1 2>/dev/null | grep -q -- '--chunk-size SIZE'"
check "the build made the same page" cmp imgfs.1 "$(dirname "$IMGFS")/imgfs.1"
check "mount.imgfs.8 renders without warnings" bash -c "man --warnings -l '$SRC/docs/man/mount.imgfs.8' 2>&1 >/dev/null | (! grep .)"
check "imgfs help save is save's help" bash -c "'$IMGFS' help save | head -1 | grep -q '^Usage: imgfs save '"
expect_fail "imgfs help NOPE" 'unknown command "nope"' "$IMGFS" help nope

mkdir -p bin && ln -s "$IMGFS" bin/imgfs
mkdir -p rf/etc && echo x >rf/etc/x && tar -C rf -cf rf.tar . && "$IMGFS" import rf.tar comp/one:v1 >/dev/null
complete_words() {  # complete_words WORD...: what the completion offers for the last word
  PATH="$T/bin:$PATH" bash -c 'source "$1"; shift; COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1)); _imgfs; printf "%s\n" "${COMPREPLY[@]}"' _ "$SRC/contrib/completion/imgfs.bash" "$@"
}
check "completion: commands" test "$(complete_words imgfs pu | sort | tr '\n' ' ')" = "pull push "
check "completion: a command's flags" bash -c "$(declare -f complete_words); SRC='$SRC' T='$T' complete_words imgfs save --f | grep -qx -- --format"
# The flags the other commands declare (auth's, io's, commit's) are offered too.
offers() {  # offers CMD FLAG...: the completion of "imgfs CMD --" has every FLAG
  local cmd=$1 f got; shift
  got=$(complete_words imgfs $cmd --)
  for f; do grep -qx -- "$f" <<<"$got" || { echo "$cmd: $f not offered"; return 1; }; done
}
check "completion: pull's registry flags" offers pull --authfile --creds --cert-dir --tls-verify --quiet
check "completion: login's flags" offers login --password-stdin --tls-verify --username
check "completion: push, commit and diff flags" bash -c "$(declare -f complete_words offers); SRC='$SRC' T='$T'
  offers push --chunk-size --no-mount --quiet && offers commit --base --message --change && offers diff --format"
check "completion: save --format values" test "$(complete_words imgfs save --format oc)" = oci-archive
check "completion: image names" test "$(complete_words imgfs push comp/)" = comp/one:v1
finish
