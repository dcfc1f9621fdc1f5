#!/usr/bin/env bash
# Bad input through the real command: each case prints one line on stderr naming the
# file and the problem, exits non-zero, and leaves the store exactly as it was.
source "$(dirname "$0")/lib.sh"
need umoci skopeo python3 busybox
cd "$T"

# A good image to start from, and a store that already holds something.
umoci init --layout good
umoci new --image good:v1
umoci unpack --image good:v1 b >/dev/null
mkdir -p b/rootfs/bin && cp "$(command -v busybox)" b/rootfs/bin/ && printf 'x\n' >b/rootfs/etc-file
umoci repack --image good:v1 b >/dev/null
# (a different image: a layer already present would rightly be skipped, not re-read)
mkdir other && printf 'other\n' >other/file && tar -C other -cf other.tar . && "$IMGFS" import other.tar already/here:v1 >/dev/null
skopeo copy -q oci:good:v1 docker-archive:$T/good.tar:bad/img:1
before=$(store_state)
unchanged() { [[ "$(store_state)" == "$before" ]]; }

rejects() {  # rejects DESCRIPTION PATTERN COMMAND...
  expect_fail "$1" "$2" "${@:3}"
  check "$1: store unchanged" unchanged
}

manifest_of() { python3 -c "import json,sys; print(json.load(open('$1/index.json'))['manifests'][0]['digest'].split(':')[1])"; }
layer_of() { python3 -c "import json; m=json.load(open('$1/blobs/sha256/$(manifest_of $1)')); print(m['layers'][-1]['digest'].split(':')[1])"; }
config_of() { python3 -c "import json; m=json.load(open('$1/blobs/sha256/$(manifest_of $1)')); print(m['config']['digest'].split(':')[1])"; }

head -c $(($(stat -c %s good.tar) / 2)) good.tar >truncated.tar
rejects "truncated docker-archive" "truncated.tar.*(truncated|Truncated)" "$IMGFS" load truncated.tar

cp -r good corrupt-gz
L=$(layer_of corrupt-gz)
chmod u+w corrupt-gz/blobs/sha256/$L
printf '\xff\xff\xff\xff' | dd of=corrupt-gz/blobs/sha256/$L bs=1 seek=2000 conv=notrunc status=none
rejects "corrupted gzip layer" "corrupt-gz.*layer sha256:$L" "$IMGFS" load corrupt-gz

cp -r good wrong-digest
L=$(layer_of wrong-digest)
python3 - "$T/wrong-digest/blobs/sha256/$L" <<'PY'
import gzip, io, sys, tarfile
buf = io.BytesIO()
with tarfile.open(fileobj=buf, mode='w') as t:
    data = b'evil'
    info = tarfile.TarInfo('evil'); info.size = len(data); t.addfile(info, io.BytesIO(data))
import os; os.chmod(sys.argv[1], 0o644)
open(sys.argv[1], 'wb').write(gzip.compress(buf.getvalue()))
PY
rejects "layer digest mismatch" "wrong-digest.*digest mismatch" "$IMGFS" load wrong-digest

# diff_id mismatch: a config that names another diff_id, re-digested consistently.
cp -r good wrong-diffid
python3 - "$T/wrong-diffid" <<'PY'
import hashlib, json, os, sys
d = sys.argv[1]
def blob(h): return os.path.join(d, 'blobs/sha256', h)
def put(data):
    h = hashlib.sha256(data).hexdigest(); open(blob(h), 'wb').write(data); return h, len(data)
idx = json.load(open(os.path.join(d, 'index.json')))
m = json.load(open(blob(idx['manifests'][0]['digest'][7:])))
cfg = json.load(open(blob(m['config']['digest'][7:])))
cfg['rootfs']['diff_ids'][-1] = 'sha256:' + '0' * 64
h, n = put(json.dumps(cfg).encode())
m['config']['digest'] = 'sha256:' + h; m['config']['size'] = n
h, n = put(json.dumps(m).encode())
idx['manifests'][0]['digest'] = 'sha256:' + h; idx['manifests'][0]['size'] = n
json.dump(idx, open(os.path.join(d, 'index.json'), 'w'))
PY
rejects "diff_id mismatch" "wrong-diffid.*diff_id mismatch" "$IMGFS" load wrong-diffid

