#!/usr/bin/env bash
# Sourced by the benchmarks that mount a store (scale.sh, names_ls.sh, loop_par.sh):
#   source "$HERE/mount_lib.sh" NAME
# sets W (a fresh work directory, removed on exit) and MNT (a mount point in it), and
# unmounts the daemon whose pid is in DAEMON on exit, whatever ends the script. Also:
# now (nanoseconds), drop (the page cache, as root), ticks PID (CPU ticks so far),
# start_mount and stop_mount (below).
W=$(mktemp -d "${TMPDIR:-/var/tmp}/imgfs-$1.XXXXXX")
MNT="$W/mnt"
mkdir -p "$MNT"
DAEMON=
cleanup() {
  if [[ -n $DAEMON ]]; then
    fusermount3 -u "$MNT" 2>/dev/null || umount -l "$MNT" 2>/dev/null || true
    wait "$DAEMON" 2>/dev/null || true
  fi
  rm -rf "$W"
}
trap cleanup EXIT
now() { date +%s%N; }
drop() { [[ $(id -u) == 0 ]] && sync && echo 3 >/proc/sys/vm/drop_caches || true; }
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
# start_mount OPTIONS: a fresh mount of $STORE by $IMGFS at MNT with `-o OPTIONS`, after a
# cache drop (the daemon's pid in DAEMON), left to settle for half a second.
start_mount() {
  drop
  "$IMGFS" -g "$STORE" mount -f -o "$1" "$MNT" 2>>"$W/daemon.log" &
  DAEMON=$!
  for _ in $(seq 1 200); do mountpoint -q "$MNT" && break; sleep 0.05; done
  mountpoint -q "$MNT" || { echo "mount failed ($1): $(tail -3 "$W/daemon.log")" >&2; exit 1; }
  sleep 0.5
}
stop_mount() {
  fusermount3 -u "$MNT"
  wait "$DAEMON"
  DAEMON=
}
