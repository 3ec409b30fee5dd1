"""Regressions of the TLS review (commit "TLS review fixes ..."): each test is
the reviewer's reproduction, asserting what a user sees.

1. Request smuggling over an HTTPS listener: one read of ciphertext that
   yields more than 64 KiB of plaintext, with a streamed body (Content-Length
   above request_buffer). The upstream must receive exactly the request the
   client sent, head first; body bytes that look like a request are body.
2. A pooled TLS upstream connection with bytes left in the TLS layer after a
   response (an 80 KiB response whose last 64 KiB arrive in one read, and a
   stray response after it) must not be reused: the next client gets its own
   response, never the stray bytes.
3. A TLS tunnel (WebSocket upgrade) whose client sends close_notify and then
   FIN: that is one half-close; the upstream's data keeps coming until the
   upstream closes.
4. A SIGHUP reload that changes tls_name: health checks use the new name, so
   the server comes up and requests get 200.

Clients whose TLS records must be cut at exact places use ssl.MemoryBIO
(RecordClient); the upstreams of tests 2 and 3 are tiny raw servers here.
"""

import hashlib
import re
import socket
import ssl
import threading
import time

from harness import (SLOW, admin_status, assert_proxy_error, health_opts,
                     parse_response_bytes, timeout, traffic, wait_for)
from test_tls import Pki, tls_config
from test_tls_upstream import FAST, get_ok, server_status, tls_opts, tls_upstream

# -- a TLS client that cuts records where the test says --------------------------


class RecordClient:
    """TLS over a raw socket through ssl.MemoryBIO: records() gives the
    ciphertext of one record per chunk, so a test sends exact record
    boundaries (or half a record); recv_* decrypt what arrives."""

    def __init__(self, ctx, port, cafile, sni="a.test", timeout_s=5.0):
        c = ssl.create_default_context(cafile=cafile)
        c.set_alpn_protocols(["http/1.1"])
        self.inc, self.out = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.obj = c.wrap_bio(self.inc, self.out, server_hostname=sni)
        self.s = socket.create_connection(("127.0.0.1", port), timeout=timeout_s)
        self.s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        ctx.clients.append(self)
        self.plain = bytearray()
        self.close_notify = False  # the server's close_notify arrived
        self.eof = False           # the server's FIN (or a reset) arrived
        deadline = time.time() + timeout_s * SLOW
        while True:
            try:
                self.obj.do_handshake()
                break
            except ssl.SSLWantReadError:
                self._flush()
                self.s.settimeout(max(0.01, deadline - time.time()))
                d = self.s.recv(65536)
                if not d:
                    raise AssertionError("closed in the TLS handshake")
                self.inc.write(d)
        self._flush()

    def _flush(self):
        d = self.out.read()
        if d:
            self.s.sendall(d)

    def records(self, data, size=16384):
        """Ciphertext of `data` as one TLS record per `size` bytes."""
        out = bytearray()
        for k in range(0, len(data), size):
            self.obj.write(data[k:k + size])
            out += self.out.read()
        return bytes(out)

    def send(self, data):
        self.s.sendall(self.records(data))

    def send_close_notify(self):
        """close_notify out, without waiting for the server's."""
        try:
            self.obj.unwrap()
        except ssl.SSLWantReadError:
            pass
        self._flush()

    def _pump(self, deadline):
        """Decrypts what arrives into self.plain; False once the server has
        ended its side (close_notify or FIN)."""
        if self.close_notify or self.eof:
            return False
        self.s.settimeout(max(0.01, deadline - time.time()))
        try:
            d = self.s.recv(65536)
        except socket.timeout:
            raise AssertionError("nothing more from switchd before the deadline; "
                                 "have %d bytes: %r" % (len(self.plain),
                                                        bytes(self.plain[-300:])))
        except ConnectionResetError:
            d = b""
        if not d:
            self.eof = True
        else:
            self.inc.write(d)
        while True:
            try:
                p = self.obj.read(65536)
            except ssl.SSLWantReadError:
                break
            except ssl.SSLZeroReturnError:
                self.close_notify = True
                break
            if not p:
                self.close_notify = True
                break
            self.plain += p
        return not (self.close_notify or self.eof)

    def read_until_end(self, timeout_s):
        """Plaintext until the server ends its side."""
        deadline = time.time() + timeout_s
        while self._pump(deadline):
            pass
        return bytes(self.plain)

    def read_response(self, timeout_s):
        """One Content-Length response out of self.plain."""
        deadline = time.time() + timeout_s
        while True:
            i = self.plain.find(b"\r\n\r\n")
            if i >= 0:
                m = re.search(rb"\r\ncontent-length: *(\d+)", bytes(self.plain[:i]), re.I)
                assert m, "no Content-Length in %r" % bytes(self.plain[:i + 4])
                end = i + 4 + int(m.group(1))
                if len(self.plain) >= end:
                    raw = bytes(self.plain[:end])
                    del self.plain[:end]
                    return parse_response_bytes(raw)
            if self.close_notify or self.eof:
                raise AssertionError("switchd ended the connection in a response: %r"
                                     % bytes(self.plain[:500]))
            self._pump(deadline)

    def close(self):
        try:
            self.s.close()
        except OSError:
            pass


