"""The access log (one JSON object per line), the error log, SIGUSR1."""

import json
import os
import signal
import time

from harness import make_config, read_file, wait_for

KEYS = ("time", "client", "method", "path", "status", "bytes", "colour", "server",
        "upstream_ms", "total_ms", "request_id")


def _lines(path, n, timeout=3):
    def enough():
        text = read_file(path)
        lines = [ln for ln in text.split("\n") if ln.strip()]
        return lines if len(lines) >= n else None
    lines = wait_for(enough, timeout, what="%d lines in %s" % (n, path))
    out = []
    for ln in lines:
        try:
            out.append(json.loads(ln))
        except ValueError:
            raise AssertionError("access log line is not JSON: %r" % ln)
    return out


def test_access_log_json_lines(ctx):
    b = ctx.upstream("blue")
    log = ctx.path("access.log")
    sw = ctx.switchd([b], global_={"access_log": log})
    c = ctx.client(sw.port)
    r1 = c.request("GET", "/")
    r2 = c.request("GET", "/status/404")
    r3 = c.request("POST", "/echo", body=b"x" * 1234)
    assert (r1.status, r2.status, r3.status) == (200, 404, 200)
    entries = _lines(log, 3)
    assert len(entries) == 3, entries
    seen_ids = [e["request_id"] for e in b.log()]
    for e, (method, path, status, resp) in zip(entries, [
            ("GET", "/", 200, r1), ("GET", "/status/404", 404, r2),
            ("POST", "/echo", 200, r3)]):
        missing = [k for k in KEYS if k not in e]
        assert not missing, "keys %s missing from %r" % (missing, e)
        assert e["method"] == method and e["path"] == path and e["status"] == status, e
        assert e["colour"] == "blue", e
        assert e["server"] == b.addr, e
        assert str(e["client"]).startswith("127.0.0.1"), e
        assert isinstance(e["bytes"], int) and e["bytes"] >= resp.body_len, e
        for k in ("upstream_ms", "total_ms"):
            assert isinstance(e[k], (int, float)) and e[k] >= 0, e
        assert e["total_ms"] >= e["upstream_ms"] or e["total_ms"] + 1 >= e["upstream_ms"], e
    assert [e["request_id"] for e in entries] == seen_ids, \
        "access log request ids %r, the upstream saw %r" % (
            [e["request_id"] for e in entries], seen_ids)


def test_access_log_times(ctx):
    b = ctx.upstream("blue")
    log = ctx.path("access.log")
    sw = ctx.switchd([b], global_={"access_log": log})
    assert ctx.get(sw.port, "/delay/300").status == 200
    (e,) = _lines(log, 1)
    assert 250 <= e["upstream_ms"] < 2000, e
    assert 250 <= e["total_ms"] < 2000, e


def test_access_log_records_proxy_errors(ctx):
    refused = "127.0.0.1:%d" % ctx.port()
    log = ctx.path("access.log")
    sw = ctx.switchd([refused], global_={"access_log": log})
    r = ctx.get(sw.port, "/nowhere")
    assert r.status == 502
    (e,) = _lines(log, 1)
    assert e["status"] == 502 and e["path"] == "/nowhere" and e["method"] == "GET", e


def test_sigusr1_reopens_access_log(ctx):
    b = ctx.upstream("blue")
    log = ctx.path("access.log")
    sw = ctx.switchd([b], global_={"access_log": log})
    for _ in range(2):
        assert ctx.get(sw.port, "/").status == 200
    _lines(log, 2)
    os.rename(log, log + ".1")
    assert ctx.get(sw.port, "/status/201").status == 201  # still goes to the old file
    sw.signal(signal.SIGUSR1)
    time.sleep(0.3)
    assert sw.alive()
    assert ctx.get(sw.port, "/status/202").status == 202
    new = _lines(log, 1)
    assert [e["status"] for e in new] == [202], new
    old = _lines(log + ".1", 3)
    assert [e["status"] for e in old] == [200, 200, 201], old


def test_error_log_file_and_sigusr1(ctx):
    b = ctx.upstream("blue")
    elog = ctx.path("error.log")
    sw = ctx.switchd([b], global_={"error_log": elog})
    good = read_file(sw.conf_path)
    bad = good.replace("global\n", "global\n    bogus_thing 1\n", 1)
    line = bad.split("\n").index("    bogus_thing 1") + 1
    sw.reload(bad)
    where = "%s:%d:" % (sw.conf_path, line)
    wait_for(lambda: where in read_file(elog), 2,
             what="%r in the error log %s" % (where, elog))
    assert ctx.get(sw.port, "/").status == 200
    os.rename(elog, elog + ".1")
    sw.signal(signal.SIGUSR1)
    time.sleep(0.3)
    sw.reload(bad)
    wait_for(lambda: where in read_file(elog), 2,
             what="the error log reopened at %s after SIGUSR1" % elog)
    sw.reload(make_config([sw.port], [b], global_={"error_log": elog}))
    assert ctx.get(sw.port, "/").status == 200
