#!/usr/bin/python3
"""Differential test: random layer stacks, imgfs against umoci (or the kernel's overlayfs).

  difftest.py --imgfs PATH --work DIR --seeds A:B [--classes c1,c2] [--batch N] [--no-mount]

For each seed in [A, B): gen.generate() draws a layer stack, which is written as two OCI
layouts with the same config and diff_ids: `img` with the case's encodings (gzip, zstd,
uncompressed, multi-member gzip, empty blobs) for imgfs, and `ref` with the same tars
uncompressed for the reference (umoci 0.4.7 reads no zstd; the OCI spec defines a layer's
content by its DiffID, the digest of the uncompressed tar, so both see the same layer).
The reference tree is `umoci unpack` of `ref`, or, for cases whose class follows the
kernel's overlay rules (symparent), each layer extracted by GNU tar, its whiteouts turned
into 0/0 character devices and opaque markers into trusted.overlay.opaque, and the layers
mounted with `mount -t overlay`. Every case of a batch is loaded into one fresh store as
diff:c<SEED>; the store is read through `imgfs ls -R --format tsv --sha256` and through
one FUSE mount, and every entry is compared attribute by attribute with the reference.

Prints one line per difference (DIFF seed=N ref=... classes=... VIA:ATTRIBUTE PATH: WANT !=
GOT), a coverage line (cases drawing from each rule of gen.py) and at the end
  summary: cases N, seconds S, failing cases F, differences by attribute (cases): {...};
  failing cases by case classes: {...}; cases drawing from each class: {...};
  reference fallbacks (entries): {...}
The fallbacks count where the expected value came from a rule in docs/differential.md
rather than from umoci itself. Exit status 1 when any case differs.
"""
import argparse
import collections
import concurrent.futures
import gzip
import hashlib
import io
import json
import os
import posixpath
import shutil
import stat
import subprocess
import sys
import tarfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import gen  # noqa: E402
import tarwriter  # noqa: E402

LAYER_TAR = 'application/vnd.oci.image.layer.v1.tar'


# -- OCI layouts ---------------------------------------------------------------------
def _put_blob(layout, data):
    d = hashlib.sha256(data).hexdigest()
    path = os.path.join(layout, 'blobs', 'sha256', d)
    if not os.path.exists(path):
        with open(path, 'wb') as f:
            f.write(data)
    return {'digest': 'sha256:' + d, 'size': len(data)}


def _encode(r, tar, encoding):
    """(blob bytes, media type) of one layer's tar in the given encoding."""
    if encoding == 'tar':
        return tar, LAYER_TAR
    if encoding == 'empty0':
        return b'', LAYER_TAR
    if encoding == 'emptygz':
        return gzip.compress(b'', mtime=0), LAYER_TAR + '+gzip'
    if encoding == 'zstd':
        z = subprocess.run(['zstd', '-q', '-c', '-%d' % r.choice([1, 3, 19])], input=tar,
                           stdout=subprocess.PIPE, check=True).stdout
        return z, LAYER_TAR + '+zstd'
    if encoding == 'gzip':
        buf = io.BytesIO()
        name = r.choice([None, '', 'layer.tar', 'caf\u00e9.tar'])
        with gzip.GzipFile(filename=name, mode='wb', fileobj=buf, mtime=r.choice([0, 1700000000]),
                           compresslevel=r.choice([1, 6, 9])) as g:
            g.write(tar)
        return buf.getvalue(), LAYER_TAR + '+gzip'
    if encoding == 'multigzip':  # one real tar split across 2-4 gzip members
        cuts = sorted(r.sample(range(1, len(tar)), min(len(tar) - 1, r.randint(1, 3))))
        parts = [tar[a:b] for a, b in zip([0] + cuts, cuts + [len(tar)])]
        return b''.join(gzip.compress(p, mtime=0) for p in parts), LAYER_TAR + '+gzip'
    raise ValueError(encoding)


