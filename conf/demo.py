#!/usr/bin/python3
"""The live demo of switchd, run by `make demo`.

Starts two demo upstreams on 127.0.0.1 (blue and green, each a process of its
own answering with its colour, with a /health/detailed/ endpoint), writes a
config from conf/demo.conf.in into a temporary directory, starts
build/switchd in front of them with health checks on for both colours and the
error watch on, and puts it under a little load: a few client threads, each
on one keep-alive connection, sending requests continuously and counting
every answer, plus one thread sending slow requests (so that the flip has
something to drain).

Under that load it runs `switchctl cutover --to green --wait` and shows its
progress as it happens (health passes, verification, flip, drain); not one
request may fail. The flip arms switchd's error watch: green serves a moment
(a second cutover is refused meanwhile, the watch is running), then the demo
breaks green, asking the green upstream directly for /_break: from then on
every ordinary request green answers is a 500 (its health checks still pass).
switchd sees the 5xx in a row and flips back to blue by itself, in the loop
turn of the response that spent the budget; the demo prints the watch's
counts, the rollback's trigger and message, the phase, and live blue again.

It then stops the load and prints the counts: requests per colour as the
clients saw them and as the upstreams served them, the requests that failed
during the cutover (must be 0), the 5xx the clients got from the broken green
(at least 1, at most the trigger's threshold plus the number of client
threads: each of them can have had one request on green when the threshold
was reached), and the requests green received after the rollback (from its own
counter, read once the rollback's drain ended and at the end: must be 0). It
exits 1 if any of those checks fails or anything else went wrong.

Standard library only. Every process it starts is stopped on the way out,
also on an error or Ctrl-C (the upstreams also exit by themselves when this
script dies: they watch their stdin). Environment: SWITCHD_BIN and
SWITCHCTL_BIN override the binaries.
"""

import http.client
import http.server
import json
import os
import select
import shutil
import signal
import socket
import string
import subprocess
import sys
import tempfile
import threading
import time

try:
    import ctypes
    LIBC = ctypes.CDLL(None)
    LIBC.prctl  # Linux only
except (ImportError, OSError, AttributeError):
    LIBC = None

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SWITCHD = os.environ.get("SWITCHD_BIN", os.path.join(ROOT, "build", "switchd"))
SWITCHCTL = os.environ.get("SWITCHCTL_BIN",
                           os.path.join(ROOT, "build", "switchctl"))
TEMPLATE = os.path.join(ROOT, "conf", "demo.conf.in")

FAST_CLIENTS = 4      # keep-alive client threads sending quick requests
SLOW_CLIENTS = 1      # and one sending requests that take SLOW_SECONDS
SLOW_SECONDS = 0.3
PAUSE = 0.002         # between two requests of one client thread
SETTLE = 1.0          # load time before the cutover, on green, on blue again
ROLLBACK_WAIT = 5.0   # how long the demo waits for switchd's rollback
BROKEN_BODY = "%s is broken (demo /_break)\n"

TTY = sys.stdout.isatty()
COLOURS = {"blue": "\033[1;34m", "green": "\033[1;32m"}


def paint(colour):
    """The colour's name, in its colour on a terminal."""
    if TTY and colour in COLOURS:
        return COLOURS[colour] + colour + "\033[0m"
    return colour


def step(text):
    print()
    print(("\033[1m==> %s\033[0m" if TTY else "==> %s") % text, flush=True)


def say(text):
    print("    " + text, flush=True)


