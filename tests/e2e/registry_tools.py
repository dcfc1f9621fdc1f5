#!/usr/bin/env python3
"""Registry helpers for the pull tests (loopback only).

  push-layout BASE REPO TAG LAYOUT LAYOUT_TAG [--arch A [--variant V]] [--docker] [--auth U:P]
              [--foreign 'URLBASE|DIR']
        push one image of an OCI layout through the registry API; prints the
        manifest's "digest size mediaType". --arch rewrites the config's architecture
        (a distinct image); --docker rewrites media types to Docker schema 2;
        --foreign makes the top layer a foreign layer served from URLBASE (its blob is
        written to DIR, not pushed).
  push-index BASE REPO TAG DIGEST:SIZE:MEDIATYPE:OS/ARCH[/VARIANT]... [--docker] [--auth U:P]
        (an entry for unknown/unknown is annotated as a Docker attestation manifest)
  push-raw BASE REPO TAG MEDIATYPE FILE [--auth U:P]
  proxy PORT UPSTREAM_PORT MODE_FILE LOG_FILE
        a faulty front: forwards to 127.0.0.1:UPSTREAM_PORT; for blob GETs applies the
        mode read from MODE_FILE at each request: none | flip (one byte, always) |
        cut (half the body then close, once per blob) | 500 (once per blob) |
        429 (once per blob, Retry-After: 1) | trickle (slowly, always) |
        flip-manifest (one byte of every manifest)
        Extensions (tests/e2e/registry_client.sh); a mode may carry an argument after a
        space ("redirect http://127.0.0.2:PORT"). Every log line ends with auth=-|Basic|Bearer:
        manifest-500 (each manifest GET, once per path) | manifest-500-always |
        500-always (every blob GET) | redirect URLBASE (blob GETs: 307 to URLBASE + path) |
        redirect302 URLBASE | signed URLBASE (blob GETs: 307 to URLBASE + path + ?sig=N; the
        first signed URL of each blob answers 403 "Request has expired", later ones serve
        it) | range200 (cut each blob once, then answer a Range request
        with 200 and the whole body) | expire (the first Authorization seen on a blob GET
        and every later request bearing it get 401 with the upstream's fresh challenge) |
        schema1 | schema1-json (manifest GETs answered with a Docker schema-1 manifest,
        v1+prettyjws or v1+json)
        norange (blob GETs: the Range header is dropped and the whole body answered 200) |
        singlerange (blob GETs: a multi-range Range header is cut to its last range, so
        the answer is a single 206 that does not start at the first range asked) |
        lazy-config-bad DIGEST (that blob, the config, 0.5 s late with a byte flipped;
        multi-range GETs stall 20 s) | lazy-toc-bad (the first single-range blob GET, a
        layer's TOC, 1 s late with a byte flipped; once per ARG, if any) | lazy-toc-bad-of
        DIGEST [KEY] (the first Range GET of that blob, its TOC, with a byte flipped; once
        per DIGEST KEY) |
        lazy-config-slow DIGEST [SECONDS] (that blob 1 s or SECONDS late, unchanged)
          (tests/e2e/lazy.sh, pull_faults.sh)
        Push modes (tests/e2e/push_hostile.sh) relay pushes with upstream Locations
        rewritten to the proxy, then: push (nothing else) | loc URL (an upload POST's
        Location becomes URL) | loc-huge N (a Location of N bytes) | headers-huge (2 MB of
        extra headers on the upload POST's answer) | digest-wrong (the manifest PUT answers
        a wrong Docker-Content-Digest) | range-back (a PATCH answers Range: 0-9) | put-202
        (the final upload PUT answers 202 with a Location, forever) | redirect-loop (upload
        PATCH/PUT answered 307 to itself) | redirect-to URLBASE (upload PUT answered 307 to
        URLBASE + path) | reset-put (the final upload PUT's connection is closed unanswered) |
        err-escape (the upload POST answers 400 with terminal escapes in its body)
        Every blob body sent in modes none, flip and norange is logged as "sent BYTES status=S PATH".
        Bodies no mode changes are passed on as they arrive (others are held whole);
        TCP_NODELAY is set, as Go's net/http does.
        PROXY_BIND=ADDR binds another loopback address (default 127.0.0.1).
        PROXY_CONNS=1 logs "connect" for each TCP connection accepted.
        PROXY_UA=1 ends request, "sent" and "done" lines with ua=AGENT (before t=).
  token-server PORT KEY CERT
        a Bearer token service for docker-registry's token auth (RS256 JWT with x5c)
        TOKEN_USER=U:P requires those credentials; TOKEN_LOG=FILE logs each request
        ("token auth=-|Basic scope=..."); TOKEN_MODE_FILE=FILE: 500-once | 500-always;
        TOKEN_TLS_CERT/TOKEN_TLS_KEY serve HTTPS. TOKEN_REFRESH=T: POST with
        grant_type=refresh_token and refresh_token=T (OAuth2) gives an access_token; the log
        line is "refresh ok|refused scope=...".
"""
import base64
import hashlib
import http.client
import http.server
import json
import os
import socket
import socketserver
import subprocess
import sys
import threading
import time
import urllib.request

OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json'
OCI_INDEX = 'application/vnd.oci.image.index.v1+json'
DOCKER_MANIFEST = 'application/vnd.docker.distribution.manifest.v2+json'
DOCKER_LIST = 'application/vnd.docker.distribution.manifest.list.v2+json'
DOCKER_CONFIG = 'application/vnd.docker.container.image.v1+json'
TO_DOCKER = {
    'application/vnd.oci.image.layer.v1.tar+gzip': 'application/vnd.docker.image.rootfs.diff.tar.gzip',
    'application/vnd.oci.image.layer.v1.tar': 'application/vnd.docker.image.rootfs.diff.tar',
    'application/vnd.oci.image.config.v1+json': DOCKER_CONFIG,
}


def args_opt(args, name, default=None):
    if name in args:
        i = args.index(name)
        v = args[i + 1]
        del args[i:i + 2]
        return v
    return default


def args_flag(args, name):
    if name in args:
        args.remove(name)
        return True
    return False


class Pusher:
    def __init__(self, base, repo, auth):
        self.base, self.repo = base.rstrip('/'), repo
        self.auth = 'Basic ' + base64.b64encode(auth.encode()).decode() if auth else None

    def req(self, method, url, data=None, headers=None):
        if not url.startswith('http'):
            url = self.base + url
        r = urllib.request.Request(url, data=data, method=method, headers=dict(headers or {}))
        if self.auth:
            r.add_header('Authorization', self.auth)
        try:
            return urllib.request.urlopen(r)
        except urllib.error.HTTPError as e:
            if method == 'HEAD' and e.code == 404:
                return None
            raise SystemExit(f'{method} {url}: {e.code} {e.read()[:300]!r}')

    def blob(self, data):
        d = 'sha256:' + hashlib.sha256(data).hexdigest()
        if self.req('HEAD', f'/v2/{self.repo}/blobs/{d}') is not None:
            return d
        loc = self.req('POST', f'/v2/{self.repo}/blobs/uploads/').headers['Location']
        sep = '&' if '?' in loc else '?'
        self.req('PUT', f'{loc}{sep}digest={d}', data, {'Content-Type': 'application/octet-stream'})
        return d

    def manifest(self, tag, data, media_type):
        self.req('PUT', f'/v2/{self.repo}/manifests/{tag}', data, {'Content-Type': media_type})
        return 'sha256:' + hashlib.sha256(data).hexdigest()


