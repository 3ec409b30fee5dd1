#!/usr/bin/python3
"""A purpose-built HTTP/1.1 upstream for switchd's integration tests.

    upstream.py --port P --name NAME [--close-after N] [--drop-after N]
                [--serial] [--sndbuf BYTES] [--health-status CODE]
                [--health-location URL] [--tls-cert FILE --tls-key FILE]
                [--reject-tls]

Listens on 127.0.0.1:P, one thread per connection, raw sockets. Keep-alive is
supported and Connection: close / HTTP/1.0 are honoured. What a request gets is
chosen by its path:

  /  (and any path not below)  200, body "NAME\\n"
  /status/CODE                 that status (body "NAME CODE\\n" unless 1xx/204/304)
  /delay/MS                    waits MS milliseconds, then 200 "NAME\\n"
  /echo                        200, JSON: method, path, version, headers (list of
                               [name, value] in order received), body_len,
                               body_sha256, name, conn, raw_head, t_head, t_body
  /bytes/N                     N bytes of the deterministic pattern, Content-Length,
                               streamed in chunks (never held whole in memory)
  /whole/N                     the same, head and body in one write (for small N:
                               the body is built in memory)
  /chunked/N                   the same with Transfer-Encoding: chunked
  /close-delimited/N           the same with neither: the end is the close
  /reset-mid                   headers (Content-Length 1000000) and 100000 bytes of
                               body, then RST (SO_LINGER 0)
  /stall-mid                   headers and 100000 bytes of body, then nothing ever
  /stall                       never answers
  /drop                        reads the request, closes without a byte
  /reset                       reads the request, RST without a byte
  /garbage                     answers bytes that are not HTTP, then closes
  /early-hints                 103 Early Hints, then 200 "NAME\\n"
  /bad-framing                 200 with both Content-Length and chunked (ambiguous)
  /half-head                   part of a response head, then close
  /short-body                  Content-Length 100000, 1000 bytes, then close (FIN)
  /chunked-truncated           chunked, 3 chunks of 1000 bytes, then close
                               without the last chunk
  /hop                         200 carrying hop-by-hop response headers
                               (Connection: X-Hop, X-Hop, Keep-Alive,
                               Proxy-Connection) and X-Keep: yes
  /ws                          Upgrade: websocket -> 101, then echoes raw bytes
  /ws-reset                    101 Switching Protocols, then RST at once
  /early-response              200 "NAME early\n" as soon as the head is read, then
                               reads the request body (keep-alive goes on after it)
  /fold-after-1xx              100 Continue and, in the same write, a final 200 head
                               with an obs-fold (continuation) header line
  /sse?n=N&interval=MS, /sse/N text/event-stream, chunked, an event every MS ms
                               (default 10 events every 100 ms); each event's data
                               carries its index and the server's send time
  /stats                       JSON counters (control request, not counted)
  /log                         JSON list of the requests seen (control request)
  /health                      the health-check target: the current health
                               status (--health-status, default 200), body
                               "NAME health CODE\n" (none for 1xx/204/304); a
                               3xx carries Location: --health-location. Counted
                               as "health" in /stats, not in "requests" or
                               "responses"; logged in /log with "health": true
  /control/health/CODE         sets the status /health answers from now on;
                               answers 200 JSON {"health_status": CODE}
                               (control request, not counted, not logged)
  /control/fail?status=S&every=N
                               injected failures: from now on every Nth
                               ordinary request (neither a control request
                               nor a /health probe; any path but
                               /early-response) is answered status S
                               (default 500), body "NAME injected S\n",
                               instead of what its path asks for; its body is
                               read first and keep-alive goes on. every=1:
                               every request; every=0 (the default): no more
                               failures. N counts from this control request.
                               Answers 200 JSON {"fail_status": S,
                               "fail_every": N} (control request, not
                               counted, not logged). /stats counts injected
                               answers in "failed" and shows "fail_status"
                               and "fail_every"; their /log entries have
                               "failed": true

Query options on any path: sndbuf=BYTES sets SO_SNDBUF on the connection before
the response (so the kernel cannot absorb a large response); wait=MS waits
before reading the request body (a slow consumer).

Options:
  --close-after N   close each connection after N responses without announcing
                    it (no Connection: close), like an upstream idle close
  --drop-after N    after N responses on a connection, read the next request
                    then close without answering: the idle-close race as seen by
                    a proxy that just sent a request on a pooled connection
  --serial          one request at a time in the whole server and Connection:
                    close after each response, like a Gunicorn sync worker
  --sndbuf BYTES    SO_SNDBUF for every accepted connection
  --health-status CODE
                    the status /health answers at start (default 200); change
                    it at runtime with /control/health/CODE
  --health-location URL
                    the Location of a 3xx /health answer (default
                    /health-moved, which is an ordinary path: a client that
                    followed the redirect shows up in /log with that path)

Every response carries X-Upstream: NAME and X-Conn: <connection number>.
Control requests (/stats, /log, /control/...) are not counted as requests and a
connection whose first request is a control request is not counted as a
connection. Health probes (/health) are counted apart: "health" (probes) and
"health_connections" (connections whose first request is /health) in /stats;
they are not in "requests", "responses", "connections" or "open". Every /log
entry has "health" (true for a /health probe), so tests can tell probes from
traffic, "failed" (true for an answer injected by /control/fail), and the
times, each time.time() of this process: "t_head" when the request head was
received (the receive timestamp), "t_body" when its body was read, "t_done"
when the response was sent (null if none was).

TLS (--tls-cert FILE --tls-key FILE, PEM): the upstream speaks HTTPS, as a
TLS-to-upstream proxy needs. Every accepted connection is wrapped with Python's
ssl on the server side (TLS 1.2 or newer, ALPN "http/1.1" offered, the
certificate chain of --tls-cert: put intermediates after the leaf) before the
usual per-connection handling, so every path above, keep-alive, /health and
/ws work the same over TLS. The handshake runs in the connection's thread (a
10 s limit); a failed handshake (the client refused the certificate, spoke
plain HTTP, ...) is counted in /stats "tls_failed" and printed to stderr as
"tls handshake failed". An orderly close sends close_notify first (so a
close-delimited body ends cleanly); a close meant as a reset (/reset,
/reset-mid, /ws-reset: SO_LINGER 0) sends none.

Control over plain HTTP on the same port: the first byte of a connection
tells them apart (a TLS ClientHello starts with 0x16), and a plain connection
may only carry control requests (/stats, /log, /control/...), so the tests'
helpers (harness.Upstream._get, stats(), log(), traffic(), set_health) work
unchanged against a TLS upstream, while anything else sent in plain text (a
proxy that forgot TLS, a plain /health probe) gets the connection closed
without a byte, as a real TLS server would; /stats counts those connections
in "plain_refused". Under TLS, /stats has "tls": true, every /log entry and
every /echo answer carry "tls": {"version", "cipher", "alpn", "sni"} of their
connection (sni: the server name the client sent, or null).

--reject-tls (without --tls-cert): a plain upstream that answers a TLS
ClientHello (first byte 0x16) at once with "400 Bad Request" and closes, as
nginx or Go's net/http do; /stats counts those in "tls_rejected". Without it
a plain upstream waits for a request head that never comes (the bytes of a
ClientHello hold no blank line), as some servers do.

The pattern: byte i of every generated body is PATTERN[i % len(PATTERN)];
pattern_chunk() and pattern_sha256() are importable for the tests.
"""

