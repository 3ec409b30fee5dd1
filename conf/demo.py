#!/usr/bin/python3
"""The live demo of switchd, run by `make demo`.

Starts two tiny upstreams on 127.0.0.1 (blue and green, each answering with its
colour), writes a config from conf/demo.conf.in into a temporary directory,
starts build/switchd in front of them, and shows the live colour changing by
rewriting the config and sending SIGHUP: first to green, then back to blue,
including on a keep-alive client connection opened before the flips. Ends by
printing the access log and stopping switchd with SIGTERM.

Standard library only. Every process it starts is stopped on the way out,
also on an error or Ctrl-C. Environment: SWITCHD_BIN overrides the binary.
"""

import http.client
import http.server
import json
import os
import shutil
import signal
import socket
import string
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SWITCHD = os.environ.get("SWITCHD_BIN", os.path.join(ROOT, "build", "switchd"))
TEMPLATE = os.path.join(ROOT, "conf", "demo.conf.in")

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


# --- the two upstreams -----------------------------------------------------


def make_upstream(colour):
    """An HTTP/1.1 keep-alive server on a free loopback port that answers
    every GET with `hello from COLOUR`."""

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "demo-" + colour
        # http.server writes the head and the body separately; without
        # TCP_NODELAY the body waits for the proxy's delayed ACK (40 ms) on a
        # reused keep-alive connection.
        disable_nagle_algorithm = True

        def do_GET(self):
            body = ("hello from %s\n" % colour).encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(body)))
            self.send_header("X-Demo-Colour", colour)
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, fmt, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    return server


def free_port():
    # The port is free now; switchd binds it a moment later. Another process
    # taking it in between is possible but unlikely on a demo machine.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- talking to switchd ----------------------------------------------------


def colour_of(resp_body):
    text = resp_body.decode(errors="replace").strip()
    for c in ("blue", "green"):
        if text == "hello from " + c:
            return c, text
    return None, text


