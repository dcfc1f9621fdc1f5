#!/usr/bin/env bash
# imgfs build: a Dockerfile with ARG (before and after FROM), ENV, WORKDIR, COPY (a
# file, a directory with --chown, .dockerignore), ADD of a local tar.gz, USER, LABEL,
# EXPOSE, VOLUME, STOPSIGNAL, ENTRYPOINT and CMD on top of a base made by GNU tar +
# `imgfs import`. The built image is read through the real imgfs mount (contents
# compared with cmp against the context, owners, modes, mtimes, symlinks) and through
# `imgfs inspect` (config fields as the Dockerfile says). An unchanged rebuild stores
# no new layer. Refused instructions and failing steps leave the store unchanged.
source "$(dirname "$0")/lib.sh"
require_fuse
need python3 tar cmp
[[ $(id -u) -eq 0 ]] || { echo "not ok - needs root (COPY --chown writes other owners)"; exit 1; }
cd "$T"

mkdir -p base/etc base/app base/bin
printf 'base hello\n' >base/etc/hello
chmod 0700 base/app && chown 7:8 base/app && touch -d '2002-02-02 02:02:02' base/app
tar --numeric-owner -C base -cf base.tar .
"$IMGFS" import base.tar test/base:1 >/dev/null

mkdir -p ctx/src/sub ctx/src/secret arch/pkg
printf 'hello from the context\n' >ctx/hello.txt
chmod 0640 ctx/hello.txt && touch -d '2011-11-11 11:11:11' ctx/hello.txt
head -c 200000 /dev/urandom >ctx/src/sub/blob
chmod 0604 ctx/src/sub/blob
printf '#!/bin/sh\necho run\n' >ctx/src/run.sh && chmod 0755 ctx/src/run.sh
ln -s sub/blob ctx/src/link
printf 'secret\n' >ctx/src/secret/key
printf 'log\n' >ctx/src/debug.log
printf 'tmp\n' >ctx/src/sub/x.tmp
printf 'src/secret\n*.log\nsrc/*.log\nsrc/sub/*.tmp\n' >ctx/.dockerignore
printf 'packed\n' >arch/pkg/f && chmod 0751 arch/pkg/f && chown 3:4 arch/pkg/f
tar --numeric-owner -C arch -czf ctx/pkg.tar.gz pkg
cat >ctx/Dockerfile <<'DF'
# syntax=docker/dockerfile:1
ARG BASE=test/base:1
from $BASE
ARG VER=0
ENV APP=/app NAME="hello world"
WORKDIR $APP
COPY hello.txt .
COPY --chown=1000:2000 src/ ${APP}/src/
ADD pkg.tar.gz /opt/
ENV V=${VER:-none} \
    # a comment inside a continuation
    W='$APP' N2=$NAME
