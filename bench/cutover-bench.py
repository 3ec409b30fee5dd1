#!/usr/bin/python3
"""Cutover under load: switchd, HAProxy and nginx switch blue -> green while
wrk runs at full load, and switchd rolls back by itself when green starts
failing (issue 7, parts 4 and 5).

usage: bench/cutover-bench.py [--quick] [--duration S] [--repeats N]
                              [--conns N] [--out-dir DIR] [--keep-tmp]

Full mode (the default): 5 rounds of 10 s cells, about 4 minutes. --quick:
one round of 5 s cells, about 25 s: the smoke test of `make test`.

Backends: one nginx (bench/cutover-backends.conf.in), one process, two
server blocks: blue answers "blue\\n", green "green\\n", both answer 200 to
/health; green answers 500 to / while the file green-broken exists in the
temporary directory (nothing is re-pointed: green itself breaks).

Cells, each with a fresh proxy, in interleaved rounds (switchd, HAProxy,
nginx, switchd rollback; REPEATS rounds):
  switchd   `switchctl cutover --to green --wait` in the middle of the run;
            health checks every 200 ms, watch on (bench/cutover-switchd.conf.in)
  haproxy   nbthread 1, green `disabled` at start; in the middle of the run,
            one runtime API line on the stats socket:
            "set server be/green state ready; set server be/blue state drain"
  nginx     master and one worker, upstream keep-alive; in the middle of the
            run the included upstream file is rewritten to green and
            `nginx -s reload` is run
  rollback  switchd: `switchctl cutover --to green --watch` at 25 % of the
            run, green broken (the flag file) at 60 %: the watch must fire
            and flip back to blue. Measured: the 5xx the clients received,
            when the trigger fired (status watch.fired.time_ms), and the
            requests green received after it (green logs its 500s with
            $msec, and nothing else).

Load: wrk, keep-alive, CONNS connections (64), 1 thread, with
bench/cutover.lua, which tallies responses by body and status, in total and
per 100 ms of wall-clock time. Failed = non-2xx responses + wrk's socket
errors (connect, read, write, timeout; wrk's summary has them only as
totals, so the timeline shows non-2xx only). Green took over when, from 1 s
after the flip (0.5 s in the rollback cell) to the end of the run (to the
breakage), at least 99 % of the responses were green.

The proxy runs on CPU 0, wrk and the backends on CPU 1 (taskset), as in
bench/proxy-bench.sh. Everything listens on 127.0.0.1, in a temporary
directory; every process started here is stopped on exit, also on an error,
a signal or the overall time bound.

Output: bench/out/cutover.md (printed at the end) and
bench/out/cutover-timeline.png (gnuplot): per cell kind, the first round's
responses per 100 ms by colour and the failed ones, with the cutover (and
the breakage and the rollback) marked.

Exit status 0 when, in every round, switchd's cutover failed no request,
green took over behind every proxy, and the rollback flipped back to blue;
1 otherwise (and when a proxy did not start). Speeds are never asserted.

Environment: SWITCHD_BIN (build/switchd), SWITCHCTL_BIN (build/switchctl).
Standard library only.
"""

import argparse
import http.client
import json
import os
import platform
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCH = os.path.join(ROOT, "bench")
LUA = os.path.join(BENCH, "cutover.lua")

KINDS = ("switchd", "haproxy", "nginx", "rollback")
TITLES = {
    "switchd": "switchd: switchctl cutover --to green --wait",
    "haproxy": "HAProxy: runtime API, green ready + blue drain",
    "nginx": "nginx: upstream rewritten, nginx -s reload",
    "rollback": "switchd: cutover, then green answers 500: automatic rollback",
}
NAMES = {"switchd": "switchd", "haproxy": "HAProxy", "nginx": "nginx",
         "rollback": "switchd (rollback)"}


def log(msg):
    sys.stderr.write("[cutover %s] %s\n" % (time.strftime("%H:%M:%S"), msg))
    sys.stderr.flush()


class BenchError(Exception):
    """A step that failed; the message says which."""


class Deadline(Exception):
    """The overall time bound passed."""


def on_signal(signum, frame):
    log("stopped by signal %d; cleaning up" % signum)
    raise SystemExit(128 + signum)


def on_alarm(signum, frame):
    raise Deadline()


def free_ports(n):
    socks = []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def http_get(port, path="/", timeout=1.0):
    """One GET on its own connection: (status, body), or None."""
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        c.request("GET", path, headers={"Host": "bench"})
        r = c.getresponse()
        return r.status, r.read()
    except (OSError, http.client.HTTPException):
        return None
    finally:
        c.close()


class UnixHTTPConnection(http.client.HTTPConnection):
    """http.client over a Unix socket (switchd's admin API)."""

    def __init__(self, path, timeout=2.0):
        super().__init__("switchd", timeout=timeout)
        self.unix_path = path

    def connect(self):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(self.timeout)
        s.connect(self.unix_path)
        self.sock = s


def switchd_status(sock_path):
    c = UnixHTTPConnection(sock_path)
    try:
        c.request("GET", "/v1/status")
        r = c.getresponse()
        body = r.read()
        if r.status != 200:
            raise BenchError("switchd status: HTTP %d" % r.status)
        return json.loads(body)
    finally:
        c.close()