def get_once(port, path="/"):
    """One request on a fresh connection; returns (colour, status, body)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=3)
    try:
        conn.request("GET", path, headers={"User-Agent": "switchd-demo"})
        resp = conn.getresponse()
        body = resp.read()
        colour, text = colour_of(body)
        return colour, resp.status, text
    finally:
        conn.close()


class KeepAlive:
    """One client connection kept open across requests, to show that a flip
    moves the next request on an already-open connection."""

    def __init__(self, port):
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=3)
        self.conn.connect()
        self.local_port = self.conn.sock.getsockname()[1]
        self.count = 0

    def get(self, path="/"):
        sock = self.conn.sock
        if sock is None or sock.getsockname()[1] != self.local_port:
            raise DemoError("the keep-alive connection was closed")
        self.conn.request("GET", path, headers={"User-Agent": "switchd-demo"})
        resp = self.conn.getresponse()
        body = resp.read()
        if resp.will_close:
            raise DemoError("switchd asked to close the keep-alive connection")
        self.count += 1
        colour, text = colour_of(body)
        return colour, resp.status, text

    def close(self):
        self.conn.close()


def show(label, result):
    colour, status, text = result
    say("%-34s -> %d %s  (%s)" % (label, status, text, paint(colour or "?")))
    return colour


# --- the demo --------------------------------------------------------------


class Demo:
    def __init__(self):
        self.tmp = tempfile.mkdtemp(prefix="switchd-demo.")
        self.conf = os.path.join(self.tmp, "switchd.conf")
        self.error_log = os.path.join(self.tmp, "error.log")
        self.access_log = os.path.join(self.tmp, "access.log")
        self.upstreams = {}
        self.proc = None
        self.keepalive = None
        self.port = None
        self.log_seen = 0

    def write_config(self, live):
        with open(TEMPLATE) as f:
            text = string.Template(f.read()).substitute(
                live=live,
                error_log=self.error_log,
                access_log=self.access_log,
                listen_port=self.port,
                blue_port=self.upstreams["blue"].server_address[1],
                green_port=self.upstreams["green"].server_address[1],
                admin_socket=os.path.join(self.tmp, "admin.sock"),
            )
        # Write aside and rename, so switchd never reads a half-written file.
        tmp = self.conf + ".new"
        with open(tmp, "w") as f:
            f.write(text)
        os.replace(tmp, self.conf)

    def check_alive(self):
        if self.proc is not None and self.proc.poll() is not None:
            raise DemoError("switchd exited with status %d" % self.proc.returncode)

    def wait_listening(self, timeout=5.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.check_alive()
            try:
                with socket.create_connection(("127.0.0.1", self.port), 0.2):
                    return
            except OSError:
                time.sleep(0.05)
        raise DemoError("switchd did not listen on port %d within %.0f s"
                        % (self.port, timeout))

    def flip(self, colour):
        """Rewrites the config with `live COLOUR`, sends SIGHUP and waits for
        the first request that the new colour answers."""
        self.write_config(colour)
        say("config now says `live %s`; sending SIGHUP to switchd (pid %d)"
            % (colour, self.proc.pid))
        start = time.monotonic()
        self.proc.send_signal(signal.SIGHUP)
        # The reload is asynchronous: poll with fresh connections until the
        # new colour answers (a reload is one loop turn, so this is quick).
        while True:
            self.check_alive()
            got, status, _ = get_once(self.port, "/poll")
            if got == colour:
                break
            if time.monotonic() - start > 3:
                raise DemoError("still %s 3 s after SIGHUP" % got)
            time.sleep(0.01)
        say("reload applied: %s answers %.0f ms after the signal"
            % (paint(colour), (time.monotonic() - start) * 1000))
        self.show_new_log_lines(wait_for="reloaded")

    def show_new_log_lines(self, wait_for=None):
        """What switchd wrote to its error log since the last call. switchd
        flushes info lines every 200 ms, so wait up to a second for a line
        containing `wait_for`."""
        text = ""
        deadline = time.monotonic() + 1.0
        while True:
            try:
                with open(self.error_log, errors="replace") as f:
                    f.seek(self.log_seen)
                    text += f.read()
                    self.log_seen = f.tell()
            except OSError:
                pass
            if wait_for is None or wait_for in text or \
                    time.monotonic() > deadline:
                break
            time.sleep(0.05)
        for line in text.splitlines():
            if line.strip():
                say("switchd log: " + line)

    def requests(self, n, expect):
        for i in range(n):
            got = show("GET /page/%d  (new connection)" % i,
                       get_once(self.port, "/page/%d" % i))
            if got != expect:
                raise DemoError("expected %s, got %s" % (expect, got))
        got = show("GET /ka  (keep-alive, port %d)" % self.keepalive.local_port,
                   self.keepalive.get("/ka"))
        if got != expect:
            raise DemoError("keep-alive: expected %s, got %s" % (expect, got))

    def run(self):
        if not os.access(SWITCHD, os.X_OK):
            raise DemoError("%s not found; run `make` first" % SWITCHD)

        step("Starting two demo upstreams on 127.0.0.1")
        for colour in ("blue", "green"):
            self.upstreams[colour] = make_upstream(colour)
            say("%-5s upstream on 127.0.0.1:%d answers `hello from %s`"
                % (colour, self.upstreams[colour].server_address[1], colour))

        step("Writing a config with `live blue` and checking it (switchd -t)")
        self.port = free_port()
        self.write_config("blue")
        with open(self.conf) as f:
            for line in f:
                if line.strip() and not line.lstrip().startswith("#"):
                    say("| " + line.rstrip())
        check = subprocess.run([SWITCHD, "-t", "-c", self.conf],
                               capture_output=True, text=True, timeout=5)
        for line in (check.stdout + check.stderr).splitlines():
            say("switchd -t: " + line)
        if check.returncode != 0:
            raise DemoError("switchd -t rejected the config (exit %d)"
                            % check.returncode)

        step("Starting switchd in front of them on 127.0.0.1:%d" % self.port)
        # A session of its own, so that Ctrl-C reaches only this script, which
        # then stops switchd the way an operator would (SIGTERM).
        self.proc = subprocess.Popen([SWITCHD, "-c", self.conf],
                                     stdin=subprocess.DEVNULL,
                                     start_new_session=True)
        self.wait_listening()
        say("switchd pid %d is listening" % self.proc.pid)
        self.show_new_log_lines(wait_for="started")

        step("Requests go to the live colour, blue")
        self.keepalive = KeepAlive(self.port)
        say("a keep-alive client connection is open from local port %d"
            % self.keepalive.local_port)
        self.requests(3, "blue")

        step("Flipping to green: rewrite the config, then SIGHUP")
        self.flip("green")

        step("New requests, and the next one on the same keep-alive connection,"
             " go to green")
        self.requests(3, "green")

        step("Flipping back to blue the same way")
        self.flip("blue")
        self.requests(3, "blue")
        say("the keep-alive connection carried %d requests without reconnecting"
            % self.keepalive.count)
        self.keepalive.close()
        self.keepalive = None

        step("Stopping switchd with SIGTERM (graceful shutdown)")
        self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(timeout=7)
        except subprocess.TimeoutExpired:
            raise DemoError("switchd did not exit within 7 s of SIGTERM")
        if rc != 0:
            raise DemoError("switchd exited with status %d" % rc)
        self.show_new_log_lines()
        say("switchd exited with status 0")

        step("The access log (%s), one JSON object per request"
             % self.access_log)
        lines = []
        if os.path.exists(self.access_log):
            with open(self.access_log) as f:
                lines = [line.rstrip("\n") for line in f if line.strip()]
        if not lines:
            raise DemoError("the access log is empty")
        for line in lines:
            say(line)
        try:
            json.loads(lines[-1])
        except ValueError:
            raise DemoError("the access log's last line is not JSON")

        step("Done: every request was served, by blue, then green, then blue"
             " again")

    def cleanup(self):
        if self.keepalive is not None:
            self.keepalive.close()
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=3)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        for server in self.upstreams.values():
            server.shutdown()
            server.server_close()
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
    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGHUP, on_term)
    demo = Demo()
    try:
        demo.run()
        return 0
    except DemoError as e:
        print("demo failed: %s" % e, file=sys.stderr)
        demo.show_error_log()
        return 1
    except (OSError, http.client.HTTPException) as e:
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
