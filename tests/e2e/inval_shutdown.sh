#!/usr/bin/env bash
# A mount daemon stopped by a signal (SIGTERM: lib.sh's cleanup, systemd) while its
# EntryInvalidator has a FUSE_NOTIFY_INVAL_ENTRY in flight still exits. The kernel
# handles that notification under the directory's lock, which a lookup in that
# directory holds until the daemon answers it; once the session loop has returned no
# worker answers, so the daemon must keep answering until the notification is done
# (otherwise: the daemon hangs in join, the lookup hangs, the mount is stuck).
# IMGFS_TEST_NOTIFY_DELAY_MS holds the notification back so that the lookup comes
# first, deterministically.
source "$(dirname "$0")/lib.sh"
require_fuse
cd "$T"
mkdir -p src && echo a >src/f && tar -C src -cf a.tar .
"$IMGFS" import a.tar t/a:1 >/dev/null && "$IMGFS" import a.tar t/k:1 >/dev/null
M=$T/mnt
mkdir -p "$M"
CLEANUP_MOUNTS="$M"
# Names stay valid for a minute: the kernel keeps t/a's dentry, so the lookup below
# waits under t/a's lock instead of revalidating t/a.
IMGFS_TEST_NOTIFY_DELAY_MS=3000 "$IMGFS" mount -f -o name_timeout=60 "$M" 2>mount.log &
pid=$!
CLEANUP_PIDS=$pid
wait_mounted "$M"
check "an image reads" test "$(cat "$M/t/a/1/f")" = a
"$IMGFS" rmi t/a:1 >/dev/null  # t/k:1 keeps the image: t/a/1 is a removed name
stat "$M/.nothing-$RANDOM" >/dev/null 2>&1 || true  # the generation moved: t/a/1 is stale
sleep 0.5
kill -TERM "$pid"  # the session loop returns; the notification for t/a/1 is still held back
sleep 0.5
stat "$M/t/a/missing" >/dev/null 2>&1 &  # a lookup under t/a's lock that no worker answers
looker=$!
on_exit "kill -9 $looker 2>/dev/null || true"
exited() {
  local deadline=$((SECONDS + 20))
  while kill -0 "$pid" 2>/dev/null; do
    ((SECONDS < deadline)) || return 1
    sleep 0.2
  done
}
check "the daemon exits after SIGTERM with a notification in flight" exited
check "the lookup was answered (not left waiting)" bash -c "! kill -0 $looker 2>/dev/null"
kill -9 "$looker" 2>/dev/null || true  # (unblocks a daemon stuck in that deadlock)
wait "$pid" 2>/dev/null || true
finish
