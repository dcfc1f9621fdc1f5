#!/usr/bin/env python3
"""A WAN-like front for a loopback registry (bench/pull.sh; loopback only).

  wan_front.py PORT UPSTREAM_PORT [MBIT_PER_S [MS_PER_REQUEST]]

Forwards HTTP/1.1 requests (keep-alive kept) to 127.0.0.1:UPSTREAM_PORT. Every request
waits MS_PER_REQUEST (default 40) before it is forwarded, as a round trip to a distant
registry would; every response body shares one MBIT_PER_S (default 100) link, whatever
the number of connections, so parallel downloads compete for the same bandwidth.
Bodies are passed on as they arrive (64 KiB at a time, each when the link has room), and
TCP_NODELAY is set as in Go's net/http (without it each answer waited 40 ms for a delayed
ACK). WAN_LOG=FILE: one line a request, with its arrival, upstream answer and last-byte
times (UNIX seconds) and the body bytes.
"""
import http.client
import http.server
import os
import socket
import socketserver
import sys
import threading
import time

port, upstream = int(sys.argv[1]), int(sys.argv[2])
rate = (float(sys.argv[3]) if len(sys.argv) > 3 else 100.0) * 1e6 / 8  # bytes/s
delay = (float(sys.argv[4]) if len(sys.argv) > 4 else 40.0) / 1000
link_lock = threading.Lock()
link_free = [0.0]  # when the shared link has sent everything scheduled so far
CHUNK = 64 << 10
log_path = os.environ.get('WAN_LOG')  # one line per request: arrival, answer, last byte
log_lock = threading.Lock()


def log(line):
    if log_path:
        with log_lock, open(log_path, 'a') as f:
            f.write(line + '\n')


def send_on_link(n):
    """Blocks until n more bytes fit through the shared link."""
    with link_lock:
        now = time.monotonic()
        start = max(now, link_free[0])
        link_free[0] = start + n / rate
        done = link_free[0]
    wait = done - time.monotonic()
    if wait > 0:
        time.sleep(wait)


class H(http.server.BaseHTTPRequestHandler):
    protocol_version = 'HTTP/1.1'

    def log_message(self, *a):
        pass

    def setup(self):
        super().setup()
        # As Go's net/http and nginx do: without it, a body written after its headers
        # waits for the client's delayed ACK (Nagle), 40 ms a request on Linux.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def handle_any(self):
        t_in = time.time()
        time.sleep(delay)
        body_len = int(self.headers.get('Content-Length', 0) or 0)
        body = self.rfile.read(body_len) if body_len else None
        if not hasattr(self, 'up'):
            self.up = http.client.HTTPConnection('127.0.0.1', upstream, timeout=120)
        # Every header line as sent (a client may send several Accept lines).
        hdrs = [(k, v) for k, v in self.headers.items() if k.lower() != 'connection']

        def ask():
            self.up.putrequest(self.command, self.path, skip_host=True, skip_accept_encoding=True)
            for k, v in hdrs:
                self.up.putheader(k, v)
            self.up.endheaders(body)
            return self.up.getresponse()
        try:
            r = ask()
        except (http.client.HTTPException, OSError):
            self.up.close()
            self.up = http.client.HTTPConnection('127.0.0.1', upstream, timeout=120)
            r = ask()
        t_up = time.time()
        sent = 0
        self.send_response(r.status)
        length = r.getheader('Content-Length')
        for k, v in r.getheaders():
            if k.lower() not in ('transfer-encoding', 'connection'):
                self.send_header(k, v)
        chunked = length is None and self.command != 'HEAD' and r.status not in (204, 304)
        if chunked:
            self.send_header('Transfer-Encoding', 'chunked')
        self.end_headers()
        if self.command == 'HEAD':
            r.read()
            return
        while True:
            data = r.read(CHUNK)
            if not data:
                break
            send_on_link(len(data))
            sent += len(data)
            if chunked:
                self.wfile.write(b'%x\r\n' % len(data) + data + b'\r\n')
            else:
                self.wfile.write(data)
        if chunked:
            self.wfile.write(b'0\r\n\r\n')
        log(f'{self.command} {self.path} range={len(self.headers.get("Range", ""))} in={t_in:.6f} '
            f'up={t_up:.6f} done={time.time():.6f} bytes={sent} status={r.status}')

    def handle_safely(self):
        try:
            self.handle_any()
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = handle_safely


class S(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True


S(('127.0.0.1', port), H).serve_forever()
