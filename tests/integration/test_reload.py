"""SIGHUP reloads: live colour, servers, binds, limits; a broken file keeps
the old config."""

import signal
import threading
import time

from harness import build_request, make_config, port_accepts, timeout


def test_flip_moves_next_request_on_open_connection(ctx):
    b = ctx.upstream("blue")
    g = ctx.upstream("green")
    sw = ctx.switchd([b], [g])
    c = ctx.client(sw.port)
    assert c.request("GET", "/").body == b"blue\n"
    assert c.request("GET", "/").body == b"blue\n"
    sw.reload(make_config([sw.port], [b], [g], live="green"))
    r = c.request("GET", "/")
    assert r.body == b"green\n", "after SIGHUP to green the open connection got %r" % r
    assert not c.eof
    sw.reload(make_config([sw.port], [b], [g], live="blue"))
    assert c.request("GET", "/").body == b"blue\n"
    assert c.request("GET", "/").body == b"blue\n"
    assert not c.wait_closed(0.2)


def test_broken_reload_keeps_old_config(ctx):
    b = ctx.upstream("blue")
    g = ctx.upstream("green")
    sw = ctx.switchd([b], [g])
    c = ctx.client(sw.port)
    assert c.request("GET", "/").body == b"blue\n"
    bad = make_config([sw.port], [b], [g], live="green").split("\n")
    at = bad.index("listen")
    bad.insert(at, "    no_such_directive 42")
    bad = "\n".join(bad)
    sw.reload(bad)
    assert sw.alive()
    r = c.request("GET", "/")
    assert r.body == b"blue\n", "a rejected config changed the live colour: %r" % r
    assert ctx.get(sw.port, "/").body == b"blue\n"
    where = "%s:%d:" % (sw.conf_path, at + 1)
    err = sw.stderr_text()
    assert where in err, "the error log does not name %s: %r" % (where, err[-2000:])
    # a good file afterwards applies
    sw.reload(make_config([sw.port], [b], [g], live="green"))
    assert c.request("GET", "/").body == b"green\n"


def test_reload_adds_bind(ctx):
    b = ctx.upstream("blue")
    sw = ctx.switchd([b])
    p2 = ctx.port()
    assert not port_accepts(p2)
    c = ctx.client(sw.port)
    assert c.request("GET", "/").status == 200
    sw.reload(make_config([sw.port, p2], [b]))
    assert port_accepts(p2), "the new bind does not accept after SIGHUP"
    r = ctx.get(p2, "/")
    assert r.status == 200 and r.body == b"blue\n", r
    assert c.request("GET", "/").status == 200, "the old connection broke"
    assert ctx.get(sw.port, "/").status == 200, "the old bind broke"


def test_reload_changes_servers(ctx):
    b1 = ctx.upstream("blue1")
    b2 = ctx.upstream("blue2")
    sw = ctx.switchd([b1])
    c = ctx.client(sw.port)
    assert c.request("GET", "/").body == b"blue1\n"
    sw.reload(make_config([sw.port], [b2]))
    for _ in range(3):
        assert c.request("GET", "/").body == b"blue2\n"
    sw.reload(make_config([sw.port], [b1, b2]))
    names = sorted(c.request("GET", "/").body for _ in range(4))
    assert names == [b"blue1\n"] * 2 + [b"blue2\n"] * 2, names


def test_reload_changes_limits(ctx):
    b = ctx.upstream("blue")
    sw = ctx.switchd([b])
    assert ctx.get(sw.port, "/" + "a" * 500).status == 200
    sw.reload(make_config([sw.port], [b], client={"max_url": "100"}))
    c = ctx.client(sw.port)
    r = c.request("GET", "/" + "a" * 500)
    assert r.status == 414, "max_url 100 after SIGHUP; a 501-byte URL got %r" % r


@timeout(15)
def test_reload_during_in_flight_request(ctx):
    b = ctx.upstream("blue")
    g = ctx.upstream("green")
    sw = ctx.switchd([b], [g])
    c = ctx.client(sw.port)
    c.send(build_request("GET", "/delay/1000"))
    time.sleep(0.3)
    sw.reload(make_config([sw.port], [b], [g], live="green"), settle=0)
    r = c.read_response(timeout=5)
    assert r.status == 200 and r.body == b"blue\n", r
    assert c.request("GET", "/").body == b"green\n"


@timeout(20)
def test_many_reloads_under_load(ctx):
    b = ctx.upstream("blue")
    g = ctx.upstream("green")
    sw = ctx.switchd([b], [g])
    stop = threading.Event()
    errors = []

    def load():
        c = None
        try:
            while not stop.is_set():
                if c is None or c.eof:
                    c = ctx.client(sw.port)
                r = c.request("GET", "/", timeout=5)
                if r.status != 200 or r.body not in (b"blue\n", b"green\n"):
                    errors.append(r)
        except Exception as e:  # noqa
            errors.append(e)

    ts = [threading.Thread(target=load, daemon=True) for _ in range(4)]
    for t in ts:
        t.start()
    for i in range(20):
        sw.reload(make_config([sw.port], [b], [g], live="green" if i % 2 else "blue"),
                  settle=0.05)
    stop.set()
    for t in ts:
        t.join(10)
    assert not errors, "failures during reloads: %r" % errors[:3]
    assert sw.alive()


def test_sighup_same_file_is_harmless(ctx):
    b = ctx.upstream("blue")
    sw = ctx.switchd([b])
    c = ctx.client(sw.port)
    for _ in range(3):
        sw.signal(signal.SIGHUP)
        time.sleep(0.2)
        assert c.request("GET", "/").status == 200
