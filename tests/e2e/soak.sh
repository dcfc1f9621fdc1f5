#!/usr/bin/env bash
# Soak (issue 13): everything at once, bounded by time and by count.
#   8 readers  — random files of three images, through the mount and through
#                `imgfs cat` in turn, every byte checked against the source (sha256)
#   loader     — `imgfs load` of a gzip docker-archive, then `imgfs rmi` of it
#   tagger     — `imgfs tag` / `imgfs rmi` of extra names of the read images
#   pruner     — `imgfs prune` in a loop (unpacked copies in use must survive)
#   killer     — kill -9 of the mount daemon every IMGFS_SOAK_KILL_EVERY s, then a new
#                `imgfs mount` on the dead endpoint (it must clear it and serve again)
# IMGFS_SOAK_SECONDS (default 60) bounds the run, IMGFS_SOAK_MAX_OPS (default 1000000)
# the reads per reader. Figures are printed at the end. An error is any failed
# operation except a mount read in the instant the daemon is dead (counted apart);
# a wrong byte is a read that succeeded with other content. The run passes with zero
# errors, zero wrong bytes and a clean `imgfs verify`.
source "$(dirname "$0")/lib.sh"
need python3 sha256sum
cd "$T"
SECS=${IMGFS_SOAK_SECONDS:-60}
MAX=${IMGFS_SOAK_MAX_OPS:-1000000}
KILL_EVERY=${IMGFS_SOAK_KILL_EVERY:-10}
have_fuse=0
[[ -e /dev/fuse ]] && command -v fusermount3 >/dev/null && have_fuse=1

