#!/usr/bin/python3
"""Resident memory per idle keep-alive client connection of a proxy.

usage: idle-clients.py PORT PID N

Opens one warm-up connection (one request, response read, kept open) and
reads the proxy's VmRSS; then opens N more connections to 127.0.0.1:PORT,
sends one request on each, reads its whole response and keeps the connection
open; waits for the proxy to settle, reads VmRSS again, checks how many of the
connections the proxy still holds open, and prints one JSON object. All the
connections are closed on exit. Standard library only.
"""

import json
import resource
import socket
import sys
import time

REQUEST = b"GET / HTTP/1.1\r\nHost: bench\r\nUser-Agent: idle-clients\r\n\r\n"


def vmrss_kb(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS for pid %d" % pid)


def one_request(sock):
    """Sends REQUEST and reads one whole response (Content-Length framed)."""
    sock.sendall(REQUEST)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(4096)
        if not chunk:
            raise RuntimeError("connection closed before the response head")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split()[1])
    length = None
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
        if name.strip().lower() == b"connection" and \
                value.strip().lower() == b"close":
            raise RuntimeError("the proxy closes the connection after a request")
    if length is None:
        raise RuntimeError("response without Content-Length")
    while len(body) < length:
        chunk = sock.recv(4096)
        if not chunk:
            raise RuntimeError("connection closed in the response body")
        body += chunk
    if status != 200:
        raise RuntimeError("status %d" % status)


def still_open(sock):
    """True while the peer has not closed the connection."""
    sock.setblocking(False)
    try:
        return sock.recv(1) != b""
    except BlockingIOError:
        return True
    except OSError:
        return False


def connect(port):
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def main():
    port, pid, n = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))

    socks = []
    result = {"n": n}
    try:
        warm = connect(port)
        socks.append(warm)
        one_request(warm)
        time.sleep(0.5)
        result["before_kb"] = vmrss_kb(pid)

        t0 = time.monotonic()
        for _ in range(n):
            sock = connect(port)
            socks.append(sock)
            one_request(sock)
        result["open_s"] = round(time.monotonic() - t0, 2)

        # Let the proxy finish whatever it does after a response (timers,
        # freeing request state) before reading its memory.
        time.sleep(1.0)
        result["after_kb"] = vmrss_kb(pid)
        result["alive"] = sum(1 for s in socks[1:] if still_open(s))
        result["per_conn_bytes"] = round(
            (result["after_kb"] - result["before_kb"]) * 1024 / n, 1)
    except Exception as e:  # reported, not raised: the caller prints a row
        result["error"] = "%s: %s (after %d connections)" % (
            type(e).__name__, e, max(0, len(socks) - 1))
    finally:
        for s in socks:
            s.close()
    print(json.dumps(result), flush=True)
    return 0 if "error" not in result else 1


if __name__ == "__main__":
    sys.exit(main())
