"""Raw tar writing for the differential test: every header kind, written byte by byte.

tarfile cannot write a GNU header with base-256 negative times, a pax header with binary
xattr values next to a ustar prefix, or an old-style '\\0' typeflag on demand, so the
headers are built here from the POSIX/GNU layouts (pax: POSIX.1-2008 `pax`, GNU: the
GNU tar manual's "Basic Tar Format"). Only the standard library is used.
"""

BLOCK = 512


def _octal(n, width):
    """NUL-terminated octal, or None when it does not fit."""
    if n < 0:
        return None
    s = b'%0*o' % (width - 1, n)
    return s + b'\0' if len(s) == width - 1 else None


def _base256(n, width):
    """GNU base-256: first byte 0x80 (or 0xff for negative), big-endian two's complement."""
    v = n % (1 << (8 * width))
    out = bytearray(v.to_bytes(width, 'big'))
    out[0] = 0xff if n < 0 else (out[0] | 0x80)
    return bytes(out)


def _num(n, width, allow_b256):
    o = _octal(n, width)
    if o is not None:
        return o
    if allow_b256:
        return _base256(n, width)
    return _octal(0, width)


def _header(name, typeflag, mode=0o644, uid=0, gid=0, size=0, mtime=0, linkname=b'',
            devmajor=0, devminor=0, prefix=b'', magic='ustar', allow_b256=True):
    b = bytearray(BLOCK)
    b[0:len(name[:100])] = name[:100]
    b[100:108] = _num(mode, 8, False)
    b[108:116] = _num(uid, 8, allow_b256)
    b[116:124] = _num(gid, 8, allow_b256)
    b[124:136] = _num(size, 12, allow_b256)
    b[136:148] = _num(mtime, 12, allow_b256)
    b[148:156] = b' ' * 8
    b[156:157] = typeflag
    b[157:157 + len(linkname[:100])] = linkname[:100]
    b[257:265] = b'ustar  \0' if magic == 'gnu' else b'ustar\x0000'
    b[265:269] = b'root'
    b[297:301] = b'root'
    if typeflag in (b'3', b'4'):
        b[329:337] = _num(devmajor, 8, allow_b256)
        b[337:345] = _num(devminor, 8, allow_b256)
    if magic != 'gnu' and prefix:
        b[345:345 + len(prefix)] = prefix
    b[148:156] = b'%06o\0 ' % sum(b)
    return bytes(b)


def _pad(data):
    return data + b'\0' * ((-len(data)) % BLOCK)


def pax_record(key, value):
    body = b' ' + key + b'=' + value + b'\n'
    n = len(body) + 1
    while len(b'%d' % n) + len(body) != n:
        n = len(b'%d' % n) + len(body)
    return b'%d' % n + body


def pax_time(ns):
    sign = b'-' if ns < 0 else b''
    a = abs(ns)
    s, f = divmod(a, 10**9)
    if f == 0:
        return sign + b'%d' % s
    return sign + (b'%d.%09d' % (s, f)).rstrip(b'0')


def _split_ustar(name):
    """(prefix, name) for a ustar header, or None when the name cannot be split."""
    if len(name) <= 100:
        return b'', name
    for i in range(len(name) - 1, 0, -1):
        if name[i:i + 1] == b'/' and i <= 155 and len(name) - i - 1 <= 100 and len(name) - i - 1 > 0:
            return name[:i], name[i + 1:]
    return None


def entry(e):
    """Bytes of one tar entry (its headers and padded content) from a dict:
    name, type ('0' file, '\\0' old file, '1' hard link, '2' symlink, '3' char, '4' block,
    '5' dir, '6' fifo), mode, uid, gid, mtime_ns, data, link, dev, xattrs, fmt
    ('ustar', 'gnu', 'pax'), binary (pax hdrcharset=BINARY)."""
    name, t = e['name'], e['type'].encode() if isinstance(e['type'], str) else e['type']
    data = e.get('data', b'') if t in (b'0', b'\0') else b''
    link = e.get('link', b'')
    mtime_ns = e.get('mtime_ns', 0)
    sec = mtime_ns // 10**9
    frac = mtime_ns % 10**9
    uid, gid = e.get('uid', 0), e.get('gid', 0)
    mode = e.get('mode', 0o644)
    dmaj, dmin = e.get('dev', (0, 0))
    fmt = e.get('fmt', 'ustar')
    xattrs = e.get('xattrs', {})
    # ustar cannot hold what needs pax; fall back to pax for those entries.
    if fmt == 'ustar' and (len(link) > 100 or _split_ustar(name) is None or frac or xattrs):
        fmt = 'pax'
    if fmt == 'gnu' and (frac or xattrs):
        fmt = 'pax'
    out = b''
    if fmt == 'gnu':
        if len(name) > 100:
            out += _header(b'././@LongLink', b'L', size=len(name) + 1, magic='gnu') + _pad(name + b'\0')
        if len(link) > 100:
            out += _header(b'././@LongLink', b'K', size=len(link) + 1, magic='gnu') + _pad(link + b'\0')
        out += _header(name, t, mode, uid, gid, len(data), sec, link, dmaj, dmin, magic='gnu')
        return out + _pad(data)
    if fmt == 'ustar':
        prefix, short = _split_ustar(name)
        out += _header(short, t, mode, uid, gid, len(data), sec, link, dmaj, dmin, prefix=prefix)
        return out + _pad(data)
    # pax
    recs = []
    if e.get('binary'):
        recs.append(pax_record(b'hdrcharset', b'BINARY'))
    recs.append(pax_record(b'path', name))
    if link:
        recs.append(pax_record(b'linkpath', link))
    if uid >= 0o7777777:
        recs.append(pax_record(b'uid', b'%d' % uid))
    if gid >= 0o7777777:
        recs.append(pax_record(b'gid', b'%d' % gid))
    recs.append(pax_record(b'mtime', pax_time(mtime_ns)))
    for k in sorted(xattrs):
        recs.append(pax_record(b'SCHILY.xattr.' + k, xattrs[k]))
    body = b''.join(recs)
    out += _header(b'PaxHeaders/' + name[-80:], b'x', size=len(body), allow_b256=False) + _pad(body)
    short = name[:100]
    if t == b'\0':
        # An old-style regular file whose header name ends in '/' is a directory to
        # readers that look at the header name before the pax path (Python's tarfile).
        short = short.rstrip(b'/') or b'f'
    out += _header(short, t, mode, min(uid, 0o7777777), min(gid, 0o7777777), len(data),
                   max(0, min(sec, 8**11 - 1)), link[:100], dmaj, dmin, allow_b256=False)
    return out + _pad(data)


def archive(entries):
    return b''.join(entry(e) for e in entries) + b'\0' * (BLOCK * 2)
