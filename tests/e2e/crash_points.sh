#!/usr/bin/env bash
# kill -9 at random points of pull, load, import, rmi, prune and an on-demand unpack
# (`imgfs cat` of a file in a gzip layer). After each kill `imgfs verify` must call the
# store clean and a retry must complete with the exact result (the tree listed with
# every file's sha256, and the set of blobs, as after an uninterrupted run).
#
# Landing mid-operation: each operation runs under strace, which delays every call
# that changes files (write, pwrite, fsync, rename, unlink, ftruncate, ...) so that
# the operation's steps (its successful calls of these, except on stdout/stderr) are
# spread over about a second; the kill comes after a seeded random delay inside that
# span. A kill counts as a crash point only when the process was still running (its
# status is SIGKILL, not a normal exit) and it came between two steps (after step N of
# the M an uninterrupted run takes, 1 <= N < M): the suite prints "step N of M" for
# each and fails unless at least 20 kills (and 2 per operation) landed mid-operation.
# Other kills are still checked but not counted.
#
#   CRASH_SEED=N     the random seed (printed; CI uses the default, 1)
#   CRASH_ROUNDS=N   rounds of the six operations (default 5; more are run, up to 8,
#                    while fewer than 20 kills landed mid-operation)
source "$(dirname "$0")/lib.sh"
need umoci skopeo python3 docker-registry strace
cd "$T"
TOOLS="python3 $HERE/registry_tools.py"
SEED=${CRASH_SEED:-1}
ROUNDS=${CRASH_ROUNDS:-5}
RANDOM=$SEED
echo "# crash_points seed $SEED (replay with CRASH_SEED=$SEED)"

# --- images: a 4 MB random file and 300 small files in one gzip layer (big), plus a
# second layer (ld, saved as a docker-archive for load); a rootfs tarball for import;
# a small keeper image that every prune and rmi must leave alone.
umoci init --layout oci >/dev/null
umoci new --image oci:base >/dev/null
umoci unpack --image oci:base b >/dev/null
mkdir -p b/rootfs/data/small b/rootfs/etc
head -c 4000000 /dev/urandom >b/rootfs/data/big.bin
for i in $(seq 1 300); do echo "file $i" >b/rootfs/data/small/f$i; done
echo 'root:x:0:0::/root:/bin/sh' >b/rootfs/etc/passwd
umoci repack --image oci:big b >/dev/null
umoci unpack --image oci:big b2 >/dev/null
head -c 1000000 /dev/urandom >b2/rootfs/data/second.bin
rm b2/rootfs/data/small/f1
umoci repack --image oci:ld b2 >/dev/null
skopeo copy -q oci:oci:ld docker-archive:ld.tar:test/ld:v1
tar -C b2/rootfs -cf rootfs.tar .
mkdir -p keep && echo keep >keep/k && tar -C keep -cf keep.tar .
P=$(free_port)
start_registry reg "$P"
$TOOLS push-layout "http://127.0.0.1:$P" test/big v1 oci big >/dev/null
BIG=127.0.0.1:$P/test/big:v1

"$IMGFS" import keep.tar test/keep:v1 >/dev/null
# Blobs (with content hashes), images and names; ingest/ and unpacked/ are scratch.
content_state() {
  (cd "$ROOT" && find blobs -type f -exec sha256sum {} + | sort
   "$IMGFS" images --no-trunc --digests --format json | sed 's/"CreatedSince":"[^"]*",//')
}
# same_as EXPECTED: the content state is EXPECTED (else the difference is printed).
same_as() { diff <(echo "$1") <(content_state) >&2; }
tree_of() { "$IMGFS" ls --recursive --long --sha256 --format tsv "$1" / 2>&1; }
S0=$(content_state)
KEEP_TREE=$(tree_of test/keep:v1)

# --- the operations. cmd_NAME sets CMD to the operation's command line, prep_NAME
# puts the store in the state it starts from, retry_NAME is what a user runs after a
# crash, and expect_NAME prints what must hold after the retry (compared with the
# output after an uninterrupted run).
prep_pull() { :; }  # starts from S0 (each round ends there)
cmd_pull() { CMD=("$IMGFS" pull -q "$BIG"); }
retry_pull() { "$IMGFS" pull -q "$BIG" >/dev/null; }
expect_pull() { content_state; tree_of "$BIG"; }

