#!/usr/bin/env bash
# `imgfs images` prints its default table directly (cli/cmd_images.cc, go_template.h's
# TableWriter), not through the template engine. Its output must be byte for byte what
# the general path prints for the same table spelled out as a template, on a store with
# many images: different ages (one without a creation time, one from the future) and
# sizes, several names each (tags in several repositories, a registry with a port, long
# names), untagged (dangling) images; and so with --digests, --no-trunc, a REPOSITORY
# argument and filters. (Digest references and lazily pulled images, partial and broken:
# the same comparison in lazy.sh, whose images come from a registry.)
source "$(dirname "$0")/lib.sh"
need python3
cd "$T"

TABLE='table {{.Repository}}\t{{.Tag}}\t{{.ID}}\t{{.CreatedSince}}\t{{.Size}}'
DTABLE='table {{.Repository}}\t{{.Tag}}\t{{.Digest}}\t{{.ID}}\t{{.CreatedSince}}\t{{.Size}}'
# same_table DESCRIPTION ARGS...: `imgfs images ARGS` prints what the general path prints
# for the default table written as a template, and it is a table of more than a header.
same_table() {
  local d=$1 tmpl=$TABLE fast general; shift
  [[ " $* " == *" --digests "* ]] && tmpl=$DTABLE
  fast=$("$IMGFS" images "$@" 2>&1) || fast="exit $?: $fast"
  general=$("$IMGFS" images "$@" --format "$tmpl" 2>&1) || general="exit $?: $general"
  if [[ $fast == "$general" && $fast == REPOSITORY* ]]; then
    ok "$d ($(($(wc -l <<<"$fast") - 1)) rows)"
  else
    not_ok "$d"$'\n'"$(diff <(echo "$general") <(echo "$fast") | head -20)"
  fi
}

same_table "an empty store: the header alone"

# One docker-archive of 40 images. Ages stay inside their "N units ago" bucket for
# minutes, so the two runs agree however slow the machine.
python3 - "$(date +%s)" <<'PY'
import datetime, hashlib, io, json, sys, tarfile
now = int(sys.argv[1])
ages = [3 * 366 * 86400, 400 * 86400, 40 * 86400, 10 * 86400 + 3600, 2 * 3600 + 1800,
        5 * 3600 + 60, -86400, None]
sizes = [0, 1, 600, 1500, 20000, 999000, 1300000]
names = [["app:v1", "app:latest", "registry.example.com:5000/team/a-rather-long-repository-name:v1"],
         [], ["busybox:1.36"], ["localhost:5000/x/y:z-very-long-tag-name_with.chars-0123456789"],
         [], ["app:v2"], ["quay.io/org/tool:3", "quay.io/org/tool:latest"], [], ["a:b"]]
def tar_of(files):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as t:
        for name, data in files:
            ti = tarfile.TarInfo(name)
            ti.size, ti.mtime = len(data), 1600000000
            t.addfile(ti, io.BytesIO(data))
    return buf.getvalue()
entries, files = [], {}
for i in range(40):
    layer = tar_of([("etc/n", str(i).encode() + b"x" * sizes[i % len(sizes)])])
    cfg = {"architecture": "amd64", "os": "linux", "config": {"Cmd": ["/bin/sh"]},
           "rootfs": {"type": "layers", "diff_ids": ["sha256:" + hashlib.sha256(layer).hexdigest()]}}
    age = ages[i % len(ages)]
    if age is not None:
        t = datetime.datetime.fromtimestamp(now - age - i, datetime.timezone.utc)
        cfg["created"] = t.strftime("%Y-%m-%dT%H:%M:%SZ")
    cfg_bytes = json.dumps(cfg).encode()
    cfg_name = hashlib.sha256(cfg_bytes).hexdigest() + ".json"
    tags = names[i] if i < len(names) else ([] if i % 5 == 0 else ["many/app:t%d" % i])
    files[cfg_name] = cfg_bytes
    files["l%d/layer.tar" % i] = layer
    entries.append({"Config": cfg_name, "RepoTags": tags or None, "Layers": ["l%d/layer.tar" % i]})
files["manifest.json"] = json.dumps(entries).encode()
with tarfile.open("many.tar", "w") as t:
    for name, data in files.items():
        ti = tarfile.TarInfo(name)
        ti.size = len(data)
        t.addfile(ti, io.BytesIO(data))
PY
"$IMGFS" load -i many.tar >/dev/null
"$IMGFS" tag busybox:1.36 other/repo:x
"$IMGFS" tag busybox:1.36 "$(printf 'r%.0s' {1..60})/long:tag"
count=$("$IMGFS" images -q | wc -l)
check "the store holds the 40 images" test "$count" = 40
check "  with dangling images and one without a creation time" \
  bash -c "'$IMGFS' images | grep -q '^<none> ' && '$IMGFS' images | grep -q ' N/A '"

same_table "images"
same_table "images --no-trunc" --no-trunc
same_table "images --digests" --digests
same_table "images --digests --no-trunc" --digests --no-trunc
same_table "images -a" -a
same_table "images REPOSITORY" app
same_table "images REPOSITORY:TAG" quay.io/org/tool:3
same_table "images --filter dangling=true" --filter dangling=true
same_table "images --filter reference=many/*" --filter 'reference=many/*'
check "images --format table is the default table" \
  bash -c "diff <('$IMGFS' images) <('$IMGFS' images --format table)"
check "images -q lists each image once" test "$("$IMGFS" images -q | sort | uniq -d | wc -l)" = 0
finish
