#!/usr/bin/env bash
# Background completion of lazily pulled layers by the mount daemon (issue 9,
# `imgfs mount -o complete=on`, the default; cli/lazy_complete.h), against Debian's
# docker-registry through the faulty front of registry_tools.py, which logs each blob
# request with its User-Agent (PROXY_UA: the completion's is
# imgfs-background-completion, a read's is imgfs) and time (PROXY_TIMES):
#   - a mount over a lazily pulled zstd:chunked image (skopeo) completes it: lazy/ goes
#     empty, `images` no longer says partial, `verify` is clean, every file equals
#     umoci unpack's, the mount reads from the blob; the registry sent at most the blob
#     bytes that were not local;
#   - with a slow registry (trickle), a read of a file not yet local gives the right
#     bytes and no background request starts while the read's requests run;
#   - kill -9 of the daemon mid-completion leaves lazy/ (with more ranges, consistent);
#     a remount completes, fetching none of what was local;
#   - umount mid-completion: the daemon exits promptly, lazy/ left consistent;
#   - -o complete=off fetches nothing in the background.
# (lazy.sh, lazy_estargz.sh and bench/lazy.sh mount with -o complete=off: they count
# what reads fetch.)
source "$(dirname "$0")/lib.sh"
need umoci python3 busybox docker-registry skopeo
require_fuse
cd "$T"
TOOLS="python3 $HERE/registry_tools.py"
zstd_chunked_registry
F=$(free_port)
echo none >mode
PROXY_UA=1 PROXY_TIMES=1 $TOOLS proxy "$F" "$P" "$T/mode" "$T/proxy.log" &
CLEANUP_PIDS="$CLEANUP_PIDS $!"
wait_port "$F"
REF=127.0.0.1:$F/test/lazy:v3
BG=imgfs-background-completion
# blob bytes the front sent to the background completion (mode none logs them)
bg_sent() { awk -v ua="ua=$BG" '$1=="sent" && $0 ~ ua {s+=$2} END {print s+0}' "$T/proxy.log"; }
bg_gets() { grep -c "^GET .*/blobs/.* ua=$BG" "$T/proxy.log" || true; }
local_bytes() { { cat "$ROOT"/lazy/*/ranges 2>/dev/null || true; } | awk 'NF == 2 && $1 ~ /^[0-9]+$/ {s += $2 - $1} END {print s + 0}'; }
lazy_dirs() { ls "$ROOT/lazy" 2>/dev/null | wc -l; }
# The gaps between local ranges go in multi-range requests: each part of a multipart
# answer carries its own headers (~100 bytes). Slack: 4 KiB + 256 bytes per local range.
slack() { echo $((4096 + 256 * $({ cat "$ROOT"/lazy/*/ranges 2>/dev/null || true; } | awk 'NF == 2 && $1 ~ /^[0-9]+$/' | wc -l))); }
wait_complete() {  # wait_complete SECONDS: until lazy/ is empty
  local deadline=$((SECONDS + $1))
  until [[ $(lazy_dirs) -eq 0 ]]; do
    ((SECONDS < deadline)) || return 1
    sleep 0.2
  done
}
daemon_pid() { sed -n 's/.* imgfs\[\([0-9]*\)\]: mounted .*/\1/p' "$ROOT/mount.log" | tail -1; }
new_store() {  # new_store NAME: a fresh store with the image pulled lazily
  export IMGFS_ROOT=$T/store-$1
  ROOT=$IMGFS_ROOT
  "$IMGFS" pull -q --lazy "$REF" >/dev/null
}

# --- completion with the registry at full speed
new_store fast
l0=$(local_bytes) s0=$(slack)
check "a lazy pull leaves 3 lazy layers (of $blob_total blob bytes, $l0 local)" \
  test "$(lazy_dirs)" -eq 3 -a "$l0" -gt 0
: >proxy.log
MP=$T/mp
mount_store "$MP"
IMG=$MP/127.0.0.1:$F/test/lazy/v3
check "the mount completes every lazy layer in the background (lazy/ empty within 60 s)" \
  wait_complete 60
sent=$(bg_sent)
echo "# background completion: the registry sent $sent blob bytes; $((blob_total - l0)) were not local"
check "  it fetched only what was not local: $sent <= $((blob_total - l0)) + $s0 (framing)" \
  test "$sent" -le $((blob_total - l0 + s0))
check "  (and it did fetch: $sent > 0, as $BG)" test "$sent" -gt 0
check "  every blob request came from the completion (no read ran)" \
  test "$(grep -c '^GET .*/blobs/' proxy.log)" -eq "$(bg_gets)"
check "  mount.log says the image is complete" grep -q "background completion: image .* complete" "$ROOT/mount.log"
check "  imgfs images no longer says partial" bash -c "! '$IMGFS' images | grep -q partial"
check "  imgfs verify is clean" "$IMGFS" verify
check "  the running mount reads a file from the blob, right" cmp "$IMG/data/random.bin" ref-v3/rootfs/data/random.bin
check "  every file's metadata and content equal umoci unpack's" same_tree_v3 "$REF"
"$IMGFS" umount "$MP"

