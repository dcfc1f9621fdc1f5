#!/usr/bin/env bash
# --format, history, system df, images --filter and image prune as a docker user meets
# them. Images are docker-archives built by cli_format.py from a config it writes; every
# expected output is derived from that config (and the layer sizes) by cli_format.py
# the way docker derives it (moby's ImageHistory, docker's formatters, Go's tabwriter),
# never by imgfs.
source "$(dirname "$0")/lib.sh"
need python3
cd "$T"
PY="python3 $HERE/cli_format.py"
now=$(date +%s)
old=$((now - 3 * 366 * 86400))  # 3 years ago: "3 years ago" all through the test
cfg=$($PY build app.tar app:v1 "$old" '{"z.escaped":"<a&b>","org.example.tier":"web"}')
"$IMGFS" load app.tar >/dev/null
exp() { $PY expect "$cfg" "$@"; }

# same "DESCRIPTION" EXPECTED COMMAND...: stdout equals EXPECTED (printed on mismatch).
same() {
  local d=$1 want=$2 got; shift 2
  got=$("$@" 2>&1) || true
  if [[ $got == "$want" ]]; then ok "$d"; else not_ok "$d"$'\n'"  want: $want"$'\n'"  got:  $got"; fi
}

# inspect --format: docker inspect's JSON shape through the template engine.
same "inspect {{.Id}}" "$(exp id)" "$IMGFS" inspect --format '{{.Id}}' app:v1
same "inspect -f {{json .Config.Env}} (no HTML escaping)" "$(exp env_json)" "$IMGFS" inspect -f '{{json .Config.Env}}' app:v1
same "inspect {{.Config.Env}} prints as Go prints a slice" "$(exp env_go)" "$IMGFS" inspect -f '{{.Config.Env}}' app:v1
same "inspect {{join .Config.Env \",\"}}" "$(exp env_join)" "$IMGFS" inspect -f '{{join .Config.Env ","}}' app:v1
same "inspect {{json .Config.Labels}} (keys sorted)" "$(exp labels_json)" "$IMGFS" inspect -f '{{json .Config.Labels}}' app:v1
same "inspect {{index .Config.Labels KEY}}" "$(exp label org.example.tier)" "$IMGFS" inspect -f '{{index .Config.Labels "org.example.tier"}}' app:v1
same "inspect {{index}} of a missing label is empty" "$(exp label nope)" "$IMGFS" inspect -f '{{index .Config.Labels "nope"}}' app:v1
same "inspect {{range .RootFS.Layers}}{{println .}}{{end}}" "$(exp layers_lines)" "$IMGFS" inspect -f '{{range .RootFS.Layers}}{{println .}}{{end}}' app:v1
same "inspect {{.Os}}/{{.Architecture}}" "$(exp platform)" "$IMGFS" inspect -f '{{.Os}}/{{.Architecture}}' app:v1
same "inspect {{if}}/{{else}}, {{upper}} and a pipeline" "yes $(exp platform | tr a-z A-Z)" \
  "$IMGFS" inspect -f '{{if .Config.Labels}}yes{{else}}no{{end}} {{.Os | upper}}/{{upper .Architecture}}' app:v1
same "inspect: one line per image" "$(exp id)"$'\n'"$(exp id)" "$IMGFS" inspect -f '{{.Id}}' app:v1 "$(exp short)"
check "inspect --format json is the default output" bash -c "diff <('$IMGFS' inspect app:v1) <('$IMGFS' inspect --format json app:v1)"
expect_fail "inspect: a template syntax error exits 2 naming the position" \
  '^imgfs: inspect: --format: template: :1:11: function "nope" not defined$' "$IMGFS" inspect -f '{{.Id}} {{nope}}' app:v1
rc=0; "$IMGFS" inspect -f '{{.Id' app:v1 >/dev/null 2>&1 || rc=$?
check "inspect: the syntax error's exit status is 2" test "$rc" = 2

# images --format: docker's image fields and table layout.
same "images --format with docker's fields" "app|v1|$(exp short)|$(exp size)|$(exp created_at)|$(exp created_since)" \
  "$IMGFS" images --format '{{.Repository}}|{{.Tag}}|{{.ID}}|{{.Size}}|{{.CreatedAt}}|{{.CreatedSince}}'
same "images: the default table is docker's" \
  "$(python3 -c 'import sys; sys.path.insert(0, sys.argv[1]); import cli_format as c; sys.stdout.write(c.tabwrite([["REPOSITORY","TAG","IMAGE ID","CREATED","SIZE"], ["app","v1",sys.argv[2],sys.argv[3],sys.argv[4]]]))' "$HERE" "$(exp short)" "$(exp created_since)" "$(exp size)")" \
  "$IMGFS" images
same "images --format 'table ...' has docker's headers" \
  "$(python3 -c 'import sys; sys.path.insert(0, sys.argv[1]); import cli_format as c; sys.stdout.write(c.tabwrite([["IMAGE ID","REPOSITORY","SIZE"], [sys.argv[2],"app",sys.argv[3]]]))' "$HERE" "$(exp short)" "$(exp size)")" \
  "$IMGFS" images --format 'table {{.ID}}\t{{.Repository}}\t{{.Size}}'