import argparse
import base64
import hashlib
import json
import socket
import ssl
import struct
import sys
import threading
import time
import urllib.parse

PERIOD = 65521  # a prime, so that chunk boundaries never align with it
CHUNK = 65536


def _make_pattern():
    out = bytearray()
    i = 0
    while len(out) < PERIOD:
        out += hashlib.sha256(b"switchd-pattern-%d" % i).digest()
        i += 1
    return bytes(out[:PERIOD])


PATTERN = _make_pattern()
_PATTERN3 = PATTERN * 3


def pattern_chunk(offset, n):
    """n (<= CHUNK) bytes of the pattern starting at absolute offset."""
    assert n <= CHUNK
    o = offset % PERIOD
    return _PATTERN3[o:o + n]


def pattern_iter(total, chunk=CHUNK):
    off = 0
    while off < total:
        n = min(chunk, total - off)
        yield pattern_chunk(off, n)
        off += n


def pattern_bytes(total):
    return b"".join(pattern_iter(total))


_sha_cache = {}


def pattern_sha256(total):
    if total not in _sha_cache:
        h = hashlib.sha256()
        for c in pattern_iter(total):
            h.update(c)
        _sha_cache[total] = h.hexdigest()
    return _sha_cache[total]


REASONS = {
    100: "Continue", 101: "Switching Protocols", 200: "OK", 201: "Created",
    202: "Accepted", 204: "No Content", 301: "Moved Permanently", 302: "Found",
    304: "Not Modified", 400: "Bad Request", 401: "Unauthorized",
    403: "Forbidden", 404: "Not Found", 405: "Method Not Allowed",
    408: "Request Timeout", 409: "Conflict", 413: "Content Too Large",
    418: "I'm a teapot", 429: "Too Many Requests", 500: "Internal Server Error",
    501: "Not Implemented", 502: "Bad Gateway", 503: "Service Unavailable",
    504: "Gateway Timeout",
}

