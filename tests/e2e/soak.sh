#!/usr/bin/env bash
# Soak (issue 13): everything at once, bounded by time and by count.
#   8 readers  — random files of five images (three gzip, one uncompressed, the pulled
#                one), through the mount and through `imgfs cat` in turn, every byte
#                checked against the source (sha256)
#   loader     — `imgfs load` of a gzip docker-archive, then `imgfs rmi` of it
#   tagger     — `imgfs tag` / `imgfs rmi` of extra names of the read images
#   pruner     — `imgfs prune` in a loop (unpacked copies in use must survive)
#   killer     — kill -9 of the mount daemon every IMGFS_SOAK_KILL_EVERY s, then a new
#                `imgfs mount` on the dead endpoint (it must clear it and serve again)
#   puller     — `imgfs pull` of a gzip image from Debian's docker-registry on 127.0.0.1,
#                then `imgfs rmi`; while it is present the readers read it too
#   filler     — the store lives on its own small tmpfs: every IMGFS_SOAK_FILL_EVERY s
#                a ballast file fills it (0 bytes free) for IMGFS_SOAK_FILL_HOLD s, then
#                is removed. While full, a write (pull, load, tag, rmi, prune, an unpack
#                for a read) may fail only naming ENOSPC ("No space left on device"):
#                counted apart as "refused while full", never as an error.
# IMGFS_SOAK_SECONDS (default 60) bounds the run, IMGFS_SOAK_MAX_OPS (default 1000000)
# the reads per reader. Figures are printed at the end. An error is any failed
# operation except a mount read in the instant the daemon is dead (counted apart);
# a wrong byte is a read that succeeded with other content. The run passes with zero
# errors, zero wrong bytes, every operation succeeding again once the disk is freed
# (a final round of pull, reads, load, tag, rmi, prune) and a clean `imgfs verify`.
source "$(dirname "$0")/lib.sh"
need python3 sha256sum umoci skopeo docker-registry flock
cd "$T"
SECS=${IMGFS_SOAK_SECONDS:-60}
MAX=${IMGFS_SOAK_MAX_OPS:-1000000}
KILL_EVERY=${IMGFS_SOAK_KILL_EVERY:-10}
FILL_EVERY=${IMGFS_SOAK_FILL_EVERY:-9}
FILL_HOLD=${IMGFS_SOAK_FILL_HOLD:-3}
# The store on a small filesystem of its own, so that filling it harms nobody.
mkdir -p "$T/fs"
mount -t tmpfs -o size=${IMGFS_SOAK_FS_MB:-160}m,mode=0700 imgfs-soak "$T/fs" ||
  { not_ok "soak: cannot mount a tmpfs for the store (needs root)"; finish; exit 1; }
on_exit umount -l "$T/fs"
ROOT=$T/fs/store
export IMGFS_ROOT=$ROOT
have_fuse=0
[[ -e /dev/fuse ]] && command -v fusermount3 >/dev/null && have_fuse=1