check "images --format json: docker's keys, sorted, one object a line" bash -c "'$IMGFS' images --format json | python3 -c '
import json, sys
lines = sys.stdin.read().splitlines(); assert len(lines) == 1, lines
d = json.loads(lines[0])
assert list(d) == sorted(d) == [\"Containers\",\"CreatedAt\",\"CreatedSince\",\"Digest\",\"ID\",\"Repository\",\"SharedSize\",\"Size\",\"Tag\",\"UniqueSize\",\"VirtualSize\"], list(d)
assert (d[\"ID\"], d[\"Tag\"], d[\"Size\"]) == (\"$(exp short)\", \"v1\", \"$(exp size)\"), d'"
same "images: {{.Foo}} is an error, as on docker's typed context" \
  "imgfs: images: --format: template: :1:3: executing at <.Foo>: can't evaluate field Foo in type struct" \
  "$IMGFS" images --format '{{.Foo}}'

# history: moby's rows (newest first, <missing> under the top, empty layers 0B).
same "history: docker's table" "$(exp history_table)" "$IMGFS" history app:v1
same "history --no-trunc --format json" "$(exp history_json)" "$IMGFS" history --no-trunc --format json app:v1
same "history -q" "$(exp history_q)" "$IMGFS" history -q app:v1
same "image history is history" "$(exp history_q)" "$IMGFS" image history -q app:v1

# A second, untagged image (dangling), newer than the first, and a third, tagged, newest.
cfg2=$($PY build dangling.tar - $((old + 1000)) '{"org.example.tier":"db"}')
"$IMGFS" load dangling.tar >/dev/null
id2=$($PY expect "$cfg2" id)
cfg3=$($PY build web.tar registry.example/team/web:2 $((old + 2000)) '{}')
"$IMGFS" load web.tar >/dev/null
id3=$($PY expect "$cfg3" id)
short1=$(exp short) short2=${id2:7:12} short3=${id3:7:12}
same "images --filter dangling=true" "$short2" "$IMGFS" images -q --filter dangling=true
same "images --filter dangling=false" "$short3"$'\n'"$short1" "$IMGFS" images -q --filter dangling=false
same "images --filter reference=GLOB ('*' stops at '/')" "$short1" "$IMGFS" images -q --filter 'reference=a*'
same "images --filter reference= on the full name" "$short3" "$IMGFS" images -q --filter 'reference=registry.example/*/web:2'
same "images --filter reference=a or b" "$short3"$'\n'"$short1" "$IMGFS" images -q -f reference=app -f 'reference=*/*/web'
same "images --filter since=IMAGE" "$short3"$'\n'"$short2" "$IMGFS" images -q --filter since=app:v1
same "images --filter before=IMAGE" "$short2"$'\n'"$short1" "$IMGFS" images -q --filter before="$short3"
same "images --filter label=KEY=VALUE" "$short2" "$IMGFS" images -q --filter label=org.example.tier=db
same "images --filter label=KEY" "$short2"$'\n'"$short1" "$IMGFS" images -q --filter label=org.example.tier
same "images: filters of different keys all hold" "$short1" "$IMGFS" images -q -f label=org.example.tier -f dangling=false

# system df: counts derived from what the test loaded.
same "system df: images total/active" "Images 3 2" "$IMGFS" system df --format '{{if eq .Type "Images"}}{{.Type}} {{.TotalCount}} {{.Active}}{{end}}' 
check "system df: the dangling image's blobs are reclaimable" bash -c "'$IMGFS' system df --format '{{.Type}}={{.Reclaimable}}' | grep -Eq '^Images=[1-9][0-9.]*kB \([1-9][0-9]?%\)$'"

# image prune: only the dangling image without -a; asks unless -f.
before=$("$IMGFS" images -q | sort)
echo n | "$IMGFS" image prune >/dev/null 2>&1 || true
check "image prune: answering n removes nothing" test "$("$IMGFS" images -q | sort)" = "$before"
same "image prune -f removes the dangling image only" "Deleted Images:
deleted: $id2

Total reclaimed space: $($PY expect "$cfg2" blob_bytes)" \
  "$IMGFS" image prune -f
same "image prune -f --filter until=: nothing newer goes" "Total reclaimed space: 0B" "$IMGFS" image prune -a -f --filter until=$((3 * 366 * 24 + 24))h
check "the tagged images are still there" test "$("$IMGFS" images -q | sort)" = "$(printf '%s\n' "$short1" "$short3" | sort)"
"$IMGFS" image prune -a -f --filter until=$(( $(date +%s) - old - 1500 ))s >/dev/null
check "image prune -a --filter until=DURATION removes only the older image" test "$("$IMGFS" images -q)" = "$short3"
"$IMGFS" verify >/dev/null
check "the store verifies after the prunes" "$IMGFS" verify
finish
