#!/usr/bin/env bash
# Seekable layers (issue 8): import records a seek index per compressed layer
# (ROOT/seek/<diff_id>); cat reads any file from it without an uncompressed copy; a
# missing sidecar is rebuilt on first read or by verify --repair; a damaged one (its
# layout, or a span or prefix value only the blob's bytes can refute) is a verify problem; a damaged blob fails only reads in the damaged span; rmi and prune
# remove sidecars of removed layers; multi-frame zstd is indexed, single-frame zstd
# keeps the whole-layer unpack.
source "$(dirname "$0")/lib.sh"
need python3 zstd gzip
cd "$T"

# 40 files of text-like data (compressible, not trivially): ~5 MB of tar.
mkdir rootfs
python3 - <<'EOF'
import random
r = random.Random(8)
words = [w.encode() for w in "layer image gzip seek window span block tar blob index".split()]
for i in range(40):
    with open(f"rootfs/f{i:02d}", "wb") as f:
        f.write(b" ".join(r.choice(words) + str(r.randrange(10**6)).encode() for _ in range(14000)))
EOF
tar -C rootfs --sort=name -cf rootfs.tar .
gzip -6 -c rootfs.tar >rootfs.tar.gz
# The same files plus a marker, so that each compression is a layer of its own.
mk_variant() { cp -a rootfs "rootfs-$1" && echo "$1" >"rootfs-$1/variant" && tar -C "rootfs-$1" --sort=name -cf "$1.tar" .; }
mk_variant multi
mk_variant single
sha() { sha256sum | cut -d' ' -f1; }

"$IMGFS" import rootfs.tar.gz g:1 >/dev/null
diff_id=$("$IMGFS" inspect g:1 | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["RootFS"]["Layers"][0][7:])')
blob=$("$IMGFS" inspect g:1 | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["Layers"][0]["Digest"][7:])' 2>/dev/null || true)
[[ -n $blob ]] || blob=$(ls "$ROOT/blobs/sha256" | while read -r b; do [[ $(head -c2 "$ROOT/blobs/sha256/$b" | od -An -tx1 | tr -d ' ') == 1f8b ]] && echo "$b"; done | head -1)
side=$ROOT/seek/$diff_id
check "import wrote the layer's seek index" test -s "$side"
all_right() {
  local img=$1 ok=1
  for i in $(seq -w 0 39); do
    [[ $("$IMGFS" cat "$img" /f$i | sha) == $(sha <rootfs/f$i) ]] || ok=0
  done
  [[ $ok == 1 ]]
}
check "cat of every file is right" all_right g:1
check "no uncompressed copy was made" bash -c "[[ -z \$(ls -A '$ROOT/unpacked' 2>/dev/null) ]]"
blob_size=$(stat -c %s "$ROOT/blobs/sha256/$blob")
seek_size=$(stat -c %s "$side")
check "the seek index (1 MiB spans) is under 5% of the blob ($seek_size of $blob_size bytes)" test $((seek_size * 20)) -lt "$blob_size"