# -- a raw upstream in this process --------------------------------------------------


class RawServer:
    """Accepts on 127.0.0.1:port and runs handler(sock, conn_index) in a
    thread per connection (daemon threads; the socket closes at teardown)."""

    def __init__(self, ctx, handler):
        self.port = ctx.port()
        self.addr = "127.0.0.1:%d" % self.port
        self.handler = handler
        self.conns = 0
        self.errors = []
        self.ls = socket.socket()
        self.ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.ls.bind(("127.0.0.1", self.port))
        self.ls.listen(16)
        ctx.clients.append(self)  # closed at teardown
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                s, _ = self.ls.accept()
            except OSError:
                return
            self.conns += 1
            threading.Thread(target=self._run, args=(s, self.conns), daemon=True).start()

    def _run(self, s, n):
        s.settimeout(10)
        try:
            self.handler(s, n)
        except Exception as e:  # noqa: recorded, the test decides
            self.errors.append(repr(e))
        finally:
            s.close()

    def close(self):
        try:
            self.ls.close()
        except OSError:
            pass


class ServerTls:
    """The server side of TLS over a raw socket (MemoryBIO), so the server
    decides where its records go on the wire."""

    def __init__(self, s, cert):
        c = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        c.load_cert_chain(cert[0], cert[1])
        self.s = s
        self.inc, self.out = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.obj = c.wrap_bio(self.inc, self.out, server_side=True)
        self.plain = bytearray()
        while True:
            try:
                self.obj.do_handshake()
                break
            except ssl.SSLWantReadError:
                self._flush()
                d = s.recv(65536)
                if not d:
                    raise EOFError("closed in the handshake")
                self.inc.write(d)
        self._flush()  # the Finished answer and any session tickets

    def _flush(self):
        d = self.out.read()
        if d:
            self.s.sendall(d)

    def record(self, data):
        self.obj.write(data)
        return self.out.read()

    def read_head(self):
        """The next request head (bytes), or None at the peer's end."""
        while True:
            try:  # what the TLS layer holds first (it may have come with Finished)
                while True:
                    self.plain += self.obj.read(65536)
            except ssl.SSLWantReadError:
                pass
            except ssl.SSLZeroReturnError:
                return None
            if b"\r\n\r\n" in self.plain:
                break
            d = self.s.recv(65536)
            if not d:
                return None
            self.inc.write(d)
        head, _, rest = bytes(self.plain).partition(b"\r\n\r\n")
        self.plain = bytearray(rest)
        return head


def request_path(head):
    return head.split(b"\r\n", 1)[0].split(b" ")[1].decode()


# -- 1. no request smuggling through a read larger than one TLS read call --------


