#!/usr/bin/env bash
# imgfs build RUN: shell and exec form, SHELL, ENV/ARG in the command's environment,
# WORKDIR, USER by name (passwd, group, supplementary groups), files written, a base
# file deleted (a whiteout: gone in the mount, a 0/0 device in the layer view), a
# base directory replaced (opaque), no network by default (only loopback), the host's
# with --network host, exit codes failing the build with docker's message, and the
# build cache: an unchanged rebuild runs no container (a runc wrapper on PATH counts
# the runs). COPY/ADD --chown by user and group name. The base is a busybox-static
# rootfs made by GNU tar + `imgfs import`.
source "$(dirname "$0")/lib.sh"
require_fuse
need python3 tar busybox runc getfattr
[[ $(id -u) -eq 0 ]] || { echo "not ok - needs root (runc, kernel overlayfs)"; exit 1; }
cd "$T"
# The builds keep their state (imgfs-build-*, overlays) under this suite's own TMPDIR,
# so overlays() counts only this suite's: other suites mount overlays at the same time.
export TMPDIR=$T/tmp
mkdir -p "$TMPDIR"

mkdir -p base/bin base/etc base/tmp base/opt/app/sub base/data bin
cp "$(command -v busybox)" base/bin/busybox
for a in sh echo cat rm mkdir touch id env ls false true; do ln -s busybox "base/bin/$a"; done
printf 'root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:app:/home/app:/bin/sh\n' >base/etc/passwd
printf 'root:x:0:\napp:x:1000:\nextra:x:2000:app\n' >base/etc/group
printf 'bye\n' >base/etc/remove-me
printf 'old\n' >base/opt/app/old
printf 'sub\n' >base/opt/app/sub/f
printf 'keep\n' >base/data/keep
chmod 1777 base/tmp
tar --numeric-owner -C base -cf base.tar .
"$IMGFS" import base.tar test/base:1 >/dev/null

# A runc on PATH that logs each `runc run` and then runs the real one.
REAL_RUNC=$(command -v runc)
printf '#!/bin/sh\n[ "$1" = run ] && echo run >>%s/runc.log\nexec %s "$@"\n' "$T" "$REAL_RUNC" >bin/runc
chmod +x bin/runc
export PATH=$T/bin:$PATH
runs() { [[ -f $T/runc.log ]] && wc -l <"$T/runc.log" || echo 0; }

mkdir ctx
cat >ctx/Dockerfile <<'DF'
FROM test/base:1
ENV GREETING=hello
ARG BA=argval
WORKDIR /work
RUN echo "$GREETING $BA" >greeting && rm /etc/remove-me && rm -r /opt/app && mkdir /opt/app && echo new >/opt/app/new
RUN ["/bin/sh", "-c", "echo exec >/exec-form"]
SHELL ["/bin/env", "SHELLVAR=from-shell", "/bin/sh", "-c"]
RUN echo "$SHELLVAR" >/shellvar
USER app
RUN id -u >/tmp/uid && id -G >/tmp/gids && touch /tmp/by-app
USER root
RUN cat /proc/net/dev >/netdev
DF

rc=0
"$IMGFS" build -t test/run:1 ctx >build.out 2>build.err || rc=$?
check "a build with RUN succeeds" test $rc -eq 0
[[ $rc -eq 0 ]] || cat build.err
check "five RUNs ran five containers" test "$(runs)" -eq 5
store_mounts() { awk -v r="$ROOT" '$3 == "fuse.imgfs" && $1 == r' /proc/mounts | wc -l; }
overlays() { awk -v t="${TMPDIR:-/tmp}" '$3 == "overlay" && index($2, t) == 1' /proc/mounts | wc -l; }
check "the store's own mount for RUN is gone after the build" test "$(store_mounts)" -eq 0
check "no overlay is left behind" test "$(overlays)" -eq 0

# A SIGKILLed build leaves its overlay, its own store mount and its runc container;
# the next build finds them (the owner pid is dead), cleans them up and says so.
printf 'FROM test/base:1\nRUN sleep 120\n' >ctx/Dockerfile.kill
"$IMGFS" build -f ctx/Dockerfile.kill -t test/killed:1 ctx >kill.out 2>&1 &
kpid=$!
for _ in $(seq 300); do grep -q 'Running in' kill.out && [[ $(overlays) -ge 1 ]] && break; sleep 0.1; done
kill -9 "$kpid"; wait "$kpid" 2>/dev/null || true
check "a SIGKILLed build leaves its overlay and its own store mount" \
  bash -c "[[ $(overlays) -eq 1 && $(store_mounts) -eq 1 ]]"