def ms(n):
    """A duration in ms as the config writes it."""
    n = int(n)
    for unit, size in (("h", 3600000), ("m", 60000), ("s", 1000)):
        if n >= size and n % size == 0:
            return "%d%s" % (n // size, unit)
    return "%dms" % n


def ordinal(n):
    return "%d%s" % (n, {1: "st", 2: "nd", 3: "rd"}.get(
        n % 10 if n % 100 not in (11, 12, 13) else 0, "th"))


class DemoError(Exception):
    pass


# --- the two upstreams (each runs as `demo.py --upstream COLOUR`) ---------


def upstream_main(colour):
    """An HTTP/1.1 keep-alive server on a free loopback port. Prints the port
    on stdout, then serves until its stdin closes (the demo exited) or
    SIGTERM. Answers:
      /health/detailed/  200 {"status": "ok", ...}   (switchd's checks)
      /slow              `hello from COLOUR` after SLOW_SECONDS
      /_stats            its counters, as JSON (asked directly, not via switchd)
      /_break            breaks it (asked directly too): from then on every
                         ordinary request is answered 500 BROKEN_BODY, also
                         one already received whose answer is not yet sent;
                         the health checks still answer 200
      anything else      `hello from COLOUR`
    The counters: "requests", ordinary requests, counted as they arrive;
    "errors", the 500s among them; "health_checks".
    """
    lock = threading.Lock()
    stats = {"requests": 0, "errors": 0, "health_checks": 0, "broken": False}

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "demo-" + colour
        # http.server writes the head and the body separately; without
        # TCP_NODELAY the body waits for the proxy's delayed ACK (40 ms) on a
        # reused keep-alive connection.
        disable_nagle_algorithm = True

        def reply(self, body, ctype="text/plain", status=200):
            body = body.encode()
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("X-Demo-Colour", colour)
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self):
            if self.path == "/health/detailed/":
                with lock:
                    stats["health_checks"] += 1
                self.reply('{"status": "ok", "colour": "%s"}\n' % colour,
                           "application/json")
                return
            if self.path == "/_stats":
                with lock:
                    text = json.dumps(stats)
                self.reply(text + "\n", "application/json")
                return
            if self.path == "/_break":
                with lock:
                    stats["broken"] = True
                self.reply("%s is broken now\n" % colour)
                return
            with lock:
                stats["requests"] += 1
            if self.path.startswith("/slow"):
                time.sleep(SLOW_SECONDS)
            # Decided when the answer is written, under the lock that /_break
            # takes: every answer written after /_break is a 500.
            with lock:
                broken = stats["broken"]
                if broken:
                    stats["errors"] += 1
            if broken:
                self.reply(BROKEN_BODY % colour, status=500)
            else:
                self.reply("hello from %s\n" % colour)

        def log_message(self, fmt, *args):
            pass

    signal.signal(signal.SIGTERM, lambda *a: os._exit(0))
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    print(server.server_address[1], flush=True)
    # The demo keeps our stdin open while it lives; EOF means it is gone.
    while sys.stdin.buffer.read(4096):
        pass
    os._exit(0)


