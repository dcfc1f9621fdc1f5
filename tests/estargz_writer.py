#!/usr/bin/python3
"""An eStargz writer for the tests, written from the format's documentation
(containerd/stargz-snapshotter docs/estargz.md and the constants in estargz/types.go).

  blob IN.tar OUT [--chunk-size N] [--prefetch PATH,...]
        writes OUT, an eStargz blob of the tar IN; prints a JSON object:
        {"digest", "size", "diff_id", "uncompressed_size", "toc_digest", "toc_offset"}
  convert-layout LAYOUT TAG NEWTAG [--chunk-size N]
        turns every gzip/plain tar layer of the image LAYOUT:TAG into an eStargz layer and
        records the result as LAYOUT:NEWTAG (new config with the new diff_ids, new manifest
        whose layers carry the containerd.io/snapshot/stargz/toc.digest and
        io.containers.estargz.uncompressed-size annotations); prints the manifest digest.

The blob (what this writer makes, the "lossless" shape: the input's tar headers are kept
byte for byte):
  - a sequence of gzip members whose concatenated content is one tar stream;
  - first the landmark entry: `.no.prefetch.landmark` (no --prefetch) or, after the
    --prefetch entries, `.prefetch.landmark`; a regular file of one byte 0x0f;
  - each regular file's content starts a new gzip member, and so does every chunk of
    --chunk-size bytes of a large file; tar headers and padding share the member of what
    precedes them;
  - the TOC: a member of its own holding a tar entry `stargz.index.json` (the JSON) and
    the tar end-of-archive blocks;
  - the 51-byte footer: an empty gzip member (stored block) whose Extra field is the
    subfield 'S''G' of 22 bytes, "%016xSTARGZ" % toc_offset.
TOC entries: name, type (dir reg symlink hardlink char block fifo chunk), size, modtime
(RFC3339 UTC), linkName, mode, uid, gid, userName, groupName, devMajor, devMinor,
xattrs (base64), offset (of the gzip member where the payload starts), digest (whole
file), chunkOffset, chunkSize (0/absent: to the end of the file), chunkDigest.
The toc.digest annotation is the sha256 of the TOC JSON bytes; the uncompressed size is
that of the whole tar stream (TOC entry and end blocks included).
"""
import base64
import datetime
import decimal
import gzip
import hashlib
import io
import json
import math
import os
import sys
import tarfile

FOOTER_SIZE = 51
LANDMARK = b'\x0f'


def sha256(b):
    return 'sha256:' + hashlib.sha256(b).hexdigest()


def footer(toc_offset):
    extra_payload = b'%016xSTARGZ' % toc_offset
    extra = b'SG' + len(extra_payload).to_bytes(2, 'little') + extra_payload
    hdr = b'\x1f\x8b\x08\x04' + b'\0\0\0\0' + b'\0\xff' + len(extra).to_bytes(2, 'little') + extra
    # An empty final stored block, CRC32 0, ISIZE 0.
    f = hdr + b'\x01\x00\x00\xff\xff' + b'\0' * 8
    assert len(f) == FOOTER_SIZE
    return f


def tar_header(name, size, mode=0o644, typeflag=b'0'):
    t = tarfile.TarInfo(name)
    t.size, t.mode, t.type, t.mtime = size, mode, typeflag, 0
    t.uname = t.gname = ''
    return t.tobuf(format=tarfile.USTAR_FORMAT)


def pad(n):
    return b'\0' * ((512 - n % 512) % 512)


