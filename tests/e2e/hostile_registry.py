#!/usr/bin/env python3
"""A hostile registry for tests/e2e/hostile_registry.sh (loopback only).

  hostile_registry.py serve PORT MODE_FILE LOG_FILE
        serves three small images it builds itself (repositories img, two and other, tag
        1; `two` has two layers) through the registry API, misbehaving as the first word
        of MODE_FILE says, read again at every request:
          none                   a well-behaved registry
          realm URL              401 on every /v2/ request, Bearer realm=URL (gopher://,
                                 dict://, file://, ...); with URL http://.../token the
                                 token service below
          token-oversize         a valid realm, whose token service answers 64 MiB
          token-500              the token service answers 500 once, then a token
          token-expiry-huge      the token's expires_in is 2^63
          token-ctl              the token carries "\r\nX-Injected: 1" (a request that
                                 arrives with that header is logged "header-injected PATH")
          token-huge             a token of 100,000 bytes
          token-challenge-huge N the challenge carries N extra parameters
          redirect-blob URL      every layer GET is redirected (302) to URL
          foreign URL            manifests name URL as the layer's foreign location
          blob-oversize          a layer blob, then garbage (no Content-Length), 1 MiB
                                 per 20 ms up to 64 MiB
          blob-oversize-cl       the same with a Content-Length of the whole
          config-oversize        the config blob, then 64 MiB of garbage
          config-late SECONDS    the config answered after SECONDS
          config-bad SECONDS     the config answered after SECONDS, one byte changed
                                 (its digest no longer matches)
          config-diffids         manifests name a config whose diff_ids are wrong
          config-bad-stall SECONDS  config-bad, and every layer answers its headers
                                 then sends nothing for 120 s
          manifest-oversize      a 6 MiB manifest
          many-layers N          manifests list their last layer N times (and configs
                                 its diff_id N times)
          trickle                the last layer of an image at 2 bytes/s, for ever
          delay-last SECONDS     the last layer of an image answered after SECONDS
          ping-500               the first /v2/ ping answers 500, then none
          ping-500-always        every /v2/ ping answers 500
          basic USER:PASS        every /v2/ request wants Basic auth with USER:PASS
        LOG_FILE gets one line per request: "METHOD PATH mode=MODE status=CODE sent=N".
  hostile_registry.py listen PORT LOG_FILE
        a TCP listener that writes every byte it receives to LOG_FILE (it must stay
        empty when imgfs refuses gopher:// and dict:// URLs aimed at it).
"""
import base64
import gzip
import hashlib
import http.server
import io
import json
import socket
import socketserver
import sys
import tarfile
import threading
import time

OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json'
OCI_CONFIG = 'application/vnd.oci.image.config.v1+json'
OCI_LAYER = 'application/vnd.oci.image.layer.v1.tar+gzip'


def sha(b):
    return 'sha256:' + hashlib.sha256(b).hexdigest()


def layer(files):
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode='w', format=tarfile.PAX_FORMAT) as t:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mtime = 1000000000
            info.mode = 0o644
            t.addfile(info, io.BytesIO(data))
    tar = raw.getvalue()
    return gzip.compress(tar, mtime=0), sha(tar)


BLOBS = {}
IMAGES = {}
WRONG_CONFIG = {}  # per repository: a config whose diff_ids match no layer


def image(repo, layers):
    descs, diff_ids = [], []
    for files in layers:
        blob, diff_id = layer(files)
        BLOBS[sha(blob)] = blob
        descs.append({'mediaType': OCI_LAYER, 'digest': sha(blob), 'size': len(blob)})
        diff_ids.append(diff_id)
    config = json.dumps({'architecture': 'amd64', 'os': 'linux', 'config': {},
                         'rootfs': {'type': 'layers', 'diff_ids': diff_ids},
                         'history': [{'created_by': repo}]}).encode()
    BLOBS[sha(config)] = config
    IMAGES[repo] = {'config': {'mediaType': OCI_CONFIG, 'digest': sha(config),
                               'size': len(config)}, 'layers': descs}
    wrong = json.dumps({'architecture': 'amd64', 'os': 'linux', 'config': {},
                        'rootfs': {'type': 'layers', 'diff_ids': ['sha256:' + '0' * 64] * len(descs)},
                        'history': [{'created_by': repo}]}).encode()
    BLOBS[sha(wrong)] = wrong
    WRONG_CONFIG[repo] = {'mediaType': OCI_CONFIG, 'digest': sha(wrong), 'size': len(wrong)}