class Upstream:
    """A demo upstream process, seen from the demo."""

    def __init__(self, colour):
        self.colour = colour
        self.proc = subprocess.Popen(
            [sys.executable, os.path.abspath(__file__), "--upstream", colour],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            start_new_session=True)
        ready, _, _ = select.select([self.proc.stdout], [], [], 5)
        line = self.proc.stdout.readline() if ready else b""
        if not line.strip().isdigit():
            raise DemoError("the %s upstream did not start" % colour)
        self.port = int(line)

    def get(self, path):
        """GET on the upstream itself, not through switchd."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=3)
        try:
            conn.request("GET", path)
            resp = conn.getresponse()
            body = resp.read()
            if resp.status != 200:
                raise DemoError("GET %s on the %s upstream: %d"
                                % (path, self.colour, resp.status))
            return body
        finally:
            conn.close()

    def stats(self):
        return json.loads(self.get("/_stats"))

    def break_it(self):
        self.get("/_break")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=3)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        for f in (self.proc.stdin, self.proc.stdout):
            try:
                f.close()
            except OSError:
                pass


def own_session_dying_with_us():
    """preexec_fn for switchd: a session of its own (Ctrl-C reaches only this
    script, which then stops switchd the way an operator would, SIGTERM),
    and SIGTERM from the kernel should this script die without cleaning up
    (Linux's PR_SET_PDEATHSIG; skipped where unavailable)."""
    os.setsid()
    if LIBC is not None:
        LIBC.prctl(1, signal.SIGTERM)  # 1: PR_SET_PDEATHSIG


def free_port():
    # The port is free now; switchd binds it a moment later. Another process
    # taking it in between is possible but unlikely on a demo machine.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- the load ----------------------------------------------------------------


class Client(threading.Thread):
    """One client thread on one keep-alive connection, sending requests until
    told to stop. Counts answers per colour, the broken green's 500s, and
    every other failure (another status, an unexpected body, a socket error,
    a closed connection); after a failure it reconnects and goes on."""

    def __init__(self, port, path, stop):
        super().__init__(daemon=True)
        self.port, self.path, self.stop = port, path, stop
        self.counts = {"blue": 0, "green": 0}
        self.broken = {"blue": 0, "green": 0}   # 500s of a broken upstream
        self.failures = 0
        self.errors = []       # the first few failures, for the report
        self.sequence = []     # colours in order, runs collapsed
        self.connects = 0

    def connect(self):
        self.connects += 1
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        conn.connect()
        return conn

    def fail(self, what):
        self.failures += 1
        if len(self.errors) < 3:
            self.errors.append(what)

    def run(self):
        conn = None
        n = 0
        while not self.stop.is_set():
            try:
                if conn is None:
                    conn = self.connect()
                n += 1
                conn.request("GET", "%s/%d" % (self.path, n),
                             headers={"User-Agent": "switchd-demo"})
                resp = conn.getresponse()
                raw = resp.read().decode(errors="replace")
                body = raw.strip()
                colour = body[len("hello from "):] \
                    if body.startswith("hello from ") else None
                sender = resp.getheader("X-Demo-Colour")
                if resp.status == 200 and colour in self.counts:
                    self.counts[colour] += 1
                    if not self.sequence or self.sequence[-1] != colour:
                        self.sequence.append(colour)
                elif (resp.status == 500 and sender in self.broken
                      and raw == BROKEN_BODY % sender):
                    self.broken[sender] += 1
                else:
                    self.fail("%d %r" % (resp.status, body[:60]))
                if resp.will_close:
                    conn.close()
                    conn = None
            except (OSError, http.client.HTTPException) as e:
                self.fail("%s: %s" % (type(e).__name__, e))
                if conn is not None:
                    conn.close()
                conn = None
                time.sleep(0.05)
            time.sleep(PAUSE)
        if conn is not None:
            conn.close()


class Load:
    def __init__(self, port):
        self.stop = threading.Event()
        self.clients = [Client(port, "/page", self.stop)
                        for _ in range(FAST_CLIENTS)]
        self.clients += [Client(port, "/slow", self.stop)
                         for _ in range(SLOW_CLIENTS)]

    def start(self):
        for c in self.clients:
            c.start()

    def total(self):
        return sum(sum(c.counts.values()) for c in self.clients)

    def failures(self):
        return sum(c.failures for c in self.clients)

    def count(self, colour):
        return sum(c.counts[colour] for c in self.clients)

    def broken(self, colour):
        return sum(c.broken[colour] for c in self.clients)

    def finish(self):
        self.stop.set()
        for c in self.clients:
            c.join(timeout=15)
            if c.is_alive():
                raise DemoError("a client thread did not stop")


# --- the admin API -----------------------------------------------------------


def admin_get(sock_path, path):
    """GET on the admin socket, as `curl --unix-socket SOCK http://switchd/PATH`
    would; returns the body as text."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(3)
    try:
        s.connect(sock_path)
        s.sendall(("GET %s HTTP/1.1\r\nHost: switchd\r\n"
                   "Connection: close\r\n\r\n" % path).encode())
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    finally:
        s.close()
    head, _, body = data.partition(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 200"):
        raise DemoError("GET %s on the admin socket: %s"
                        % (path, head.split(b"\r\n")[0].decode()))
    return body.decode()


# --- the demo ----------------------------------------------------------------


class Demo:
    def __init__(self):
        self.tmp = tempfile.mkdtemp(prefix="switchd-demo.")
        self.conf = os.path.join(self.tmp, "switchd.conf")
        self.error_log = os.path.join(self.tmp, "error.log")
        self.access_log = os.path.join(self.tmp, "access.log")
        self.state_file = os.path.join(self.tmp, "state.json")
        self.sock = os.path.join(self.tmp, "admin.sock")
        self.upstreams = {}
        self.proc = None
        self.ctl = None
        self.load = None
        self.port = None
        self.t0 = time.monotonic()
        self.cutover_failed = None
        self.rollback = None
        self.watch_at_rollback = None
        self.green_at_rollback = None

    def write_config(self):
        with open(TEMPLATE) as f:
            text = string.Template(f.read()).substitute(
                error_log=self.error_log,
                access_log=self.access_log,
                state_file=self.state_file,
                listen_port=self.port,
                blue_port=self.upstreams["blue"].port,
                green_port=self.upstreams["green"].port,
                admin_socket=self.sock,
            )
        with open(self.conf, "w") as f:
            f.write(text)

    def check_alive(self):
        if self.proc is not None and self.proc.poll() is not None:
            raise DemoError("switchd exited with status %d" % self.proc.returncode)

    def wait_until(self, what, pred, timeout=5.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.check_alive()
            try:
                if pred():
                    return
            except (OSError, ValueError, DemoError):
                pass
            time.sleep(0.05)
        raise DemoError("%s: not within %.0f s" % (what, timeout))

    def listening(self):
        with socket.create_connection(("127.0.0.1", self.port), 0.2):
            return True

    def both_healthy(self):
        st = json.loads(admin_get(self.sock, "/v1/status"))
        return all(st["colours"][c]["healthy"] for c in ("blue", "green"))

    def switchctl(self, *args, timeout=30):
        """Runs switchctl, printing each line of its output as it comes, with
        the time since it started. Returns its exit code."""
        cmd = [SWITCHCTL, "-s", self.sock] + list(args)
        say("$ switchctl -s $DEMO/admin.sock " + " ".join(args))
        start = time.monotonic()
        self.ctl = subprocess.Popen(cmd, stdout=subprocess.PIPE,
                                    stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL)
        # Read with os.read, not readline: a buffered reader would keep lines
        # that select() no longer sees, and print them late.
        fd = self.ctl.stdout.fileno()
        pending = b""
        while True:
            left = timeout - (time.monotonic() - start)
            if left <= 0:
                raise DemoError("switchctl %s: still running after %d s"
                                % (args[0], timeout))
            ready, _, _ = select.select([fd], [], [], min(left, 0.5))
            if not ready:
                self.check_alive()
                continue
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            pending += chunk
            *lines, pending = pending.split(b"\n")
            for line in lines:
                say("  %5.2fs | %s" % (time.monotonic() - start,
                                       line.decode(errors="replace").rstrip()))
        if pending:
            say("  %5.2fs | %s" % (time.monotonic() - start,
                                   pending.decode(errors="replace").rstrip()))
        rc = self.ctl.wait(timeout=5)
        self.ctl.stdout.close()
        self.ctl = None
        return rc

    def status(self):
        return json.loads(admin_get(self.sock, "/v1/status"))

    def switchctl_knows_watch(self):
        """Whether build/switchctl is the one that knows the error watch:
        its `cutover --wait` returns once the flip happened and the old
        colour drained, while the watch runs. An older one follows until the
        phase is steady again, which a watch does not give it."""
        out = subprocess.run([SWITCHCTL, "cutover", "--help"],
                             capture_output=True, text=True, timeout=5)
        return "--watch" in out.stdout + out.stderr

    def cutover(self, colour):
        """`switchctl cutover --to COLOUR --wait` under the load. Returns the
        number of requests that failed meanwhile."""
        before, failed = self.load.total(), self.load.failures()
        version = self.status()["version"]
        if self.switchctl_knows_watch():
            rc = self.switchctl("cutover", "--to", colour, "--wait",
                                "--timeout", "20s")
            if rc == 7:
                raise DemoError("switchctl cutover --to %s: rolled back (exit 7)"
                                % colour)
            if rc != 0:
                raise DemoError("switchctl cutover --to %s exited %d"
                                % (colour, rc))
        else:
            say("(this switchctl predates the watch: its --wait would wait for"
                " a steady phase; the demo follows GET /v1/status instead)")
            start = time.monotonic()
            rc = self.switchctl("cutover", "--to", colour)
            if rc != 0:
                raise DemoError("switchctl cutover --to %s exited %d"
                                % (colour, rc))
            self.follow(colour, version, start)
        failed = self.load.failures() - failed
        say("%d requests served meanwhile, %d failed"
            % (self.load.total() - before, failed))
        return failed

    def follow(self, colour, version, start, timeout=20.0):
        """What `switchctl cutover --wait` does, from the status: prints the
        state changes as they come, until COLOUR is live and the old colour
        drained."""
        printed = version
        while time.monotonic() - start < timeout:
            self.check_alive()
            st = self.status()
            for e in st.get("history", []):
                if e.get("version", 0) > printed:
                    printed = e["version"]
                    say("  %5.2fs | %s -> %s: %s"
                        % (time.monotonic() - start, e.get("from"),
                           e.get("to"), e.get("text")))
            if st["version"] > version and st["live"] == colour \
                    and "drain" not in st and "gate" not in st:
                return
            if st["version"] > version and st["phase"] in ("steady",
                                                           "rolled_back"):
                raise DemoError("cutover to %s: %s (%s)"
                                % (colour, st["last_gate"]["outcome"],
                                   st["last_gate"]["message"]))
            time.sleep(0.05)
        raise DemoError("cutover to %s: not done within %.0f s"
                        % (colour, timeout))

    def say_watch(self, w, prefix="watch"):
        t = w["triggers"]
        say("%s: phase %s, %.1f s since the flip; green: %d requests, %d"
            " errors; R1 %d/%d errors, R2 %d of %d in %s, R3 %d/%d in a row,"
            " R4 green %s"
            % (prefix, w["phase"], w["since_flip_ms"] / 1000.0, w["requests"],
               w["errors"], t["r1"]["errors"], t["r1"]["max_errors"],
               t["r2"]["errors"], t["r2"]["requests"],
               ms(t["r2"]["window_ms"]), t["r3"]["consecutive"],
               t["r3"]["max_consecutive"],
               "healthy" if t["r4"]["healthy"] else "UNHEALTHY"))

    def break_green(self):
        """Breaks green, waits for switchd's rollback and shows it, then
        reads green's own counter once its last requests finished."""
        green = self.upstreams["green"]
        t0 = time.monotonic()
        green.break_it()
        say("%5.0f ms  green is broken" % ((time.monotonic() - t0) * 1000))
        seen = None
        while True:
            self.check_alive()
            st = self.status()
            now = (time.monotonic() - t0) * 1000
            w = st["watch"]
            if st["phase"] == "rolled_back" or st["live"] != "green" \
                    or "rollback" in st:
                break
            counts = (w["errors"], w["triggers"]["r3"]["consecutive"])
            if counts != seen:
                seen = counts
                say("%5.0f ms  live %s, phase %s: %d errors since the flip,"
                    " %d in a row" % (now, st["live"], st["phase"],
                                      counts[0], counts[1]))
            if now > ROLLBACK_WAIT * 1000:
                raise DemoError("no rollback within %.0f s of breaking green"
                                % ROLLBACK_WAIT)
            time.sleep(0.01)
        rb = st.get("rollback") or {}
        say("%5.0f ms  live %s, phase %s: switchd rolled back by itself"
            % (now, paint(st["live"]), st["phase"]))
        say("rollback: %s (%s), trigger %s, %s -> %s: %s"
            % (rb.get("outcome"), rb.get("mode"), rb.get("trigger"),
               rb.get("from"), rb.get("to"), rb.get("message")))
        self.say_watch(w, "watch then")
        self.rollback = rb
        self.watch_at_rollback = w
        if st["live"] != "blue" or st["phase"] != "rolled_back" \
                or rb.get("outcome") != "rolled_back":
            raise DemoError("after breaking green: live %s, phase %s, rollback"
                            " %s" % (st["live"], st["phase"], rb))
        inflight = st["colours"]["green"]["inflight"]
        self.wait_until("green's last requests finished",
                        lambda: self.status()["colours"]["green"]["inflight"]
                        == 0)
        self.green_at_rollback = green.stats()
        say("%d request%s still in flight on green when the demo saw it; once"
            " finished, green's own counter read %d requests received, %d"
            " answered 500; the clients had %d 500s"
            % (inflight, " was" if inflight == 1 else "s were",
               self.green_at_rollback["requests"],
               self.green_at_rollback["errors"], self.load.broken("green")))

    def run(self):
        for path, what in ((SWITCHD, "switchd"), (SWITCHCTL, "switchctl")):
            if not os.access(path, os.X_OK):
                raise DemoError("%s not found; run `make` first" % path)

        step("Starting two demo upstreams on 127.0.0.1")
        for colour in ("blue", "green"):
            self.upstreams[colour] = Upstream(colour)
            say("%-5s upstream on 127.0.0.1:%d (pid %d) answers `hello from %s`"
                " and 200 on /health/detailed/"
                % (paint(colour), self.upstreams[colour].port,
                   self.upstreams[colour].proc.pid, colour))

        step("Writing the config ($DEMO = %s) and checking it" % self.tmp)
        self.port = free_port()
        self.write_config()
        with open(self.conf) as f:
            for line in f:
                if line.strip() and not line.lstrip().startswith("#"):
                    say("| " + line.rstrip().replace(self.tmp, "$DEMO"))
        check = subprocess.run([SWITCHD, "-t", "-c", self.conf],
                               capture_output=True, text=True, timeout=5)
        for line in (check.stdout + check.stderr).splitlines():
            say("switchd -t: " + line.replace(self.tmp, "$DEMO"))
        if check.returncode != 0:
            raise DemoError("switchd -t rejected the config (exit %d)"
                            % check.returncode)

        step("Starting switchd on 127.0.0.1:%d; both colours health-checked"
             % self.port)
        # Started before any thread of ours: preexec_fn is safe then.
        self.proc = subprocess.Popen([SWITCHD, "-c", self.conf],
                                     stdin=subprocess.DEVNULL,
                                     preexec_fn=own_session_dying_with_us)
        self.wait_until("switchd listening", self.listening)
        self.wait_until("both colours healthy", self.both_healthy)
        rc = self.switchctl("status")
        if rc != 0:
            raise DemoError("switchctl status exited %d" % rc)

        step("Load: %d keep-alive clients sending requests continuously, and"
             " %d sending %.1f s requests" % (FAST_CLIENTS, SLOW_CLIENTS,
                                              SLOW_SECONDS))
        self.load = Load(self.port)
        self.load.start()
        time.sleep(SETTLE)
        say("%d requests in %.0f s, all answered by %s, %d failed"
            % (self.load.total(), SETTLE, paint("blue"), self.load.failures()))

        step("Cutover to green under load: the gate needs 3 health passes in a"
             " row after the request, then a re-check, the flip, the drain")
        self.cutover_failed = self.cutover("green")
        st = self.status()
        if st["live"] != "green" or st["phase"] != "watching":
            raise DemoError("after the cutover: live %s, phase %s (expected"
                            " green, watching)" % (st["live"], st["phase"]))
        w = st["watch"]
        t = w["triggers"]
        say("live %s, phase %s: the watch runs on green for %s (automatic"
            " rollback), blue kept warm" % (paint("green"), st["phase"],
                                            ms(w["auto_window_ms"])))
        say("triggers: R1 more than %d errors since the flip, R2 %d%% errors"
            " over %s, R3 %d errors in a row, R4 green's health checks fail"
            % (t["r1"]["max_errors"], round(100 * t["r2"]["max_error_ratio"]),
               ms(t["r2"]["window_ms"]), t["r3"]["max_consecutive"]))

        step("Green serves a moment under the watch")
        rc = self.switchctl("watch", "--count", "2")
        if rc != 0:
            raise DemoError("switchctl watch exited %d" % rc)
        self.say_watch(self.status()["watch"])
        say("a second cutover is refused while the watch runs"
            " (`switchctl commit` or a rollback ends it):")
        rc = self.switchctl("cutover", "--to", "blue")
        if rc != 3:
            raise DemoError("switchctl cutover during the watch exited %d, not"
                            " 3 (refused)" % rc)
        say("%d requests answered by %s so far, %d failed"
            % (self.load.count("green"), paint("green"),
               self.load.failures()))

        step("Breaking green: GET /_break on the green upstream itself (not"
             " through switchd); from now on it answers every request 500,"
             " its health checks still 200")
        self.break_green()

        step("Blue serves again")
        time.sleep(SETTLE)
        rc = self.switchctl("status")
        if rc != 0:
            raise DemoError("switchctl status exited %d" % rc)

        step("Stopping the load")
        self.load.finish()
        metrics = admin_get(self.sock, "/metrics")
        say("GET /metrics on the admin socket, a few of its lines:")
        for line in metrics.splitlines():
            if line.startswith("#"):
                continue
            if line.endswith(" 0") and not line.startswith("switchd_live"):
                continue
            if line.startswith("switchd_requests_total") \
                    or line.startswith("switchd_flips_total") \
                    or line.startswith("switchd_rollbacks_total") \
                    or line.startswith("switchd_watch_errors") \
                    or line.startswith("switchd_live{"):
                say("  " + line)

        step("Stopping switchd with SIGTERM (graceful shutdown)")
        self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(timeout=7)
        except subprocess.TimeoutExpired:
            raise DemoError("switchd did not exit within 7 s of SIGTERM")
        if rc != 0:
            raise DemoError("switchd exited with status %d" % rc)
        say("switchd exited with status 0")
        with open(self.state_file) as f:
            st = json.load(f)
        say("its state file says: live %s, phase %s, state version %s"
            % (paint(st.get("live", "?")), st.get("phase", "?"),
               st.get("version", "?")))
        if st.get("live") != "blue" or st.get("phase") != "rolled_back":
            raise DemoError("the state file does not say live blue, phase"
                            " rolled_back")

        self.show_access_log()
        return self.report()

    def show_access_log(self):
        entries = []
        if os.path.exists(self.access_log):
            with open(self.access_log) as f:
                for line in f:
                    if line.strip():
                        try:
                            entries.append(json.loads(line))
                        except ValueError:
                            raise DemoError("the access log has a line that is"
                                            " not JSON: %r" % line[:80])
        if not entries:
            raise DemoError("the access log is empty")
        # Around the rollback: the last answer green gave before the break,
        # its 500s up to the one that fired the trigger, the first request
        # blue answered after that; then green's later ones (those that were
        # in flight) and the last line.
        bad = [i for i, e in enumerate(entries)
               if e.get("colour") == "green" and e.get("status") == 500]
        if not bad:
            raise DemoError("the access log has no 500 answered by green")
        threshold = self.watch_at_rollback["triggers"]["r3"]["max_consecutive"]
        fired = bad[min(threshold, len(bad)) - 1]
        first_blue = next((i for i in range(fired + 1, len(entries))
                           if entries[i].get("colour") == "blue"), None)
        shown = [bad[0] - 1] + bad[:threshold] + [first_blue] \
            + bad[threshold:] + [len(entries) - 1]
        step("The access log around the rollback (%d lines in all, one JSON"
             " object per request; here its time, path, status, colour and"
             " total_ms)" % len(entries))
        notes = {fired: "  <- the %s 500 in a row: R3 fires, live blue"
                 % ordinal(threshold)}
        if first_blue is not None:
            notes[first_blue] = "  <- the first request blue answers"
        for i in bad[threshold:]:
            notes[i] = "  <- was in flight on green at the rollback"
        last = None
        for i in sorted(set(i for i in shown if i is not None and i >= 0)):
            if last is not None and i > last + 1:
                say("  ... %d lines" % (i - last - 1))
            e = entries[i]
            say("  %s %-12s %s %-5s %7.1f ms%s"
                % (e.get("time", "?")[11:23], e.get("path"), e.get("status"),
                   paint(e.get("colour", "-")), e.get("total_ms", 0.0),
                   notes.get(i, "")))
            last = i

    def report(self):
        step("Counts")
        served = {c: self.upstreams[c].stats() for c in ("blue", "green")}
        say("%-8s %18s %22s %8s" % ("", "clients got", "upstream received",
                                      "health"))
        say("%-8s %9s %8s %12s %9s %8s" % ("", "200", "500", "all",
                                            "500", "checks"))
        for c in ("blue", "green"):
            say("%-8s %9d %8d %12d %9d %8d"
                % (c, self.load.count(c), self.load.broken(c),
                   served[c]["requests"], served[c]["errors"],
                   served[c]["health_checks"]))
        threads = len(self.load.clients)
        t = self.watch_at_rollback["triggers"]
        max_consecutive = t["r3"]["max_consecutive"]
        max_errors = t["r1"]["max_errors"]
        threshold = min(max_consecutive, max_errors + 1)
        bound = threshold + threads
        broken = self.load.broken("green")
        after = served["green"]["requests"] \
            - self.green_at_rollback["requests"]
        failed = self.load.failures()
        say("failed during the cutover to green:   %4d   (must be 0)"
            % self.cutover_failed)
        say("failed in all (the 500s apart):       %4d   (must be 0)" % failed)
        say("500s from the broken green:           %4d   (must be 1 to %d: R3"
            " fires at the %s 500 in a row, R1 at the %s error, and each"
            " of the %d client threads may have had one more request on green"
            " then)" % (broken, bound, ordinal(max_consecutive),
                        ordinal(max_errors + 1), threads))
        say("requests green received after the rollback: %d   (its counter:"
            " %d once the rollback's in-flight requests finished, %d at the"
            " end; must be 0)" % (after, self.green_at_rollback["requests"],
                                  served["green"]["requests"]))

        problems = []
        for c in self.load.clients:
            for e in c.errors:
                problems.append("a client got %s" % e)
        if self.cutover_failed:
            problems.append("%d requests failed during the cutover"
                            % self.cutover_failed)
        if failed:
            problems.append("%d requests failed" % failed)
        if not 1 <= broken <= bound:
            problems.append("the clients got %d 500s from the broken green,"
                            " not 1 to %d" % (broken, bound))
        if self.load.broken("blue"):
            problems.append("blue answered 500")
        if after:
            problems.append("green received %d requests after the rollback"
                            % after)
        for c in ("blue", "green"):
            got = self.load.count(c) + self.load.broken(c)
            if got != served[c]["requests"] \
                    or self.load.broken(c) != served[c]["errors"]:
                problems.append("%s: the clients got %d answers (%d 500s), the"
                                " upstream received %d requests (%d 500s)"
                                % (c, got, self.load.broken(c),
                                   served[c]["requests"], served[c]["errors"]))
        order = [c.sequence for c in self.load.clients]
        if any(seq != ["blue", "green", "blue"] for seq in order):
            problems.append("not every client saw blue, then green, then blue:"
                            " %s" % order)
        reconnects = sum(c.connects - 1 for c in self.load.clients)
        if reconnects:
            problems.append("%d client connections had to be reopened"
                            % reconnects)
        if problems:
            for p in problems:
                print("demo failed: " + p, file=sys.stderr)
            return 1
        step("Done: %d requests, 0 failed in the cutover, %d 500s from the"
             " broken green before switchd rolled back by itself (%s), none"
             " to green after; every client followed blue -> green -> blue on"
             " its one keep-alive connection"
             % (self.load.total() + broken, broken,
                self.rollback.get("trigger")))
        return 0

    def cleanup(self):
        if self.load is not None:
            self.load.stop.set()
        if self.ctl is not None and self.ctl.poll() is None:
            self.ctl.kill()
            self.ctl.wait()
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=3)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        for u in self.upstreams.values():
            u.stop()
        if self.load is not None:
            for c in self.load.clients:
                if c.is_alive():
                    c.join(timeout=2)
        shutil.rmtree(self.tmp, ignore_errors=True)

    def show_error_log(self):
        if os.path.exists(self.error_log):
            with open(self.error_log, errors="replace") as f:
                tail = f.readlines()[-20:]
            if tail:
                print("--- last lines of switchd's error log:", file=sys.stderr)
                sys.stderr.writelines(tail)


def on_term(signum, frame):
    raise SystemExit(128 + signum)


def main():
    if len(sys.argv) == 3 and sys.argv[1] == "--upstream":
        upstream_main(sys.argv[2])
        return 0
    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGHUP, on_term)
    demo = Demo()
    try:
        rc = demo.run()
        if rc != 0:
            demo.show_error_log()
        return rc
    except DemoError as e:
        print("demo failed: %s" % e, file=sys.stderr)
        demo.show_error_log()
        return 1
    except (OSError, ValueError, http.client.HTTPException) as e:
        print("demo failed: %s: %s" % (type(e).__name__, e), file=sys.stderr)
        demo.show_error_log()
        return 1
    except KeyboardInterrupt:
        print("\ninterrupted; stopping everything", file=sys.stderr)
        return 130
    finally:
        demo.cleanup()


if __name__ == "__main__":
    sys.exit(main())