def write_layouts(case, cdir, tag, kinds=('img', 'ref')):
    """Writes cdir/img (case encodings) and cdir/ref (uncompressed), those of `kinds`;
    returns the tars."""
    import random
    r = random.Random(case['seed'] * 7919 + 1)
    tars = []
    for layer in case['layers']:
        if layer['encoding'] in ('empty0', 'emptygz'):
            tars.append(b'')
        else:
            tars.append(tarwriter.archive(layer['entries']))
    diff_ids = ['sha256:' + hashlib.sha256(t).hexdigest() for t in tars]
    config = json.dumps({'architecture': 'amd64', 'os': 'linux',
                         'config': {}, 'rootfs': {'type': 'layers', 'diff_ids': diff_ids},
                         'history': [{'created_by': 'difftest'} for _ in tars]},
                        sort_keys=True).encode()
    for kind in kinds:
        lay = os.path.join(cdir, kind)
        os.makedirs(os.path.join(lay, 'blobs', 'sha256'))
        with open(os.path.join(lay, 'oci-layout'), 'w') as f:
            f.write('{"imageLayoutVersion":"1.0.0"}')
        layers = []
        for t, layer in zip(tars, case['layers']):
            if kind == 'img':
                blob, mt = _encode(r, t, layer['encoding'])
            else:
                blob, mt = t, LAYER_TAR
            layers.append(dict(_put_blob(lay, blob), mediaType=mt))
        cfg = dict(_put_blob(lay, config), mediaType='application/vnd.oci.image.config.v1+json')
        man = json.dumps({'schemaVersion': 2,
                          'mediaType': 'application/vnd.oci.image.manifest.v1+json',
                          'config': cfg, 'layers': layers}, sort_keys=True).encode()
        md = dict(_put_blob(lay, man), mediaType='application/vnd.oci.image.manifest.v1+json',
                  annotations={'org.opencontainers.image.ref.name': tag})
        with open(os.path.join(lay, 'index.json'), 'w') as f:
            json.dump({'schemaVersion': 2, 'manifests': [md]}, f)
    return tars


# -- trees ---------------------------------------------------------------------------
Row = collections.namedtuple('Row', 'type mode uid gid size mtime_ns nlink dev link sha xattrs ino')


def walk(root, skip_xattr_prefix=b'trusted.overlay.'):
    """{relative path (bytes): Row} of a real directory tree (the root excluded)."""
    out = {}
    root = os.fsencode(root)
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            full = os.path.join(dirpath, name)
            rel = os.path.relpath(full, root)
            try:
                st = os.lstat(full)
            except FileNotFoundError:
                # overlayfs lists a whiteout inside a directory that merges nothing
                # below it, and lookup then says it is not there: it is not there.
                continue
            m = st.st_mode
            t = ('d' if stat.S_ISDIR(m) else 'l' if stat.S_ISLNK(m) else 'c' if stat.S_ISCHR(m)
                 else 'b' if stat.S_ISBLK(m) else 'p' if stat.S_ISFIFO(m) else 'f')
            sha = '-'
            if t == 'f':
                with open(full, 'rb') as f:
                    sha = hashlib.sha256(f.read()).hexdigest()
            xs = []
            if t in 'fd':
                for x in os.listxattr(full, follow_symlinks=False):
                    xb = os.fsencode(x)
                    if xb.startswith(skip_xattr_prefix):
                        continue
                    v = os.getxattr(full, x, follow_symlinks=False)
                    xs.append(xb.decode('latin-1') + '=' + v.hex())
            dev = '%d,%d' % (os.major(st.st_rdev), os.minor(st.st_rdev)) if t in 'cb' else '0,0'
            out[rel] = Row(t, m & 0o7777, st.st_uid, st.st_gid, st.st_size if t in 'fl' else 0,
                           st.st_mtime_ns, st.st_nlink,
                           dev, os.readlink(full) if t == 'l' else b'-', sha,
                           ','.join(sorted(xs)) or '-', (st.st_dev, st.st_ino))
    return out