# Another user's imgfs-build-* in the same TMPDIR (anyone may write /var/tmp), its owner
# file naming a dead pid: not ours to judge, so not removed.
mkdir -m 700 "$TMPDIR/imgfs-build-foreign"
echo "999999999 1" >"$TMPDIR/imgfs-build-foreign/owner"
chown -R nobody "$TMPDIR/imgfs-build-foreign"
printf 'FROM test/base:1\nLABEL x=y\n' >ctx/Dockerfile.after
"$IMGFS" build -f ctx/Dockerfile.after -t test/after:1 ctx >after.out 2>after.err || true
check "the next build cleans up after the killed one: two dirs (RUN, own mount), one line each" \
  test "$(grep -c "^imgfs: build: cleaned up after a killed build (pid $kpid): .* (1 unmounted)$" after.err)" -eq 2
check "another user's imgfs-build-* dir is left alone, and not named" \
  bash -c "[[ -f '$TMPDIR/imgfs-build-foreign/owner' ]] && ! grep -q foreign after.err"
check "... no overlay, no store mount, no runc container of it is left" \
  bash -c "[[ $(overlays) -eq 0 && $(store_mounts) -eq 0 && -z \$(runc list -q | grep '^imgfs-build-$kpid-') ]]"
check "... and no directory of it" bash -c "! grep -rlsx '$kpid .*' '${TMPDIR:-/tmp}'/imgfs-build-*/owner"
# A running build's state is not stale: a build started meanwhile leaves it alone.
printf 'FROM test/base:1\nRUN sleep 2 && echo done >/slow\n' >ctx/Dockerfile.slow
"$IMGFS" build -f ctx/Dockerfile.slow -t test/slow:1 ctx >slow.out 2>&1 &
spid=$!
for _ in $(seq 300); do grep -q 'Running in' slow.out && [[ $(overlays) -ge 1 ]] && break; sleep 0.1; done
"$IMGFS" build -f ctx/Dockerfile.after -t test/after:2 ctx >after2.out 2>after2.err || true
src=0
wait "$spid" || src=$?
check "a build running meanwhile is left alone (nothing cleaned, it succeeds)" \
  bash -c "[[ $src -eq 0 && ! -s after2.err ]]"

M=$T/mnt
check "the store mounts" mount_store "$M"
I=$M/test/run/1
check "RUN wrote a file in WORKDIR, seeing ENV and ARG" test "$(cat "$I/work/greeting")" = "hello argval"
check "RUN deleted a base file: gone in the mount" test ! -e "$I/etc/remove-me"
check "the base's other files are there" test "$(cat "$I/data/keep")" = keep
check "a replaced base directory is opaque: the old file is gone, the new one there" \
  bash -c "[[ ! -e '$I/opt/app/old' && ! -e '$I/opt/app/sub' && \$(cat '$I/opt/app/new') == new ]]"
check "exec form ran" test "$(cat "$I/exec-form")" = exec
check "SHELL's command line runs the shell form" test "$(cat "$I/shellvar")" = from-shell
check "USER app: uid 1000 from /etc/passwd" test "$(cat "$I/tmp/uid")" = 1000
check "USER app: gid 1000 and supplementary group 2000 from /etc/group" \
  test "$(tr ' ' '\n' <"$I/tmp/gids" | sort -n | tr '\n' ' ')" = "1000 2000 "
check "a file made as USER app is owned by 1000:1000" test "$(stat -c %u:%g "$I/tmp/by-app")" = 1000:1000
check "no network by default: only loopback" \
  test "$(awk -F: 'NR>2 {gsub(/ /,"",$1); print $1}' "$I/netdev")" = lo
check "mount points runc made (/proc /dev /sys) are not in the image" \
  bash -c "[[ ! -e '$I/proc' && ! -e '$I/dev' && ! -e '$I/sys' ]]"
# The first RUN's layer as the layer view shows it: a whiteout and an opaque dir.
cfg=$("$IMGFS" inspect --format '{{json .RootFS.Layers}}' test/run:1)
L1=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])[1].split(":")[1])' "$cfg")
check "the RUN layer has a whiteout for the deleted file" \
  test "$(stat -c '%F %t,%T' "$M/.layers/$L1/etc/remove-me")" = "character special file 0,0"
check "the RUN layer marks the replaced directory opaque" \
  test "$(getfattr --absolute-names -n trusted.overlay.opaque --only-values "$M/.layers/$L1/opt/app")" = y
check "config: Shell as SHELL says" \
  test "$("$IMGFS" inspect --format '{{json .Config.Shell}}' test/run:1)" = '["/bin/env","SHELLVAR=from-shell","/bin/sh","-c"]'