class Writer:
    def __init__(self, chunk_size):
        self.chunk_size = chunk_size
        self.out = io.BytesIO()
        self.member = bytearray()  # uncompressed bytes of the open gzip member
        self.plain = hashlib.sha256()
        self.plain_size = 0
        self.entries = []
        self.last_uname = self.last_gname = None

    def close_member(self):
        if self.member:
            self.out.write(gzip.compress(bytes(self.member), compresslevel=6, mtime=0))
            self.plain.update(self.member)
            self.plain_size += len(self.member)
            self.member = bytearray()

    def add(self, raw_header, info, data):
        """raw_header: the entry's header blocks (extension headers included)."""
        ent = {'name': gostr(info.name), 'mode': info.mode, 'uid': info.uid, 'gid': info.gid,
               'modtime': datetime.datetime.fromtimestamp(mtime_seconds(info), datetime.timezone.utc)
               .strftime('%Y-%m-%dT%H:%M:%SZ')}
        if info.uname and info.uname != self.last_uname:
            ent['userName'] = self.last_uname = info.uname
        if info.gname and info.gname != self.last_gname:
            ent['groupName'] = self.last_gname = info.gname
        # As Go's tar reader: a record with an empty value sets nothing (pax: it deletes
        # the keyword), and of two records of one name the last counts (the dict's).
        xattrs = {k[len('SCHILY.xattr.'):]: base64.b64encode(v.encode('utf-8', 'surrogateescape')).decode()
                  for k, v in info.pax_headers.items() if k.startswith('SCHILY.xattr.') and v}
        if xattrs:
            ent['xattrs'] = xattrs
        if info.islnk():
            ent['type'], ent['linkName'] = 'hardlink', gostr(info.linkname)
        elif info.issym():
            ent['type'], ent['linkName'] = 'symlink', gostr(info.linkname)
        elif info.isdir():
            ent['type'] = 'dir'
        elif info.ischr() or info.isblk():
            ent['type'] = 'char' if info.ischr() else 'block'
            ent['devMajor'], ent['devMinor'] = info.devmajor, info.devminor
        elif info.isfifo():
            ent['type'] = 'fifo'
        elif info.isreg():
            ent['type'], ent['size'] = 'reg', len(data)
        else:
            raise SystemExit(f'estargz_writer: unsupported tar entry type {info.type!r} ({info.name})')
        self.member += raw_header
        self.entries.append(ent)
        if ent['type'] != 'reg' or not data:
            return
        ent['digest'] = sha256(data)
        written = 0
        while written < len(data):
            n = min(self.chunk_size, len(data) - written)
            cur = ent
            if written:
                cur = {'name': gostr(info.name), 'type': 'chunk'}
                self.entries.append(cur)
            if n == self.chunk_size:
                cur['chunkSize'] = n
            self.close_member()
            cur['offset'] = self.out.tell()
            if written:
                cur['chunkOffset'] = written
            piece = data[written:written + n]
            cur['chunkDigest'] = sha256(piece)
            self.member += piece
            written += n
        self.member += pad(len(data))

    def finish(self):
        self.close_member()
        toc_offset = self.out.tell()
        # For tests of what a reader does with a TOC that lies (its own digest right):
        # ESTARGZ_WRITER_LIE=PATH gives that file's entries a digest of other content.
        lie = os.environ.get('ESTARGZ_WRITER_LIE', '')
        for e in self.entries:
            if lie and e['name'].lstrip('./') == lie and 'chunkDigest' in e:
                e['chunkDigest'] = sha256(b'not the content')
                if 'digest' in e:
                    e['digest'] = e['chunkDigest']
        toc = json.dumps({'version': 1, 'entries': self.entries}, indent='\t').encode()
        member = tar_header('stargz.index.json', len(toc)) + toc + pad(len(toc)) + b'\0' * 1024
        self.out.write(gzip.compress(member, compresslevel=6, mtime=0))
        self.plain.update(member)
        self.plain_size += len(member)
        self.out.write(footer(toc_offset))
        blob = self.out.getvalue()
        return blob, {'digest': sha256(blob), 'size': len(blob),
                      'diff_id': 'sha256:' + self.plain.hexdigest(),
                      'uncompressed_size': self.plain_size, 'toc_digest': sha256(toc),
                      'toc_offset': toc_offset}


def mtime_seconds(info):
    """The whole seconds of a member's mtime, rounded down as Go's time.Time keeps them
    (a pax mtime of -0.5 is -1; tarfile's float would truncate it to 0, and round a
    large fractional one up)."""
    pax = info.pax_headers.get('mtime')
    if pax is not None:
        try:
            return int(decimal.Decimal(pax).to_integral_value(rounding=decimal.ROUND_FLOOR))
        except decimal.InvalidOperation:
            pass
    return math.floor(info.mtime)


def gostr(s):
    """A tar name as Go's encoding/json writes it: bytes that are not UTF-8 become
    U+FFFD (tarfile hands them over as surrogate escapes)."""
    return s.encode('utf-8', 'surrogateescape').decode('utf-8', 'replace')


