#!/usr/bin/env python3
"""Canonical listings of a directory tree, for comparing imgfs with a reference unpack.

  tree.py native DIR      walk DIR (a real directory, e.g. `umoci unpack`'s rootfs)
  tree.py imgfs FILE      normalise `imgfs ls -R --format tsv --sha256` output

Both print one sorted line per entry below the root:
  path type mode uid gid size mtime nlink dev link sha256 xattrs linkgroup
where linkgroup is the smallest path of the entry's hard-link group ("-" for nlink 1)
and directory sizes are 0. Paths and values are bytes, written as they are.
"""
import codecs
import hashlib
import os
import stat
import sys


def native(root):
    root = os.fsencode(root)
    rows = []
    inodes = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in sorted(dirnames + filenames):
            full = os.path.join(dirpath, name)
            rel = os.path.relpath(full, root)
            st = os.lstat(full)
            m = st.st_mode
            t = ('d' if stat.S_ISDIR(m) else 'l' if stat.S_ISLNK(m) else 'c' if stat.S_ISCHR(m)
                 else 'b' if stat.S_ISBLK(m) else 'p' if stat.S_ISFIFO(m) else 'f')
            size = 0 if t in 'dcbp' else st.st_size
            link = os.readlink(full) if t == 'l' else b'-'
            sha = b'-'
            if t == 'f':
                h = hashlib.sha256()
                with open(full, 'rb') as f:
                    for chunk in iter(lambda: f.read(1 << 20), b''):
                        h.update(chunk)
                sha = h.hexdigest().encode()
            xs = []
            if t != 'l':
                try:
                    for x in os.listxattr(full, follow_symlinks=False):
                        v = os.getxattr(full, x, follow_symlinks=False)
                        xs.append(x.encode() + b'=' + v.hex().encode())
                except OSError:
                    pass
            dev = b'%d,%d' % (os.major(st.st_rdev), os.minor(st.st_rdev)) if t in 'cb' else b'0,0'
            key = (st.st_dev, st.st_ino)
            if t != 'd' and st.st_nlink > 1:
                inodes.setdefault(key, []).append(rel)
            rows.append([rel, t.encode(), b'%o' % (m & 0o7777), b'%d' % st.st_uid, b'%d' % st.st_gid,
                         b'%d' % size, b'%d' % int(st.st_mtime), b'%d' % st.st_nlink, dev, link, sha,
                         b','.join(sorted(xs)) or b'-', key])
    return finish(rows, inodes)


def finish(rows, groups):
    first = {k: min(v) for k, v in groups.items()}
    out = []
    for r in rows:
        key = r.pop()
        r.append(first.get(key, b'-') if r[7] != b'1' and r[1] != b'd' else b'-')
        out.append(b'\t'.join(r))
    return b'\n'.join(sorted(out)) + b'\n'


def from_imgfs(path):
    rows = []
    groups = {}
    with open(path, 'rb') as f:
        for line in f.read().split(b'\n'):
            if not line:
                continue
            # type mode uid gid size mtime nlink inode dev link sha256 xattrs path
            p = line.split(b'\t', 12)
            t, mode, uid, gid, size, mtime, nlink, ino, dev, link, sha, xattrs, rel = p
            if t in (b'c', b'b', b'p', b'd'):
                size = b'0'
            if t != b'd' and nlink != b'1':
                groups.setdefault(ino, []).append(rel)
            # Names and link targets come C-escaped (\\, \t, \n, \NNN): see `imgfs ls --help`.
            rel = codecs.escape_decode(rel)[0]
            if link != b'-':
                link = codecs.escape_decode(link)[0]
            rows.append([rel, t, mode, uid, gid, size, mtime, nlink, dev, link, sha, xattrs, ino])
    return finish(rows, groups)


if __name__ == '__main__':
    mode, arg = sys.argv[1], sys.argv[2]
    sys.stdout.buffer.write(native(arg) if mode == 'native' else from_imgfs(arg))
