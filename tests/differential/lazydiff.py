#!/usr/bin/python3
"""Differential test of lazy pulls: random layer stacks as zstd:chunked, pulled lazily,
against the same layers loaded whole.

  lazydiff.py --imgfs PATH --work DIR --seeds A:B [--classes c1,c2]

For each seed in [A, B): gen.generate() draws a layer stack (the cases of difftest.py,
which compares `imgfs load` of them with umoci and the kernel's overlayfs), and by
seed % 3 its uncompressed layers become
  0  zstd:chunked made by skopeo (containers/storage's writer; Debian 12's writes no
     tar-split: imgfs reads the tar headers from the blob),
  1  the same with a tar-split added (tests/zstd_tarsplit.py),
  2  eStargz (tests/estargz_writer.py, 64 KiB chunks; it adds a landmark and the TOC
     entry to the tar, so this image is a new one with new diff_ids).
The image is pushed to a docker-registry on loopback and pulled with `imgfs pull
--lazy` into one store; the uncompressed layout (with the eStargz image, for 2) is
loaded with `imgfs load` into another. Then:

  lazy:      `imgfs ls -R --format tsv --sha256` of the lazy image (every file read
             through the lazy path: ranges fetched, chunks checked) equals the loaded
             image's, line for line (types, modes, owners, sizes, mtimes, link counts,
             inode numbers of hard links, devices, targets, xattrs, content digests);
  complete:  after a plain `imgfs pull` (completion), the same, and `imgfs verify` clean.

Before completion, an eStargz image's names and symlink targets that are not UTF-8 are
the TOC's (U+FFFD for each bad byte; documented in index/lazy_virtual.h): such a
listing is compared in that form and counted. A case that `imgfs load` refuses must be refused by the lazy pull too; a case pulled
in full despite --lazy (its one stderr line) is counted (`pulled-in-full`). A case skopeo refuses to convert is counted, not failed;
so is a case with a 0-byte layer (skopeo 1.9 hangs converting one), and an odd tar that
Python's tarfile cannot read gets no tar-split.
Prints DIFF lines and one summary line; exit status 1 when any case differs.
"""
import argparse
import codecs
import collections
import json
import os
import shutil
import socket
import subprocess
import sys
import tarfile
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.dirname(HERE))
import difftest  # noqa: E402
import gen  # noqa: E402
import zstd_tarsplit  # noqa: E402


def free_port():
    s = socket.socket()
    s.bind(('127.0.0.1', 0))
    port = s.getsockname()[1]
    s.close()
    return port


def start_registry(work):
    port = free_port()
    cfg = os.path.join(work, 'reg.yml')
    with open(cfg, 'w') as f:
        f.write('version: 0.1\nlog: {level: error}\nstorage: {filesystem: {rootdirectory: %s}}\n'
                'http: {addr: 127.0.0.1:%d}\n' % (os.path.join(work, 'reg'), port))
    log = open(os.path.join(work, 'reg.log'), 'w')
    p = subprocess.Popen(['docker-registry', 'serve', cfg], stdout=log, stderr=log)
    deadline = time.time() + 20
    while True:
        try:
            urllib.request.urlopen('http://127.0.0.1:%d/v2/' % port, timeout=1)
            return p, port
        except OSError:
            if time.time() > deadline or p.poll() is not None:
                p.kill()
                raise RuntimeError('docker-registry did not start')
            time.sleep(0.1)


def as_json(listing):
    """An `ls --format tsv` listing with every byte that is not UTF-8 as U+FFFD (what
    Go's JSON encoder makes of it) and symlink sizes left out (they follow the target)."""
    out = []
    for line in listing.split(b'\n'):
        f = line.decode('utf-8', 'lazydiff-per-byte').split('\t')
        if f[0] == 'l' and len(f) > 4:
            f[4] = '-'
        out.append('\t'.join(f))
    return out


codecs.register_error('lazydiff-per-byte', lambda e: ('\ufffd' * (e.end - e.start), e.end))