def test_tls_regress_streamed_body_stays_behind_its_head(ctx):
    """exp1: a POST whose body is streamed (Content-Length 2 000 000 above the
    1 MiB request_buffer). Its first 80 000 bytes of plaintext come as five
    16 000-byte records: 16 bytes short of the first record first, then the
    rest in one write, so that one read of switchd's yields 80 000 bytes of
    plaintext, more than one TLS read call takes (64 KiB). At plaintext
    offset 65536 the body carries what looks like a request. The upstream
    must see exactly one request: the POST, its head first, its body whole
    and in order (the look-alike is body), no request /smuggled."""
    pki = Pki(ctx)
    a = pki.leaf("a", "a.test")
    up = ctx.upstream("blue")
    port = ctx.port()
    sw = ctx.switchd(conf=tls_config(port, [up], [a]), port=port)

    CL = 2000000
    head = (b"POST /echo HTTP/1.1\r\nHost: a.test\r\nContent-Length: %d\r\n"
            b"Connection: close\r\n\r\n" % CL)
    first = bytearray(head + b"A" * (16000 - len(head)))
    for _ in range(4):
        first += b"B" * 16000
    smug = (b"GET /smuggled HTTP/1.1\r\nHost: internal\r\n"
            b"X-Forwarded-For: 6.6.6.6\r\n\r\n")
    first[65536:65536 + len(smug)] = smug
    assert len(first) == 80000
    rest = b"C" * (CL - (len(first) - len(head)))
    body = bytes(first[len(head):]) + rest
    assert len(body) == CL

    c = RecordClient(ctx, sw.port, pki.ca)
    recs = c.records(bytes(first), 16000)
    assert len(recs) == 5 * 16022, "record size %d (not TLS 1.3 AES-GCM?)" % len(recs)
    cut = 16022 - 32  # the first record but its last 32 bytes
    c.s.sendall(recs[:cut])
    time.sleep(0.3 * SLOW)
    c.s.sendall(recs[cut:])  # 64 088 bytes: one read of switchd's
    time.sleep(0.3 * SLOW)
    c.send(rest)

    r = c.read_response(15 * SLOW)
    log = traffic(up)
    assert [(x["method"], x["path"]) for x in log] == [("POST", "/echo")], \
        "the upstream saw %r; the client got %r %r" % (
            [(x["method"][:60], x["path"], x["headers"]) for x in log], r, r.body[:100])
    assert r.status == 200, "the POST got %r %r" % (r, r.body[:200])
    e = r.json()
    assert e["method"] == "POST" and e["path"] == "/echo", e
    assert e["raw_head"].startswith("POST /echo HTTP/1.1\r\n"), e["raw_head"]
    assert "6.6.6.6" not in e["raw_head"] and "internal" not in e["raw_head"], \
        e["raw_head"]
    assert e["body_len"] == CL and e["body_sha256"] == hashlib.sha256(body).hexdigest(), \
        "body of %d bytes reached the upstream, not the %d sent, in order" % (
            e["body_len"], CL)
    assert sw.alive()


# -- 2. a pooled TLS connection with bytes left in TLS is not reused --------------