# Three images of 24 files each (random sizes up to 600 KiB), gzip layers: reads unpack.
for img in 1 2 3; do
  mkdir -p "src$img/d"
  for f in $(seq 1 24); do head -c $(((RANDOM * 37 + f * 1000) % 614400 + 1)) /dev/urandom >"src$img/d/f$f"; done
  tar -C "src$img" -czf "img$img.tar.gz" . && "$IMGFS" import "img$img.tar.gz" "soak/img$img:1" >/dev/null
  (cd "src$img" && sha256sum d/*) >"ref$img"
done
# A gzip docker-archive for the loader (its own layer, so rmi frees blobs).
python3 - <<'EOF'
import gzip, hashlib, io, json, os, tarfile
lb = io.BytesIO()
with tarfile.open(fileobj=lb, mode='w') as t:
    data = os.urandom(300000)
    i = tarfile.TarInfo('payload'); i.size = len(data); t.addfile(i, io.BytesIO(data))
layer = lb.getvalue()
diff = 'sha256:' + hashlib.sha256(layer).hexdigest()
cfg = json.dumps({'architecture': 'amd64', 'os': 'linux', 'created': '2024-01-01T00:00:00Z',
                  'config': {}, 'rootfs': {'type': 'layers', 'diff_ids': [diff]}}).encode()
cid = hashlib.sha256(cfg).hexdigest()
man = json.dumps([{'Config': cid + '.json', 'RepoTags': ['soak/loaded:1'],
                   'Layers': [cid[:12] + '/layer.tar']}]).encode()
out = io.BytesIO()
with tarfile.open(fileobj=out, mode='w') as t:
    for name, b in ((cid + '.json', cfg), (cid[:12] + '/layer.tar', layer), ('manifest.json', man)):
        i = tarfile.TarInfo(name); i.size = len(b); t.addfile(i, io.BytesIO(b))
open('archive.tar.gz', 'wb').write(gzip.compress(out.getvalue(), 1))
EOF

M=$T/mnt
mkdir -p "$M"
CLEANUP_MOUNTS="${CLEANUP_MOUNTS:-} $M"
start_mount() {  # foreground daemon in the background: its pid is ours to kill
  "$IMGFS" mount -f -o cache_size=4M "$M" 2>>mount.err &
  echo $! >daemon.pid
  disown $!  # killed on purpose: no "Killed" line from bash
  wait_mounted "$M"
}
if ((have_fuse)); then start_mount; fi
deadline=$((SECONDS + SECS))
running() { ((SECONDS < deadline)) && [[ ! -e stop ]]; }

reader() {  # reader N
  local n=$1 ops=0 err=0 wrong=0 dead=0 img f want got via line
  while running && ((ops < MAX)); do
    img=$((RANDOM % 3 + 1)); f=$((RANDOM % 24 + 1))
    want=$(awk -v p="d/f$f" '$2 == p { print $1 }' "ref$img")
    if ((have_fuse && (ops + n) % 2 == 0)); then
      via=mount
      if got=$({ sha256sum <"$M/soak/img$img/1/d/f$f"; } 2>/dev/null); then :; else got=; fi
    else
      via=cat
      # pipefail (lib.sh): a failed cat fails the pipeline.
      if got=$("$IMGFS" cat "soak/img$img:1" "/d/f$f" 2>>"reader$n.err" | sha256sum); then :; else got=; fi
    fi
    got=${got%% *}
    ops=$((ops + 1))
    if [[ -z $got ]]; then
      # A failed read. Through the mount it is expected only while the daemon is dead.
      if [[ $via == mount ]] && [[ -e restarting ]]; then dead=$((dead + 1)); else
        err=$((err + 1)); echo "reader $n: $via img$img f$f failed" >>"reader$n.err"; fi
    elif [[ $got != "$want" ]]; then
      wrong=$((wrong + 1)); echo "reader $n: $via img$img f$f: wrong bytes" >>"reader$n.err"
    fi
  done
  echo "$ops $err $wrong $dead" >"reader$n.stat"
}
loader() {
  local ops=0 err=0
  while running; do
    "$IMGFS" load -q archive.tar.gz >/dev/null 2>>loader.err || err=$((err + 1))
    "$IMGFS" rmi soak/loaded:1 >/dev/null 2>>loader.err || err=$((err + 1))
    ops=$((ops + 2))
  done
  echo "$ops $err" >loader.stat
}
tagger() {
  local ops=0 err=0 i=0
  while running; do
    i=$((i + 1))
    "$IMGFS" tag "soak/img$((i % 3 + 1)):1" "soak/extra:$i" 2>>tagger.err || err=$((err + 1))
    "$IMGFS" rmi "soak/extra:$i" >/dev/null 2>>tagger.err || err=$((err + 1))
    ops=$((ops + 2))
  done
  echo "$ops $err" >tagger.stat
}
pruner() {
  local ops=0 err=0
  while running; do
    "$IMGFS" prune >/dev/null 2>>pruner.err || err=$((err + 1))
    ops=$((ops + 1))
    sleep 0.2
  done
  echo "$ops $err" >pruner.stat
}
dead() { local e; e=$(stat -f "$M" 2>&1) && return 1; [[ $e == *"not connected"* ]]; }
gone() { [[ ! -e /proc/$1 ]] || grep -q '^[0-9]* ([^)]*) Z' "/proc/$1/stat" 2>/dev/null; }
killer() {
  local ops=0 err=0 next=$((SECONDS + KILL_EVERY))
  while running; do
    if ((SECONDS >= next)); then
      touch restarting
      d=$(cat daemon.pid)
      kill -9 "$d" 2>/dev/null || { err=$((err + 1)); echo "kill $(date +%T): daemon $d was already gone" >>killer.err; }
      # Gone means the kernel aborted the connection: statfs says ENOTCONN. (The pid
      # alone is not enough: a killed multithreaded daemon's leader is a zombie before
      # its last thread, which holds /dev/fuse, has exited.)
      t0=$SECONDS
      until gone "$d" && dead; do
        ((SECONDS - t0 < 20)) || { err=$((err + 1)); echo "kill $(date +%T): endpoint never died" >>killer.err; break; }
        sleep 0.05
      done
      if start_mount >>killer.err 2>&1; then :; else err=$((err + 1)); fi
      if ! grep -q "clearing a dead FUSE mount" mount.err; then
        err=$((err + 1))
        { echo "kill $(date +%T): mount.err:"; cat mount.err; grep " $M " /proc/mounts; } >>killer.err
        # Recover anyway so that the run goes on: whatever is there, detach it and mount.
        fusermount3 -u -z "$M" 2>/dev/null || true
        start_mount >>killer.err 2>&1 || true
      fi
      : >mount.err
      sleep 1  # reads that failed in the dead instant may still be reporting
      rm -f restarting
      ops=$((ops + 1)); next=$((SECONDS + KILL_EVERY))
    fi
    sleep 0.2
  done
  echo "$ops $err" >killer.stat
}

pids=""
for n in 1 2 3 4 5 6 7 8; do reader $n & pids="$pids $!"; done
loader & pids="$pids $!"
tagger & pids="$pids $!"
pruner & pids="$pids $!"
((have_fuse)) && { killer & pids="$pids $!"; }
CLEANUP_PIDS="${CLEANUP_PIDS:-} $pids"
for p in $pids; do wait "$p" || true; done
if ((have_fuse)); then
  d=$(cat daemon.pid)
  "$IMGFS" umount "$M" && wait_unmounted "$M"
  wait "$d" 2>/dev/null || true
fi

read -r rops rerr rwrong rdead < <(cat reader*.stat | awk '{ o += $1; e += $2; w += $3; d += $4 } END { print o, e, w, d }')
read -r lops lerr <loader.stat
read -r tops terr <tagger.stat
read -r pops perr <pruner.stat
kops=0 kerr=0
((have_fuse)) && read -r kops kerr <killer.stat
echo "# soak ${SECS}s: reads $rops (errors $rerr, wrong bytes $rwrong, refused while the daemon was dead $rdead)"
echo "# loads+rmi $lops (errors $lerr), tag+rmi $tops (errors $terr), prunes $pops (errors $perr), daemon kills+recoveries $kops (errors $kerr)"
for f in reader*.err loader.err tagger.err pruner.err; do [[ -s $f ]] && head -3 "$f"; done
[[ -s killer.err ]] && head -20 killer.err
check "readers: no failed read" test "$rerr" = 0
check "readers: no wrong byte" test "$rwrong" = 0
check "readers did work ($rops reads)" test "$rops" -gt 0
check "loads and rmi: no error" test "$lerr" = 0
check "tag and rmi: no error" test "$terr" = 0
check "prune: no error" test "$perr" = 0
if ((have_fuse)); then
  check "every killed daemon was replaced on its dead endpoint ($kops kills)" test "$kerr" = 0
fi
check "verify is clean" "$IMGFS" verify
finish