check "six layers (base + five RUNs)" test "$(python3 -c 'import json,sys; print(len(json.loads(sys.argv[1])))' "$cfg")" -eq 6

# The build cache: an unchanged rebuild runs nothing; a new last step runs only itself.
before=$(runs)
"$IMGFS" build -t test/run:2 ctx >build2.out 2>&1 || true
check "an unchanged rebuild runs no container" test "$(runs)" -eq "$before"
check "... and says Using cache for every RUN" test "$(grep -c 'Using cache' build2.out)" -eq 5
check "... with the same layers" test "$("$IMGFS" inspect --format '{{json .RootFS.Layers}}' test/run:2)" = "$cfg"
echo 'RUN echo more >/more' >>ctx/Dockerfile
"$IMGFS" build -t test/run:3 ctx >build3.out 2>&1 || true
check "a new last RUN runs only itself" test "$(runs)" -eq $((before + 1))
check "... and sees the cached layers' files" test "$(cat "$M/test/run/3/work/greeting")" = "hello argval"
"$IMGFS" build --no-cache -t test/run:4 ctx >build4.out 2>&1 || true
check "--no-cache runs every RUN again" test "$(runs)" -eq $((before + 7))
check "a build with a running mount leaves it running" grep -q " $M fuse.imgfs " /proc/mounts

# --network host: the host's interfaces.
printf 'FROM test/base:1\nRUN cat /proc/net/dev >/netdev\n' >ctx/Dockerfile.net
"$IMGFS" build --network host -f ctx/Dockerfile.net -t test/net:1 ctx >/dev/null 2>&1 || true
check "--network host: the host's interfaces" \
  test "$(awk 'NR>2' "$M/test/net/1/netdev" | wc -l)" -eq "$(awk 'NR>2' /proc/net/dev | wc -l)"

# Multi-stage: stages by name and index, COPY --from, FROM stage, ARG scoping, --target;
# only the last stage is named.
cat >ctx/Dockerfile.ms <<'DF'
ARG WHO=meta
FROM test/base:1 AS first
ARG WHO
ARG ONLY_FIRST=set-in-first
RUN echo "$WHO $ONLY_FIRST" >/first
FROM test/base:1 AS Second
COPY --from=first /first /copied
COPY --from=0 /first /copied-by-index
RUN echo "[${WHO:-unset}] [${ONLY_FIRST:-unset}]" >/second-args
FROM second
RUN cat /copied >/third
DF
names_before=$("$IMGFS" images --format '{{.Repository}}:{{.Tag}}' | grep -vc '<none>' || true)
rc=0
"$IMGFS" build -f ctx/Dockerfile.ms --build-arg WHO=cli -t test/ms:1 ctx >ms.out 2>&1 || rc=$?
check "a multi-stage build succeeds" test $rc -eq 0
check "a stage's ARG re-declares the meta ARG (build-arg value)" test "$(cat "$M/test/ms/1/copied")" = "cli set-in-first"
check "COPY --from=0 (by index) copies the same file" cmp "$M/test/ms/1/copied" "$M/test/ms/1/copied-by-index"
check "ARGs do not leak into the next stage" test "$(cat "$M/test/ms/1/second-args")" = "[unset] [unset]"
check "FROM a stage (names are case-insensitive) builds on it" test "$(cat "$M/test/ms/1/third")" = "cli set-in-first"
check "the first stage's file is not in the final image" test ! -e "$M/test/ms/1/first"
check "only the final stage is named" \
  test "$("$IMGFS" images --format '{{.Repository}}:{{.Tag}}' | grep -vc '<none>')" -eq $((names_before + 1))
"$IMGFS" build -f ctx/Dockerfile.ms --target first -t test/ms:first ctx >/dev/null 2>&1 || true
check "--target first: the first stage, named" test "$(cat "$M/test/ms/first/first")" = "meta set-in-first"
check "--target first: nothing of later stages" test ! -e "$M/test/ms/first/copied"
printf 'FROM test/base:1\nCOPY --from=7 /x /x\n' >ctx/Dockerfile.idx
expect_fail "COPY --from=N past the stages is refused (no image ID prefix lookup)" \
  "line 2: COPY: invalid from flag value 7: index out of bounds" \
  "$IMGFS" build -f ctx/Dockerfile.idx -t test/bad:1 ctx
expect_fail "an unknown --target is refused" "failed to reach build target nope in Dockerfile" \
  "$IMGFS" build -f ctx/Dockerfile.ms --target nope -t test/bad:1 ctx

