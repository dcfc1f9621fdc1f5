#!/usr/bin/python3
"""Adds a tar-split to the zstd:chunked layers of an OCI layout, as newer containers/storage
writers do (podman/buildah since 2023; Debian 12's skopeo writes none).

    zstd_tarsplit.py SRC DST TAG [--digest-in annotation|toc] [--bad-tarsplit]
                     [--diff-ids-from-blobs]

SRC's TAG (a skopeo-made zstd:chunked image) is written to DST as TAG. Each layer with
the zstd-chunked manifest-* annotations (io.containers.* names become
io.github.containers.*, as newer writers spell them) becomes:

    the blob's frames up to its TOC (the compressed tar, unchanged)
    skippable frame: the TOC (zstd)           manifest-position OFFSET:LENGTH:USIZE:1
    skippable frame: the tar-split (zstd)     tarsplit-position OFFSET:LENGTH:USIZE
    skippable frame: the 64-byte footer       (offsets little-endian, "GNUlInUx")

The tar-split is JSON lines in vbatts/tar-split's form: {"type":2,"payload":BASE64} for
raw tar bytes (headers, padding, the end of the archive) and {"type":1,"name":...,
"size":N} for each entry's content ("name_raw", base64, when the name is not UTF-8).
A file entry with content also has tar-split's "payload": the CRC-64 (ISO polynomial,
big-endian, base64) of its content; imgfs does not read it, and must not trip on it. Every
line has tar-split's "position" (its line number from 0). The tar-split's
digest goes in the tarsplit-checksum annotation (`annotation`, containers/storage
1.4x) or in the TOC as "tarSplitDigest" (`toc`, newer writers; the TOC's own checksum
annotation changes with it). --bad-tarsplit damages one byte of the compressed
tar-split after its digest is taken. The decompressed stream, and so the diff_ids and
the config, do not change (skippable frames decompress to nothing).
--diff-ids-from-blobs first gives the config the diff_ids of what the layer blobs hold:
skopeo 1.9 writes a GNU long name back in Go's own form but keeps the source's diff_id,
an image docker would refuse too (tests/e2e/lazy_tarsplit.sh needs such a name).
Needs the zstd command.
"""
import base64
import hashlib
import io
import json
import os
import struct
import subprocess
import sys
import tarfile

PREFIX = 'io.github.containers.zstd-chunked.'
OLD_PREFIX = 'io.containers.zstd-chunked.'  # Debian 12's skopeo: renamed to PREFIX here
OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json'


def zstd(data, decompress=False):
    args = ['zstd', '-q', '-c'] + (['-d'] if decompress else ['-3'])
    return subprocess.run(args, input=data, stdout=subprocess.PIPE, check=True).stdout


def skippable(payload):
    return struct.pack('<II', 0x184D2A50, len(payload)) + payload


def _crc64_table():
    poly, table = 0xD800000000000000, []  # ISO 3309, reversed (Go's hash/crc64.ISO)
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ poly if c & 1 else c >> 1
        table.append(c)
    return table


CRC64_ISO = _crc64_table()


def crc64_iso(data):
    """Go's crc64.Checksum(data, crc64.MakeTable(crc64.ISO))."""
    c = 0xFFFFFFFFFFFFFFFF
    for b in data:
        c = CRC64_ISO[(c ^ b) & 0xFF] ^ (c >> 8)
    return c ^ 0xFFFFFFFFFFFFFFFF


def tar_split(tar):
    """The tar-split JSON lines of an uncompressed tar stream."""
    lines, pos = [], 0
    raw = lambda b: lines.append({'type': 2, 'payload': base64.b64encode(b).decode()})
    with tarfile.open(fileobj=io.BytesIO(tar), mode='r:') as tf:
        for m in tf:
            raw(tar[pos:m.offset_data])
            e = {'type': 1, 'size': m.size if m.isreg() else 0}
            if e['size']:
                body = tar[m.offset_data:m.offset_data + e['size']]
                e['payload'] = base64.b64encode(struct.pack('>Q', crc64_iso(body))).decode()
            name = m.name.encode('utf-8', 'surrogateescape')
            try:
                e['name'] = name.decode('utf-8')
            except UnicodeDecodeError:
                e['name_raw'] = base64.b64encode(name).decode()
            lines.append(e)
            pos = m.offset_data + e['size']
    raw(tar[pos:])
    for i, line in enumerate(lines):
        line['position'] = i
    return ''.join(json.dumps(l, separators=(',', ':')) + '\n' for l in lines).encode()


def blob_path(layout, digest):
    return os.path.join(layout, 'blobs', *digest.split(':'))


def put_blob(layout, data):
    digest = 'sha256:' + hashlib.sha256(data).hexdigest()
    path = blob_path(layout, digest)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, 'wb') as f:
        f.write(data)
    return digest