def unix_command(path, line, timeout=2.0):
    """Sends one line to a Unix socket (HAProxy's runtime API) and returns
    what comes back until the other side closes."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        s.connect(path)
        s.sendall(line.encode() + b"\n")
        out = b""
        while True:
            chunk = s.recv(4096)
            if not chunk:
                break
            out += chunk
        return out.decode(errors="replace")
    finally:
        s.close()


def cpu_times():
    """(busy, idle) jiffies of all CPUs since boot."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    return v[0] + v[1] + v[2] + v[5] + v[6] + v[7], v[3] + v[4]


def busy_cpus(secs=1.0):
    """How many CPUs' worth of time the machine used over secs."""
    b0, i0 = cpu_times()
    time.sleep(secs)
    b1, i1 = cpu_times()
    total = (b1 - b0) + (i1 - i0)
    return os.cpu_count() * (b1 - b0) / total if total else 0.0


def first_line(argv):
    try:
        p = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           timeout=10)
        return p.stdout.decode(errors="replace").strip().splitlines()[0]
    except (OSError, subprocess.SubprocessError, IndexError):
        return "unknown"


def parse_wrk(text):
    """The figures of a wrk run with cutover.lua."""
    out = {"requests": 0, "connect": 0, "read": 0, "write": 0, "timeout": 0,
           "non2xx_wrk": 0, "buckets": {}, "totals": None}
    m = re.search(r"^\s*(\d+) requests in", text, re.M)
    if m:
        out["requests"] = int(m.group(1))
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), "
                  r"timeout (\d+)", text)
    if m:
        for k, v in zip(("connect", "read", "write", "timeout"), m.groups()):
            out[k] = int(v)
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    if m:
        out["non2xx_wrk"] = int(m.group(1))
    for line in text.splitlines():
        f = line.split()
        if len(f) == 7 and f[:2] == ["CUTOVER", "bucket"]:
            out["buckets"][int(f[2])] = tuple(int(x) for x in f[3:])
        elif len(f) == 6 and f[:2] == ["CUTOVER", "totals"]:
            out["totals"] = dict(zip(("blue", "green", "other", "failed"),
                                     (int(x) for x in f[2:])))
    return out


def colour_share(buckets, t0, t1, colour):
    """The share of colour among the blue and green responses whose 100 ms
    bucket lies within [t0, t1) (seconds since the epoch), and how many
    responses that is."""
    lo, hi = int(t0 * 10), int(t1 * 10)
    blue = green = 0
    for b, (nb, ng, _, _) in buckets.items():
        if lo <= b < hi:
            blue += nb
            green += ng
    n = blue + green
    if n == 0:
        return 0.0, 0
    return (green if colour == "green" else blue) / n, n