# --- -o complete=off: nothing in the background
new_store off
l0=$(local_bytes)
: >proxy.log
mount_store "$T/mp-off" -o complete=off
sleep 2
check "-o complete=off: no background request in 2 s" test "$(bg_gets)" -eq 0
check "  lazy/ is as the pull left it" test "$(local_bytes)" -eq "$l0" -a "$(lazy_dirs)" -eq 3
"$IMGFS" umount "$T/mp-off"
expect_fail "-o complete=maybe is refused" "complete is on or off" "$IMGFS" mount -o complete=maybe "$T/mp-off"

# --- a slow registry: a read that needs the network goes first
new_store slow
echo trickle >mode
: >proxy.log
mount_store "$MP"
deadline=$((SECONDS + 20))
until grep -q "^GET .*/blobs/.* ua=$BG" proxy.log || ((SECONDS > deadline)); do sleep 0.05; done
check "(the background completion is fetching)" test "$(bg_gets)" -gt 0
check "a read of a file not yet local, during the completion, gives the right bytes" \
  cmp "$IMG/data/random.bin" ref-v3/rootfs/data/random.bin
# The read's requests (ua=imgfs) span [first GET, last done]; no background GET may
# start inside that span. One already under way when the read came may go on, and one
# that had passed its wait when the read came reaches the front a moment later: the
# span starts 0.5 s after the read's first GET (without the wait, a piece starts about
# every 0.4 s here).
read -r od_n overlap < <(python3 - "$T/proxy.log" "$BG" <<'EOF'
import re, sys
log, bg = open(sys.argv[1]).read().splitlines(), sys.argv[2]
t = lambda l: float(re.search(r' t=([0-9.]+)$', l).group(1))
od = [l for l in log if re.match(r'^(GET|done) .*/blobs/', l) and ' ua=imgfs ' in l + ' ' and bg not in l]
gets = [t(l) for l in od if l.startswith('GET')]
dones = [t(l) for l in od if l.startswith('done')]
if not gets or not dones:
    print(0, 0); sys.exit()
lo, hi = min(gets) + 0.5, max(dones)
bg_in = [l for l in log if l.startswith('GET') and bg in l and lo < t(l) < hi]
print(len(gets), len(bg_in))
EOF
)
echo "# slow registry: the read made $od_n request(s); $overlap background request(s) started meanwhile"
check "  the read fetched on demand ($od_n requests as imgfs)" test "$od_n" -gt 0
check "  no background request started while the read's requests ran" test "$overlap" -eq 0
check "  the background completion went on after the read and completed (60 s)" wait_complete 60
check "  imgfs verify is clean" "$IMGFS" verify
"$IMGFS" umount "$MP"

# --- kill -9 mid-completion, then a remount: nothing local is fetched again
new_store kill
l0=$(local_bytes)
echo trickle >mode
: >proxy.log
mount_store "$MP"
deadline=$((SECONDS + 30))
until (($(local_bytes) > l0 + (1 << 20))) || ((SECONDS > deadline)); do sleep 0.1; done
check "kill -9 of the daemon once the completion made 1 MiB more local" kill -9 "$(daemon_pid)"
sleep 0.5
l1=$(local_bytes) s1=$(slack)
echo "# local blob bytes: $l0 after the lazy pull, $l1 after the kill"
check "  the pieces it fetched are on disk ($l1 > $l0 + 1 MiB)" test "$l1" -gt $((l0 + (1 << 20)))
check "  the image is still partial, nothing half committed (lazy/ has 3 layers)" \
  bash -c "[[ \$(ls '$ROOT/lazy' | wc -l) -eq 3 ]] && '$IMGFS' images | grep -q partial"
check "  imgfs verify: partial layers are no problem" "$IMGFS" verify
echo none >mode
: >proxy.log
check "a remount over the dead mount" bash -c "'$IMGFS' mount '$MP' 2>/dev/null && sleep 0.5 && grep -q ' $MP fuse.imgfs ' /proc/mounts"
check "  completes the image (60 s)" wait_complete 60
sent=$(bg_sent)
echo "# after the remount the registry sent $sent blob bytes; $((blob_total - l1)) were not local"
check "  fetching only what was not local: $sent <= $((blob_total - l1)) + $s1 (framing)" \
  test "$sent" -le $((blob_total - l1 + s1))
check "  imgfs verify is clean" "$IMGFS" verify
check "  every file equals umoci unpack's" same_tree_v3 "$REF"
"$IMGFS" umount "$MP"

# --- umount mid-completion: the daemon stops promptly, lazy/ stays consistent
new_store stop
l0=$(local_bytes)
echo trickle >mode
: >proxy.log
mount_store "$MP"
deadline=$((SECONDS + 20))
until grep -q "^GET .*/blobs/.* ua=$BG" proxy.log || ((SECONDS > deadline)); do sleep 0.05; done
sleep 0.3  # a piece under way
pid=$(daemon_pid)
start=$SECONDS
"$IMGFS" umount "$MP"
exited() { local d=$((SECONDS + 10)); while kill -0 "$pid" 2>/dev/null; do ((SECONDS < d)) || return 1; sleep 0.1; done; }
check "umount during a background fetch: the daemon exits within 10 s" exited
echo "# the daemon exited $((SECONDS - start)) s after umount"
check "  lazy/ is consistent: 3 layers, at least what the pull left" \
  test "$(lazy_dirs)" -eq 3 -a "$(local_bytes)" -ge "$l0"
echo none >mode
check "  a plain pull completes it afterwards" "$IMGFS" pull -q "$REF"
check "  imgfs verify is clean" "$IMGFS" verify
finish