_C_ESCAPES = {b'\\': b'\\', b't': b'\t', b'n': b'\n', b'r': b'\r', b'a': b'\a', b'b': b'\b',
              b'f': b'\f', b'v': b'\v'}


def _unescape(s):
    r"""Undoes the C escapes `imgfs ls --format tsv` writes in names and link targets
    (`\\`, `\t`, `\n`, ..., `\NNN` octal) for bytes below 0x20, DEL and backslash."""
    if b'\\' not in s:
        return s
    out, i = bytearray(), 0
    while i < len(s):
        if s[i:i + 1] != b'\\':
            out += s[i:i + 1]
            i += 1
        elif s[i + 1:i + 2] in _C_ESCAPES:
            out += _C_ESCAPES[s[i + 1:i + 2]]
            i += 2
        else:
            out.append(int(s[i + 1:i + 4], 8))
            i += 4
    return bytes(out)


def from_ls(data):
    """{path: Row} from `imgfs ls -R --format tsv --sha256` (mtime in whole seconds)."""
    out = {}
    for line in data.split(b'\n'):
        if not line:
            continue
        t, mode, uid, gid, size, mtime, nlink, ino, dev, link, sha, xattrs, rel = line.split(b'\t', 12)
        t = t.decode()
        rel = _unescape(rel)
        link = _unescape(link) if t == 'l' else link
        out[rel[2:] if rel.startswith(b'./') else rel] = Row(
            t, int(mode, 8), int(uid), int(gid), int(size) if t in 'fl' else 0,
            int(mtime) * 10**9, int(nlink), dev.decode(), link, sha.decode(),
            xattrs.decode('latin-1'), int(ino))
    return out


def _groups(tree):
    """path -> smallest path sharing its inode (non-directories with nlink > 1)."""
    by = collections.defaultdict(list)
    for p, r in tree.items():
        if r.type != 'd':
            by[r.ino].append(p)
    g = {}
    for ps in by.values():
        if len(ps) > 1:
            for p in ps:
                g[p] = min(ps)
    return g


def _clean(name):
    """docker's rule: lexical clean (filepath.Clean), relative to the root."""
    p = posixpath.normpath(b'/' + name).lstrip(b'/')
    return p if p and p != b'.' else None


def _pax_ns(v):
    neg = v.startswith('-')
    s, _, f = v.lstrip('-').partition('.')
    ns = int(s) * 10**9 + int((f + '0' * 9)[:9] or 0)
    return -ns if neg else ns


