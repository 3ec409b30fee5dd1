#!/usr/bin/python3
"""The live demo of switchd, run by `make demo`.

Starts two demo upstreams on 127.0.0.1 (blue and green, each a process of its
own answering with its colour, with a /health/detailed/ endpoint), writes a
config from conf/demo.conf.in into a temporary directory, starts
build/switchd in front of them with health checks on for both colours, and
puts it under a little load: a few client threads, each on one keep-alive
connection, sending requests continuously and counting every failure, plus
one thread sending slow requests (so that the flip has something to drain).

Under that load it runs `switchctl cutover --to green --wait` and shows its
progress as it happens (health passes, verification, flip, drain), lets the
load run on green a moment, flips back with `switchctl cutover --to blue
--wait`, then stops the load and prints the counts: requests per colour, as
the clients saw them and as the upstreams served them, and failed requests.
It exits 1 if any request failed or anything else went wrong.

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
SETTLE = 1.0          # load time before, between and after the cutovers

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
      anything else      `hello from COLOUR`
    """
    lock = threading.Lock()
    stats = {"requests": 0, "health_checks": 0}

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "demo-" + colour
        # http.server writes the head and the body separately; without
        # TCP_NODELAY the body waits for the proxy's delayed ACK (40 ms) on a
        # reused keep-alive connection.
        disable_nagle_algorithm = True

        def reply(self, body, ctype="text/plain"):
            body = body.encode()
            self.send_response(200)
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
            if self.path.startswith("/slow"):
                time.sleep(SLOW_SECONDS)
            with lock:
                stats["requests"] += 1
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

    def stats(self):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=3)
        try:
            conn.request("GET", "/_stats")
            return json.loads(conn.getresponse().read())
        finally:
            conn.close()

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
    told to stop. Counts answers per colour and every failure (a status other
    than 200, an unexpected body, a socket error, a closed connection); after
    a failure it reconnects and goes on."""

    def __init__(self, port, path, stop):
        super().__init__(daemon=True)
        self.port, self.path, self.stop = port, path, stop
        self.counts = {"blue": 0, "green": 0}
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
                body = resp.read().decode(errors="replace").strip()
                colour = body[len("hello from "):] \
                    if body.startswith("hello from ") else None
                if resp.status != 200 or colour not in self.counts:
                    self.fail("%d %r" % (resp.status, body[:60]))
                else:
                    self.counts[colour] += 1
                    if not self.sequence or self.sequence[-1] != colour:
                        self.sequence.append(colour)
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

    def cutover(self, colour):
        before = self.load.total()
        rc = self.switchctl("cutover", "--to", colour, "--wait",
                            "--timeout", "20s")
        if rc != 0:
            raise DemoError("switchctl cutover --to %s exited %d" % (colour, rc))
        say("switchctl exited 0; %d requests served meanwhile, %d failed so far"
            % (self.load.total() - before, self.load.failures()))

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
        self.cutover("green")
        time.sleep(SETTLE)
        say("%d requests answered by %s so far"
            % (self.load.count("green"), paint("green")))

        step("And back to blue the same way")
        self.cutover("blue")
        time.sleep(SETTLE)

        step("Stopping the load")
        self.load.finish()
        metrics = admin_get(self.sock, "/metrics")
        say("GET /metrics on the admin socket, a few of its lines:")
        for line in metrics.splitlines():
            if (line.startswith("switchd_requests_total")
                    and 'class="2xx"' in line) \
                    or line.startswith("switchd_flips_total") \
                    or line.startswith("switchd_gates_total{outcome=\"passed\"") \
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

        self.show_access_log()
        return self.report()

    def show_access_log(self):
        lines = []
        if os.path.exists(self.access_log):
            with open(self.access_log) as f:
                lines = [line.rstrip("\n") for line in f if line.strip()]
        if not lines:
            raise DemoError("the access log is empty")
        # Around the flip to green: the first request green answered, with
        # what came just before it.
        first = next((i for i, line in enumerate(lines)
                      if '"colour":"green"' in line), None)
        if first is None:
            raise DemoError("the access log has no request answered by green")
        step("The access log around the flip to green (%d lines in all, one"
             " JSON object per request)" % len(lines))
        for line in lines[max(0, first - 2):first + 2]:
            say(line)
        try:
            json.loads(lines[-1])
        except ValueError:
            raise DemoError("the access log's last line is not JSON")

    def report(self):
        step("Counts")
        served = {c: self.upstreams[c].stats() for c in ("blue", "green")}
        say("%-8s %12s %16s %15s" % ("", "clients saw", "upstream served",
                                     "health checks"))
        for c in ("blue", "green"):
            say("%-8s %12d %16d %15d"
                % (c, self.load.count(c), served[c]["requests"],
                   served[c]["health_checks"]))
        failed = self.load.failures()
        say("%-8s %12d" % ("failed", failed))

        problems = []
        for c in self.load.clients:
            for e in c.errors:
                problems.append("a client got %s" % e)
        if failed:
            problems.append("%d requests failed" % failed)
        for c in ("blue", "green"):
            if self.load.count(c) != served[c]["requests"]:
                problems.append("%s: clients saw %d answers, the upstream "
                                "served %d" % (c, self.load.count(c),
                                               served[c]["requests"]))
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
        step("Done: %d requests, 0 failed; every client followed blue -> green"
             " -> blue on its one keep-alive connection"
             % (self.load.total()))
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