def rewrite_layer(src, dst, layer, diff_id, digest_in, bad):
    a = {(PREFIX + k[len(OLD_PREFIX):] if k.startswith(OLD_PREFIX) else k): v
         for k, v in layer.get('annotations', {}).items()}
    if PREFIX + 'manifest-position' not in a:
        return layer
    blob = open(blob_path(src, layer['digest']), 'rb').read()
    off, length, usize, kind = (int(x) for x in a[PREFIX + 'manifest-position'].split(':'))
    magic, size = struct.unpack('<II', blob[off - 8:off])
    assert magic & 0xFFFFFFF0 == 0x184D2A50 and size == length, 'TOC is not a skippable frame'
    content = blob[:off - 8]
    tar = zstd(content, decompress=True)
    assert 'sha256:' + hashlib.sha256(tar).hexdigest() == diff_id, 'tar does not match its diff_id'
    ts_json = tar_split(tar)
    ts_c = zstd(ts_json)
    ts_digest = 'sha256:' + hashlib.sha256(ts_c).hexdigest()
    toc_c = blob[off:off + length]
    toc_json = zstd(toc_c, decompress=True)
    if digest_in == 'toc':
        toc = json.loads(toc_json)
        toc['tarSplitDigest'] = ts_digest
        toc_json = json.dumps(toc).encode()
        toc_c = zstd(toc_json)
    if bad:
        ts_c = ts_c[:len(ts_c) // 2] + bytes([ts_c[len(ts_c) // 2] ^ 1]) + ts_c[len(ts_c) // 2 + 1:]
    ts_off = off + len(toc_c) + 8
    footer = struct.pack('<7Q', off, len(toc_c), len(toc_json), 1, ts_off, len(ts_c),
                         len(ts_json)) + b'GNUlInUx'
    out = content + skippable(toc_c) + skippable(ts_c) + skippable(footer)
    new = dict(layer)
    new['annotations'] = dict(a)
    new['annotations'][PREFIX + 'manifest-checksum'] = 'sha256:' + hashlib.sha256(toc_c).hexdigest()
    new['annotations'][PREFIX + 'manifest-position'] = f'{off}:{len(toc_c)}:{len(toc_json)}:{kind}'
    new['annotations'][PREFIX + 'tarsplit-position'] = f'{ts_off}:{len(ts_c)}:{len(ts_json)}'
    if digest_in == 'annotation':
        new['annotations'][PREFIX + 'tarsplit-checksum'] = ts_digest
    new['digest'] = put_blob(dst, out)
    new['size'] = len(out)
    return new


def main(argv):
    src, dst, tag = argv[1:4]
    digest_in = 'annotation'
    if '--digest-in' in argv:
        digest_in = argv[argv.index('--digest-in') + 1]
    bad = '--bad-tarsplit' in argv
    index = json.load(open(os.path.join(src, 'index.json')))
    desc = next(m for m in index['manifests']
                if m.get('annotations', {}).get('org.opencontainers.image.ref.name') == tag)
    man = json.load(open(blob_path(src, desc['digest'])))
    cfg_bytes = open(blob_path(src, man['config']['digest']), 'rb').read()
    if '--diff-ids-from-blobs' in argv:
        cfg = json.loads(cfg_bytes)
        cfg['rootfs']['diff_ids'] = [
            'sha256:' + hashlib.sha256(zstd(open(blob_path(src, l['digest']), 'rb').read(),
                                            decompress=True)).hexdigest()
            for l in man['layers']]
        cfg_bytes = json.dumps(cfg).encode()
    diff_ids = json.loads(cfg_bytes)['rootfs']['diff_ids']
    os.makedirs(dst, exist_ok=True)
    with open(os.path.join(dst, 'oci-layout'), 'w') as f:
        json.dump({'imageLayoutVersion': '1.0.0'}, f)
    man['config'].update(digest=put_blob(dst, cfg_bytes), size=len(cfg_bytes))
    man['layers'] = [rewrite_layer(src, dst, l, d, digest_in, bad)
                     for l, d in zip(man['layers'], diff_ids)]
    data = json.dumps(man).encode()
    new_desc = {'mediaType': OCI_MANIFEST, 'digest': put_blob(dst, data), 'size': len(data),
                'annotations': {'org.opencontainers.image.ref.name': tag}}
    path = os.path.join(dst, 'index.json')
    out = json.load(open(path)) if os.path.exists(path) else {'schemaVersion': 2, 'manifests': []}
    out['manifests'] = [m for m in out['manifests']
                        if m.get('annotations', {}).get('org.opencontainers.image.ref.name') != tag]
    out['manifests'].append(new_desc)
    with open(path, 'w') as f:
        json.dump(out, f)


if __name__ == '__main__':
    main(sys.argv)