# From here on, 64 KiB spans: many spans in a small layer.
export IMGFS_SEEK_SPAN=65536
rm "$side"
check "a layer without a seek index (an older store) still reads" bash -c "[[ \$('$IMGFS' cat g:1 /f33 | sha256sum | cut -d' ' -f1) == \$(sha256sum <rootfs/f33 | cut -d' ' -f1) ]]"
check "its seek index was built on that first read" test -s "$side"
head -c 100 "$side" >"$side.short" && mv "$side.short" "$side"
check "verify reports a damaged seek index (exit 1)" bash -c "out=\$('$IMGFS' verify 2>&1); rc=\$?; [[ \$rc == 1 && \$out == *'seek index: '*'bad layout'* ]]"
check "a damaged seek index does not stop reads (rebuilt)" all_right g:1
head -c 100 "$side" >"$side.short" && mv "$side.short" "$side"
check "verify --repair rebuilds it" bash -c "'$IMGFS' verify --repair | grep -q 'Rebuilt 1 seek index'"
check "verify is clean after the repair" "$IMGFS" verify
# Damage the sidecar's checks can only see against the blob: verify decodes every span.
flip() {  # flip FILE OFFSET: xor one byte with 0x04, in a copy moved over the file
  python3 -c 'import sys; b = bytearray(open(sys.argv[1], "rb").read()); b[int(sys.argv[2])] ^= 4; open(sys.argv[1] + ".x", "wb").write(b)' "$1" "$2" && mv "$1.x" "$1"
}
cp "$side" "$T/side.good"
flip "$side" $((64 + 80 * 2 + 50))  # span 2's value
check "verify reports a wrong span value (exit 1)" bash -c "out=\$('$IMGFS' verify 2>&1); rc=\$?; [[ \$rc == 1 && \$out == *'seek index: it does not match its blob, whose digest is right: '*'span 2 '*'does not match'* ]]"
cp "$T/side.good" "$side"
flip "$side" $(($(stat -c %s "$side") - 3))  # the last prefix value of the last span
check "verify reports a wrong prefix value (exit 1)" bash -c "out=\$('$IMGFS' verify 2>&1); rc=\$?; [[ \$rc == 1 && \$out == *'whose digest is right: span '*'the value of its first'*'does not match'* ]]"
check "verify --repair rebuilds that one too" bash -c "'$IMGFS' verify --repair | grep -q 'Rebuilt 1 seek index'"
check "and the rebuilt sidecar is byte for byte the one before the damage" cmp "$side" "$T/side.good"

# A damaged blob: reads in the damaged span fail with one line, other files read.
cp -a "$ROOT" "$T/store2"
b2=$T/store2/blobs/sha256/$blob
chmod u+w "$b2"
printf '\x55' | dd of="$b2" bs=1 seek=$((blob_size * 3 / 4)) conv=notrunc status=none
nbad=0 good=0
for i in $(seq -w 0 39); do
  if out=$("$IMGFS" --root "$T/store2" cat g:1 /f$i 2>"$T/err" | sha); then
    [[ $out == $(sha <rootfs/f$i) ]] && good=$((good + 1))
  else
    grep -q "gzip span" "$T/err" && [[ $(wc -l <"$T/err") == 1 ]] && nbad=$((nbad + 1))
  fi
done
check "a flipped blob byte fails some files with one 'gzip span' line ($nbad)" test "$nbad" -ge 1
check "and every other file still reads right ($good + $nbad = 40)" test $((good + nbad)) -eq 40
"$IMGFS" --root "$T/store2" verify >/dev/null 2>"$T/err" && echo "verify passed a damaged blob" >>"$T/err"
check "verify names the damaged blob, and not its seek index" bash -c \
  "grep -q 'blob sha256:$blob: content hashes to' '$T/err' && ! grep -q 'seek index' '$T/err'"
rm -rf "$T/store2"

# zstd: many frames (one per 256 KiB of tar) are indexed; one frame keeps the old path.
split -b 262144 -d multi.tar part.
for p in part.*; do zstd -q -3 "$p" -o "$p.zst"; done
cat part.*.zst >multi.tar.zst
zstd -q -3 single.tar -o single.tar.zst
"$IMGFS" import multi.tar.zst zm:1 >/dev/null
"$IMGFS" import single.tar.zst zs:1 >/dev/null
check "multi-frame zstd: every file right" all_right zm:1
check "multi-frame zstd: no uncompressed copy" bash -c "[[ -z \$(ls -A '$ROOT/unpacked' 2>/dev/null) ]]"
check "single-frame zstd: every file right" all_right zs:1
check "single-frame zstd: read through the whole-layer unpack" bash -c "ls '$ROOT/unpacked' | grep -q '.tar$'"

n_before=$(ls "$ROOT/seek" | wc -l)
"$IMGFS" rmi zm:1 >/dev/null
check "rmi removes the seek index of the removed layer" test "$(ls "$ROOT/seek" | wc -l)" -eq $((n_before - 1))
cp "$side" "$ROOT/seek/$(printf '%064d' 7)"
out=$("$IMGFS" prune)
check "prune removes a seek index whose layer is gone" bash -c "[[ ! -e '$ROOT/seek/$(printf '%064d' 7)' && -e '$side' ]]"
check "prune says so" grep -q "1 seek index" <<<"$out"
check "verify is clean at the end" "$IMGFS" verify
finish