# A FROM image the store lacks is pulled first (a local registry; imgfs push put it there).
if command -v docker-registry >/dev/null; then
  P=$(free_port)
  start_registry reg "$P"
  "$IMGFS" push -q test/base:1 "127.0.0.1:$P/pulled/base:1" >/dev/null
  printf 'FROM 127.0.0.1:%s/pulled/base:1\nRUN echo pulled >/p\n' "$P" >ctx/Dockerfile.pull
  rc=0
  "$IMGFS" build -f ctx/Dockerfile.pull -t test/pulled:1 ctx >pull.out 2>&1 || rc=$?
  check "a missing FROM image is pulled, then built on" \
    bash -c "[[ $rc -eq 0 && \$(cat '$M/test/pulled/1/p') == pulled && -n \$('$IMGFS' images -q 127.0.0.1:$P/pulled/base:1) ]]"
  printf 'FROM 127.0.0.1:%s/pulled/nope:1\n' "$P" >ctx/Dockerfile.nopull
  expect_fail "a FROM image no registry has: one line, the pull's reason" \
    "line 1: FROM: .*no such image: 127.0.0.1:$P/pulled/nope:1 \(pulling it failed: .*\)" \
    "$IMGFS" build -f ctx/Dockerfile.nopull -t test/bad:1 ctx
else
  not_ok "docker-registry is missing (.ci/install-deps installs it)"
fi

# COPY/ADD --chown by name: looked up in the image so far's /etc/passwd and /etc/group
# (the base's; one a RUN of this build changed; one a COPY of this build replaced).
printf 'owned\n' >ctx/owned
printf 'root:x:0:0:root:/root:/bin/sh\nlate:x:4000:4001::/:/bin/sh\n' >ctx/passwd.late
cat >ctx/Dockerfile.chown <<'DF'
FROM test/base:1
COPY --chown=app owned /by-user
COPY --chown=app:extra owned /by-user-group
COPY --chown=1000:extra owned /by-uid-group
ADD --chown=root:1234 owned /add-user-gid
RUN echo 'svc:x:3000:3001::/:/bin/sh' >>/etc/passwd && echo 'svcgrp:x:3002:' >>/etc/group
COPY --chown=svc:svcgrp owned /after-run
COPY passwd.late /etc/passwd
COPY --chown=late owned /after-copy
DF
rc=0
"$IMGFS" build -f ctx/Dockerfile.chown -t test/chown:1 ctx >chown.out 2>chown.err || rc=$?
check "a build with --chown by name succeeds" test $rc -eq 0
[[ $rc -eq 0 ]] || cat chown.err
C=$M/test/chown/1
check "COPY --chown=app: the user's uid and primary gid" test "$(stat -c %u:%g "$C/by-user")" = 1000:1000
check "COPY --chown=app:extra: user and group by name" test "$(stat -c %u:%g "$C/by-user-group")" = 1000:2000
check "COPY --chown=1000:extra: uid as given, group by name" test "$(stat -c %u:%g "$C/by-uid-group")" = 1000:2000
check "ADD --chown=root:1234: user by name, gid as given" test "$(stat -c %u:%g "$C/add-user-gid")" = 0:1234
check "--chown sees a user and group a RUN of this build added" test "$(stat -c %u:%g "$C/after-run")" = 3000:3002
check "--chown sees the /etc/passwd a COPY of this build put there" test "$(stat -c %u:%g "$C/after-copy")" = 4000:4001
printf 'FROM test/base:1\nCOPY --chown=ghost owned /x\n' >ctx/Dockerfile.ghost
expect_fail "COPY --chown of a missing user: one line naming it and the line" \
  "^imgfs: build: Dockerfile line 2: COPY: --chown=ghost: unable to find user ghost: no matching entries in passwd file$" \
  "$IMGFS" build -f ctx/Dockerfile.ghost -t test/bad:1 ctx
printf 'FROM test/base:1\nENV G=nogroup\nADD --chown=app:$G owned /x\n' >ctx/Dockerfile.nogroup
expect_fail "ADD --chown of a missing group (after substitution) is refused" \
  "^imgfs: build: Dockerfile line 3: ADD: --chown=app:nogroup: unable to find group nogroup: no matching entries in group file$" \
  "$IMGFS" build -f ctx/Dockerfile.nogroup -t test/bad:1 ctx
printf 'FROM scratch\nCOPY --chown=app owned /x\n' >ctx/Dockerfile.scratch
expect_fail "--chown by name on an image without /etc/passwd is refused" \
  "line 2: COPY: --chown=app: unable to find user app" \
  "$IMGFS" build -f ctx/Dockerfile.scratch -t test/bad:1 ctx