def push_layout(args):
    auth = args_opt(args, '--auth')
    arch = args_opt(args, '--arch')
    variant = args_opt(args, '--variant')  # the config's variant (with --arch)
    foreign = args_opt(args, '--foreign')  # URLBASE:DIR: the top layer becomes foreign
    docker = args_flag(args, '--docker')
    base, repo, tag, layout, ltag = args
    p = Pusher(base, repo, auth)
    idx = json.load(open(os.path.join(layout, 'index.json')))
    desc = [m for m in idx['manifests'] if m.get('annotations', {}).get('org.opencontainers.image.ref.name') == ltag][0]
    blob = lambda d: open(os.path.join(layout, 'blobs', *d.split(':')), 'rb').read()
    m = json.loads(blob(desc['digest']))
    cfg = blob(m['config']['digest'])
    if arch:
        c = json.loads(cfg)
        c['architecture'] = arch
        if variant:
            c['variant'] = variant
        cfg = json.dumps(c).encode()
    m['config']['digest'] = p.blob(cfg)
    m['config']['size'] = len(cfg)
    for l in m['layers'][:-1] if foreign else m['layers']:
        p.blob(blob(l['digest']))
    if foreign:
        url_base, out_dir = foreign.split('|')
        top = m['layers'][-1]
        open(os.path.join(out_dir, top['digest']), 'wb').write(blob(top['digest']))
        top['mediaType'] = 'application/vnd.docker.image.rootfs.foreign.diff.tar.gzip'
        top['urls'] = [url_base.rstrip('/') + '/' + top['digest']]
    if docker:
        m['mediaType'] = DOCKER_MANIFEST
        m['config']['mediaType'] = DOCKER_CONFIG
        for l in m['layers']:
            l['mediaType'] = TO_DOCKER.get(l['mediaType'], l['mediaType'])
    else:
        m['mediaType'] = OCI_MANIFEST
    data = json.dumps(m).encode()
    d = p.manifest(tag, data, m['mediaType'])
    print(d, len(data), m['mediaType'])


def push_index(args):
    auth = args_opt(args, '--auth')
    docker = args_flag(args, '--docker')
    base, repo, tag, *entries = args
    p = Pusher(base, repo, auth)
    ms = []
    for e in entries:
        dg, hx, size, mt, plat = e.split(':', 4)
        os_, arch = plat.split('/')[:2]
        ms.append({'mediaType': mt, 'digest': dg + ':' + hx, 'size': int(size),
                   'platform': {'os': os_, 'architecture': arch}})
        if len(plat.split('/')) > 2:
            ms[-1]['platform']['variant'] = plat.split('/')[2]
        if plat == 'unknown/unknown':
            ms[-1]['annotations'] = {'vnd.docker.reference.type': 'attestation-manifest',
                                     'vnd.docker.reference.digest': ms[0]['digest'] if ms[:-1] else dg + ':' + hx}
    doc = {'schemaVersion': 2, 'mediaType': DOCKER_LIST if docker else OCI_INDEX, 'manifests': ms}
    data = json.dumps(doc).encode()
    print(p.manifest(tag, data, doc['mediaType']), len(data), doc['mediaType'])


def push_raw(args):
    auth = args_opt(args, '--auth')
    base, repo, tag, mt, f = args
    print(Pusher(base, repo, auth).manifest(tag, open(f, 'rb').read(), mt))