def sh(args, env=None, timeout=300):
    try:
        p = subprocess.run(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           timeout=timeout)
    except subprocess.TimeoutExpired:
        return 124, b'', '%s: no answer in %d s' % (args[0], timeout)
    return p.returncode, p.stdout, p.stderr.decode(errors='replace').strip()


MODES = ('zstd:chunked', 'zstd:chunked+tar-split', 'estargz')
ESTARGZ = os.path.join(os.path.dirname(HERE), 'estargz_writer.py')


def zstd_chunked(s, cdir, tag, counts, verbose):
    """skopeo's zstd:chunked copy of cdir/ref (cdir/z), with a tar-split (cdir/zt) for
    the tar-split mode; the layout's path, or None when a tool refused the case."""
    rc, _, err = sh(['skopeo', 'copy', '-q', '--dest-compress-format', 'zstd:chunked',
                     '--dest-compress', 'oci:%s/ref:%s' % (cdir, tag),
                     'oci:%s/z:%s' % (cdir, tag)], timeout=60)
    if rc != 0:
        counts['skopeo-refused'] += 1
        if verbose:
            print('SKOPEO-REFUSED seed=%d: %s' % (s, err.splitlines()[-1:]))
        return None
    layout = os.path.join(cdir, 'z')
    if MODES[s % 3] == 'zstd:chunked+tar-split':
        try:
            zstd_tarsplit.main(['', layout, os.path.join(cdir, 'zt'), tag])
            layout = os.path.join(cdir, 'zt')
            counts['tar-split'] += 1
        except tarfile.TarError as e:  # Python's tarfile refuses some odd tars: no tar-split
            counts['tar-split-tool-refused'] += 1
            if verbose:
                print('TARSPLIT-REFUSED seed=%d: %r' % (s, e))
    return layout