@timeout(30)
def test_tls_regress_pooled_tls_leftover_not_served(ctx):
    """exp5: the TLS upstream answers GET /first with 80 KiB (head and body)
    in five 16 KiB records, the first record and part of the second in one
    write, the rest (the last 64 KiB exactly) and a stray record
    `HTTP/1.1 200 OK ... EVIL!` in the next. Any other path gets
    "own <path>". A second, unrelated client must get its own response."""
    pki = Pki(ctx)
    a = pki.leaf("a", "a.test")
    total = 5 * 16384
    hd = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % (total - 42)
    assert len(hd) == 42
    seen = []

    def handler(s, n):
        t = ServerTls(s, a)
        while True:
            h = t.read_head()
            if h is None:
                return
            path = request_path(h)
            seen.append((n, path))
            if path == "/first":
                plain = hd + b"a" * (total - len(hd))
                recs = [t.record(plain[k:k + 16384]) for k in range(0, total, 16384)]
                evil = t.record(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nEVIL!")
                s.sendall(recs[0] + recs[1][:16000])
                time.sleep(0.3 * SLOW)
                s.sendall(recs[1][16000:] + b"".join(recs[2:]) + evil)
            else:
                b = b"own %s" % path.encode()
                s.sendall(t.record(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s"
                                   % (len(b), b)))

    srv = RawServer(ctx, handler)
    sw = ctx.switchd([srv.addr], blue_opts=tls_opts(pki.ca, "a.test", **FAST))

    r1 = ctx.get(sw.port, "/first", store_body=True)
    assert r1.status == 200 and r1.body_len == total - len(hd) and \
        r1.body == b"a" * r1.body_len, "client 1: %r" % r1
    time.sleep(0.3)
    for i in range(2):
        r2 = ctx.get(sw.port, "/second-%d" % i)
        assert r2.status == 200 and r2.body == b"own /second-%d" % i, \
            "client %d got %r %r (another exchange's bytes)" % (i + 2, r2, r2.body)
    assert [p for _, p in seen] == ["/first", "/second-0", "/second-1"], seen
    assert not srv.errors, srv.errors
    assert sw.alive()


# -- 3. close_notify then FIN is one half-close of a TLS tunnel -------------------


def test_tls_regress_tunnel_half_close_close_notify_fin(ctx):
    """exp2: a WebSocket tunnel over an HTTPS listener; the client sends
    close_notify, then FIN. The upstream (which answers 101 and "hello",
    then "late-0;" .. "late-3;" every 250 ms, then closes) must keep
    reaching the client until it closes; then the client's connection ends."""
    pki = Pki(ctx)
    a = pki.leaf("a", "a.test")
    got_eof = threading.Event()

    def handler(s, n):
        buf = b""
        while b"\r\n\r\n" not in buf:
            d = s.recv(65536)
            if not d:
                return
            buf += d
        s.sendall(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                  b"Connection: Upgrade\r\n\r\nhello")

        def watch():  # the client's half-close, passed on as a FIN
            try:
                while s.recv(65536):
                    pass
                got_eof.set()
            except OSError:
                pass
        threading.Thread(target=watch, daemon=True).start()
        for i in range(4):
            time.sleep(0.25)
            s.sendall(b"late-%d;" % i)
        time.sleep(0.1)
        s.shutdown(socket.SHUT_WR)
        time.sleep(1)

    srv = RawServer(ctx, handler)
    port = ctx.port()
    sw = ctx.switchd(conf=tls_config(port, [srv.addr], [a]), port=port)

    c = RecordClient(ctx, sw.port, pki.ca)
    c.send(b"GET /ws HTTP/1.1\r\nHost: a.test\r\nUpgrade: websocket\r\n"
           b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
           b"Sec-WebSocket-Version: 13\r\n\r\n")
    deadline = time.time() + 5 * SLOW
    while b"hello" not in c.plain:
        assert c._pump(deadline), "ended before the 101: %r" % bytes(c.plain)
    assert c.plain.startswith(b"HTTP/1.1 101 "), bytes(c.plain[:200])
    c.send_close_notify()
    time.sleep(0.05)
    c.s.shutdown(socket.SHUT_WR)
    t0 = time.time()
    out = c.read_until_end(5 * SLOW)
    took = time.time() - t0
    data = out[out.index(b"\r\n\r\n") + 4:]
    assert data == b"hello" + b"".join(b"late-%d;" % i for i in range(4)), \
        "after close_notify+FIN the client got %r (ended by %s after %.2fs)" % (
            data, "close_notify" if c.close_notify else "FIN", took)
    assert took < 3 * SLOW, "the end came %.1fs after the upstream's" % took
    assert got_eof.wait(2), "the client's half-close never reached the upstream"
    assert not srv.errors, srv.errors
    assert sw.alive()


# -- 4. health checks after a reload use the new tls_name ------------------------


@timeout(30)
def test_tls_regress_reload_tls_name_health(ctx):
    """exp3: health checks on, tls_name wrong.test (the certificate is for
    good.test): the server is down, 503. A reload to tls_name good.test
    must bring it up: the probes use good.test, requests get 200."""
    pki = Pki(ctx)
    good = pki.leaf("good", "good.test")
    up = tls_upstream(ctx, "blue", good[:2])
    hopts = health_opts(1, health_interval="200ms", health_timeout="150ms",
                        health_fall=1)

    def conf(name):
        return ctx.config(port, [up], blue_opts=tls_opts(pki.ca, name, **FAST, **hopts))

    port = ctx.port()
    sw = ctx.switchd(conf=conf("wrong.test"), port=port)
    wait_for(lambda: server_status(sw)["health"] == "down"
             and (server_status(sw)["last_failure"] or "").startswith("tls:"),
             5 * SLOW, what="blue down with tls_name wrong.test")
    assert_proxy_error(ctx.get(port, "/"), 503, close=False)

    sw.reload(conf("good.test"), settle=0.1)
    t0 = time.time()

    def healthy():
        st = admin_status(sw.admin_socket)["colours"]["blue"]
        return st["healthy"] and st["servers"][0]["health"] == "up"
    try:
        wait_for(healthy, 3 * SLOW, what="blue up after the reload to good.test")
    except AssertionError:
        raise AssertionError("still down %.1fs after the reload to tls_name good.test: "
                             "%r; probes' SNI %r" % (
                                 time.time() - t0, server_status(sw),
                                 [e["tls"]["sni"] for e in up.log() if e["health"]][-3:]))
    for _ in range(3):
        get_ok(ctx, port)
    probes = [e for e in up.log() if e["health"]]
    assert probes and probes[-1]["tls"]["sni"] == "good.test", probes[-3:]
    assert all(e["tls"]["sni"] == "good.test" for e in traffic(up)), traffic(up)
    assert sw.alive()