def read_tar(data):
    """(raw header bytes, TarInfo, content) per entry, in order."""
    out = []
    with tarfile.open(fileobj=io.BytesIO(data), mode='r:') as tf:
        for m in tf:
            raw = data[m.offset:m.offset_data]
            content = data[m.offset_data:m.offset_data + m.size] if m.isreg() else b''
            out.append((raw, m, content))
    return out


def make_blob(tar_bytes, chunk_size=4 << 20, prefetch=()):
    w = Writer(chunk_size)
    entries = [e for e in read_tar(tar_bytes)
               if e[1].name.lstrip('./') not in ('stargz.index.json',)]
    landmark = lambda name: (tar_header(name, 1), tarfile.TarInfo(name), LANDMARK)
    if prefetch:
        want = set(p.lstrip('./') for p in prefetch)
        first = [e for e in entries if e[1].name.lstrip('./').rstrip('/') in want]
        rest = [e for e in entries if e not in first]
        for e in first:
            w.add(*e)
        lm = landmark('.prefetch.landmark')
        entries = rest
    else:
        lm = landmark('.no.prefetch.landmark')
    lm[1].size, lm[1].mode, lm[1].mtime = 1, 0o644, 0
    w.add(lm[0], lm[1], lm[2])
    for e in entries:
        w.add(*e)
    return w.finish()


def opt(args, name, default=None):
    if name in args:
        i = args.index(name)
        v = args[i + 1]
        del args[i:i + 2]
        return v
    return default


def cmd_blob(args):
    chunk = int(opt(args, '--chunk-size', 4 << 20))
    prefetch = [p for p in opt(args, '--prefetch', '').split(',') if p]
    src, dst = args
    blob, info = make_blob(open(src, 'rb').read(), chunk, prefetch)
    open(dst, 'wb').write(blob)
    print(json.dumps(info))


def cmd_convert_layout(args):
    chunk = int(opt(args, '--chunk-size', 4 << 20))
    layout, tag, newtag = args
    bpath = lambda d: os.path.join(layout, 'blobs', *d.split(':'))
    put = lambda b: (open(bpath(sha256(b)), 'wb').write(b), sha256(b))[1]
    idx_path = os.path.join(layout, 'index.json')
    idx = json.load(open(idx_path))
    ref = 'org.opencontainers.image.ref.name'
    desc = [m for m in idx['manifests'] if m.get('annotations', {}).get(ref) == tag][0]
    man = json.loads(open(bpath(desc['digest']), 'rb').read())
    cfg = json.loads(open(bpath(man['config']['digest']), 'rb').read())
    diff_ids = []
    for layer in man['layers']:
        raw = open(bpath(layer['digest']), 'rb').read()
        if layer['mediaType'].endswith('+gzip'):
            raw = gzip.decompress(raw)
        elif not layer['mediaType'].endswith('.tar'):
            raise SystemExit(f'estargz_writer: layer {layer["mediaType"]} is not gzip or tar')
        blob, info = make_blob(raw, chunk)
        put(blob)
        layer.update({'mediaType': 'application/vnd.oci.image.layer.v1.tar+gzip',
                      'digest': info['digest'], 'size': info['size'],
                      'annotations': {'containerd.io/snapshot/stargz/toc.digest': info['toc_digest'],
                                      'io.containers.estargz.uncompressed-size':
                                          str(info['uncompressed_size'])}})
        diff_ids.append(info['diff_id'])
    cfg['rootfs']['diff_ids'] = diff_ids
    cb = json.dumps(cfg).encode()
    man['config'].update({'digest': put(cb), 'size': len(cb)})
    mb = json.dumps(man).encode()
    md = put(mb)
    idx['manifests'] = [m for m in idx['manifests'] if m.get('annotations', {}).get(ref) != newtag]
    idx['manifests'].append({'mediaType': 'application/vnd.oci.image.manifest.v1+json',
                             'digest': md, 'size': len(mb), 'annotations': {ref: newtag}})
    json.dump(idx, open(idx_path, 'w'))
    print(md)


if __name__ == '__main__':
    cmds = {'blob': cmd_blob, 'convert-layout': cmd_convert_layout}
    if len(sys.argv) < 2 or sys.argv[1] not in cmds:
        raise SystemExit(__doc__)
    cmds[sys.argv[1]](sys.argv[2:])