cp -r good missing-blob
rm -f missing-blob/blobs/sha256/$(layer_of missing-blob)
rejects "manifest names a missing blob" "missing-blob.*missing" "$IMGFS" load missing-blob

mkdir notjson && cd notjson && tar -xf ../good.tar && cfg=$(python3 -c "import json; print(json.load(open('manifest.json'))[0]['Config'])") && chmod u+w "$cfg" && echo '{broken' >"$cfg" && tar -cf ../notjson.tar . && cd ..
rejects "config that is not JSON" "notjson.tar.*not valid JSON" "$IMGFS" load notjson.tar

cp -r good odd-media
python3 - "$T/odd-media" <<'PY'
import hashlib, json, os, sys
d = sys.argv[1]
def blob(h): return os.path.join(d, 'blobs/sha256', h)
idx = json.load(open(os.path.join(d, 'index.json')))
m = json.load(open(blob(idx['manifests'][0]['digest'][7:])))
m['layers'][-1]['mediaType'] = 'application/x-mystery'
data = json.dumps(m).encode(); h = hashlib.sha256(data).hexdigest(); open(blob(h), 'wb').write(data)
idx['manifests'][0]['digest'] = 'sha256:' + h; idx['manifests'][0]['size'] = len(data)
json.dump(idx, open(os.path.join(d, 'index.json'), 'w'))
PY
rejects "unknown media type" "odd-media.*unknown layer media type" "$IMGFS" load odd-media

: >empty.tar
rejects "empty file" "empty.tar.*empty" "$IMGFS" load empty.tar
mkdir -p plain-dir/sub
rejects "directory that is not an OCI layout" "plain-dir.*not an OCI image layout" "$IMGFS" load plain-dir
rejects "file that does not exist" "nothing-here.tar.*No such file" "$IMGFS" load nothing-here.tar
echo "just text" >text.tar
rejects "file that is not an archive" "text.tar" "$IMGFS" load text.tar

printf 'x' >f && tar -cf rootfs.tar f
rejects "import: reference that does not parse" "must be lowercase" "$IMGFS" import rootfs.tar BadName:1
rejects "import: reference with invalid tag" "invalid reference format" "$IMGFS" import rootfs.tar ok:-tag
rejects "tag: target that does not parse" "invalid reference format" "$IMGFS" tag already/here:v1 'a b'
rejects "tag: source that does not exist" "no such image" "$IMGFS" tag nothere:1 x:1
python3 - <<'PY'
import io, tarfile
for name, member in (('dotdot.tar', '../../etc/evil'), ('deep.tar', 'a/../../../evil')):
    with tarfile.open(name, 'w') as t:
        info = tarfile.TarInfo(member); info.size = 4; t.addfile(info, io.BytesIO(b'evil'))
with tarfile.open('hardlink-out.tar', 'w') as t:
    info = tarfile.TarInfo('x'); info.type = tarfile.LNKTYPE; info.linkname = '../../etc/passwd'; t.addfile(info)
with tarfile.open('hardlink-missing.tar', 'w') as t:
    info = tarfile.TarInfo('x'); info.type = tarfile.LNKTYPE; info.linkname = 'not/there'; t.addfile(info)
with tarfile.open('huge-name.tar', 'w', format=tarfile.PAX_FORMAT) as t:
    info = tarfile.TarInfo('d/' + 'n' * 300); info.size = 1; t.addfile(info, io.BytesIO(b'x'))
PY
rejects "import: ../ path" "dotdot.tar.*escapes the image root" "$IMGFS" import dotdot.tar evil:1
rejects "import: a/../../ path" "deep.tar.*escapes the image root" "$IMGFS" import deep.tar evil:2
rejects "import: hard link out of the tree" "hardlink-out.tar.*escapes" "$IMGFS" import hardlink-out.tar evil:3
rejects "import: hard link to a missing target" "hardlink-missing.tar.*missing target" "$IMGFS" import hardlink-missing.tar evil:4
rejects "import: over-long name" "huge-name.tar.*255" "$IMGFS" import huge-name.tar evil:5
check "nothing was written outside the store" test ! -e /etc/evil -a ! -e "$T/evil"
check "imgfs verify: store clean after all of it" "$IMGFS" verify
finish