class LayerDirs:
    """Directory attributes read from the layers' tar headers (Python's tarfile, an
    independent reader), for directories whose attributes umoci did not take from the
    tar: umoci 0.4.7 does not restore a directory's mtime after it writes into the
    directory (docker's pkg/archive sets directory times after the layer's last entry),
    and it creates implicit parents with MkdirAll (mode and group inherited from a
    setgid parent, mtime now). A directory's attributes are those of the last header
    that lists it in the top-most layer that lists it, unless a whiteout of it or of an
    ancestor, an opaque marker in an ancestor, or an ancestor replaced by a non-directory,
    in a layer in between hides the lower layers."""

    def __init__(self, tars):
        self.tars, self.layers = tars, None

    def _read(self):
        self.layers = []
        for t in self.tars:
            dirs, names, nondirs = {}, set(), set()
            try:
                with tarfile.open(fileobj=io.BytesIO(t), mode='r:') as tf:
                    for m in tf:
                        p = _clean(os.fsencode(m.name))
                        if p is None:
                            continue
                        names.add(p)
                        if not m.isdir():
                            nondirs.add(p)
                        if m.isdir():
                            ns = _pax_ns(m.pax_headers['mtime']) if 'mtime' in m.pax_headers \
                                else int(m.mtime) * 10**9
                            dirs[p] = (m.mode & 0o7777, m.uid, m.gid, ns)
                        else:
                            dirs.pop(p, None)
            except (tarfile.TarError, EOFError):
                pass
            self.layers.append((dirs, names, nondirs))

    def attrs(self, p):
        """(mode, uid, gid, mtime_ns) of directory p, or None when no layer lists it."""
        if self.layers is None:
            self._read()
        parts = p.split(b'/')
        for dirs, names, nondirs in reversed(self.layers):
            if p in dirs:
                return dirs[p]
            # An ancestor this layer replaced with a non-directory took the lower p along.
            if any(b'/'.join(parts[:i]) in nondirs for i in range(1, len(parts))):
                return None
            for i in range(len(parts)):
                if b'/'.join(parts[:i] + [b'.wh.' + parts[i]]) in names:
                    return None
            for i in range(len(parts) - 1):
                if b'/'.join(parts[:i + 1] + [b'.wh..wh..opq']) in names:
                    return None
        return None

    def listed(self, p):
        """True when some layer lists p as a directory."""
        if self.layers is None:
            self._read()
        return any(p in dirs for dirs, _, _ in self.layers)

    def whiteout_parent(self, p):
        """True when directory p exists only as the parent of a whiteout or opaque marker
        in some layer, no layer above hiding it. docker's ApplyLayer (moby pkg/archive)
        creates the parent of every entry, whiteouts included, before it handles the
        whiteout; overlayfs shows the directory the layer holds it in; umoci 0.4.7
        creates no parent for a whiteout."""
        if self.layers is None:
            self._read()
        parts = p.split(b'/')
        anc = [b'/'.join(parts[:i + 1]) for i in range(len(parts))]
        found = False
        for dirs, names, nondirs in self.layers:
            if any(q in nondirs for q in anc):
                found = False
            for i in range(len(parts)):
                if b'/'.join(parts[:i] + [b'.wh.' + parts[i]]) in names and anc[i] not in dirs:
                    found = False
            if any(posixpath.dirname(n).startswith(p) and posixpath.basename(n).startswith(b'.wh.')
                   and (posixpath.dirname(n) == p or posixpath.dirname(n).startswith(p + b'/'))
                   for n in names):
                found = True
        return found