CONTROL_PATHS = ("/stats", "/log")
CONTROL_PREFIX = "/control/"
HEALTH_PATH = "/health"


def is_control(path):
    return path in CONTROL_PATHS or path.startswith(CONTROL_PREFIX)


class PeerClosed(Exception):
    pass


class BadRequest(Exception):
    pass


class Server:
    def __init__(self, args):
        self.args = args
        self.name = args.name
        self.lock = threading.Lock()
        self.serial_lock = threading.Lock()
        self.accepted = 0
        self.control_conns = 0
        self.control_open = 0
        self.open = 0
        self.requests = 0
        self.responses = 0
        self.dropped = 0
        self.log = []
        self.next_conn = 0
        self.health_status = args.health_status
        self.health = 0
        self.health_conns = 0
        self.health_open = 0
        # /control/fail: every fail_every-th ordinary request (0: none) is
        # answered fail_status; fail_seen counts them since the control.
        self.fail_status = 500
        self.fail_every = 0
        self.fail_seen = 0
        self.failed = 0
        # --tls-cert/--tls-key: the server-side TLS context (None: plain).
        self.tls_ctx = None
        self.tls_failed = 0
        self.plain_refused = 0
        self.tls_rejected = 0
        if getattr(args, "tls_cert", None):
            c = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            c.minimum_version = ssl.TLSVersion.TLSv1_2
            c.load_cert_chain(args.tls_cert, args.tls_key)
            c.set_alpn_protocols(["http/1.1"])
            c.sni_callback = _record_sni
            self.tls_ctx = c

    def stats(self):
        with self.lock:
            return {
                "name": self.name,
                "accepted": self.accepted,
                "connections": self.accepted - self.control_conns - self.health_conns,
                "open": self.open - self.control_open - self.health_open,
                "requests": self.requests,
                "responses": self.responses,
                "dropped": self.dropped,
                "health": self.health,
                "health_connections": self.health_conns,
                "health_status": self.health_status,
                "failed": self.failed,
                "fail_status": self.fail_status,
                "fail_every": self.fail_every,
                **({"tls": True, "tls_failed": self.tls_failed,
                    "plain_refused": self.plain_refused}
                   if self.tls_ctx is not None else {}),
                **({"tls_rejected": self.tls_rejected}
                   if getattr(self.args, "reject_tls", False) else {}),
            }

    def serve(self):
        ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        ls.bind(("127.0.0.1", self.args.port))
        ls.listen(512)
        print("upstream %s listening on 127.0.0.1:%d%s" % (
            self.name, self.args.port, " (TLS)" if self.tls_ctx is not None else ""),
              flush=True)
        while True:
            s, addr = ls.accept()
            with self.lock:
                self.accepted += 1
                self.open += 1
                self.next_conn += 1
                cid = self.next_conn
            t = threading.Thread(target=self.conn_main, args=(s, cid), daemon=True)
            t.start()

    def start_tls(self, s, cid):
        """--tls-cert: the TLS handshake on an accepted connection. Returns
        (socket to use, control_only): the wrapped socket, or the plain one
        (limited to control requests) when the first byte is not a TLS
        handshake record; (None, _) when the connection is over."""
        s.settimeout(10)
        try:
            first = s.recv(1, socket.MSG_PEEK)
        except OSError:
            return None, False
        if not first:
            return None, False
        if first != b"\x16":
            s.settimeout(None)
            return s, True
        try:
            t = self.tls_ctx.wrap_socket(s, server_side=True)
        except (ssl.SSLError, OSError) as e:
            with self.lock:
                self.tls_failed += 1
            print("upstream %s conn %d: tls handshake failed: %s" % (self.name, cid, e),
                  file=sys.stderr, flush=True)
            return None, False
        t.settimeout(None)
        return t, False

    def reject_tls(self, s):
        """--reject-tls: a ClientHello to this plain upstream gets a 400 and
        the close; returns whether it did."""
        if s.recv(1, socket.MSG_PEEK) != b"\x16":
            return False
        with self.lock:
            self.tls_rejected += 1
        s.recv(65536)  # the hello read, so the close is not a reset
        s.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\n"
                  b"Content-Length: 12\r\nConnection: close\r\n\r\nnot TLS here")
        return True

    def conn_main(self, s, cid):
        c = None
        try:
            control_only = False
            if self.tls_ctx is not None:
                t, control_only = self.start_tls(s, cid)
                if t is None:
                    return
                s = t
            elif getattr(self.args, "reject_tls", False) and self.reject_tls(s):
                return
            c = Conn(self, s, cid)
            c.control_only = control_only
            c.run()
        except (PeerClosed, ConnectionError, socket.timeout, OSError, BadRequest):
            pass
        except Exception as e:  # a bug here must be visible in the test output
            print("upstream %s conn %d: %r" % (self.name, cid, e), file=sys.stderr,
                  flush=True)
        finally:
            if isinstance(s, ssl.SSLSocket):
                _close_notify(s)
            try:
                s.close()
            except OSError:
                pass
            with self.lock:
                self.open -= 1
                if c is not None and c.control:
                    self.control_open -= 1
                if c is not None and c.probe:
                    self.health_open -= 1