USER 1000:2000
LABEL version="$VER" "other label"=x
EXPOSE 8080 53/udp
VOLUME ["/data"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["/bin/sh"]
CMD ["-c", "echo $APP"]
DF

rc=0
"$IMGFS" build -t test/built:1 --build-arg VER=2 ctx >build.out 2>build.err || rc=$?
check "build succeeds" test $rc -eq 0
check "step output is docker's" grep -qx 'Step 2/16 : from $BASE' build.out
check "the last lines name the image" \
  bash -c "tail -2 build.out | head -1 | grep -Eq '^Successfully built [0-9a-f]{12}$' && tail -1 build.out | grep -qx 'Successfully tagged test/built:1'"

M=$T/mnt
check "the store mounts" mount_store "$M"
I=$M/test/built/1
check "COPY: the file has the context's bytes" cmp ctx/hello.txt "$I/app/hello.txt"
check "COPY: root-owned, mode and mtime kept" \
  test "$(stat -c '%u:%g %a %Y' "$I/app/hello.txt")" = "0:0 640 $(stat -c %Y ctx/hello.txt)"
check "COPY into an existing directory keeps its attributes" \
  test "$(stat -c '%u:%g %a %Y' "$I/app")" = "7:8 700 $(date -d '2002-02-02 02:02:02' +%s)"
check "COPY dir/: contents with the context's bytes" cmp ctx/src/sub/blob "$I/app/src/sub/blob"
check "COPY --chown: owner 1000:2000, mode kept" \
  test "$(stat -c '%u:%g %a' "$I/app/src/sub/blob" "$I/app/src/run.sh" "$I/app/src/sub" | tr '\n' ' ')" = \
       "1000:2000 604 1000:2000 755 1000:2000 $(stat -c %a ctx/src/sub) "
check "COPY keeps symlinks" test "$(readlink "$I/app/src/link")" = sub/blob
check "COPY: the created destination belongs to --chown" test "$(stat -c '%u:%g %a' "$I/app/src")" = "1000:2000 755"
check ".dockerignore: excluded paths are not copied" \
  bash -c "[[ ! -e '$I/app/src/secret' && ! -e '$I/app/src/debug.log' && ! -e '$I/app/src/sub/x.tmp' ]]"
check "ADD extracts a local tar.gz" cmp arch/pkg/f "$I/opt/pkg/f"
check "ADD: the archive's owners and modes" test "$(stat -c '%u:%g %a' "$I/opt/pkg/f")" = "3:4 751"
check "the base's files are there" cmp base/etc/hello "$I/etc/hello"
check "the exact file list" test "$(cd "$I" && find . | sort | tr '\n' ' ')" = \
  ". ./app ./app/hello.txt ./app/src ./app/src/link ./app/src/run.sh ./app/src/sub ./app/src/sub/blob ./bin ./etc ./etc/hello ./opt ./opt/pkg ./opt/pkg/f "

inspect() { "$IMGFS" inspect "$1" | python3 -c "import json,sys; d=json.load(sys.stdin); d=d[0] if isinstance(d,list) else d; c=d['Config']; $2"; }
check "Env: docker's default PATH (the base has none), ENV with ARG, defaults, quotes" \
  test "$(inspect test/built:1 'print(c["Env"])')" = "['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin', 'APP=/app', 'NAME=hello world', 'V=2', 'W=\$APP', 'N2=hello world']"
check "WorkingDir, User, StopSignal" \
  test "$(inspect test/built:1 'print(c["WorkingDir"], c["User"], c.get("StopSignal"))')" = "/app 1000:2000 SIGTERM"
check "Labels" test "$(inspect test/built:1 'print(sorted(c["Labels"].items()))')" = "[('other label', 'x'), ('version', '2')]"
check "ExposedPorts and Volumes" \
  test "$(inspect test/built:1 'print(sorted(c["ExposedPorts"]), sorted(c["Volumes"]))')" = "['53/udp', '8080/tcp'] ['/data']"
check "Entrypoint and Cmd (no substitution in exec form)" \
  test "$(inspect test/built:1 'print(c["Entrypoint"], c["Cmd"])')" = "['/bin/sh'] ['-c', 'echo \$APP']"
hist() { "$IMGFS" history --no-trunc --format "$1" test/built:1 | head -14 | tr '\n' ';'; }
check "history: one entry per instruction after FROM, newest first" \
  test "$(hist '{{.CreatedBy}}')" = "CMD [\"-c\", \"echo \$APP\"];ENTRYPOINT [\"/bin/sh\"];STOPSIGNAL SIGTERM;VOLUME [\"/data\"];EXPOSE 8080 53/udp;LABEL version=\"\$VER\" \"other label\"=x;USER 1000:2000;ENV V=\${VER:-none}     W='\$APP' N2=\$NAME;ADD pkg.tar.gz /opt/;COPY --chown=1000:2000 src/ \${APP}/src/;COPY hello.txt .;WORKDIR \$APP;ENV APP=/app NAME=\"hello world\";ARG VER=0;"
check "history: config steps are empty layers, COPY/ADD are not" \
  bash -c "[[ '$(hist '{{.Size}}')' =~ ^(0B\;){8}([1-9][^\;]*B\;){3}(0B\;){3}\$ ]]"
check "three layers on the base's one" test "$(inspect test/built:1 'print(len(d["RootFS"]["Layers"]))')" = 4

# An unchanged rebuild makes no new layer (only the new config is stored).
find "$ROOT/blobs" -type f | sort >blobs.before
layers1=$(inspect test/built:1 'print(d["RootFS"]["Layers"])')
check "a rebuild succeeds" bash -c "'$IMGFS' build -t test/built:2 --build-arg VER=2 --no-cache ctx >/dev/null"
check "and gives the same layers" test "$(inspect test/built:2 'print(d["RootFS"]["Layers"])')" = "$layers1"
# The only new blob may be the config: none when both builds fell in the same second
# (`created` has second resolution, so the config and the image are the same).
find "$ROOT/blobs" -type f | sort >blobs.after
id2=$("$IMGFS" inspect --format '{{.Id}}' test/built:2)
check "and stores no new blob but its config" \
  bash -c "comm -13 blobs.before blobs.after | grep -v '/${id2#sha256:}\$' | wc -l | grep -qx 0"

# The build cache: an unchanged COPY/ADD is not made again; a changed source is.
"$IMGFS" build -t test/built:3 --build-arg VER=2 ctx >cached.out 2>&1 || true
check "a cached rebuild uses the cache for the three COPY/ADD steps" test "$(grep -c '^ ---> Using cache$' cached.out)" = 3
check "and gives the same layers" test "$(inspect test/built:3 'print(d["RootFS"]["Layers"])')" = "$layers1"
# Same size and mtime, other bytes: only the content digest can tell.
touch -r ctx/src/run.sh run.sh.time
printf '#!/bin/sh\necho RUN\n' >ctx/src/run.sh
touch -r run.sh.time ctx/src/run.sh
"$IMGFS" build -t test/built:4 --build-arg VER=2 ctx >changed.out 2>&1 || true
check "a changed source: only its step is made again" \
  test "$(grep -A1 '^Step [678]/' changed.out | grep -c 'Using cache')" = 2
check "and the mount shows the new content" cmp ctx/src/run.sh "$M/test/built/4/app/src/run.sh"
check "--no-cache never says Using cache" bash -c "! '$IMGFS' build -t test/built:5 --no-cache ctx | grep -q 'Using cache'"

# FROM scratch with -f.
mkdir -p ctx2 && printf 'FROM scratch\nCOPY hello.txt /\nCMD ["/hello.txt"]\nENTRYPOINT ["/bin/cat"]\n' >df.scratch
cp ctx/hello.txt ctx2/
check "FROM scratch -f builds" bash -c "'$IMGFS' build -t test/scratch:1 -f df.scratch ctx2 >/dev/null"
check "a CMD before ENTRYPOINT in the same Dockerfile stays" \
  test "$(inspect test/scratch:1 'print(c["Entrypoint"], c["Cmd"])')" = "['/bin/cat'] ['/hello.txt']"
check "FROM scratch: one file" test "$(cd "$M/test/scratch/1" && find . | sort | tr '\n' ' ')" = ". ./hello.txt "

# Refusals: one stderr line naming the instruction and line; nothing stored.
state=$(store_state)
printf 'FROM test/base:1\nENV A=1\nONBUILD RUN echo hi\n' >ctx/Dockerfile.run
expect_fail "ONBUILD is refused naming its line" 'line 3: ONBUILD: not supported' \
  "$IMGFS" build -t test/bad:1 -f ctx/Dockerfile.run ctx
printf 'FROM test/base:1\nCOPY --chmod=644 a /\n' >ctx/Dockerfile.flag
expect_fail "an unsupported flag is refused" 'line 2: COPY: flag --chmod=644 is not supported' \
  "$IMGFS" build -t test/bad:1 -f ctx/Dockerfile.flag ctx
printf 'FROM test/base:1\nCOPY hello.txt /x\nCOPY src/secret/key /y\n' >ctx/Dockerfile.missing
expect_fail "a failing step after a COPY layer" 'line 3: COPY: src/secret/key: not found' \
  "$IMGFS" build -t test/bad:1 -f ctx/Dockerfile.missing ctx
printf 'FROM test/nope:1\n' >ctx/Dockerfile.nobase
expect_fail "an unknown base image" 'line 1: FROM' "$IMGFS" build -t test/bad:1 -f ctx/Dockerfile.nobase ctx
printf 'FROM test/base:1\nCOPY ../etc/passwd /\n' >ctx/Dockerfile.escape
expect_fail "a source outside the context" 'line 2: COPY: \.\./etc/passwd: not found' \
  "$IMGFS" build -t test/bad:1 -f ctx/Dockerfile.escape ctx
# Hostile Dockerfiles: bounded memory and stack, one clear line each (the builds run
# under a 2 GiB data limit, so an unbounded one fails without the message; -d, not -v:
# LMDB's map alone is larger than any address-space limit that would catch it).
bounded() { (ulimit -d 2097152; "$@"); }
head -c $((17 << 20)) /dev/zero | tr '\0' '#' >ctx/Dockerfile.huge
expect_fail "a Dockerfile over 16 MiB is refused, not read" 'Dockerfile.huge: file too large$' \
  bounded "$IMGFS" build -t test/bad:1 -f ctx/Dockerfile.huge ctx
{ printf 'FROM test/base:1\nENV A=0123456789abcdef\n'; for _ in $(seq 40); do echo 'ENV A=$A$A'; done; } \
  >ctx/Dockerfile.bomb
expect_fail "a substitution bomb (ENV A=\$A\$A x40) is refused" \
  'line [0-9]+: ENV: substitution makes a word more than 1 MiB longer$' \
  bounded "$IMGFS" build -t test/bad:1 -f ctx/Dockerfile.bomb ctx
python3 -c "print('FROM test/base:1\nENV A=' + '\${X:-' * 200000 + 'x' + '}' * 200000)" >ctx/Dockerfile.deep
expect_fail "substitutions nested 200000 deep are refused (no stack overflow)" \
  'line 2: ENV: substitutions nested more than 64 deep$' \
  bounded "$IMGFS" build -t test/bad:1 -f ctx/Dockerfile.deep ctx
# A of 1 MiB (16 bytes doubled 16 times), then many words of it in one instruction, or
# many variables of it over many lines: each word is within bounds, the sum is not.
mib() { printf 'FROM test/base:1\nENV A=0123456789abcdef\n'; for _ in $(seq 16); do echo 'ENV A=$A$A'; done; }
{ mib; echo 'ARG X=$A Y=$A'; } >ctx/Dockerfile.words
expect_fail "two 1 MiB words in one ARG are refused" \
  'line 19: ARG: substitution makes the words more than 1 MiB longer$' \
  bounded "$IMGFS" build -t test/bad:1 -f ctx/Dockerfile.words ctx
{ mib; echo 'COPY ["$A", "$A", "$A", "$A", "$A", "/"]'; } >ctx/Dockerfile.jsonwords
expect_fail "five 1 MiB words of an exec-form COPY are refused" \
  'line 19: COPY: substitution makes the instruction more than 4 MiB longer$' \
  bounded "$IMGFS" build -t test/bad:1 -f ctx/Dockerfile.jsonwords ctx
{ mib; for n in $(seq 20); do echo "ENV B$n=\$A"; done; } >ctx/Dockerfile.manyvars
expect_fail "twenty 1 MiB variables (a config past 16 MiB) are refused" \
  'line [0-9]+: ENV: the config and ARG values pass 16 MiB$' \
  bounded "$IMGFS" build -t test/bad:1 -f ctx/Dockerfile.manyvars ctx
{ echo 'FROM test/base:1'; for n in $(seq 10000); do echo "LABEL l$n=y"; done; } >ctx/Dockerfile.long
expect_fail "a Dockerfile of 10001 instructions is refused before any step" \
  '^imgfs: build: Dockerfile has more than 10000 instructions$' \
  "$IMGFS" build -t test/bad:1 -f ctx/Dockerfile.long ctx
printf 'FROM test/base:1\nHEALTHCHECK --interval=9999999999h CMD true\n' >ctx/Dockerfile.hc
expect_fail "a HEALTHCHECK duration past Go's range is refused, not wrapped" \
  'line 2: HEALTHCHECK: time: invalid duration "9999999999h"$' \
  "$IMGFS" build -t test/bad:1 -f ctx/Dockerfile.hc ctx
check "the store is unchanged after the refusals" test "$(store_state)" = "$state"
check "imgfs verify finds the built images consistent" bash -c "'$IMGFS' verify >/dev/null"
finish