def proxy(args):
    port, upstream, mode_file, log_file = int(args[0]), int(args[1]), args[2], args[3]
    faulted = set()
    expired = set()
    signed, expired_urls = [0], set()  # mode signed: signatures handed out, blobs expired once
    lock = threading.Lock()

    # PROXY_TIMES=1 ends every log line with t=UNIX_TIME (for ordering and overlap);
    # a trickled blob logs "done PATH" once its whole body was sent.
    def log(line):
        if os.environ.get('PROXY_TIMES'):
            line += f' t={time.time():.6f}'
        with lock, open(log_file, 'a') as f:
            f.write(line + '\n')

    class H(http.server.BaseHTTPRequestHandler):
        protocol_version = 'HTTP/1.1'

        def log_message(self, *a):
            pass

        def setup(self):
            super().setup()
            # No Nagle (as Go's net/http): a body written after its headers would wait
            # for the client's delayed ACK, 40 ms a request.
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if os.environ.get('PROXY_CONNS'):
                log(f'connect {self.client_address[1]}')

        def handle_one(self):
            mode = open(mode_file).read().strip() if os.path.exists(mode_file) else 'none'
            mode, _, arg = mode.partition(' ')
            is_blob = self.command == 'GET' and '/blobs/sha256:' in self.path
            is_manifest = self.command == 'GET' and '/manifests/' in self.path
            key = (mode, self.path)  # each mode faults each blob once, whatever ran before
            auth = self.headers.get('Authorization', '')
            # PROXY_UA=1: " ua=AGENT" after auth (and after a trickled blob's "done PATH"),
            # to tell requests of one client apart (lazy_complete.sh).
            ua = f' ua={self.headers.get("User-Agent", "-").split(" ")[0]}' if os.environ.get('PROXY_UA') else ''
            log(f'{self.command} {self.path} range={self.headers.get("Range", "-")} mode={mode} '
                f'auth={auth.split(" ")[0] if auth else "-"}{ua}')
            if self.extension(mode, arg, is_blob, is_manifest, key, auth):
                return
            if self.push_mode(mode, arg):
                return
            once = False
            with lock:
                if is_blob and mode in ('cut', '500', '429') and key not in faulted:
                    faulted.add(key)
                    once = True
            if once:
                log(f'inject={mode} {self.path}')
            if once and mode == '500':
                return self.reply(500, b'{"errors":[{"code":"UNKNOWN","message":"injected"}]}')
            if once and mode == '429':
                return self.reply(429, b'{"errors":[{"code":"TOOMANYREQUESTS","message":"slow down"}]}',
                                  {'Retry-After': '1'})
            # Passed on as it arrives (as a link would), unless a mode changes the body.
            stream = self.command == 'GET' and not once and mode not in ('flip', 'flip-manifest', 'trickle')
            r, data = self.forward(stream=stream)
            if data is None:
                n = self.relay_stream(r)
                if is_blob:
                    log(f'sent {n} status={r.status} {self.path}{ua}')  # bytes counted (lazy.sh)
                return
            if mode == 'flip' and is_blob and r.status in (200, 206) and data:
                data = bytearray(data); data[len(data) // 2] ^= 0x40; data = bytes(data)
                log(f'inject=flip {self.path}')
            if mode == 'flip-manifest' and is_manifest and r.status == 200 and data:
                data = data.replace(b'"schemaVersion":2', b'"schemaVersion": 2', 1) if b'"schemaVersion":2' in data \
                    else data + b' '
            self.relay(r.status, r.getheaders(), data, body=False)
            if self.command == 'HEAD':
                return
            if once and mode == 'cut':
                self.wfile.write(data[:len(data) // 2])
                self.wfile.flush()
                self.close_connection = True
                self.connection.shutdown(2)
                return
            if mode == 'trickle' and is_blob:
                for i in range(0, len(data), 32768):
                    self.wfile.write(data[i:i + 32768])
                    self.wfile.flush()
                    time.sleep(0.05)
                log(f'done {self.path}{ua}')  # the whole body was sent
                return
            self.wfile.write(data)
            if is_blob:
                log(f'sent {len(data)} status={r.status} {self.path}{ua}')  # bytes counted (lazy.sh)

        def relay(self, status, headers, data, drop=(), body=True):
            """Answers `status` with `headers` (but their length, framing and `drop`), a
            Content-Length of `data` and, when `body`, `data`."""
            self.send_response(status)
            for k, v in headers:
                if k.lower() not in ('content-length', 'transfer-encoding', 'connection') + tuple(drop):
                    self.send_header(k, v)
            self.send_header('Content-Length', str(len(data)))
            self.end_headers()
            if body:
                self.wfile.write(data)

        def relay_stream(self, r):
            """Answers with upstream response `r` (it has a Content-Length), its body passed
            on as it arrives; returns the body bytes sent."""
            self.send_response(r.status)
            for k, v in r.getheaders():
                if k.lower() not in ('transfer-encoding', 'connection'):
                    self.send_header(k, v)
            self.end_headers()
            n = 0
            while True:
                chunk = r.read(65536)
                if not chunk:
                    return n
                self.wfile.write(chunk)
                n += len(chunk)

        def forward(self, drop=(), stream=False):
            """The request sent upstream: (response, body), or (response, None) when `stream`
            and the response has a Content-Length (its body is then still to be read)."""
            body_len = int(self.headers.get('Content-Length', 0) or 0)
            body = self.rfile.read(body_len) if body_len else None
            c = http.client.HTTPConnection('127.0.0.1', upstream, timeout=60)
            hdrs = {k: v for k, v in self.headers.items()
                    if k.lower() not in ('host', 'connection') + tuple(drop)}
            c.request(self.command, self.path, body=body, headers=hdrs)
            r = c.getresponse()
            if stream and r.getheader('Content-Length') is not None:
                return r, None
            return r, r.read()

        def relay_flipped(self, mode):
            """Relays the upstream answer with its middle byte flipped; logs inject=MODE."""
            r, data = self.forward()
            data = bytearray(data)
            data[len(data) // 2] ^= 0x40
            log(f'inject={mode} {self.path}')
            self.relay(r.status, r.getheaders(), bytes(data))

        def extension(self, mode, arg, is_blob, is_manifest, key, auth):
            """The extended modes; True when the request was answered here."""
            once = False
            with lock:
                if key not in faulted and ((mode == 'manifest-500' and is_manifest) or
                                           (mode == 'range200' and is_blob)):
                    faulted.add(key)
                    once = True
            if (mode == 'manifest-500' and once) or (mode == 'manifest-500-always' and is_manifest) or \
                    (mode == '500-always' and is_blob):
                log(f'inject={mode} {self.path}')
                self.reply(500, b'{"errors":[{"code":"UNKNOWN","message":"injected"}]}')
                return True
            if mode == 'signed' and is_blob:
                # A registry that redirects blobs to signed URLs (S3, GCS): 307 to
                # URLBASE + path + ?sig=N; the first signed URL of each blob has expired
                # (403, as S3 answers), later ones are served (without the query).
                base, _, query = self.path.partition('?')
                if 'sig=' not in query:
                    with lock:
                        signed[0] += 1
                        n = signed[0]
                    log(f'inject=signed-redirect {base} sig={n}')
                    self.reply(307, b'', {'Location': f"{arg.rstrip('/')}{base}?sig={n}"})
                    return True
                with lock:
                    first = base not in expired_urls
                    expired_urls.add(base)
                if first:
                    log(f'inject=expired {base}')
                    self.reply(403, b'<Error><Code>AccessDenied</Code><Message>Request has expired'
                                    b'</Message></Error>')
                    return True
                self.path = base  # served like any blob GET below
                return False
            if mode in ('redirect', 'redirect302') and is_blob:
                log(f'inject={mode} {self.path}')
                self.reply(307 if mode == 'redirect' else 302, b'', {'Location': arg.rstrip('/') + self.path})
                return True
            if mode in ('schema1', 'schema1-json') and is_manifest:
                log(f'inject={mode} {self.path}')
                doc = {'schemaVersion': 1, 'name': 'test/old', 'tag': 'v1', 'architecture': 'amd64',
                       'fsLayers': [{'blobSum': 'sha256:' + '0' * 64}],
                       'history': [{'v1Compatibility': '{"id":"' + 'a' * 64 + '"}'}]}
                mt = 'application/vnd.docker.distribution.manifest.v1+json'
                if mode == 'schema1':
                    doc['signatures'] = [{'header': {'alg': 'ES256'}, 'signature': 'AAAA', 'protected': 'e30'}]
                    mt = 'application/vnd.docker.distribution.manifest.v1+prettyjws'
                body = json.dumps(doc, indent=3).encode()
                self.send_response(200)
                self.send_header('Content-Type', mt)
                self.send_header('Docker-Content-Digest', 'sha256:' + hashlib.sha256(body).hexdigest())
                self.send_header('Content-Length', str(len(body)))
                self.end_headers()
                self.wfile.write(body)
                return True
            if mode == 'norange' and is_blob:
                r, data = self.forward(drop=('range',))
                if self.headers.get('Range'):
                    log(f'inject=norange {self.path}')
                self.relay(r.status, r.getheaders(), data, drop=('content-range',))
                log(f'sent {len(data)} status={r.status} {self.path}')
                return True
            if mode == 'singlerange' and is_blob and ',' in self.headers.get('Range', ''):
                last = 'bytes=' + self.headers['Range'].split(',')[-1]
                log(f'inject=singlerange {self.path}')
                del self.headers['Range']
                self.headers['Range'] = last
                r, data = self.forward()
                self.relay(r.status, r.getheaders(), data)
                log(f'sent {len(data)} status={r.status} {self.path}')
                return True
            if mode == 'range200' and is_blob:
                r, data = self.forward(drop=('range',))
                if once and r.status == 200:  # the first GET: half the body, then close
                    log(f'inject=cut {self.path}')
                    self.relay(200, [], data, body=False)
                    self.wfile.write(data[:len(data) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    self.connection.shutdown(2)
                    return True
                if self.headers.get('Range'):
                    log(f'inject=range200 {self.path}')
                self.relay(r.status, r.getheaders(), data, drop=('content-range',))
                return True
            if mode == 'lazy-config-slow' and is_blob and arg and arg.split(' ')[0] in self.path:
                # A pull's config (ARG: its digest, then the delay) answered late, unchanged.
                time.sleep(float(arg.split(' ')[1]) if ' ' in arg else 1)
                r, data = self.forward()
                log(f'inject={mode} {self.path}')
                self.relay(r.status, r.getheaders(), data)
                return True
            if (mode == 'lazy-toc-bad-of' and is_blob and arg.split(' ')[0] in self.path and
                    'Range' in self.headers):
                with lock:
                    bad = ('toc-of', arg) not in faulted
                    faulted.add(('toc-of', arg))
                if bad:
                    self.relay_flipped(mode)
                    return True
            if mode in ('lazy-config-bad', 'lazy-toc-bad') and is_blob:
                # A lazy pull whose config (lazy-config-bad ARG: its digest) comes 0.5 s late
                # with a byte flipped, every multi-range request (tar headers) stalling 20 s
                # (they are in flight when the pull fails); or whose first single-range
                # request (a layer's TOC; lazy-toc-bad) comes 1 s late with a byte flipped,
                # after the other layers' fetches ended.
                if mode == 'lazy-config-bad' and ',' in self.headers.get('Range', ''):
                    log(f'inject=stall {self.path}')
                    time.sleep(20)
                    return False
                if mode == 'lazy-config-bad':
                    bad = arg in self.path
                    if bad:
                        time.sleep(0.5)
                else:
                    with lock:
                        bad = 'Range' in self.headers and ('toc', mode, arg) not in faulted
                        faulted.add(('toc', mode, arg)) if bad else None
                    if bad:
                        time.sleep(1)
                if bad:
                    self.relay_flipped(mode)
                    return True
            if mode == 'expire' and auth:
                with lock:
                    if is_blob and not expired:
                        expired.add(auth)
                    hit = auth in expired
                if hit:
                    r, data = self.forward(drop=('authorization',))  # the upstream's own challenge
                    log(f'inject=expire {self.path} status={r.status}')
                    self.reply(401, b'{"errors":[{"code":"UNAUTHORIZED","message":"token expired"}]}',
                               {'WWW-Authenticate': r.getheader('WWW-Authenticate', '')})
                    return True
            return False

        def push_mode(self, mode, arg):
            """The push modes; True when the request was answered here."""
            push_modes = ('push', 'loc', 'loc-huge', 'headers-huge', 'digest-wrong', 'range-back',
                          'put-202', 'redirect-loop', 'redirect-to', 'reset-put', 'err-escape')
            if mode not in push_modes or self.command not in ('HEAD', 'GET', 'POST', 'PUT', 'PATCH'):
                return False
            upload = '/blobs/uploads/' in self.path
            post = self.command == 'POST' and upload
            put = self.command == 'PUT' and upload
            patch = self.command == 'PATCH' and upload
            mput = self.command == 'PUT' and '/manifests/' in self.path

            def consume():
                n = int(self.headers.get('Content-Length', 0) or 0)
                while n > 0:
                    d = self.rfile.read(min(n, 1 << 16))
                    if not d:
                        break
                    n -= len(d)

            if (mode == 'put-202' and put) or (mode == 'redirect-loop' and (put or patch)) or \
                    (mode == 'redirect-to' and put) or (mode == 'reset-put' and put) or \
                    (mode == 'err-escape' and post):
                consume()
                log(f'inject={mode} {self.command} {self.path}')
                if mode == 'err-escape':
                    self.reply(400, b'denied\x1b]0;pwned\x07\x1b[2J\x1b[31m red\r\nline two')
                    return True
                if mode == 'reset-put':
                    self.close_connection = True
                    self.connection.shutdown(2)
                    return True
                if mode == 'put-202':
                    self.reply(202, b'', {'Location': self.path.split('?')[0], 'Range': '0-0'})
                elif mode == 'redirect-loop':
                    self.reply(307, b'', {'Location': self.path})
                else:
                    self.reply(307, b'', {'Location': arg.rstrip('/') + self.path})
                return True
            r, data = self.forward()
            hdrs = []
            mine = f'http://{self.headers.get("Host", "")}'
            for k, v in r.getheaders():
                if k.lower() == 'location':
                    v = v.replace(f'http://127.0.0.1:{upstream}', mine)
                hdrs.append((k, v))

            def replace(name, value):
                hdrs[:] = [(k, v) for k, v in hdrs if k.lower() != name.lower()] + [(name, value)]
                log(f'inject={mode} {self.command} {self.path}')

            if r.status == 202 and post and mode == 'loc':
                replace('Location', arg)
            if r.status == 202 and post and mode == 'loc-huge':
                replace('Location', '/v2/' + 'a' * int(arg))
            if r.status == 202 and post and mode == 'headers-huge':
                hdrs.extend((f'X-Pad-{i}', 'p' * 1000) for i in range(2000))
                log(f'inject={mode} {self.command} {self.path}')
            if r.status in (200, 201) and mput and mode == 'digest-wrong':
                replace('Docker-Content-Digest', 'sha256:' + '0' * 64)
            if r.status == 202 and patch and mode == 'range-back':
                replace('Range', '0-9')
            self.relay(r.status, hdrs, data, body=self.command != 'HEAD')
            return True

        def reply(self, code, body, extra=None):
            self.send_response(code)
            for k, v in (extra or {}).items():
                self.send_header(k, v)
            self.send_header('Content-Type', 'application/json')
            self.send_header('Content-Length', str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def handle_safely(self):
            try:
                self.handle_one()
            except (BrokenPipeError, ConnectionResetError):
                self.close_connection = True  # the client went away (a killed pull)

        do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = handle_safely

    class S(socketserver.ThreadingMixIn, http.server.HTTPServer):
        daemon_threads = True
        allow_reuse_address = True

    S((os.environ.get('PROXY_BIND', '127.0.0.1'), port), H).serve_forever()


def token_server(args):
    port, key, cert = int(args[0]), args[1], args[2]
    der = subprocess.run(['openssl', 'x509', '-in', cert, '-outform', 'DER'], capture_output=True, check=True).stdout
    b64u = lambda b: base64.urlsafe_b64encode(b).rstrip(b'=').decode()

    class H(http.server.BaseHTTPRequestHandler):
        def log_message(self, *a):
            pass

        def do_GET(self):
            from urllib.parse import urlparse, parse_qs
            q = parse_qs(urlparse(self.path).query)
            scopes = q.get('scope', [])
            access = []
            for s in scopes:
                t, name, actions = s.split(':')
                access.append({'type': t, 'name': name, 'actions': actions.split(',')})
            auth = self.headers.get('Authorization', '')
            if os.environ.get('TOKEN_LOG'):
                with open(os.environ['TOKEN_LOG'], 'a') as f:
                    f.write(f'token auth={auth.split(" ")[0] if auth else "-"} scope={",".join(scopes)}\n')
            tmode_file = os.environ.get('TOKEN_MODE_FILE')
            tmode = open(tmode_file).read().strip() if tmode_file and os.path.exists(tmode_file) else 'none'
            with counter_lock:
                counter[0] += 1
                n = counter[0]
                first = tmode == '500-once' and tmode not in token_faulted
                token_faulted.add(tmode)
            if tmode == '500-always' or first:
                body = b'{"errors":[{"code":"UNKNOWN","message":"token service injected 500"}]}'
                self.send_response(500)
                self.send_header('Content-Length', str(len(body)))
                self.end_headers()
                self.wfile.write(body)
                return
            want = os.environ.get('TOKEN_USER')  # "user:pass" required when set
            if want and auth != 'Basic ' + base64.b64encode(want.encode()).decode():
                self.send_response(401)
                self.send_header('Content-Length', '0')
                self.end_headers()
                return
            self.send_token(q.get('service', [''])[0], access, n, 'token')

        def do_POST(self):
            from urllib.parse import parse_qs
            form = parse_qs(self.rfile.read(int(self.headers.get('Content-Length', '0'))).decode())
            scopes = form.get('scope', [])
            access = []
            for s in scopes:
                t, name, actions = s.split(':')
                access.append({'type': t, 'name': name, 'actions': actions.split(',')})
            good = (form.get('grant_type') == ['refresh_token'] and os.environ.get('TOKEN_REFRESH')
                    and form.get('refresh_token') == [os.environ['TOKEN_REFRESH']])
            if os.environ.get('TOKEN_LOG'):
                with open(os.environ['TOKEN_LOG'], 'a') as f:
                    f.write(f'refresh {"ok" if good else "refused"} scope={",".join(scopes)}\n')
            if not good:
                self.send_response(401)
                self.send_header('Content-Length', '0')
                self.end_headers()
                return
            with counter_lock:
                counter[0] += 1
                n = counter[0]
            self.send_token(form.get('service', [''])[0], access, n, 'access_token')

        def send_token(self, service, access, n, field):
            now = int(time.time())
            header = {'typ': 'JWT', 'alg': 'RS256', 'x5c': [base64.b64encode(der).decode()]}
            claims = {'iss': 'imgfs-test', 'sub': 'tester', 'aud': service,
                      'exp': now + 300, 'nbf': now - 10, 'iat': now, 'jti': f'{now}-{os.getpid()}-{n}',
                      'access': access}
            signing = b64u(json.dumps(header).encode()) + '.' + b64u(json.dumps(claims).encode())
            sig = subprocess.run(['openssl', 'dgst', '-sha256', '-sign', key], input=signing.encode(),
                                 capture_output=True, check=True).stdout
            body = json.dumps({field: signing + '.' + b64u(sig), 'expires_in': 300}).encode()
            self.send_response(200)
            self.send_header('Content-Type', 'application/json')
            self.send_header('Content-Length', str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    counter, counter_lock, token_faulted = [0], threading.Lock(), set()
    srv = http.server.ThreadingHTTPServer(('127.0.0.1', port), H)
    if os.environ.get('TOKEN_TLS_CERT'):
        import ssl
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(os.environ['TOKEN_TLS_CERT'], os.environ['TOKEN_TLS_KEY'])
        srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
    srv.serve_forever()


if __name__ == '__main__':
    cmd, rest = sys.argv[1], sys.argv[2:]
    {'push-layout': push_layout, 'push-index': push_index, 'push-raw': push_raw, 'proxy': proxy,
     'token-server': token_server}[cmd](rest)