def run(args):
    start = time.time()
    a, b = (int(x) for x in args.seeds.split(':'))
    enabled = args.classes.split(',')
    imgfs = os.path.abspath(args.imgfs)
    work = args.work
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    reg, port = start_registry(work)
    counts = collections.Counter()
    failing = 0
    try:
        env_load = dict(os.environ, IMGFS_ROOT=os.path.join(work, 'store-load'), TZ='UTC')
        for s in range(a, b):
            # a store per case: a layer marked broken stays so, and verify would name it
            # in every later case
            lazy_root = os.path.join(work, 'store-lazy-%d' % s)
            env_lazy = dict(os.environ, IMGFS_ROOT=lazy_root, TZ='UTC')
            case = gen.generate(s, enabled)
            tag = 'c%d' % s
            cdir = os.path.join(work, tag)
            tars = difftest.write_layouts(case, cdir, tag, kinds=('ref',))  # no encodings
            counts['cases'] += 1
            mode = MODES[s % 3]
            name = tag
            if mode == 'estargz':
                # tests/estargz_writer.py (new diff_ids: a landmark and the TOC entry are
                # added): both stores get the converted image.
                name = tag + '-esgz'
                rc, _, err = sh(['/usr/bin/python3', ESTARGZ, 'convert-layout',
                                 os.path.join(cdir, 'ref'), tag, name, '--chunk-size', '65536'])
                if rc != 0:
                    counts['estargz-writer-refused'] += 1
                    if args.verbose:
                        print('ESTARGZ-REFUSED seed=%d: %s' % (s, err.splitlines()[-1:]))
                    shutil.rmtree(cdir, ignore_errors=True)
                    continue
                layout = os.path.join(cdir, 'ref')
                counts['estargz'] += 1
            elif any(len(t) == 0 for t in tars):
                # skopeo 1.9's zstd:chunked writer never returns on a 0-byte layer
                counts['skipped-empty-layer'] += 1
                shutil.rmtree(cdir, ignore_errors=True)
                continue
            else:
                layout = zstd_chunked(s, cdir, tag, counts, args.verbose)
                if layout is None:
                    shutil.rmtree(cdir, ignore_errors=True)
                    continue
            ref = '127.0.0.1:%d/diff/lazy:%s' % (port, name)
            rc, _, err = sh(['skopeo', 'copy', '-q', '--dest-tls-verify=false',
                             'oci:%s:%s' % (layout, name), 'docker://' + ref])
            if rc != 0:
                counts['push-failed'] += 1
                print('DIFF seed=%d push: %s' % (s, err))
                failing += 1
                continue
            diffs = []
            lrc, _, lerr = sh([imgfs, 'load', '-q', '--name', 'diff', os.path.join(cdir, 'ref')],
                              env_load)
            prc, _, perr = sh([imgfs, 'pull', '-q', '--lazy', ref], env_lazy)
            if lrc != 0:
                if prc == 0:
                    diffs.append(('refuse', 'load refused (%s), pull --lazy did not' % lerr))
                else:
                    counts['both-refuse'] += 1
            elif prc != 0:
                diffs.append(('pull-lazy', perr))
            else:
                counts['compared'] += 1
                if perr:
                    counts['pulled-in-full'] += 1  # one stderr line: not lazy
                want = sh([imgfs, 'ls', '-R', '--format', 'tsv', '--sha256', 'diff:' + name, '/'],
                          env_load)
                for phase in ('lazy', 'complete'):
                    if phase == 'complete':
                        rc, _, err = sh([imgfs, 'pull', '-q', ref], env_lazy)
                        if rc != 0:
                            diffs.append(('complete', err))
                            break
                    got = sh([imgfs, 'ls', '-R', '--format', 'tsv', '--sha256', ref, '/'], env_lazy)
                    if got[0] != 0:
                        diffs.append((phase, 'ls: ' + got[2]))
                    elif (got[1] != want[1] and mode == 'estargz' and phase == 'lazy' and
                          as_json(got[1]) == as_json(want[1])):
                        # documented (index/lazy_virtual.h): before completion an eStargz
                        # layer's names are the TOC's JSON strings
                        counts['estargz-json-names-before-completion'] += 1
                    elif got[1] != want[1]:
                        w = want[1].decode(errors='backslashreplace').splitlines()
                        g = got[1].decode(errors='backslashreplace').splitlines()
                        ws, gs = set(w), set(g)
                        extra = [x for x in g if x not in ws][:3]
                        missing = [x for x in w if x not in gs][:3]
                        diffs.append((phase, 'listing differs: lazy has %r, load has %r' % (extra, missing)))
                rc, _, err = sh([imgfs, 'verify'], env_lazy)
                if rc != 0:
                    diffs.append(('verify', err))
            if diffs:
                failing += 1
                for c, x in diffs[:args.max_lines]:
                    print('DIFF seed=%d classes=%s format=%s %s: %s' % (
                        s, '+'.join(case['classes']), mode, c, x))
                for c in {c for c, _ in diffs}:
                    counts['diff-' + c] += 1
            sys.stdout.flush()
            if not args.keep:
                shutil.rmtree(cdir, ignore_errors=True)
                shutil.rmtree(lazy_root, ignore_errors=True)
    finally:
        reg.terminate()
        reg.wait()
    print('summary: cases %d, seconds %.1f, failing cases %d, counts %s' % (
        counts['cases'], time.time() - start, failing, json.dumps(dict(sorted(counts.items())))))
    return 1 if failing else 0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--imgfs', required=True)
    ap.add_argument('--work', required=True)
    ap.add_argument('--seeds', required=True, help='A:B, half-open')
    ap.add_argument('--classes', default=','.join(
        c for c in gen.ALL_CLASSES if c not in gen.KNOWN_DIFFERENCES and c not in gen.OPT_IN))
    ap.add_argument('--keep', action='store_true')
    ap.add_argument('--verbose', action='store_true')
    ap.add_argument('--max-lines', type=int, default=4)
    return run(ap.parse_args())


if __name__ == '__main__':
    sys.exit(main())