# Random (incompressible) bytes so that each layer blob is a few KB.
def noise(seed, n):
    out, h = b'', seed.encode()
    while len(out) < n:
        h = hashlib.sha256(h).digest()
        out += h
    return out[:n]


def MANY_CONFIG(repo, n):  # a config whose diff_ids are the last layer's, n times
    cfg = json.loads(BLOBS[IMAGES[repo]['config']['digest']])
    cfg['rootfs']['diff_ids'] = [cfg['rootfs']['diff_ids'][-1]] * n
    body = json.dumps(cfg).encode()
    BLOBS[sha(body)] = body
    return {'mediaType': OCI_CONFIG, 'digest': sha(body), 'size': len(body)}


image('img', [{'hello.txt': b'hello from a hostile registry\n', 'data.bin': noise('img', 4000)}])
image('two', [{'first.txt': b'first layer\n', 'a.bin': noise('two-a', 4000)},
              {'second.txt': b'second layer\n', 'b.bin': noise('two-b', 4000)}])
image('other', [{'other.txt': b'another image\n', 'o.bin': noise('other', 4000)}])


def manifest_bytes(repo, foreign=None, wrong_config=False, many=0):
    m = {'schemaVersion': 2, 'mediaType': OCI_MANIFEST, **json.loads(json.dumps(IMAGES[repo]))}
    if many:
        m['layers'] = [m['layers'][-1]] * many
        m['config'] = MANY_CONFIG(repo, many)
    if foreign:
        m['layers'][-1]['urls'] = [foreign]
    if wrong_config:
        m['config'] = WRONG_CONFIG[repo]
    return json.dumps(m).encode()