class Conn:
    def __init__(self, server, sock, cid):
        self.srv = server
        self.s = sock
        self.cid = cid
        self.buf = bytearray()
        self.nresp = 0
        self.first = True
        self.control = False
        self.probe = False
        self.control_only = False  # a plain connection to a TLS upstream
        self.tls = _tls_info(sock) if isinstance(sock, ssl.SSLSocket) else None
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if server.args.sndbuf:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, server.args.sndbuf)

    # -- reading -----------------------------------------------------------
    def fill(self):
        d = self.s.recv(262144)
        if not d:
            raise PeerClosed()
        self.buf += d

    def read_head(self):
        while True:
            i = self.buf.find(b"\r\n\r\n")
            j = self.buf.find(b"\n\n")
            ends = [(i, 4), (j, 2)]
            ends = [e for e in ends if e[0] >= 0]
            if ends:
                pos, ln = min(ends)
                head = bytes(self.buf[:pos])
                del self.buf[:pos + ln]
                return head
            if len(self.buf) > 1 << 20:
                raise BadRequest("head too large")
            self.fill()

    def read_line(self):
        while True:
            i = self.buf.find(b"\n")
            if i >= 0:
                line = bytes(self.buf[:i + 1])
                del self.buf[:i + 1]
                return line.rstrip(b"\r\n")
            if len(self.buf) > 65536:
                raise BadRequest("line too long")
            self.fill()

    def read_body(self, headers, sink):
        """Reads the request body per its framing, feeding sink(bytes)."""
        te = [v for n, v in headers if n.lower() == "transfer-encoding"]
        cl = [v for n, v in headers if n.lower() == "content-length"]
        if te and te[-1].strip().lower().split(",")[-1].strip() == "chunked":
            while True:
                line = self.read_line()
                size = int(line.split(b";")[0].strip(), 16)
                if size == 0:
                    while self.read_line() != b"":  # trailers
                        pass
                    return "chunked"
                self.read_exact(size, sink)
                if self.read_line() != b"":
                    raise BadRequest("bad chunk end")
        if cl:
            self.read_exact(int(cl[0].strip()), sink)
            return "content-length"
        return "none"

    def read_exact(self, n, sink):
        while n > 0:
            if not self.buf:
                self.fill()
            take = min(n, len(self.buf))
            sink(bytes(self.buf[:take]))
            del self.buf[:take]
            n -= take

    def wait_close(self):
        """Stalls until the peer closes, discarding whatever it sends."""
        self.buf.clear()
        while True:
            d = self.s.recv(65536)
            if not d:
                return

    # -- writing -----------------------------------------------------------
    def send_head(self, req, status, headers, close):
        self.s.sendall(self.head_bytes(req, status, headers, close))

    def head_bytes(self, req, status, headers, close):
        reason = REASONS.get(status, "Status")
        lines = ["HTTP/1.1 %d %s" % (status, reason),
                 "X-Upstream: %s" % self.srv.name,
                 "X-Conn: %d" % self.cid]
        for n, v in headers:
            lines.append("%s: %s" % (n, v))
        if close:
            lines.append("Connection: close")
        elif req["version"] == "HTTP/1.0":
            lines.append("Connection: keep-alive")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")

    def respond(self, req, status, body=b"", headers=(), close=False):
        hs = list(headers)
        if status >= 200 and status not in (204, 304):
            hs.append(("Content-Length", str(len(body))))
        self.send_head(req, status, hs, close)
        if body and req["method"] != "HEAD" and status not in (204, 304):
            self.s.sendall(body)

    # -- the loop ----------------------------------------------------------
    def run(self):
        srv = self.srv
        while True:
            head = self.read_head()
            req = parse_head(head)
            req["conn"] = self.cid
            req["t_head"] = time.time()
            control = is_control(req["path"])
            probe = req["path"] == HEALTH_PATH
            if self.control_only and not control:
                # Plain HTTP to a TLS upstream: closed without a byte.
                with srv.lock:
                    srv.plain_refused += 1
                return
            if self.first and control:
                self.control = True
                with srv.lock:
                    srv.control_conns += 1
                    srv.control_open += 1
            if self.first and probe:
                self.probe = True
                with srv.lock:
                    srv.health_conns += 1
                    srv.health_open += 1
            self.first = False
            if control:
                self.read_body(req["headers"], lambda b: None)
                if req["path"].startswith(CONTROL_PREFIX):
                    if not self.control_request(req):
                        return
                    continue
                data = srv.stats() if req["path"] == "/stats" else list(srv.log)
                with srv.lock:
                    data = json.loads(json.dumps(data))
                self.respond(req, 200, json.dumps(data).encode(),
                             [("Content-Type", "application/json")],
                             close=not req["keepalive"])
                if not req["keepalive"]:
                    return
                continue

            entry = {k: req[k] for k in ("method", "target", "path", "version",
                                         "headers", "conn", "t_head")}
            entry["request_id"] = req_header(req, "x-request-id")
            entry["dropped"] = False
            entry["t_done"] = None
            entry["status"] = None
            entry["health"] = probe
            entry["failed"] = False
            if self.tls is not None:
                entry["tls"] = self.tls
            with srv.lock:
                if probe:
                    srv.health += 1
                else:
                    srv.requests += 1
                srv.log.append(entry)

            if srv.args.serial:
                srv.serial_lock.acquire()
            try:
                keep = self.handle(req, entry)
            finally:
                if srv.args.serial:
                    srv.serial_lock.release()
            if not keep:
                return

    def control_request(self, req):
        """/control/...: changes the server's behaviour at runtime. Returns
        whether the connection continues."""
        srv = self.srv
        parts = req["path"][len(CONTROL_PREFIX):].strip("/").split("/")
        status, data = 200, None
        if parts[0] == "health" and len(parts) == 2 and parts[1].isdigit() \
                and 100 <= int(parts[1]) <= 999:
            with srv.lock:
                srv.health_status = int(parts[1])
                data = {"health_status": srv.health_status}
        elif parts == ["fail"]:
            q = req["query"]
            try:
                code = int(q.get("status", 500))
                every = int(q.get("every", 0))
            except ValueError:
                code, every = 0, -1
            if not 200 <= code <= 999 or every < 0:
                status, data = 400, {"error": "bad /control/fail query %r" % q}
            else:
                with srv.lock:
                    srv.fail_status = code
                    srv.fail_every = every
                    srv.fail_seen = 0
                    data = {"fail_status": code, "fail_every": every}
        else:
            status, data = 404, {"error": "unknown control %s" % req["path"]}
        self.respond(req, status, json.dumps(data).encode(),
                     [("Content-Type", "application/json")],
                     close=not req["keepalive"])
        return req["keepalive"]

    def handle(self, req, entry):
        """Answers one request; returns whether the connection continues."""
        srv = self.srv
        h = hashlib.sha256()
        n = [0]

        def sink(b):
            n[0] += len(b)
            h.update(b)

        if req["path"] == "/early-response":
            return self.early_response(req, entry, sink, n, h)
        if "wait" in req["query"]:  # a slow consumer: the body waits unread
            time.sleep(int(req["query"]["wait"]) / 1000.0)
        try:
            entry["framing"] = self.read_body(req["headers"], sink)
        except ValueError:
            raise BadRequest("bad framing")
        entry["body_len"] = n[0]
        entry["body_sha256"] = h.hexdigest()
        entry["t_body"] = time.time()

        args = srv.args
        if args.drop_after is not None and self.nresp >= args.drop_after:
            with srv.lock:
                srv.dropped += 1
            entry["dropped"] = True
            return False

        if req["path"] != HEALTH_PATH and self.inject_failure(req, entry):
            self.nresp += 1
            close = not req["keepalive"] or args.serial
            if args.close_after is not None and self.nresp >= args.close_after:
                return False
            return not close

        q = req["query"]
        if "sndbuf" in q:
            self.s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, int(q["sndbuf"]))

        close = not req["keepalive"] or args.serial
        path = req["path"]
        parts = path.strip("/").split("/")
        status = 200
        keep = not close
        answered = True

        if path == HEALTH_PATH:
            with srv.lock:
                status = srv.health_status
            body = ("%s health %d\n" % (srv.name, status)).encode()
            hs = [("Content-Type", "text/plain")]
            if status < 200:
                body = b""
            if 300 <= status < 400:
                hs.append(("Location", args.health_location))
            self.respond(req, status, body, hs, close)
            entry["status"] = status
            entry["t_done"] = time.time()
        elif path == "/echo":
            body = json.dumps({
                "name": srv.name, "method": req["method"], "path": req["target"],
                "version": req["version"], "headers": req["headers"],
                "body_len": n[0], "body_sha256": h.hexdigest(), "conn": self.cid,
                "framing": entry["framing"], "raw_head": req["raw_head"],
                "t_head": entry["t_head"], "t_body": entry["t_body"],
                **({"tls": self.tls} if self.tls is not None else {}),
            }).encode()
            self.respond(req, 200, body, [("Content-Type", "application/json")],
                         close)
        elif parts[0] == "status" and len(parts) == 2:
            status = int(parts[1])
            body = ("%s %d\n" % (srv.name, status)).encode()
            if status < 200:
                body = b""
            self.respond(req, status, body, [("Content-Type", "text/plain")], close)
        elif parts[0] == "delay" and len(parts) == 2:
            time.sleep(int(parts[1]) / 1000.0)
            self.respond(req, 200, ("%s\n" % srv.name).encode(),
                         [("Content-Type", "text/plain")], close)
        elif parts[0] in ("bytes", "whole", "chunked", "close-delimited") and len(parts) == 2:
            total = int(parts[1])
            chunk = int(q.get("chunk", CHUNK))
            head_only = req["method"] == "HEAD"
            if parts[0] == "whole":
                head = self.head_bytes(req, 200, [
                    ("Content-Type", "application/octet-stream"),
                    ("Content-Length", str(total))], close)
                self.s.sendall(head + (b"" if head_only else pattern_bytes(total)))
            elif parts[0] == "bytes":
                self.send_head(req, 200, [("Content-Type", "application/octet-stream"),
                                          ("Content-Length", str(total))], close)
                if not head_only:
                    for c in pattern_iter(total, chunk):
                        self.s.sendall(c)
            elif parts[0] == "chunked" and req["version"] == "HTTP/1.1":
                self.send_head(req, 200, [("Content-Type", "application/octet-stream"),
                                          ("Transfer-Encoding", "chunked")], close)
                if not head_only:
                    for c in pattern_iter(total, chunk):
                        self.s.sendall(b"%x\r\n%s\r\n" % (len(c), c))
                    self.s.sendall(b"0\r\n\r\n")
            else:
                self.send_head(req, 200, [("Content-Type", "application/octet-stream")],
                               True)
                if not head_only:
                    for c in pattern_iter(total, chunk):
                        self.s.sendall(c)
                keep = False
        elif path == "/reset-mid":
            answered = False
            self.send_head(req, 200, [("Content-Type", "application/octet-stream"),
                                      ("Content-Length", "1000000")], False)
            self.s.sendall(pattern_bytes(100000))
            time.sleep(0.3)
            self.s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                              struct.pack("ii", 1, 0))
            keep = False
        elif path == "/stall-mid":
            answered = False
            self.send_head(req, 200, [("Content-Type", "application/octet-stream"),
                                      ("Content-Length", "1000000")], False)
            self.s.sendall(pattern_bytes(100000))
            self.wait_close()
            keep = False
        elif path == "/stall":
            answered = False
            self.wait_close()
            keep = False
        elif path == "/drop":
            answered = False
            keep = False
        elif path == "/reset":
            answered = False
            self.s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                              struct.pack("ii", 1, 0))
            keep = False
        elif path == "/garbage":
            answered = False
            self.s.sendall(b"this is not HTTP at all\r\n\r\n")
            keep = False
        elif path == "/early-hints":
            self.s.sendall(b"HTTP/1.1 103 Early Hints\r\nLink: </s.css>; rel=preload\r\n\r\n")
            time.sleep(0.05)
            self.respond(req, 200, ("%s\n" % srv.name).encode(),
                         [("Content-Type", "text/plain")], close)
        elif path == "/bad-framing":
            self.s.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n"
                           b"Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n")
            keep = False
        elif path == "/half-head":
            answered = False
            self.s.sendall(b"HTTP/1.1 200 OK\r\nContent-Le")
            time.sleep(0.1)
            keep = False
        elif path == "/short-body":
            answered = False
            self.send_head(req, 200, [("Content-Type", "application/octet-stream"),
                                      ("Content-Length", "100000")], False)
            self.s.sendall(pattern_bytes(1000))
            time.sleep(0.1)
            keep = False
        elif path == "/chunked-truncated":
            answered = False
            self.send_head(req, 200, [("Content-Type", "application/octet-stream"),
                                      ("Transfer-Encoding", "chunked")], False)
            for c in pattern_iter(3000, 1000):
                self.s.sendall(b"%x\r\n%s\r\n" % (len(c), c))
            time.sleep(0.1)
            keep = False
        elif path == "/hop":
            self.send_head(req, 200, [("Content-Type", "text/plain"),
                                      ("Connection", "X-Hop"),
                                      ("X-Hop", "secret"),
                                      ("Keep-Alive", "timeout=5"),
                                      ("Proxy-Connection", "keep-alive"),
                                      ("X-Keep", "yes"),
                                      ("Content-Length", "4")], close)
            self.s.sendall(b"hop\n")
        elif path == "/ws-reset":
            answered = False
            self.s.sendall(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                           b"Connection: Upgrade\r\n\r\n")
            self.s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                              struct.pack("ii", 1, 0))
            keep = False
        elif path == "/fold-after-1xx":
            self.s.sendall(b"HTTP/1.1 100 Continue\r\n\r\n"
                           b"HTTP/1.1 200 OK\r\nX-A: a\r\n folded\r\n"
                           b"Content-Length: 3\r\nConnection: close\r\n\r\nok\n")
            keep = False
        elif path == "/ws":
            up = (req_header(req, "upgrade") or "").lower()
            if up != "websocket":
                self.respond(req, 400, b"not an upgrade\n", close=True)
                return False
            hs = [("Upgrade", "websocket"), ("Connection", "Upgrade")]
            key = req_header(req, "sec-websocket-key")
            if key:
                acc = base64.b64encode(hashlib.sha1(
                    (key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").encode()).digest())
                hs.append(("Sec-WebSocket-Accept", acc.decode()))
            lines = ["HTTP/1.1 101 Switching Protocols", "X-Upstream: %s" % srv.name,
                     "X-Conn: %d" % self.cid] + ["%s: %s" % x for x in hs]
            self.s.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
            entry["status"] = 101
            entry["t_done"] = time.time()
            with srv.lock:
                srv.responses += 1
            if self.buf:
                self.s.sendall(bytes(self.buf))
                self.buf.clear()
            while True:
                d = self.s.recv(65536)
                if not d:
                    return False
                self.s.sendall(d)
        elif path == "/sse" or (parts[0] == "sse" and len(parts) == 2):
            count = int(parts[1]) if len(parts) == 2 else int(q.get("n", 10))
            interval = int(q.get("interval", 100)) / 1000.0
            self.send_head(req, 200, [("Content-Type", "text/event-stream"),
                                      ("Cache-Control", "no-cache"),
                                      ("Transfer-Encoding", "chunked")], close)
            for i in range(count):
                if i:
                    time.sleep(interval)
                ev = ("id: %d\ndata: %d %.6f\n\n" % (i, i, time.time())).encode()
                self.s.sendall(b"%x\r\n%s\r\n" % (len(ev), ev))
            self.s.sendall(b"0\r\n\r\n")
        else:
            self.respond(req, 200, ("%s\n" % srv.name).encode(),
                         [("Content-Type", "text/plain")], close)

        if entry["status"] is None and answered:
            entry["status"] = status
            entry["t_done"] = time.time()
            with srv.lock:
                srv.responses += 1
        self.nresp += 1
        if args.close_after is not None and self.nresp >= args.close_after:
            return False
        return keep

    def inject_failure(self, req, entry):
        """/control/fail: answers this request with the failure status if it
        is the Nth since the control; returns whether it did."""
        srv = self.srv
        with srv.lock:
            if srv.fail_every <= 0:
                return False
            srv.fail_seen += 1
            if srv.fail_seen % srv.fail_every != 0:
                return False
            status = srv.fail_status
        close = not req["keepalive"] or srv.args.serial
        body = ("%s injected %d\n" % (srv.name, status)).encode()
        self.respond(req, status, body, [("Content-Type", "text/plain")], close)
        entry["status"] = status
        entry["failed"] = True
        entry["t_done"] = time.time()
        with srv.lock:
            srv.responses += 1
            srv.failed += 1
        return True

    def early_response(self, req, entry, sink, n, h):
        """/early-response: the answer goes out before the body is read, as
        an application that rejects an upload by its head would do."""
        srv = self.srv
        close = not req["keepalive"] or srv.args.serial
        self.respond(req, 200, ("%s early\n" % srv.name).encode(),
                     [("Content-Type", "text/plain")], close)
        entry["status"] = 200
        entry["t_done"] = time.time()
        with srv.lock:
            srv.responses += 1
        self.nresp += 1
        try:
            entry["framing"] = self.read_body(req["headers"], sink)
        except ValueError:
            raise BadRequest("bad framing")
        entry["body_len"] = n[0]
        entry["body_sha256"] = h.hexdigest()
        entry["t_body"] = time.time()
        return not close


def _record_sni(sslobj, name, context):
    """The SNI callback: keeps the server name the client sent."""
    sslobj.sw_sni = name
    return None


def _tls_info(s):
    c = s.cipher()
    return {"version": s.version(), "cipher": c[0] if c else None,
            "alpn": s.selected_alpn_protocol(),
            "sni": getattr(s, "sw_sni", None)}


def _close_notify(s):
    """Sends close_notify without waiting for the peer's, unless the socket
    is set to close with a reset (SO_LINGER on, 0 s)."""
    try:
        on, secs = struct.unpack("ii", s.getsockopt(socket.SOL_SOCKET, socket.SO_LINGER, 8))
        if on and secs == 0:
            return
        s.settimeout(0)
        s.unwrap()
    except (ssl.SSLError, OSError, ValueError):
        pass


def req_header(req, name):
    for n, v in req["headers"]:
        if n.lower() == name:
            return v
    return None


def parse_head(head):
    text = head.decode("latin-1")
    lines = text.replace("\r\n", "\n").split("\n")
    try:
        method, target, version = lines[0].split(" ", 2)
    except ValueError:
        raise BadRequest("bad request line")
    headers = []
    for line in lines[1:]:
        if line[:1] in (" ", "\t") and headers:
            headers[-1][1] += " " + line.strip()
            continue
        if ":" not in line:
            raise BadRequest("bad header line")
        n, v = line.split(":", 1)
        headers.append([n, v.strip()])
    u = urllib.parse.urlsplit(target)
    query = dict(urllib.parse.parse_qsl(u.query))
    conn_tokens = []
    for n, v in headers:
        if n.lower() == "connection":
            conn_tokens += [t.strip().lower() for t in v.split(",")]
    if version == "HTTP/1.0":
        keepalive = "keep-alive" in conn_tokens
    else:
        keepalive = "close" not in conn_tokens
    return {
        "method": method, "target": target, "path": u.path, "query": query,
        "version": version, "headers": headers, "keepalive": keepalive,
        "raw_head": text,
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--name", required=True)
    ap.add_argument("--close-after", type=int, default=None)
    ap.add_argument("--drop-after", type=int, default=None)
    ap.add_argument("--serial", action="store_true")
    ap.add_argument("--sndbuf", type=int, default=0)
    ap.add_argument("--health-status", type=int, default=200)
    ap.add_argument("--health-location", default="/health-moved")
    ap.add_argument("--tls-cert", default=None, metavar="FILE")
    ap.add_argument("--tls-key", default=None, metavar="FILE")
    ap.add_argument("--reject-tls", action="store_true")
    args = ap.parse_args()
    if bool(args.tls_cert) != bool(args.tls_key):
        ap.error("--tls-cert and --tls-key go together")
    threading.stack_size(512 * 1024)
    try:
        Server(args).serve()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