# Three images of 24 files each (random sizes up to 600 KiB), gzip layers: reads unpack.
for img in 1 2 3; do
  mkdir -p "src$img/d"
  for f in $(seq 1 24); do head -c $(((RANDOM * 37 + f * 1000) % 614400 + 1)) /dev/urandom >"src$img/d/f$f"; done
  tar -C "src$img" -czf "img$img.tar.gz" . && "$IMGFS" import "img$img.tar.gz" "soak/img$img:1" >/dev/null
  (cd "src$img" && sha256sum d/*) >"ref$img"
done
# A fourth with an uncompressed layer: its reads need no unpack, so they must go on
# while the disk is full.
mkdir -p src5/d
for f in $(seq 1 24); do head -c $(((RANDOM * 37 + f * 1000) % 614400 + 1)) /dev/urandom >"src5/d/f$f"; done
tar -C src5 -cf img5.tar . && "$IMGFS" import img5.tar soak/img5:1 >/dev/null
(cd src5 && sha256sum d/*) >ref5
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
# The pulled image: 24 more files, one gzip layer made by umoci, pushed by skopeo.
mkdir -p src4/d
for f in $(seq 1 24); do head -c $(((RANDOM * 37 + f * 1000) % 614400 + 1)) /dev/urandom >"src4/d/f$f"; done
(cd src4 && sha256sum d/*) >ref4
umoci init --layout oci4 && umoci new --image oci4:base && umoci unpack --image oci4:base b4 >/dev/null
cp -a src4/d b4/rootfs/d && umoci repack --image oci4:1 b4 >/dev/null
RP=$(free_port)
start_registry reg "$RP"
REG=127.0.0.1:$RP
skopeo copy -q --dest-tls-verify=false oci:oci4:1 docker://$REG/soak/pulled:1
PULLED=$REG/soak/pulled:1
# `imgfs rmi` of the tag removes the repository's digest reference with it (docker's
# rule), and so the image and its blobs: each pull downloads and writes again.
PULLED_D=$REG/soak/pulled@$(skopeo inspect --tls-verify=false --format '{{.Digest}}' docker://$PULLED)
: >pulled.lock

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
  local n=$1 ops=0 err=0 wrong=0 dead=0 full=0 pops=0 plainfull=0 img f want got via line name path lk full0 e
  while running && ((ops < MAX)); do
    img=$((RANDOM % 5 + 1)); f=$((RANDOM % 24 + 1))
    name=soak/img$img:1 path=soak/img$img/1 lk=
    if ((img == 4)); then  # the pulled image, while the puller keeps it (shared lock)
      name=$PULLED path=$REG/soak/pulled/1
      exec {lk}<pulled.lock
      if ! flock -s -n "$lk" || [[ ! -e pulled.present ]]; then exec {lk}<&-; sleep 0.02; continue; fi
      pops=$((pops + 1))
    fi
    want=$(awk -v p="d/f$f" '$2 == p { print $1 }' "ref$img")
    full0=0; [[ -e filling ]] && full0=1
    : >"reader$n.last"
    if ((have_fuse && (ops + n) % 2 == 0)); then
      via=mount
      if got=$({ sha256sum <"$M/$path/d/f$f"; } 2>>"reader$n.last"); then :; else got=; fi
    else
      via=cat
      # pipefail (lib.sh): a failed cat fails the pipeline.
      if got=$("$IMGFS" cat "$name" "/d/f$f" 2>>"reader$n.last" | sha256sum); then :; else got=; fi
    fi
    [[ -n $lk ]] && exec {lk}<&-
    got=${got%% *}
    ops=$((ops + 1))
    if [[ -z $got ]]; then
      e=$(head -c 300 "reader$n.last")
      # A failed read. Through the mount it is expected only while the daemon is dead;
      # while the disk is full, a read that needs an unpack may fail (cat: ENOSPC named;
      # the mount: EIO) — counted apart. Not so the uncompressed image (img5): no unpack.
      if [[ $via == mount ]] && [[ -e restarting ]]; then dead=$((dead + 1))
      elif ((img != 5)) && { ((full0)) || [[ -e filling ]]; } &&
           { [[ $via == cat && $e == *"No space left on device"* ]] || [[ $via == mount && $e == *"Input/output error"* ]]; }; then
        full=$((full + 1)); echo "reader $n: $via img$img f$f refused while full: $e" >>"reader$n.full"
      else
        err=$((err + 1)); echo "reader $n: $via img$img f$f failed: $e" >>"reader$n.err"; fi
    elif [[ $got != "$want" ]]; then
      wrong=$((wrong + 1)); echo "reader $n: $via img$img f$f: wrong bytes" >>"reader$n.err"
    elif ((img == 5 && full0)) && [[ -e filling ]]; then
      plainfull=$((plainfull + 1))  # a right read of the uncompressed image while full
    fi
  done
  echo "$ops $err $wrong $dead $full $pops $plainfull" >"reader$n.stat"
}
# w LOG COMMAND...: a write operation. Status 0 done, 2 refused while the disk was full
# (the error names ENOSPC and the filler was at work when it started or ended), 1 an
# error (logged to LOG).
w() {
  local log=$1 full0=0 rc=0 e; shift
  [[ -e filling ]] && full0=1
  e=$("$@" 2>&1 >/dev/null) || rc=$?
  ((rc == 0)) && return 0
  if [[ $e == *"No space left on device"* ]] && { ((full0)) || [[ -e filling ]]; }; then
    echo "$(date +%T) refused while full: $*: $e" >>"${log%.err}.full"; return 2
  fi
  echo "$(date +%T) $*: $e" >>"$log"; return 1
}
tally() {  # after `w`: counts into ops/err/full by its status $1; returns 0 when done
  ops=$((ops + 1))
  case $1 in 0) return 0 ;; 2) full=$((full + 1)) ;; *) err=$((err + 1)) ;; esac
  return 1
}
# Each of these keeps its state across a refusal: what was loaded (tagged, pulled) is
# removed before the next load (tag, pull), so a refused rmi is simply tried again.
loader() {
  local ops=0 err=0 full=0 have=0 rc
  while running; do
    if ((have)); then rc=0; w loader.err "$IMGFS" rmi soak/loaded:1 || rc=$?; tally $rc && have=0
    else rc=0; w loader.err "$IMGFS" load -q archive.tar.gz || rc=$?; tally $rc && have=1; fi
    ((rc != 2)) || sleep 0.2
  done
  echo "$ops $err $full" >loader.stat
}
tagger() {
  local ops=0 err=0 full=0 i=0 have=0 rc
  while running; do
    if ((have)); then rc=0; w tagger.err "$IMGFS" rmi "soak/extra:$i" || rc=$?; tally $rc && have=0
    else i=$((i + 1)); rc=0; w tagger.err "$IMGFS" tag "soak/img$((i % 3 + 1)):1" "soak/extra:$i" || rc=$?; tally $rc && have=1; fi
    ((rc != 2)) || sleep 0.2
  done
  echo "$ops $err $full" >tagger.stat
}
pruner() {
  local ops=0 err=0 full=0 rc
  while running; do
    rc=0; w pruner.err "$IMGFS" prune || rc=$?; tally $rc || true
    sleep 0.2
  done
  echo "$ops $err $full" >pruner.stat
}
puller() {  # pulls and rmi's count apart: ops = pulls done
  local ops=0 err=0 full=0 rmis=0 rerr=0 rfull=0 have=0 rc lk
  while running; do
    if ((have)); then
      rm -f pulled.present  # no new reads of it; wait for those in flight
      exec {lk}<pulled.lock; flock -x "$lk"
      rc=0
      w puller.err "$IMGFS" rmi "$PULLED" || rc=$?
      exec {lk}<&-
      # (After an rmi, a pause: else the next pull would find just the space its rmi
      # freed, before the filler takes it, and never meet a full disk.)
      case $rc in 0) have=0 rmis=$((rmis + 1)); sleep 0.5 ;; 2) rfull=$((rfull + 1)); touch pulled.present ;; *) rerr=$((rerr + 1)); touch pulled.present ;; esac
    else
      rc=0; w puller.err "$IMGFS" pull -q "$PULLED" || rc=$?
      if tally $rc; then have=1; touch pulled.present; sleep 1; fi  # readers read it meanwhile
    fi
    ((rc != 2)) || sleep 0.2
  done
  echo "$ops $err $full $rmis $rerr $rfull" >puller.stat
}
filler() {  # fills the store's filesystem to its last byte, holds, frees
  local ops=0 err=0 next=$((SECONDS + FILL_EVERY)) avail zero t0
  while running; do
    if ((SECONDS >= next)); then
      touch filling
      # Writes until ENOSPC (its own message is expected); what rmi or prune free
      # meanwhile is taken too, so the disk stays full for the whole hold. It must have
      # reached 0 free blocks.
      : >"$T/fs/ballast"; zero=0; t0=$SECONDS
      while ((SECONDS - t0 < FILL_HOLD)); do
        head -c 100G /dev/zero >>"$T/fs/ballast" 2>/dev/null || true
        avail=$(stat -f -c %a "$T/fs")
        ((avail != 0)) || zero=$((zero + 1))
        sleep 0.1
      done
      if ((zero == 0)); then err=$((err + 1)); echo "fill $(date +%T): the disk never reached 0 free blocks ($avail left)" >>filler.err; fi
      rm -f "$T/fs/ballast"
      sleep 1  # operations that failed in the full instant may still be reporting
      rm -f filling
      ops=$((ops + 1)); next=$((SECONDS + FILL_EVERY))
    fi
    sleep 0.2
  done
  rm -f "$T/fs/ballast" filling
  echo "$ops $err" >filler.stat
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
puller & pids="$pids $!"
filler & pids="$pids $!"
((have_fuse)) && { killer & pids="$pids $!"; }
CLEANUP_PIDS="${CLEANUP_PIDS:-} $pids"
for p in $pids; do wait "$p" || true; done
if ((have_fuse)); then
  d=$(cat daemon.pid)
  "$IMGFS" umount "$M" && wait_unmounted "$M"
  wait "$d" 2>/dev/null || true
fi

read -r rops rerr rwrong rdead rfull rpops rplain < <(cat reader*.stat | awk '{ o += $1; e += $2; w += $3; d += $4; f += $5; p += $6; u += $7 } END { print o, e, w, d, f, p, u }')
read -r lops lerr lfull <loader.stat
read -r tops terr tfull <tagger.stat
read -r pops perr pfull <pruner.stat
read -r uops uerr ufull urmi urerr urfull <puller.stat
read -r fops ferr <filler.stat
kops=0 kerr=0
((have_fuse)) && read -r kops kerr <killer.stat
echo "# soak ${SECS}s: reads $rops ($rpops of the pulled image, $rplain right of the uncompressed one while full; errors $rerr, wrong bytes $rwrong, refused while the daemon was dead $rdead, refused while full $rfull)"
echo "# loads+rmi $lops (errors $lerr, refused while full $lfull), tag+rmi $tops (errors $terr, refused while full $tfull), prunes $pops (errors $perr, refused while full $pfull)"
echo "# pulls $uops (pull errors $uerr, refused while full $ufull), rmi of the pulled image $urmi (errors $urerr, refused while full $urfull)"
echo "# daemon kills+recoveries $kops (errors $kerr), fills $fops (errors $ferr)"
for f in reader*.err loader.err tagger.err pruner.err puller.err filler.err; do [[ -s $f ]] && head -3 "$f"; done
for f in reader*.full loader.full tagger.full pruner.full puller.full; do [[ -s $f ]] && head -1 "$f"; done
[[ -s killer.err ]] && head -20 killer.err
check "readers: no failed read" test "$rerr" = 0
check "readers: no wrong byte" test "$rwrong" = 0
check "readers did work ($rops reads, $rpops of the pulled image)" test "$rops" -gt 0 -a "$rpops" -gt 0
check "loads and rmi: no error" test "$lerr" = 0
check "tag and rmi: no error" test "$terr" = 0
check "prune: no error" test "$perr" = 0
check "pulls: no error ($uops pulls)" test "$uerr" = 0 -a "$uops" -gt 0
check "rmi of the pulled image: no error" test "$urerr" = 0
check "the disk was filled and freed ($fops times), full each time" test "$ferr" = 0 -a "$fops" -gt 0
if ((have_fuse)); then
  check "every killed daemon was replaced on its dead endpoint ($kops kills)" test "$kerr" = 0
fi
# Once the disk is free again, everything works again: a final round.
rm -f "$T/fs/ballast"
allread() {  # allread NAME REF: every file of the image, via imgfs cat, against its reference
  local f want
  for f in $(seq 1 24); do
    want=$(awk -v p="d/f$f" '$2 == p { print $1 }' "$2")
    [[ $("$IMGFS" cat "$1" "/d/f$f" | sha256sum) == "$want "* ]] || { echo "$1 /d/f$f: wrong or failed"; return 1; }
  done
}
"$IMGFS" rmi "$PULLED_D" >/dev/null 2>&1 || true
"$IMGFS" rmi "$PULLED" >/dev/null 2>&1 || true
check "after freeing: pull" bash -c "'$IMGFS' pull -q '$PULLED' >/dev/null"
check "after freeing: every file of the pulled image is right" allread "$PULLED" ref4
for img in 1 2 3 5; do check "after freeing: every file of soak/img$img is right" allread "soak/img$img:1" "ref$img"; done
"$IMGFS" rmi soak/loaded:1 >/dev/null 2>&1 || true
check "after freeing: load and rmi" bash -c "'$IMGFS' load -q archive.tar.gz >/dev/null && '$IMGFS' rmi soak/loaded:1 >/dev/null"
check "after freeing: tag and rmi" bash -c "'$IMGFS' tag soak/img1:1 soak/final:1 && '$IMGFS' rmi soak/final:1 >/dev/null"
check "after freeing: rmi of the pulled image and prune" bash -c "'$IMGFS' rmi '$PULLED_D' '$PULLED' >/dev/null && '$IMGFS' prune >/dev/null"
check "  the pulled image is gone" bash -c "! '$IMGFS' images -a | grep -q soak/pulled"
check "verify is clean" "$IMGFS" verify
finish
