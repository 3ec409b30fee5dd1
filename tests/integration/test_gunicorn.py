"""Real Gunicorn behind switchd: the sync worker (closes after each response)
and the gthread worker (keep-alive)."""

import hashlib
import os

from harness import KiB, MiB, build_request, chunked, make_config, parallel, \
    pattern_sha256, timeout


def _basics(ctx, worker, threads=1):
    app = ctx.gunicorn("blue", worker=worker, threads=threads)
    sw = ctx.switchd([app])
    # sequential, on one keep-alive client connection
    c = ctx.client(sw.port)
    for i in range(20):
        r = c.request("GET", "/")
        assert r.status == 200 and r.body.startswith(b"hello from blue pid "), \
            "request %d: %r" % (i, r)
    # concurrent: 8 clients x 5 requests
    def client_run(k):
        cc = ctx.client(sw.port, timeout=10)
        out = []
        for i in range(5):
            r = cc.request("GET", "/")
            out.append((r.status, r.body[:15]))
        cc.close()
        return out
    results = parallel(client_run, [(k,) for k in range(8)], timeout=30)
    flat = [x for res in results for x in res]
    assert flat == [(200, b"hello from blue")] * 40, flat
    # a 300 KiB POST, Content-Length and chunked
    body = os.urandom(300 * KiB)
    sha = hashlib.sha256(body).hexdigest()
    r = c.request("POST", "/echo", body=body, timeout=10)
    assert r.status == 200, r
    e = r.json()
    assert e["body_len"] == len(body) and e["body_sha256"] == sha, e
    assert e["headers"]["HTTP_X_FORWARDED_FOR"] == "127.0.0.1", e
    assert len(e["headers"]["HTTP_X_REQUEST_ID"]) == 32, e
    r = c.request("POST", "/echo", headers=[("Transfer-Encoding", "chunked")],
                  body=chunked(body, 10000), timeout=10)
    e = r.json()
    assert e["body_len"] == len(body) and e["body_sha256"] == sha, e
    # statuses and a large response
    r = c.request("GET", "/status/503")
    assert r.status == 503 and r.body == b"blue 503\n", r
    r = c.request("GET", "/big/%d" % (3 * MiB), store_body=False, timeout=10)
    assert r.status == 200 and r.body_len == 3 * MiB and \
        r.sha256 == pattern_sha256(3 * MiB), r
    assert c.request("GET", "/").status == 200


def _flip(ctx, worker, threads=1):
    blue = ctx.gunicorn("blue", worker=worker, threads=threads)
    green = ctx.gunicorn("green", worker=worker, threads=threads)
    sw = ctx.switchd([blue], [green])
    c = ctx.client(sw.port)
    for _ in range(3):
        assert c.request("GET", "/").body.startswith(b"hello from blue")
    sw.reload(make_config([sw.port], [blue], [green], live="green"))
    r = c.request("GET", "/")
    assert r.status == 200 and r.body.startswith(b"hello from green"), \
        "after the flip: %r" % r
    for _ in range(3):
        assert c.request("GET", "/").body.startswith(b"hello from green")
    c.send(build_request("POST", "/echo", body=b"z" * 1000))
    assert c.read_response().json()["name"] == "green"


@timeout(45)
def test_gunicorn_sync_basics(ctx):
    _basics(ctx, "sync")


@timeout(45)
def test_gunicorn_sync_flip(ctx):
    _flip(ctx, "sync")


@timeout(45)
def test_gunicorn_gthread_basics(ctx):
    _basics(ctx, "gthread", threads=4)


@timeout(45)
def test_gunicorn_gthread_flip(ctx):
    _flip(ctx, "gthread", threads=4)