# Failures: docker's message, the exit code of the command.
printf 'FROM test/base:1\nRUN false\n' >ctx/Dockerfile.false
expect_fail "RUN false fails the build with docker's message" \
  "^imgfs: build: The command '/bin/sh -c false' returned a non-zero code: 1$" \
  "$IMGFS" build -f ctx/Dockerfile.false -t test/bad:1 ctx
printf 'FROM test/base:1\nRUN ["/bin/sh", "-c", "exit 3"]\n' >ctx/Dockerfile.exit3
expect_fail "an exec-form RUN's exit code is named" \
  "^imgfs: build: The command '/bin/sh -c exit 3' returned a non-zero code: 3$" \
  "$IMGFS" build -f ctx/Dockerfile.exit3 -t test/bad:1 ctx
printf 'FROM test/base:1\nUSER nobody2\nRUN true\n' >ctx/Dockerfile.user
expect_fail "an unknown USER name is refused" "unable to find user nobody2: no matching entries in passwd file" \
  "$IMGFS" build -f ctx/Dockerfile.user -t test/bad:1 ctx

# A hostile base image: its links name paths of the HOST (a passwd the host has, the
# host's /dev/zero, a host directory). RUN must read and create inside the image only.
# The builds run with a 1 GiB data limit, so an unbounded read fails without the line.
bounded() { (ulimit -d 1048576; "$@"); }
mkdir -p evil/etc evil/bin outside
cp -a base/bin/. evil/bin/
printf 'app:x:4242:4242::/:/bin/sh\n' >hostpasswd
ln -s "$T/hostpasswd" evil/etc/passwd
ln -s /dev/zero evil/etc/group
ln -s "$T/outside" evil/w
mkdir -p "evil/$T/outside"  # the link's target inside the image too
tar --numeric-owner -C evil -cf evil.tar .
"$IMGFS" import evil.tar test/evil:1 >/dev/null
printf 'FROM test/evil:1\nUSER app\nRUN true\n' >ctx/Dockerfile.evil
expect_fail "USER: /etc/passwd and /etc/group linking to host files are the image's (absent)" \
  "^imgfs: build: Dockerfile line 3: RUN: unable to find user app: no matching entries in passwd file$" \
  bounded "$IMGFS" build -f ctx/Dockerfile.evil -t test/bad:1 ctx
# (WORKDIR on an image of its own: runc's init reads the image's /etc/group too, and
# gives up on /dev/zero.)
rm evil/etc/passwd evil/etc/group
tar --numeric-owner -C evil -cf evilwd.tar .
"$IMGFS" import evilwd.tar test/evilwd:0 >/dev/null
printf 'FROM test/evilwd:0\nWORKDIR /w/made\nRUN touch here\n' >ctx/Dockerfile.evilwd
rc=0
"$IMGFS" build -f ctx/Dockerfile.evilwd -t test/evilwd:1 ctx >evilwd.out 2>evilwd.err || rc=$?
check "WORKDIR through a link to a host directory builds" test $rc -eq 0
[[ $rc -eq 0 ]] || cat evilwd.err
check "... and creates nothing on the host" test ! -e "$T/outside/made"
check "... but inside the image, where the link points in it (the RUN ran there)" \
  test -f "$M/test/evilwd/1/$T/outside/made/here"
# A 24 MiB /etc/passwd line of ':' (a field per byte) before the real entry.
mkdir -p bigpw/etc
{ head -c $((24 << 20)) /dev/zero | tr '\0' ':'; printf '\napp:x:1000:1000::/:/bin/sh\n'; } >bigpw/etc/passwd
tar --numeric-owner -C bigpw -cf bigpw.tar .
"$IMGFS" import bigpw.tar test/bigpw:1 >/dev/null
printf 'FROM test/bigpw:1\nCOPY --chown=app owned /x\n' >ctx/Dockerfile.bigpw
rc=0
bounded "$IMGFS" build -f ctx/Dockerfile.bigpw -t test/bigpw:2 ctx >bigpw.out 2>bigpw.err || rc=$?
check "--chown reads a 24 MiB one-line /etc/passwd in bounded memory" \
  bash -c "[[ $rc -eq 0 && \$(stat -c %u:%g '$M/test/bigpw/2/x') == 1000:1000 ]]"
[[ $rc -eq 0 ]] || cat bigpw.err
check "a failed build tags nothing" bash -c "! '$IMGFS' inspect test/bad:1 >/dev/null 2>&1"
check "no overlay is left behind after failures" test "$(overlays)" -eq 0
check "only the test's own store mount is there" test "$(store_mounts)" -eq 1
check "imgfs verify is clean" "$IMGFS" verify
finish