# Drops the seek indexes (and any unpacked copy): cat must build the layer's sidecar
# (temp file, fsync, rename), the only thing a read writes (index/seek_index.h).
prep_cat() { "$IMGFS" prune >/dev/null; rm -f "$ROOT"/seek/*; }
cmd_cat() { CMD=("$IMGFS" cat "$BIG" /data/big.bin /etc/passwd); }
retry_cat() { "$IMGFS" cat "$BIG" /data/big.bin /etc/passwd >"$T/cat.out"; }
expect_cat() { sha256sum <"$T/cat.out"; content_state; }

# By image ID: the pull gave the image a tag and a digest name, and rmi by one name of
# several only untags (docker would also drop the digest name).
id_of() {
  "$IMGFS" images --no-trunc --format json | python3 -c 'import json, sys
print("".join(d["ID"] for d in map(json.loads, sys.stdin) if d["Repository"].endswith("/test/big")))'
}
prep_rmi() { BIG_ID=$(id_of); }
cmd_rmi() { CMD=("$IMGFS" rmi "$BIG_ID"); }
# After a kill the image may be gone already (its blobs then wait for prune).
retry_rmi() {
  if "$IMGFS" inspect "$BIG_ID" >/dev/null 2>&1; then "$IMGFS" rmi "$BIG_ID" >/dev/null || return 1; fi
  "$IMGFS" prune >/dev/null
}
expect_rmi() { content_state; }

prep_load() { :; }
cmd_load() { CMD=("$IMGFS" load -q ld.tar); }
retry_load() { "$IMGFS" load -q ld.tar >/dev/null; }
expect_load() { content_state; tree_of test/ld:v1; }

# Garbage for prune: 200 unreferenced (valid) blobs, as a killed rmi leaves them, stale
# ingest files of a dead writer, and unpacked copies.
prep_prune() {
  python3 - "$ROOT" <<'EOF'
import hashlib, os, sys
root = sys.argv[1]
for i in range(200):
    data = os.urandom(2048 + i)
    p = os.path.join(root, 'blobs', 'sha256', hashlib.sha256(data).hexdigest())
    with open(p, 'wb') as f:
        f.write(data)
    os.chmod(p, 0o444)
for i in range(20):
    with open(os.path.join(root, 'ingest', '999999999-stale-%d' % i), 'wb') as f:
        f.write(b'x' * 4096)
EOF
  "$IMGFS" ls --sha256 --recursive test/ld:v1 / >/dev/null  # unpacked copies
}
cmd_prune() { CMD=("$IMGFS" prune); }
retry_prune() { "$IMGFS" prune >/dev/null; }
expect_prune() { content_state; tree_of test/ld:v1; ls "$ROOT/ingest"; }

prep_import() { "$IMGFS" rmi test/ld:v1 >/dev/null && "$IMGFS" prune >/dev/null; }
cmd_import() { CMD=("$IMGFS" import rootfs.tar test/imp:v1); }
# Each import is a new image (its config records the time): run it again only when the
# killed one did not finish.
retry_import() {
  "$IMGFS" inspect test/imp:v1 >/dev/null 2>&1 || "$IMGFS" import rootfs.tar test/imp:v1 >/dev/null
}
# The config of an import records its time: compare the tree, not the image id.
expect_import() {
  tree_of test/imp:v1
  "$IMGFS" images --format json | python3 -c 'import json, sys
for l in sys.stdin: d = json.loads(l); print(d["Repository"], d["Tag"])' | sort
}
# (round end: back to S0)
end_round() { "$IMGFS" rmi test/imp:v1 >/dev/null && "$IMGFS" prune >/dev/null; }

OPS="pull cat rmi load prune import"
CALLS=write,pwrite64,pwritev,fsync,fdatasync,msync,rename,renameat,renameat2,unlink,unlinkat,ftruncate,fallocate,link,linkat

# traced OP DELAY_US: runs the operation under strace with every file-changing call
# delayed, stdout in $T/OP.out; leaves the strace log in $T/st.out and the pid of the
# operation (a shell that writes it, then execs imgfs) in $T/st.pid.
traced() {
  local op=$1 us=$2
  rm -f "$T/st.pid"
  cmd_$op
  strace -f --seccomp-bpf -qq -o "$T/st.out" -e trace=$CALLS -e inject=$CALLS:delay_enter=$us \
    -- bash -c 'echo $$ >"$1"; shift; exec "$@"' sh "$T/st.pid" "${CMD[@]}" \
    >"$T/$op.out" 2>"$T/st.err"
}
# The operation's completed, successful file-changing calls: its steps (writes to
# stdout and stderr, the shell's st.pid among them, are no steps).
steps() { grep -E ' = [0-9]' "$T/st.out" | grep -cvE '^[0-9]+ +write\([12],' || true; }

# --- calibration: one uninterrupted traced run per operation gives the reference
# result and M, the number of file-changing calls; the delay per call is then chosen so
# that the operation's steps span about a second.
declare -A M K US REF
for op in $OPS; do
  prep_$op
  if ! traced "$op" 200; then
    not_ok "calibration: $op under strace failed: $(cat "$T/st.err")"
    finish; exit 1
  fi
  M[$op]=$(steps)
  # K: the delayed calls up to the last step (st.pid's not counted)
  K[$op]=$(awk '!/resumed>/ {n++} / = [0-9]/ && !/^[0-9]+ +write\([12],/ {last = n} END {print last - 1}' "$T/st.out")
  US[$op]=$((1000000 / (K[$op] + 1) + 200))
  REF[$op]=$(expect_$op)
  echo "# $op: ${M[$op]} steps within ${K[$op]} delayed calls of ${US[$op]} us each in the trials"
done
end_round
check "calibration leaves the store as it started" same_as "$S0"

# --- the trials.
declare -A MID
mid=0 trials=0 after=0
round=0
while ((round < ROUNDS || (mid < 20 && round < 8))); do
  round=$((round + 1))
  for op in $OPS; do
    prep_$op
    span=$((K[$op] * US[$op]))  # microseconds, from st.pid written to the last step
    delay_us=$((span * (5 + RANDOM % 90) / 100))
    rm -f "$T/st.pid"
    traced "$op" "${US[$op]}" 2>/dev/null &  # (no "Killed" line from bash)
    tracer=$!
    until [[ -s $T/st.pid ]] || ! kill -0 $tracer 2>/dev/null; do sleep 0.01; done
    sleep "$(printf '%d.%06d' $((delay_us / 1000000)) $((delay_us % 1000000)))"
    kill -9 "$(cat "$T/st.pid")" 2>/dev/null || true
    rc=0
    wait $tracer 2>/dev/null || rc=$?
    n=$(steps)
    trials=$((trials + 1))
    what="round $round $op: kill after $((delay_us / 1000)) ms"
    if [[ $rc -eq 137 && $n -ge 1 && $n -lt ${M[$op]} ]]; then
      mid=$((mid + 1))
      MID[$op]=$((${MID[$op]:-0} + 1))
      what+=", step $n of ${M[$op]} (mid-operation)"
    elif [[ $rc -eq 137 ]]; then
      what+=", at step $n of ${M[$op]}: not between two steps (not counted)"
    else
      after=$((after + 1))
      what+=", after it finished with status $rc (not counted)"
    fi
    check "$what: verify clean" "$IMGFS" verify
    check "  the retry completes" retry_$op
    check "  exact" test "$(expect_$op)" = "${REF[$op]}"
  done
  end_round
  check "round $round ends with the store as it started" same_as "$S0"
done
check "the keeper image is untouched" test "$(tree_of test/keep:v1)" = "$KEEP_TREE"
summary=""
for op in $OPS; do summary+=" $op=${MID[$op]:-0}"; done
echo "# $mid of $trials kills landed mid-operation ($after after completion):$summary"
check "at least 20 kills landed mid-operation" test "$mid" -ge 20
for op in $OPS; do
  check "  at least 2 of them in $op" test "${MID[$op]:-0}" -ge 2
done
finish
