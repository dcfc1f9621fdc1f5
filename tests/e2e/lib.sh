# Shared helpers for the end-to-end tests. Each test sources this, gets a private
# temporary directory in $T and a store in $ROOT, and everything is removed on exit,
# whether the test passes or fails.
set -euo pipefail
IMGFS=${1:?usage: $0 PATH_TO_IMGFS}
IMGFS=$(readlink -f "$IMGFS")
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
T=$(mktemp -d "${TMPDIR:-/tmp}/imgfs-e2e.XXXXXX")
ROOT=$T/store
export IMGFS_ROOT=$ROOT
export TZ=UTC
# At exit: end the background processes, unmount, run the suite's exit hooks (last
# added first), remove the temporary directory. The exit status is the checks' verdict,
# never the status of a cleanup step: 0 only when finish ran and every check passed; 77
# for a skip (require_fuse, outside CI); the script's own status if it stopped early
# (a failing command under set -e), and 1 if it stopped early with status 0.
# Suites must not replace this trap (lib.sh's trap refuses EXIT): use on_exit.
EXIT_HOOKS=()
on_exit() { EXIT_HOOKS+=("$*"); }  # on_exit COMMAND...: run at exit, in a subshell
cleanup() {
  local rc=$? status i passes=${passes:-0} fails=${fails:-0}
  set +eu
  for pid in ${CLEANUP_PIDS:-}; do kill "$pid" 2>/dev/null; done
  for m in ${CLEANUP_MOUNTS:-}; do fusermount3 -u -z "$m" 2>/dev/null; done
  # Each hook runs in a subshell: neither its status nor an `exit` in it can change ours.
  for ((i = ${#EXIT_HOOKS[@]} - 1; i >= 0; i--)); do
    (eval "${EXIT_HOOKS[i]}") || echo "# exit hook failed (ignored): ${EXIT_HOOKS[i]}"
  done
  for d in ${CLEANUP_DIRS:-}; do rm -rf "$d"; done
  rm -rf "$T"
  if [[ -n ${SKIPPED:-} ]]; then
    status=77
  elif [[ -z ${FINISHED:-} ]]; then
    status=$rc
    ((status != 0)) || status=1
    echo "not ok - the suite stopped before finish (exit status $rc, $passes passed, $fails failed so far)"
  elif ((fails != 0 || passes == 0)); then
    status=1
  else
    status=0
  fi
  builtin trap - EXIT
  exit $status
}
builtin trap cleanup EXIT
trap() {  # the EXIT trap belongs to lib.sh: a suite that replaces it loses its verdict
  local a
  for a in "$@"; do
    [[ $a == EXIT || $a == 0 ]] && { echo "not ok - a suite may not trap EXIT (use on_exit): trap $*"; fails=$((fails + 1)); return 1; }
  done
  builtin trap "$@"
}
fails=0
passes=0
ok() { passes=$((passes + 1)); echo "ok - $*"; }
not_ok() { fails=$((fails + 1)); echo "not ok - $*"; }
check() {  # check DESCRIPTION COMMAND...
  local d=$1; shift
  if "$@"; then ok "$d"; else not_ok "$d"; fi
}
# expect_fail DESCRIPTION PATTERN COMMAND...: the command must fail with one line
# on stderr that matches PATTERN.
expect_fail() {
  local d=$1 pat=$2; shift 2
  local err rc=0
  err=$("$@" 2>&1 >/dev/null) || rc=$?
  if [[ $rc -ne 0 && $(printf '%s\n' "$err" | wc -l) -eq 1 && $err =~ $pat ]]; then
    ok "$d"
  else
    not_ok "$d (rc=$rc, stderr: $err)"
  fi
}
finish() {
  FINISHED=1
  echo "$passes passed, $fails failed"
  ((passes > 0)) || echo "not ok - no check ran"
  [[ $fails -eq 0 && $passes -gt 0 ]]
}
need() {
  for t in "$@"; do
    command -v "$t" >/dev/null || { echo "missing tool: $t (install it; see README)"; exit 1; }
  done
}
# A store's state: every file (size, hash) except LMDB's own files, plus the index's
# generation counter and names, read through imgfs itself.
store_state() {
  (cd "$ROOT" && find . -path ./index -prune -o -name gc.lock -prune -o -type f -printf '%p %s\n' | sort
   find "$ROOT/blobs" -type f -exec sha256sum {} + 2>/dev/null | sort
   "$IMGFS" images --no-trunc --digests --format json 2>&1 | sed 's/"CreatedSince":"[^"]*",//')
}

# Builds, in $T (the current directory), an OCI layout "oci" whose tags v1, v2, v3 are
# one, two and three layers made by umoci: every file type, setuid/sticky bits, hard
# links (also to a lower layer), xattrs (security.capability, binary values), devices,
# a FIFO, odd names (spaces, Latin-1, 180-byte components), large owner ids,
# deletions (a file, a whole directory), a directory replaced by a file and a file by a
# directory. `umoci unpack` of each tag is in ref-v1, ref-v2, ref-v3: the reference
# trees, made by a tool nobody here wrote.
build_test_images() {
  umoci init --layout oci
  umoci new --image oci:base
  umoci unpack --image oci:base b >/dev/null
  R=b/rootfs
  # Layer 1: a small busybox system with every kind of entry.
  mkdir -p $R/bin $R/etc $R/usr/lib $R/var/empty $R/dev $R/tmp $R/opt/app/sub $R/data $R/proc $R/sys
  cp "$(command -v busybox)" $R/bin/busybox
  for c in sh ls cat echo; do ln -s busybox $R/bin/$c; done
  printf 'root:x:0:0:root:/root:/bin/sh\n' >$R/etc/passwd
  printf 'NAME="imgfs test"\n' >$R/etc/os-release
  chmod 4755 $R/bin/busybox
  chmod 1777 $R/tmp
  chmod 0700 $R/var/empty
  ln $R/etc/passwd $R/etc/passwd.hard
  ln -s /etc/os-release $R/usr/lib/os-release
  ln -s ../../../../outside $R/usr/lib/escape
  mkfifo $R/run-fifo
  mknod $R/dev/null c 1 3
  mknod $R/dev/loop0 b 7 0
  head -c 3000000 /dev/urandom >$R/data/random.bin
  : >$R/data/empty
  printf 'x' >"$R/data/with space"
  printf 'x' >"$R/data/$(printf 'caf\xe9')"
  long=$(printf 'n%.0s' $(seq 1 180))
  mkdir -p "$R/data/$long" && printf 'deep' >"$R/data/$long/$long"
  printf 'a' >$R/opt/app/sub/file
  python3 -c "import os; os.setxattr('$R/data/empty', 'user.note', b'hello\x00bin')"
  python3 -c "import os; os.setxattr('$R/bin/busybox', 'security.capability', bytes.fromhex('0100000200200000000000000000000000000000'))"
  chown 1000:1000 $R/data/random.bin
  chown 4000000:4000001 "$R/data/with space"
  touch -d '2001-02-03 04:05:06' $R/etc/passwd
  umoci repack --image oci:v1 b >/dev/null
  # Each later layer is made on a fresh unpack of the tag below it, so that it stacks
  # (a repack adds one layer on top of the image its bundle was unpacked from).
  umoci unpack --image oci:v1 b2 >/dev/null
  R=b2/rootfs
  # Layer 2: deletions (file, whole directory), a directory replaced by a file, new files.
  rm $R/data/empty
  rm -r $R/opt/app
  printf 'now a file' >$R/opt/app
  printf 'motd\n' >$R/etc/motd
  chmod 0750 $R/etc
  umoci repack --image oci:v2 b2 >/dev/null
  umoci unpack --image oci:v2 b3 >/dev/null
  R=b3/rootfs
  # Layer 3: a file replaced by a directory, a hard link to a lower-layer file.
  rm $R/etc/os-release
  mkdir $R/etc/os-release && printf 'inner' >$R/etc/os-release/inner
  ln $R/data/random.bin $R/data/random.hard
  umoci repack --image oci:v3 b3 >/dev/null
  for v in v1 v2 v3; do  # the stacking this relies on
    [[ $(umoci stat --image oci:$v --json | python3 -c 'import json,sys; print(len([h for h in json.load(sys.stdin)["history"] if not h.get("empty_layer")]))') -eq ${v#v} ]] ||
      { echo "build_test_images: oci:$v does not have ${v#v} layers"; return 1; }
  done

  for v in v1 v2 v3; do umoci unpack --image oci:$v ref-$v >/dev/null; done
}

# FUSE tests may skip only when /dev/fuse is missing, and only outside CI: in CI (CI=true,
# or IMGFS_CI=1 as .ci/test sets) a missing /dev/fuse fails the suite, for a skip
# there would be a green run with no FUSE coverage. Outside CI the skip is loud and
# ctest reports it as skipped (exit 77), never as passed. (IMGFS_FUSE_DEV: another path
# to look for, so that tests/mutation_check.sh can exercise both branches.)
require_fuse() {
  if [[ ! -e ${IMGFS_FUSE_DEV:-/dev/fuse} ]]; then
    if [[ ${CI:-} == true || ${IMGFS_CI:-0} == 1 ]]; then
      not_ok "/dev/fuse is missing: this suite needs FUSE, and CI may not skip it"
      exit 1
    fi
    SKIPPED=1
    echo "SKIP: /dev/fuse is missing: $(basename "$0") needs FUSE and DID NOT RUN" | tee /dev/stderr
    exit 77
  fi
  need fusermount3
}

# mount_store MOUNTPOINT [imgfs mount options...]: mounts $ROOT in the background and
# waits (10 s deadline) until the mount answers. Always unmounted at exit.
mount_store() {
  local mp=$1; shift
  mkdir -p "$mp"
  CLEANUP_MOUNTS="${CLEANUP_MOUNTS:-} $mp"
  "$IMGFS" mount "$@" "$mp" || return 1
  wait_mounted "$mp"
}
wait_mounted() {
  local deadline=$((SECONDS + 10))
  until [[ "$(stat -f -c %T "$1" 2>/dev/null)" == fuseblk || "$(stat -f -c %T "$1" 2>/dev/null)" == fuse ]] &&
        grep -q " $1 fuse.imgfs " /proc/mounts; do
    ((SECONDS < deadline)) || { echo "mount at $1 did not come up"; return 1; }
    sleep 0.05
  done
}
wait_unmounted() {
  local deadline=$((SECONDS + 10))
  while grep -q " $1 fuse" /proc/mounts; do
    ((SECONDS < deadline)) || return 1
    sleep 0.05
  done
}

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }

# start_registry NAME PORT [extra YAML lines for the http/auth sections...]: Debian's
# docker-registry on 127.0.0.1:PORT with its storage under $T/NAME; stopped at exit.
start_registry() {
  local name=$1 port=$2; shift 2
  mkdir -p "$T/$name"
  {
    echo "version: 0.1"
    echo "log: {level: error}"
    echo "storage: {filesystem: {rootdirectory: $T/$name/data}, delete: {enabled: true}}"
    echo "http:"
    echo "  addr: 127.0.0.1:$port"
    for l in "$@"; do echo "$l"; done
  } >"$T/$name/config.yml"
  docker-registry serve "$T/$name/config.yml" >"$T/$name/log" 2>&1 &
  CLEANUP_PIDS="${CLEANUP_PIDS:-} $!"
  wait_port "$port"
}
wait_port() {
  local deadline=$((SECONDS + 15))
  until python3 -c "import socket,sys; socket.create_connection(('127.0.0.1', $1), 0.2)" 2>/dev/null; do
    ((SECONDS < deadline)) || { echo "nothing listens on port $1"; return 1; }
    sleep 0.05
  done
}
# until_within SECONDS COMMAND...: true once COMMAND is, within SECONDS (polled every 0.1 s).
until_within() {
  local deadline=$((SECONDS + $1))
  shift
  until "$@"; do
    ((SECONDS < deadline)) || return 1
    sleep 0.1
  done
}
# zstd_chunked_registry: the test images' v3 as zstd:chunked, made by skopeo (Debian 12's
# writes the io.containers.zstd-chunked.* annotations and no tar-split: tar headers come
# from the blob between file contents), in oci:z:v3 and in a new registry on port $P as
# test/lazy:v3; blob_total= its layers' compressed bytes. For the lazy suites (run in $T).
zstd_chunked_registry() {
  build_test_images >/dev/null
  skopeo copy -q --dest-compress --dest-compress-format zstd:chunked oci:oci:v3 oci:z:v3
  P=$(free_port)
  start_registry reg "$P"
  skopeo copy -q --dest-tls-verify=false oci:z:v3 "docker://127.0.0.1:$P/test/lazy:v3"
  blob_total=$(python3 -c "
import json
i=json.load(open('z/index.json'))['manifests'][0]['digest'].split(':')[1]
print(sum(l['size'] for l in json.load(open('z/blobs/sha256/'+i))['layers']))")
}
# same_tree_v3 REF: every file of REF in the store, metadata and content, against umoci's
# unpack of the test images' v3 (build_test_images).
same_tree_v3() {
  "$IMGFS" ls -R --format tsv --sha256 "$1" / >"$T/raw" && python3 "$HERE/tree.py" imgfs "$T/raw" >"$T/got" &&
    python3 "$HERE/tree.py" native ref-v3/rootfs | diff - "$T/got" >"$T/tree.diff"
}
