"""Graceful SIGTERM: stop accepting, close idle clients, finish in-flight
requests with Connection: close, exit 0 (or at shutdown_timeout)."""

import signal
import socket
import time

from harness import SLOW, build_request, timeout


@timeout(15)
def test_sigterm_finishes_in_flight_request(ctx):
    b = ctx.upstream("blue")
    sw = ctx.switchd([b])
    c = ctx.client(sw.port)
    c.send(build_request("GET", "/delay/1500"))
    time.sleep(0.3)
    t0 = time.time()
    sw.signal(signal.SIGTERM)
    r = c.read_response(timeout=5)
    assert r.status == 200 and r.body == b"blue\n", r
    assert r.has_token("connection", "close"), "no Connection: close during shutdown: %r" % r
    assert c.wait_closed(2)
    sw.assert_exited_ok(3)
    assert time.time() - t0 < 4 * SLOW


@timeout(15)
def test_sigterm_closes_idle_clients_promptly(ctx):
    b = ctx.upstream("blue")
    sw = ctx.switchd([b])
    idle = [ctx.client(sw.port) for _ in range(5)]
    for c in idle:
        assert c.request("GET", "/").status == 200
    never = ctx.client(sw.port)  # connected, never sent a byte
    time.sleep(0.1)
    t0 = time.time()
    sw.signal(signal.SIGTERM)
    for c in idle + [never]:
        assert c.wait_closed(1.5), "an idle client was not closed on SIGTERM"
        assert c.buf == b"", "bytes sent to an idle client: %r" % bytes(c.buf)
    sw.assert_exited_ok(2)
    assert time.time() - t0 < 2.5 * SLOW


@timeout(15)
def test_sigterm_stops_accepting(ctx):
    b = ctx.upstream("blue")
    sw = ctx.switchd([b])
    c = ctx.client(sw.port)
    c.send(build_request("GET", "/delay/1500"))
    time.sleep(0.3)
    sw.signal(signal.SIGTERM)
    time.sleep(0.3)
    s = socket.socket()
    s.settimeout(1)
    try:
        s.connect(("127.0.0.1", sw.port))
        # accepted by the kernel backlog perhaps; switchd must not serve it
        s.sendall(build_request("GET", "/"))
        data = b""
        try:
            data = s.recv(100)
        except (socket.timeout, ConnectionResetError):
            pass
        assert not data.startswith(b"HTTP/1.1 200"), \
            "a connection made after SIGTERM was served"
    except ConnectionRefusedError:
        pass
    finally:
        s.close()
    r = c.read_response(timeout=5)
    assert r.status == 200, r
    sw.assert_exited_ok(3)


@timeout(15)
def test_sigterm_shutdown_timeout(ctx):
    b = ctx.upstream("blue")
    sw = ctx.switchd([b], global_={"shutdown_timeout": "1s"})
    c = ctx.client(sw.port)
    c.send(build_request("GET", "/delay/8000"))
    time.sleep(0.3)
    t0 = time.time()
    sw.signal(signal.SIGTERM)
    sw.assert_exited_ok(4)
    dt = time.time() - t0
    assert 0.7 < dt < 3 * SLOW, "exit %.2fs after SIGTERM with shutdown_timeout 1s" % dt
    assert c.wait_closed(1), "the client connection outlived switchd"


@timeout(15)
def test_sigterm_keepalive_client_with_request_in_flight_gets_close(ctx):
    """A keep-alive client whose request is in flight gets its response with
    Connection: close, then the connection is closed."""
    b = ctx.upstream("blue")
    sw = ctx.switchd([b])
    c = ctx.client(sw.port)
    assert c.request("GET", "/").status == 200
    c.send(build_request("GET", "/delay/1000"))
    time.sleep(0.3)
    sw.signal(signal.SIGTERM)
    r = c.read_response(timeout=5)
    assert r.status == 200 and r.has_token("connection", "close"), r
    assert c.wait_closed(2)
    sw.assert_exited_ok(3)


@timeout(15)
def test_sigterm_idle_exit_is_quick(ctx):
    b = ctx.upstream("blue")
    sw = ctx.switchd([b])
    assert ctx.get(sw.port, "/").status == 200
    t0 = time.time()
    sw.signal(signal.SIGTERM)
    sw.assert_exited_ok(3)
    assert time.time() - t0 < 1.5 * SLOW


@timeout(15)
def test_sigterm_with_open_tunnel(ctx):
    b = ctx.upstream("blue")
    sw = ctx.switchd([b], global_={"shutdown_timeout": "1s"})
    c = ctx.client(sw.port)
    c.send(build_request("GET", "/ws", headers=[("Connection", "Upgrade"),
                                                ("Upgrade", "websocket")]))
    assert c.read_response().status == 101
    c.send(b"x")
    assert c.recv_exact(1) == b"x"
    t0 = time.time()
    sw.signal(signal.SIGTERM)
    sw.assert_exited_ok(4)
    assert time.time() - t0 < 3 * SLOW
    assert c.wait_closed(1)


@timeout(15)
def test_sigterm_during_slow_upload(ctx):
    b = ctx.upstream("blue")
    sw = ctx.switchd([b], global_={"shutdown_timeout": "1s"})
    c = ctx.client(sw.port)
    c.send(build_request("POST", "/echo", headers=[("Content-Length", "100000")]))
    c.send(b"x" * 1000)
    time.sleep(0.2)
    t0 = time.time()
    sw.signal(signal.SIGTERM)
    for _ in range(10):  # keep sending slowly
        if not c.try_send(b"y" * 100):
            break
        time.sleep(0.1)
    sw.assert_exited_ok(4)
    assert time.time() - t0 < 3 * SLOW