def serve(args):
    port, mode_file, log_file = int(args[0]), args[1], args[2]
    lock = threading.Lock()
    state = {'ping500': 0, 'token500': 0}

    def log(line):
        with lock, open(log_file, 'a') as f:
            f.write(line + '\n')

    class H(http.server.BaseHTTPRequestHandler):
        protocol_version = 'HTTP/1.1'

        def log_message(self, *a):
            pass

        def mode(self):
            try:
                words = open(mode_file).read().split()
            except OSError:
                words = []
            return (words + ['none'])[0], (words[1] if len(words) > 1 else '')

        def send(self, code, body=b'', ctype='application/json', headers=None, length=True):
            self.send_response(code)
            self.send_header('Content-Type', ctype)
            self.send_header('Docker-Distribution-API-Version', 'registry/2.0')
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            if length:
                self.send_header('Content-Length', str(len(body)))
            else:
                self.send_header('Connection', 'close')
                self.close_connection = True
            self.end_headers()
            if body:
                self.wfile.write(body)
            return len(body)

        def garbage(self, total, chunk=1 << 20, pause=0.02):
            sent = 0
            try:
                while sent < total:
                    self.wfile.write(b'\0' * chunk)
                    self.wfile.flush()
                    sent += chunk
                    time.sleep(pause)
            except OSError:
                pass
            return sent

        def do_GET(self):
            mode, arg = self.mode()
            try:
                code, sent = self.handle_get(mode, arg)
            except OSError:  # the client hung up (as imgfs does at a bound)
                code, sent = 'hangup', 0
                self.close_connection = True
            log(f'GET {self.path} mode={mode} status={code} sent={sent}')

        def handle_get(self, mode, arg):
            path = self.path.split('?')[0]
            host = f'127.0.0.1:{port}'
            if path == '/token':
                if mode == 'token-oversize':
                    self.send(200, b'', headers={}, length=False)
                    return 200, self.garbage(64 << 20)
                if mode == 'token-500' and state['token500'] == 0:
                    state['token500'] += 1
                    return 500, self.send(500, b'{"errors":[{"code":"UNAVAILABLE"}]}')
                answer = {'token': 'good-token'}
                if mode == 'token-expiry-huge':
                    answer['expires_in'] = 1 << 63
                if mode == 'token-ctl':
                    answer['token'] = 'good-token\r\nX-Injected: 1'
                if mode == 'token-huge':
                    answer['token'] = 'g' * 100000
                return 200, self.send(200, json.dumps(answer).encode())
            if self.headers.get('X-Injected'):
                log(f'header-injected {path}')
            if mode == 'realm' or mode.startswith('token-'):
                realm = arg if mode == 'realm' else f'http://{host}/token'
                extra = ''
                if mode == 'token-challenge-huge':
                    extra = ''.join(f',p{i}="v{i}"' for i in range(int(arg)))
                if self.headers.get('Authorization') != 'Bearer good-token':
                    return 401, self.send(401, b'{"errors":[{"code":"UNAUTHORIZED"}]}', headers={
                        'WWW-Authenticate': f'Bearer realm="{realm}",service="hostile"{extra}'})
            if mode == 'basic':
                want = 'Basic ' + base64.b64encode(arg.encode()).decode()
                if self.headers.get('Authorization') != want:
                    return 401, self.send(401, b'{"errors":[{"code":"UNAUTHORIZED"}]}', headers={
                        'WWW-Authenticate': 'Basic realm="hostile"'})
            if path == '/v2/':
                if mode == 'ping-500-always' or (mode == 'ping-500' and state['ping500'] == 0):
                    state['ping500'] += 1
                    return 500, self.send(500, b'{"errors":[{"code":"UNAVAILABLE"}]}')
                return 200, self.send(200, b'{}')
            parts = path.split('/')  # ['', 'v2', repo, kind, ref]
            if len(parts) != 5 or parts[2] not in IMAGES:
                return 404, self.send(404, b'{"errors":[{"code":"NAME_UNKNOWN"}]}')
            repo, kind, ref = parts[2], parts[3], parts[4]
            if kind == 'manifests':
                body = manifest_bytes(repo, arg if mode == 'foreign' else None,
                                      mode == 'config-diffids',
                                      int(arg) if mode == 'many-layers' else 0)
                if mode == 'manifest-oversize':
                    body = body[:-1] + b' ' * (6 << 20) + b'}'
                if ref not in ('1', sha(body)):
                    return 404, self.send(404, b'{"errors":[{"code":"MANIFEST_UNKNOWN"}]}')
                return 200, self.send(200, body, ctype=OCI_MANIFEST,
                                      headers={'Docker-Content-Digest': sha(body)})
            if kind != 'blobs' or ref not in BLOBS:
                return 404, self.send(404, b'{"errors":[{"code":"BLOB_UNKNOWN"}]}')
            blob = BLOBS[ref]
            is_config = ref in (IMAGES[repo]['config']['digest'], WRONG_CONFIG[repo]['digest'])
            is_last = ref == IMAGES[repo]['layers'][-1]['digest']
            if is_config and mode == 'config-oversize':
                self.send(200, b'', ctype='application/octet-stream', length=False)
                self.wfile.write(blob)
                return 200, len(blob) + self.garbage(64 << 20)
            if is_config and mode in ('config-late', 'config-bad', 'config-bad-stall'):
                time.sleep(float(arg))
                if mode != 'config-late':
                    blob = blob[:-1] + (b' ' if blob[-1:] != b' ' else b'\n')
            if is_config:
                return 200, self.send(200, blob, ctype='application/octet-stream')
            if mode == 'config-bad-stall':
                self.send(200, b'', ctype='application/octet-stream',
                          headers={'Content-Length': str(len(blob))}, length=False)
                self.wfile.flush()
                time.sleep(120)
                return 200, 0
            if mode == 'redirect-blob':
                return 302, self.send(302, b'', headers={'Location': arg})
            if mode in ('blob-oversize', 'blob-oversize-cl'):
                cl = {'Content-Length': str(len(blob) + (64 << 20))} if mode.endswith('-cl') else {}
                self.send(200, b'', ctype='application/octet-stream', headers=cl,
                          length=False)
                self.wfile.write(blob)
                return 200, len(blob) + self.garbage(64 << 20)
            if mode == 'trickle' and is_last:
                self.send(200, b'', ctype='application/octet-stream',
                          headers={'Content-Length': str(len(blob))}, length=False)
                sent = 0
                try:
                    for i in range(0, len(blob), 2):
                        self.wfile.write(blob[i:i + 2])
                        self.wfile.flush()
                        sent += 2
                        time.sleep(1)
                except OSError:
                    pass
                return 200, sent
            if mode == 'delay-last' and is_last:
                time.sleep(float(arg))
            return 200, self.send(200, blob, ctype='application/octet-stream')

    class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
        daemon_threads = True
        allow_reuse_address = True

    Server(('127.0.0.1', port), H).serve_forever()


def listen(args):
    port, log_file = int(args[0]), args[1]
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(('127.0.0.1', port))
    s.listen(16)
    open(log_file, 'wb').close()
    while True:
        c, _ = s.accept()
        c.settimeout(2)
        with open(log_file, 'ab') as f:
            f.write(b'[connection]\n')
            try:
                while True:
                    d = c.recv(4096)
                    if not d:
                        break
                    f.write(d)
                    f.flush()
            except OSError:
                pass
        c.close()


if __name__ == '__main__':
    {'serve': serve, 'listen': listen}[sys.argv[1]](sys.argv[2:])