def compare(want, got, seconds_only, implicit, layer_dirs, notes, implicit_marker):
    """[(class, path, detail)] of every difference between two trees."""
    diffs = []
    gw, gg = _groups(want), _groups(got)
    for p in sorted(set(want) | set(got)):
        if p not in got:
            diffs.append(('missing', p, '%s' % (want[p].type,)))
            continue
        w, g = want.get(p), got[p]
        if w is None and g.type == 'd' and layer_dirs.whiteout_parent(p):
            # umoci makes no parent for a whiteout; docker and overlayfs do.
            notes['verdict:whiteout-parent'] += 1
            w = g._replace(mtime_ns=implicit_marker, xattrs='-')
        if w is None:
            diffs.append(('extra', p, '%s' % (got[p].type,)))
            continue
        if w.type != g.type:
            diffs.append(('type', p, '%s != %s' % (w.type, g.type)))
            continue

        def d(cls, a, b):
            if a != b:
                diffs.append((cls, p, '%r != %r' % (a, b)))
        wm = w.mtime_ns
        if w.type == 'd' and not implicit(wm) and layer_dirs.listed(p) and \
                layer_dirs.attrs(p) is None:
            # A lower directory that a layer whites out (or hides under an opaque
            # parent) while writing below it: umoci keeps the lower directory's
            # attributes; the OCI rule (the whiteout applies first) and overlayfs show
            # only the upper layer's directory, implicit (docs/layer-rules.md).
            notes['verdict:hidden-lower-dir'] += 1
            w = w._replace(mode=0o755, uid=0, gid=0, xattrs='-')
            wm = 0
        elif w.type == 'd' and implicit(wm):
            # The reference tool wrote this directory's mtime itself: learn the tar's
            # attributes from GNU tar, or imgfs's rule for implicit parents
            # (mode 0755, root, mtime 0) when no layer lists it.
            a = layer_dirs.attrs(p)
            notes['verdict:dir-attrs-from-gnu-tar' if a else 'verdict:implicit-parent'] += 1
            # (An implicit directory has no xattrs either: a lower one's are hidden.)
            w = w._replace(mode=a[0], uid=a[1], gid=a[2]) if a else \
                w._replace(mode=0o755, uid=0, gid=0, xattrs='-')
            wm = a[3] if a else 0
        if w.type != 'l':
            d('mode', w.mode, g.mode)
        d('owner', (w.uid, w.gid), (g.uid, g.gid))
        d('size', w.size, g.size)
        if seconds_only:
            d('mtime', wm // 10**9 * 10**9, g.mtime_ns)
        else:
            d('mtime', wm, g.mtime_ns)
        if w.type != 'd':
            d('nlink', w.nlink, g.nlink)
        d('dev', w.dev, g.dev)
        d('link', w.link, g.link)
        d('content', w.sha, g.sha)
        d('xattrs', w.xattrs, g.xattrs)
        d('linkgroup', gw.get(p, '-'), gg.get(p, '-'))
    return diffs


# -- references ----------------------------------------------------------------------
def umoci_ref(cdir, tag):
    b = os.path.join(cdir, 'bundle')
    p = subprocess.run(['umoci', 'unpack', '--image', os.path.join(cdir, 'ref') + ':' + tag, b],
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    if p.returncode != 0:
        return None, p.stderr.decode(errors='replace').strip().splitlines()[-1:]
    return walk(os.path.join(b, 'rootfs')), None


def overlay_ref(cdir, tars):
    """GNU tar per layer, whiteouts converted to overlay's form, mounted read-only."""
    dirs = []
    for i, t in enumerate(tars):
        d = os.path.join(cdir, 'ovl', 'L%d' % i)
        os.makedirs(d)
        p = subprocess.run(['tar', '-x', '-C', d, '--xattrs', "--xattrs-include=*",
                            '--numeric-owner', '-p'], input=t, stderr=subprocess.PIPE)
        if p.returncode != 0:
            return None, [p.stderr.decode(errors='replace').strip()]
        # GNU tar keeps a setgid bit a directory inherits from its parent even when the
        # header's mode has none; docker's chmod(2) of the header mode does not.
        with tarfile.open(fileobj=io.BytesIO(t), mode='r:') as tf:
            for m in tf:
                q = _clean(os.fsencode(m.name))
                full = os.path.join(d.encode(), q) if q else None
                if m.isdir() and full and os.path.isdir(full) and not os.path.islink(full):
                    os.chmod(full, m.mode & 0o7777)
        for dp, dn, fn in os.walk(d.encode()):
            for n in fn + dn:
                if not n.startswith(b'.wh.'):
                    continue
                full = os.path.join(dp, n)
                if n == b'.wh..wh..opq':
                    os.setxattr(dp, 'trusted.overlay.opaque', b'y')
                    os.unlink(full)
                else:
                    shutil.rmtree(full) if os.path.isdir(full) and not os.path.islink(full) else os.unlink(full)
                    target = os.path.join(dp, n[4:])
                    if os.path.lexists(target):
                        continue  # the layer re-adds it: overlay cannot hold both
                    os.mknod(target, 0o600 | stat.S_IFCHR, 0)
        dirs.append(d)
    empty = os.path.join(cdir, 'ovl', 'empty')
    os.makedirs(empty)
    mnt = os.path.join(cdir, 'ovl', 'mnt')
    os.makedirs(mnt)
    lower = ':'.join(reversed([empty] + dirs))
    subprocess.run(['mount', '-t', 'overlay', 'overlay', '-o', 'ro,lowerdir=' + lower, mnt], check=True)
    try:
        return walk(mnt), None
    finally:
        subprocess.run(['umount', mnt], check=True)


# -- driver --------------------------------------------------------------------------
def run(args):
    start = time.time()
    enabled = args.classes.split(',')
    a, b = (int(x) for x in args.seeds.split(':'))
    imgfs = os.path.abspath(args.imgfs)
    counts = collections.Counter()
    notes = collections.Counter()
    by_classes = collections.Counter()
    drawn = collections.Counter()
    features = collections.Counter()
    failing = 0
    cases = 0
    for lo in range(a, b, args.batch):
        if args.deadline and time.time() - start > args.deadline:
            print('deadline: stopped before seed %d' % lo)
            break
        seeds = range(lo, min(b, lo + args.batch))
        bdir = os.path.join(args.work, 'batch%d' % lo)
        shutil.rmtree(bdir, ignore_errors=True)
        os.makedirs(bdir)
        env = dict(os.environ, IMGFS_ROOT=os.path.join(bdir, 'store'), TZ='UTC')
        refs, infos, loaded = {}, {}, {}
        t0 = time.time_ns() - 120 * 10**9
        implicit = lambda ns, t0=t0: t0 <= ns <= t0 + 4 * 3600 * 10**9
        layer_dirs = {}
        def prepare(s):
            case = gen.generate(s, enabled)
            tag = 'c%d' % s
            cdir = os.path.join(bdir, tag)
            tars = write_layouts(case, cdir, tag)
            layer_dirs[s] = LayerDirs(tars)
            if case['ref'] == 'overlay':
                refs[s] = overlay_ref(cdir, tars)
            else:
                refs[s] = umoci_ref(cdir, tag)
            infos[s] = case

        with concurrent.futures.ThreadPoolExecutor(args.jobs) as ex:
            list(ex.map(prepare, seeds))
        for s in seeds:
            tag = 'c%d' % s
            cdir = os.path.join(bdir, tag)
            p = subprocess.run([imgfs, 'load', '-q', '--name', 'diff', os.path.join(cdir, 'img')],
                               env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            loaded[s] = (p.returncode == 0, p.stderr.decode(errors='replace').strip())
        mnt = None
        if not args.no_mount:
            mnt = os.path.join(bdir, 'mnt')
            os.makedirs(mnt)
            subprocess.run([imgfs, 'mount', mnt], env=env, check=True)
            deadline = time.time() + 20
            while not os.path.isdir(os.path.join(mnt, 'diff')) and time.time() < deadline:
                time.sleep(0.05)
        try:
            for s in seeds:
                cases += 1
                case = infos[s]
                tag = 'c%d' % s
                for c in case['classes']:
                    drawn[c] += 1
                for c in case['features']:
                    features[c] += 1
                ref, ref_err = refs[s]
                ok, err = loaded[s]
                diffs = []
                if ref is None or not ok:
                    if (ref is None) != (not ok):
                        diffs.append(('load', b'-', 'reference: %s; imgfs: %s' % (
                            ref_err or 'loaded', err or 'loaded')))
                    else:
                        notes['both-refuse'] += 1
                        if args.verbose:
                            print('BOTH-REFUSE seed=%d reference: %s; imgfs: %s' % (s, ref_err, err))
                else:
                    p = subprocess.run([imgfs, 'ls', '-R', '--format', 'tsv', '--sha256',
                                        'diff:' + tag, '/'], env=env, stdout=subprocess.PIPE,
                                       stderr=subprocess.PIPE)
                    if p.returncode != 0:
                        diffs.append(('ls-error', b'-', p.stderr.decode(errors='replace').strip()))
                    else:
                        diffs += [('ls:' + c, q, x) for c, q, x in
                                  compare(ref, from_ls(p.stdout), True, implicit,
                                          layer_dirs[s], notes, t0 + 1)]
                    if mnt:
                        try:
                            got = walk(os.path.join(mnt, 'diff', tag))
                            diffs += [('mount:' + c, q, x) for c, q, x in
                                      compare(ref, got, False, implicit,
                                              layer_dirs[s], notes, t0 + 1)]
                        except OSError as e:
                            diffs.append(('mount-error', b'-', str(e)))
                if diffs:
                    failing += 1
                    for c, q, x in diffs[:args.max_lines]:
                        print('DIFF seed=%d ref=%s classes=%s %s %s: %s' % (
                            s, case['ref'], '+'.join(case['classes']), c,
                            q.decode('utf-8', 'backslashreplace'), x))
                    if len(diffs) > args.max_lines:
                        print('DIFF seed=%d ... %d more' % (s, len(diffs) - args.max_lines))
                    for c in {c for c, _, _ in diffs}:
                        counts[c] += 1
                    by_classes['+'.join(x for x in case['classes'] if x != 'base') or 'base'] += 1
                sys.stdout.flush()
        finally:
            if mnt:
                subprocess.run(['fusermount3', '-u', '-z', mnt])
        if not args.keep:
            shutil.rmtree(bdir, ignore_errors=True)
    secs = time.time() - start
    print('coverage (cases drawing from each rule): %s' % json.dumps(dict(sorted(features.items()))))
    print('summary: cases %d, seconds %.1f, failing cases %d, differences by attribute (cases): %s; '
          'failing cases by case classes: %s; cases drawing from each class: %s; '
          'reference fallbacks (entries): %s' % (
              cases, secs, failing, json.dumps(dict(sorted(counts.items()))),
              json.dumps(dict(sorted(by_classes.items()))), json.dumps(dict(sorted(drawn.items()))),
              json.dumps(dict(sorted(notes.items())))))
    return 1 if failing else 0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--imgfs')
    ap.add_argument('--work')
    ap.add_argument('--seeds', help='A:B, half-open')
    ap.add_argument('--print-ci-classes', action='store_true',
                    help='print the classes CI runs (all but gen.KNOWN_DIFFERENCES and gen.OPT_IN)')
    ap.add_argument('--classes', default=','.join(gen.ALL_CLASSES))
    ap.add_argument('--batch', type=int, default=250)
    ap.add_argument('--no-mount', action='store_true')
    ap.add_argument('--keep', action='store_true')
    ap.add_argument('--deadline', type=float, default=0, help='start no batch after SECONDS')
    ap.add_argument('--jobs', type=int, default=2, help='cases prepared in parallel')
    ap.add_argument('--verbose', action='store_true', help='also print cases both refuse')
    ap.add_argument('--max-lines', type=int, default=8)
    ap.add_argument('--dump', action='store_true', help='print the cases, write nothing')
    args = ap.parse_args()
    if args.print_ci_classes:
        print(','.join(c for c in gen.ALL_CLASSES
                       if c not in gen.KNOWN_DIFFERENCES and c not in gen.OPT_IN))
        return 0
    if not args.seeds or (not args.dump and not (args.imgfs and args.work)):
        ap.error('--imgfs, --work and --seeds are required')
    if args.dump:
        a, b = (int(x) for x in args.seeds.split(':'))
        for s in range(a, b):
            c = gen.generate(s, args.classes.split(','))
            print('seed', s, 'ref', c['ref'], 'classes', c['classes'])
            for i, l in enumerate(c['layers']):
                print('  layer', i, l['encoding'])
                for e in l['entries']:
                    print('    %s %r%s' % (e['type'] if e['type'] != '\0' else '0(old)', e['name'],
                                           ' -> %r' % e['link'] if e.get('link') else ''))
        return 0
    os.makedirs(args.work, exist_ok=True)
    return run(args)


if __name__ == '__main__':
    sys.exit(main())