class Bench:
    def __init__(self, args):
        self.args = args
        self.blue_port, self.green_port = free_ports(2)
        self.tmp = tempfile.mkdtemp(prefix="switchd-cutover.")
        self.procs = {}
        self.wrk = None
        self.switchd = os.environ.get("SWITCHD_BIN",
                                      os.path.join(ROOT, "build/switchd"))
        self.switchctl = os.environ.get("SWITCHCTL_BIN",
                                        os.path.join(ROOT, "build/switchctl"))
        ncpu = os.cpu_count() or 1
        if ncpu >= 2:
            self.proxy_cpu, self.load_cpu = "0", "1"
        else:
            log("warning: one CPU only; the proxy, wrk and the backends share it")
            self.proxy_cpu = self.load_cpu = "0"
        self.results = {k: [] for k in KINDS}
        self.failures = []
        self.passed = 0

    # --- processes -------------------------------------------------------

    def render(self, template, name, **subs):
        """The template with @DIR@ and the given @KEY@s filled in, written
        to the temporary directory as name; returns its path."""
        with open(os.path.join(BENCH, template)) as f:
            text = f.read()
        subs = dict(subs, DIR=self.tmp, BLUE_PORT=self.blue_port,
                    GREEN_PORT=self.green_port)
        for k, v in subs.items():
            text = text.replace("@%s@" % k, str(v))
        left = re.findall(r"@[A-Z_]+@", text)
        if left:
            raise BenchError("%s: unfilled %s" % (template, ", ".join(left)))
        path = os.path.join(self.tmp, name)
        with open(path, "w") as f:
            f.write(text)
        return path

    def start(self, name, cpu, argv):
        """Starts a server pinned to cpu, in a session of its own (a Ctrl-C
        at the terminal must not reach it before the cleanup does); taskset
        execs, so the pid is the server's."""
        out = open(os.path.join(self.tmp, name + ".out"), "wb")
        p = subprocess.Popen(["taskset", "-c", cpu] + argv, stdin=subprocess.DEVNULL,
                             stdout=out, stderr=subprocess.STDOUT,
                             start_new_session=True, cwd=self.tmp)
        out.close()
        self.procs[name] = p
        return p

    def stop(self, name):
        p = self.procs.pop(name, None)
        if p is None:
            return
        if p.poll() is None:
            try:
                p.terminate()
                p.wait(3)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(5)
            except ProcessLookupError:
                pass

    def tail(self, name, n=20):
        try:
            with open(os.path.join(self.tmp, name + ".out"), errors="replace") as f:
                return "".join(f.readlines()[-n:])
        except OSError:
            return ""

    def wait_ready(self, name, port, body, secs=5.0):
        deadline = time.time() + secs
        p = self.procs[name]
        while time.time() < deadline:
            if p.poll() is not None:
                raise BenchError("%s exited at startup:\n%s" % (name, self.tail(name)))
            r = http_get(port)
            if r is not None and r[1] == body:
                return
            time.sleep(0.05)
        raise BenchError("%s does not answer %r on port %d:\n%s"
                         % (name, body, port, self.tail(name)))

    def cleanup(self):
        # A second Ctrl-C must not cut the cleanup short.
        for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(s, signal.SIG_IGN)
        if self.wrk is not None and self.wrk.poll() is None:
            self.wrk.kill()
            self.wrk.wait(5)
        for name in list(self.procs):
            self.stop(name)
        if self.args.keep_tmp:
            log("temporary directory kept: %s" % self.tmp)
        else:
            shutil.rmtree(self.tmp, ignore_errors=True)

    # --- one cell --------------------------------------------------------

    def start_proxy(self, kind, port):
        if kind in ("switchd", "rollback"):
            conf = self.render("cutover-switchd.conf.in", "switchd.conf", PORT=port)
            self.start("proxy", self.proxy_cpu, [self.switchd, "-c", conf])
            self.wait_ready("proxy", port, b"blue\n")
            sock = os.path.join(self.tmp, "admin.sock")
            deadline = time.time() + 5
            while True:
                st = switchd_status(sock)
                if all(st["colours"][c]["healthy"] for c in ("blue", "green")):
                    break
                if time.time() > deadline:
                    raise BenchError("switchd: the colours are not both healthy: %s"
                                     % json.dumps(st["colours"]))
                time.sleep(0.05)
        elif kind == "haproxy":
            conf = self.render("cutover-haproxy.cfg.in", "haproxy.cfg", PORT=port)
            self.start("proxy", self.proxy_cpu, ["haproxy", "-db", "-f", conf])
            self.wait_ready("proxy", port, b"blue\n")
        elif kind == "nginx":
            with open(os.path.join(self.tmp, "nginx-upstream.conf"), "w") as f:
                f.write("server 127.0.0.1:%d;\n" % self.blue_port)
            conf = self.render("cutover-nginx.conf.in", "nginx-proxy.conf", PORT=port)
            self.nginx_argv = ["nginx", "-p", self.tmp, "-e",
                               os.path.join(self.tmp, "nginx-proxy-startup.log"),
                               "-c", conf]
            self.start("proxy", self.proxy_cpu, self.nginx_argv)
            self.wait_ready("proxy", port, b"blue\n")

    def sleep_until(self, t):
        while True:
            left = t - time.time()
            if left <= 0:
                return
            if self.wrk.poll() is not None:
                raise BenchError("wrk ended early:\n" + self.wrk_text())
            time.sleep(min(left, 0.05))

    def wrk_text(self):
        try:
            with open(os.path.join(self.tmp, "wrk.out"), errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def run_cell(self, kind, rnd):
        d = self.args.duration
        port = free_ports(1)[0]
        res = {"kind": kind, "round": rnd, "events": [], "ok": True, "notes": []}
        broken = os.path.join(self.tmp, "green-broken")
        brokenlog = os.path.join(self.tmp, "green-broken.log")
        if os.path.exists(broken):
            os.unlink(broken)
        # nginx holds the log open (it opens every access_log at startup):
        # read what this cell adds to it, never remove it.
        log_offset = os.path.getsize(brokenlog) if os.path.exists(brokenlog) else 0
        self.start_proxy(kind, port)

        out = open(os.path.join(self.tmp, "wrk.out"), "wb")
        t0 = time.time()
        self.wrk = subprocess.Popen(
            ["taskset", "-c", self.load_cpu, "wrk", "-t1", "-c%d" % self.args.conns,
             "-d%ds" % d, "-s", LUA, "http://127.0.0.1:%d/" % port],
            stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True)
        out.close()
        res["t0"] = t0
        sock = os.path.join(self.tmp, "admin.sock")

        if kind == "switchd":
            self.sleep_until(t0 + d * 0.5)
            t_req = time.time()
            p = subprocess.run([self.switchctl, "-s", sock, "--json", "cutover",
                                "--to", "green", "--wait", "--timeout", "15s"],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               timeout=30)
            st = switchd_status(sock)
            flip = st["flip_time_ms"] / 1000.0
            res["events"] += [(t_req, "cutover requested"), (flip, "flip")]
            res["flip"] = flip
            res["mechanism_ms"] = (flip - t_req) * 1000
            res["switchctl_rc"] = p.returncode
            if p.returncode != 0:
                res["notes"].append("switchctl exited %d: %s" % (
                    p.returncode, p.stdout.decode(errors="replace").strip()[-300:]))
        elif kind == "haproxy":
            self.sleep_until(t0 + d * 0.5)
            t_req = time.time()
            reply = unix_command(os.path.join(self.tmp, "haproxy.sock"),
                                 "set server be/green state ready; "
                                 "set server be/blue state drain")
            t_done = time.time()
            if reply.strip():
                res["notes"].append("runtime API said: %s" % reply.strip()[:200])
            res["events"] += [(t_req, "runtime API")]
            res["flip"] = t_req
            res["mechanism_ms"] = (t_done - t_req) * 1000
        elif kind == "nginx":
            self.sleep_until(t0 + d * 0.5)
            with open(os.path.join(self.tmp, "nginx-upstream.conf"), "w") as f:
                f.write("server 127.0.0.1:%d;\n" % self.green_port)
            t_req = time.time()
            p = subprocess.run(self.nginx_argv + ["-s", "reload"],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               timeout=10)
            if p.returncode != 0:
                res["notes"].append("nginx -s reload exited %d: %s" % (
                    p.returncode, p.stdout.decode(errors="replace").strip()))
            res["events"] += [(t_req, "reload")]
            res["flip"] = t_req
            res["mechanism_ms"] = (time.time() - t_req) * 1000
        elif kind == "rollback":
            self.sleep_until(t0 + d * 0.25)
            t_req = time.time()
            ctl_out = open(os.path.join(self.tmp, "switchctl.out"), "wb")
            ctl = subprocess.Popen(
                [self.switchctl, "-s", sock, "--json", "cutover", "--to", "green",
                 "--watch", "--timeout", "%ds" % (d + 20)],
                stdin=subprocess.DEVNULL, stdout=ctl_out, stderr=subprocess.STDOUT,
                start_new_session=True)
            ctl_out.close()
            self.procs["switchctl"] = ctl
            deadline = time.time() + 10
            while True:
                st = switchd_status(sock)
                if st["live"] == "green":
                    break
                if time.time() > deadline:
                    raise BenchError("rollback cell: no flip to green within 10 s: "
                                     "phase %s" % st["phase"])
                time.sleep(0.02)
            flip = st["flip_time_ms"] / 1000.0
            res["flip"] = flip
            res["mechanism_ms"] = (flip - t_req) * 1000
            self.sleep_until(t0 + d * 0.6)
            with open(broken, "w"):
                pass
            t_break = time.time()
            res["break"] = t_break
            # Poll until the watch fired and switchd flipped back (or gave
            # up); the figures come from switchd's own timestamps, not from
            # this loop's.
            deadline = t_break + 5
            while True:
                st = switchd_status(sock)
                if st["phase"] in ("rolled_back", "rollback_blocked"):
                    break
                if time.time() > deadline:
                    break
                time.sleep(0.01)
            res["phase"] = st["phase"]
            res["live_after"] = st["live"]
            fired = st["watch"].get("fired") or {}
            rb = st.get("rollback") or {}
            res["fired_ms"] = fired.get("time_ms")
            res["rule"] = fired.get("rule") or rb.get("trigger")
            res["rollback_ms"] = rb.get("time_ms")
            res["watch_errors"] = st["watch"].get("errors")
            res["events"] += [(t_req, "cutover requested"), (flip, "flip"),
                              (t_break, "green broken")]
            if res["rollback_ms"]:
                res["events"].append((res["rollback_ms"] / 1000.0, "rollback"))
            try:
                rc = ctl.wait(10)
            except subprocess.TimeoutExpired:
                rc = None
            self.stop("switchctl")
            res["switchctl_rc"] = rc

        try:
            self.wrk.wait(d + 30)
        except subprocess.TimeoutExpired:
            self.wrk.kill()
            self.wrk.wait(5)
            raise BenchError("wrk did not finish in time")
        text = self.wrk_text()
        if self.wrk.returncode != 0:
            raise BenchError("wrk exited %d:\n%s" % (self.wrk.returncode, text))
        self.wrk = None
        w = parse_wrk(text)
        if w["totals"] is None:
            raise BenchError("wrk printed no CUTOVER totals:\n" + text)
        res.update(w)
        res["t_end"] = t0 + d

        if kind in ("switchd", "rollback"):
            st = switchd_status(sock)
            c = st.get("cutover") or {}
            res["switchd_seen"] = c.get("requests")
            res["switchd_failed"] = c.get("failed")
            res["final_phase"] = st["phase"]
            res["final_live"] = st["live"]
        if kind == "rollback":
            res["green_log"] = []
            if os.path.exists(brokenlog):
                with open(brokenlog) as f:
                    f.seek(log_offset)
                    for line in f:
                        # "$msec $status $uri": seconds with exactly three
                        # decimals, kept as integer ms (no float rounding).
                        p = line.split()
                        if len(p) >= 2 and re.fullmatch(r"\d+\.\d{3}", p[0]):
                            res["green_log"].append((int(p[0].replace(".", "")),
                                                     int(p[1])))
            os.unlink(broken)
        if self.procs["proxy"].poll() is not None:
            res["notes"].append("the proxy exited during the run:\n" + self.tail("proxy"))
            res["ok"] = False
        self.stop("proxy")
        self.judge(res)
        return res

    def check(self, ok, failure):
        """Counts one check of the run; failure says what went wrong."""
        if ok:
            self.passed += 1
        else:
            self.failures.append(failure)

    def judge(self, res):
        """Adds the verdicts to res and counts the checks: green took over
        (every proxy); switchd's cutover failed nothing; the rollback
        happened, blue took the traffic back, and green received no more
        requests after the trigger than could have been in flight."""
        kind = res["kind"]
        tot = res["totals"]
        res["socket_errors"] = res["connect"] + res["read"] + res["write"] + \
            res["timeout"]
        res["failed"] = tot["failed"] + res["socket_errors"]
        label = "%s round %d" % (NAMES[kind], res["round"])
        for n in res["notes"]:
            log("  note: " + n)
        self.check(res["ok"], "%s: %s" % (label, "; ".join(res["notes"])))
        if kind == "rollback":
            end = res["break"]
            start = res["flip"] + 0.5
        else:
            end = res["t_end"]
            start = res["flip"] + 1.0
        share, n = colour_share(res["buckets"], start, end, "green")
        res["green_share"] = share
        res["took_over"] = n > 0 and share >= 0.99
        self.check(res["took_over"], "%s: green did not take over (%.1f %% of %d "
                   "responses after the flip)" % (label, 100 * share, n))
        if kind == "switchd":
            self.check(res["failed"] == 0, "%s: %d failed requests in the cutover"
                       % (label, res["failed"]))
            self.check(res.get("switchctl_rc") == 0,
                       "%s: switchctl cutover --wait exited %s"
                       % (label, res.get("switchctl_rc")))
        if kind != "rollback":
            return
        rolled = res["phase"] == "rolled_back" and res["live_after"] == "blue"
        res["rolled_back"] = rolled
        if rolled:
            # Blue takes the traffic back: from 0.5 s after the rollback.
            t = res["rollback_ms"] / 1000.0 + 0.5
            bshare, bn = colour_share(res["buckets"], t, res["t_end"], "blue")
        else:
            bshare, bn = 0.0, 0
        res["blue_back_share"] = bshare
        res["blue_back"] = bn > 0 and bshare >= 0.99
        self.check(rolled, "%s: no rollback (phase %s, live %s)" % (
            label, res["phase"], res["live_after"]))
        self.check(res["blue_back"], "%s: blue did not take the traffic back "
                   "(%.1f %% of %d responses)" % (label, 100 * bshare, bn))
        if res.get("switchctl_rc") != 7:
            res["notes"].append("switchctl cutover --watch exited %s (7 "
                                "expected: rolled back)" % res.get("switchctl_rc"))
            log("  note: " + res["notes"][-1])
        fired = res.get("fired_ms")
        times = [t for t, _ in res["green_log"]]
        res["green_500s"] = len(times)
        res["green_after_trigger"] = res["last_green_after_ms"] = None
        res["break_to_trigger_ms"] = None
        if fired:
            res["break_to_trigger_ms"] = fired - res["break"] * 1000
            if times:
                res["green_after_trigger"] = sum(1 for t in times if t > fired)
                res["last_green_after_ms"] = max(times) - fired
        # Each client connection has at most one request in flight, so
        # more than that after the trigger means switchd kept sending.
        self.check(res["green_after_trigger"] is None
                   or res["green_after_trigger"] <= self.args.conns,
                   "%s: green received %s requests after the trigger, more "
                   "than the %d connections could have had in flight"
                   % (label, res["green_after_trigger"], self.args.conns))

    # --- the run ---------------------------------------------------------

    def run(self):
        a = self.args
        for cmd in ("wrk", "haproxy", "nginx", "taskset", "gnuplot"):
            if shutil.which(cmd) is None:
                raise BenchError("%s is missing; run `make deps`" % cmd)
        for path in (self.switchd, self.switchctl):
            if not os.access(path, os.X_OK):
                raise BenchError("%s not found; build it first (make)" % path)
        self.busy_before = busy_cpus()
        if self.busy_before > 0.1:
            log("warning: other processes use %.2f CPUs; the figures will be skewed"
                % self.busy_before)
        conf = self.render("cutover-backends.conf.in", "backends.conf")
        self.start("backends", self.load_cpu,
                   ["nginx", "-p", self.tmp, "-e",
                    os.path.join(self.tmp, "backends-startup.log"), "-c", conf])
        self.wait_ready("backends", self.blue_port, b"blue\n")
        self.wait_ready("backends", self.green_port, b"green\n")

        for rnd in range(1, a.repeats + 1):
            for kind in KINDS:
                log("round %d/%d: %s, %d s, %d connections"
                    % (rnd, a.repeats, NAMES[kind], a.duration, a.conns))
                try:
                    res = self.run_cell(kind, rnd)
                except (BenchError, OSError, ValueError, KeyError, TypeError,
                        subprocess.SubprocessError) as e:
                    # A cell that could not run is a failed check; the next
                    # cells still run, each with a fresh proxy.
                    self.stop("switchctl")
                    self.stop("proxy")
                    if self.wrk is not None and self.wrk.poll() is None:
                        self.wrk.kill()
                        self.wrk.wait(5)
                    self.wrk = None
                    log("  failed: %s: %s" % (type(e).__name__, e))
                    self.failures.append("%s round %d: %s" % (NAMES[kind], rnd,
                                                              str(e).splitlines()[0]))
                    continue
                self.results[kind].append(res)
                t = res["totals"]
                line = ("  %d responses (blue %d, green %d), failed %d (non-2xx %d, "
                        "socket errors %d), green after the flip %.2f %%"
                        % (res["requests"], t["blue"], t["green"], res["failed"],
                           t["failed"], res["socket_errors"], 100 * res["green_share"]))
                if kind == "rollback":
                    line += "; phase %s, green's 500s after the trigger %s, last %s ms" % (
                        res["phase"], res["green_after_trigger"],
                        "%.0f" % res["last_green_after_ms"]
                        if res["last_green_after_ms"] is not None else "-")
                log(line)
        self.stop("backends")
        self.busy_after = busy_cpus()

    # --- report ----------------------------------------------------------

    def plot(self, out_dir):
        """One PNG, a panel per cell kind (the first round of each)."""
        cells = [self.results[k][0] for k in KINDS if self.results[k]]
        if not cells:
            return None
        png = os.path.join(out_dir, "cutover-timeline.png")
        term = "pngcairo"
        if subprocess.run(["gnuplot", "-e", "set terminal pngcairo"],
                          stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL).returncode != 0:
            term = "png"
        d = self.args.duration
        g = ["set terminal %s size 1100,%d font ',10'" % (term, 300 * len(cells) + 40),
             "set output '%s'" % png,
             "set multiplot layout %d,1" % len(cells),
             "set xrange [0:%g]" % d, "set xlabel 's since wrk started'",
             "set ylabel 'responses per 100 ms'", "set y2label 'failed per 100 ms'",
             "set ytics nomirror", "set y2tics", "set yrange [0:*]",
             "set key outside right top", "set grid xtics ytics"]
        for res in cells:
            data = os.path.join(self.tmp, "timeline-%s.dat" % res["kind"])
            t0 = res["t0"]
            lo, hi = int(t0 * 10), int(res["t_end"] * 10) + 3
            maxfail = 0
            with open(data, "w") as f:
                f.write("# t blue green other failed\n")
                for b in range(lo, hi + 1):
                    nb, ng, no, nf = res["buckets"].get(b, (0, 0, 0, 0))
                    maxfail = max(maxfail, nf)
                    # The bucket's middle: histeps draws it across its
                    # 100 ms, the impulses stand in its middle.
                    f.write("%.3f %d %d %d %d\n" % ((b + 0.5) / 10.0 - t0, nb, ng,
                                                     no, nf))
            g.append("set title \"%s (round 1)\\nfailed %d: non-2xx %d, socket "
                     "errors %d (wrk's totals only, not in the timeline)\" "
                     "noenhanced" % (TITLES[res["kind"]], res["failed"],
                                     res["totals"]["failed"], res["socket_errors"]))
            g.append("set y2range [0:%d]" % max(5, int(maxfail * 1.25) + 1))
            g.append("unset arrow")
            g.append("unset label")
            styles = {"flip": "lc rgb 'black' dt 1", "reload": "lc rgb 'black' dt 1",
                      "runtime API": "lc rgb 'black' dt 1",
                      "cutover requested": "lc rgb 'gray50' dt 2",
                      "green broken": "lc rgb 'orange' dt 1",
                      "rollback": "lc rgb 'dark-violet' dt 1"}
            # The request and the breakage are labelled left of their line,
            # the flip and the rollback right of theirs: each pair is close.
            left = ("cutover requested", "green broken")
            for t, what in sorted(res["events"]):
                x = t - t0
                g.append("set arrow from %.3f, graph 0 to %.3f, graph 1 nohead %s lw 1.5"
                         % (x, x, styles.get(what, "lc rgb 'black'")))
                g.append("set label \"%s\" at %.3f, graph 0.93 %s front noenhanced"
                         % (what, x, "right offset -0.4,0" if what in left
                            else "left offset 0.4,0"))
            g.append("plot '%s' u 1:2 w histeps lw 2 lc rgb '#1f5fbf' t 'blue', "
                     "'' u 1:3 w histeps lw 2 lc rgb '#2ca02c' t 'green', "
                     "'' u 1:5 axes x1y2 w impulses lw 3 lc rgb 'red' "
                     "t 'failed (non-2xx)'" % data)
        g.append("unset multiplot")
        script = os.path.join(self.tmp, "timeline.gp")
        with open(script, "w") as f:
            f.write("\n".join(g) + "\n")
        p = subprocess.run(["gnuplot", script], stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, timeout=60)
        if p.returncode != 0:
            log("gnuplot failed: " + p.stdout.decode(errors="replace")[-500:])
            return None
        return png

    def report(self, out_dir, png):
        a = self.args
        rev = "unknown"
        try:
            rev = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"],
                                 stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                 timeout=10).stdout.decode().strip() or "unknown"
            if subprocess.run(["git", "-C", ROOT, "diff", "--quiet", "HEAD"],
                              stderr=subprocess.DEVNULL, timeout=10).returncode != 0:
                rev += "+dirty"
        except (OSError, subprocess.SubprocessError):
            pass
        cpu_model = "unknown CPU"
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu_model = line.split(":", 1)[1].strip()
                    break
        haproxy_v = first_line(["haproxy", "-v"])
        m = re.search(r"version (\S+)", haproxy_v)
        haproxy_v = m.group(1) if m else haproxy_v
        nginx_v = first_line(["nginx", "-v"]).split("/")[-1]
        wrk_v = first_line(["wrk", "--version"]).split()[1]

        o = []
        o.append("# Cutover under load, %s" % time.strftime("%Y-%m-%d %H:%M %Z"))
        o.append("")
        o.append("%s, %d CPUs, Linux %s. switchd %s, HAProxy %s (nbthread 1), "
                 "nginx %s (one worker), wrk %s. Loopback only. Mode: %s: %d "
                 "round%s of %d s per cell, cells interleaved."
                 % (cpu_model, os.cpu_count(), platform.release(), rev, haproxy_v,
                    nginx_v, wrk_v, "quick" if a.quick else "full", a.repeats,
                    "" if a.repeats == 1 else "s", a.duration))
        o.append("")
        o.append("Load: wrk, keep-alive, %d connections, 1 thread, for the whole "
                 "cell, with bench/cutover.lua counting responses by body (the "
                 "backends answer \"blue\\n\" and \"green\\n\": one nginx, one "
                 "process) and by status. Each cell starts a fresh proxy with blue "
                 "live and switches to green in the middle of the run with the "
                 "proxy's own mechanism: switchd `switchctl cutover --to green "
                 "--wait` (health checks every 200 ms, 2 passes to go); HAProxy "
                 "one runtime API line, `set server be/green state ready; set "
                 "server be/blue state drain`; nginx the upstream rewritten and "
                 "`nginx -s reload`. **Failed** = non-2xx responses + wrk's "
                 "socket errors (connect, read, write, timeout). **Took over**: "
                 "at least 99 %% of the responses from 1 s after the flip to the "
                 "end were green. The proxy on CPU %s, wrk and the backends on "
                 "CPU %s." % (a.conns, self.proxy_cpu, self.load_cpu))
        o.append("")
        o.append("## Cutover blue → green")
        o.append("")
        o.append("| proxy | cutovers | failed requests per cutover | took over |")
        o.append("|---|---:|---|---|")
        for kind in ("switchd", "haproxy", "nginx"):
            rs = self.results[kind]
            if not rs:
                o.append("| %s | 0 | did not run | - |" % NAMES[kind])
                continue
            o.append("| %s | %d | %s | %s |" % (
                NAMES[kind], len(rs), ", ".join(str(r["failed"]) for r in rs),
                "yes" if all(r["took_over"] for r in rs) else
                "**no** (%d of %d)" % (sum(r["took_over"] for r in rs), len(rs))))
        for kind in ("switchd", "haproxy", "nginx"):
            rs = self.results[kind]
            if not rs:
                continue
            o.append("")
            o.append("### %s" % TITLES[kind])
            o.append("")
            at, mech = {"switchd": ("flip at (s)", "request → flip (ms)"),
                        "haproxy": ("API call at (s)", "API call took (ms)"),
                        "nginx": ("reload at (s)", "nginx -s reload took (ms)")}[kind]
            o.append("| round | requests | failed | non-2xx | socket errors "
                     "(c/r/w/t) | blue | green | green after the flip | took over "
                     "| %s | %s |" % (at, mech))
            o.append("|---:|---:|---:|---:|---|---:|---:|---:|---|---:|---:|")
            for r in rs:
                t = r["totals"]
                o.append("| %d | %d | %d | %d | %d (%d/%d/%d/%d) | %d | %d | "
                         "%.2f %% | %s | %.2f | %s |" % (
                             r["round"], r["requests"], r["failed"], t["failed"],
                             r["socket_errors"], r["connect"], r["read"], r["write"],
                             r["timeout"], t["blue"], t["green"],
                             100 * r["green_share"], "yes" if r["took_over"] else "**no**",
                             r["flip"] - r["t0"],
                             "%.0f" % r["mechanism_ms"] if r["mechanism_ms"] is not None
                             else "-"))
            if kind == "switchd":
                o.append("")
                o.append("switchd's own count over each cutover (status `cutover`: "
                         "requests, failed since the request): %s."
                         % "; ".join("%s, %s" % (r.get("switchd_seen"),
                                                 r.get("switchd_failed"))
                                     for r in rs))
        rs = self.results["rollback"]
        o.append("")
        o.append("## Automatic rollback (switchd)")
        o.append("")
        o.append("A fresh switchd (watch on, default triggers: R3 fires after 5 "
                 "errors in a row); `switchctl cutover --to green --watch` at 25 %% "
                 "of the run; at 60 %% green starts answering 500 to / (a flag "
                 "file its nginx tests on every request; /health stays 200). The "
                 "trigger time is switchd's (`watch.fired.time_ms`); green logs "
                 "each 500 with its `$msec`, so \"green after the trigger\" counts "
                 "the requests green answered in a later millisecond than the "
                 "trigger, and the last one's time is relative to the trigger "
                 "(negative: green answered its last request before switchd "
                 "counted the error that fired). Target: no request reaches green after the rollback "
                 "fires beyond those already in flight (at most one per client "
                 "connection: %d)." % a.conns)
        o.append("")
        if not rs:
            o.append("Did not run.")
        else:
            o.append("| round | requests | 5xx to clients | socket errors | rolled "
                     "back | rule | breakage → trigger (ms) | green's 500s | green after the trigger | last green "
                     "request after the trigger (ms) | blue back |")
            o.append("|---:|---:|---:|---:|---|---|---:|---:|---:|---:|---|")
            for r in rs:
                def ms(v):
                    return "%.0f" % v if v is not None else "-"
                o.append("| %d | %d | %d | %d | %s | %s | %s | %d | %s | %s | %s |"
                         % (r["round"], r["requests"], r["totals"]["failed"],
                            r["socket_errors"],
                            "yes" if r["rolled_back"] else "**no** (%s)" % r["phase"],
                            r.get("rule") or "-", ms(r.get("break_to_trigger_ms")),
                            r["green_500s"],
                            "-" if r["green_after_trigger"] is None
                            else str(r["green_after_trigger"]),
                            ms(r["last_green_after_ms"]),
                            "yes" if r["blue_back"] else "**no**"))
        if png:
            o.append("")
            o.append("## Timeline")
            o.append("")
            o.append("Responses per 100 ms by colour as wrk received them, and the "
                     "non-2xx ones (right axis), in the first round of each cell; "
                     "socket errors are in wrk's totals only (in the panel titles). "
                     "Vertical lines: the cutover request (dashed), the flip, the "
                     "breakage of green and the rollback.")
            o.append("")
            o.append("![cutover timeline](%s)" % os.path.basename(png))
        busy = max(self.busy_before, self.busy_after)
        if busy > 0.1:
            o.append("")
            o.append("**Warning:** other processes used %.2f CPUs just before or "
                     "after this run; rates are skewed (the counts of failed "
                     "requests are not rates, but timing-dependent all the same)."
                     % busy)
        notes = [(r["kind"], r["round"], n) for k in KINDS for r in self.results[k]
                 for n in r["notes"]]
        if notes:
            o.append("")
            o.append("Notes: " + "; ".join("%s round %d: %s" % (NAMES[k], rnd, n)
                                           for k, rnd, n in notes) + ".")
        o.append("")
        if self.failures:
            o.append("**Checks failed:**")
            o.append("")
            for f in self.failures:
                o.append("- " + f)
        else:
            o.append("Checks passed: switchd failed no request in its cutovers, "
                     "green took over behind every proxy, and every rollback "
                     "flipped back to blue.")
        text = "\n".join(o) + "\n"
        path = os.path.join(out_dir, "cutover.md")
        with open(path, "w") as f:
            f.write(text)
        return path, text


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true",
                    help="one round of 5 s cells (a smoke test)")
    ap.add_argument("--duration", type=int, help="seconds per cell (full: 10)")
    ap.add_argument("--repeats", type=int, help="rounds (full: 5)")
    ap.add_argument("--conns", type=int, default=64, help="wrk connections (64)")
    ap.add_argument("--out-dir", default=os.path.join(BENCH, "out"))
    ap.add_argument("--keep-tmp", action="store_true",
                    help="keep the temporary directory (configs, logs)")
    a = ap.parse_args()
    if a.duration is None:
        a.duration = 5 if a.quick else 10
    if a.repeats is None:
        a.repeats = 1 if a.quick else 5
    if a.duration < 4 or a.repeats < 1 or a.conns < 1:
        ap.error("--duration must be at least 4, --repeats and --conns at least 1")

    for s in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(s, on_signal)
    signal.signal(signal.SIGALRM, on_alarm)
    # The overall bound: every cell's duration plus its setup and a margin.
    bound = len(KINDS) * a.repeats * (a.duration + 30) + 60
    signal.alarm(bound)

    t_start = time.time()
    b = Bench(a)
    # The last line says how the checks went, in the form tests/run-all
    # collects from every part.
    summary = "cutover-bench: %d passed, %d failed"
    try:
        b.run()
        os.makedirs(a.out_dir, exist_ok=True)
        png = b.plot(a.out_dir)
        path, text = b.report(a.out_dir, png)
    except BenchError as e:
        log("error: %s" % e)
        print(summary % (b.passed, len(b.failures) + 1))
        return 1
    except Deadline:
        log("error: the run took longer than its bound (%d s)" % bound)
        print(summary % (b.passed, len(b.failures) + 1))
        return 1
    except KeyboardInterrupt:
        log("interrupted")
        return 130
    finally:
        signal.alarm(0)
        b.cleanup()
    print(text)
    for f in b.failures:
        log("check failed: " + f)
    log("written to %s%s in %.0f s" % (os.path.relpath(path),
                                       " and " + os.path.relpath(png) if png else "",
                                       time.time() - t_start))
    print(summary % (b.passed, len(b.failures)))
    return 1 if b.failures else 0


if __name__ == "__main__":
    sys.exit(main())
