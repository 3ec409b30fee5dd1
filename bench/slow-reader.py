#!/usr/bin/python3
"""Resident memory of a proxy while a large response streams through it to a
slow reader.

usage: slow-reader.py PORT PID PATH BYTES MIB_PER_S TIME_LIMIT_S

Opens one keep-alive connection to 127.0.0.1:PORT, makes one small request
(GET /) so that the proxy has set up everything a connection needs, and reads
the proxy's VmRSS; then asks for PATH, whose body must be BYTES long, and
reads it in small reads (16 KiB) paced to MIB_PER_S, while sampling VmRSS and
VmHWM of process PID every 100 ms. A proxy that reads its upstream faster
than the client drains it has to keep the difference somewhere: this shows
how much of it is in the proxy's memory. Gives up after TIME_LIMIT_S. Prints
one JSON object. Standard library only.
"""

import json
import socket
import sys
import time

READ_SIZE = 16384
SAMPLE_S = 0.1


def memory_kb(pid):
    """VmRSS and VmHWM of pid, in KiB."""
    found = {}
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith(("VmRSS:", "VmHWM:")):
                found[line[:5]] = int(line.split()[1])
    if len(found) != 2:
        raise RuntimeError("no VmRSS or VmHWM for pid %d" % pid)
    return found["VmRSS"], found["VmHWM"]


def read_head(sock, deadline):
    """Reads one response head; returns (status, content length, the bytes
    of the body already read)."""
    data = b""
    while b"\r\n\r\n" not in data:
        if time.monotonic() > deadline:
            raise RuntimeError("time limit reached in the response head")
        chunk = sock.recv(READ_SIZE)
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
    if length is None:
        raise RuntimeError("response without Content-Length")
    return status, length, body


def request(path):
    return ("GET %s HTTP/1.1\r\nHost: bench\r\nUser-Agent: slow-reader\r\n\r\n"
            % path).encode()


def main():
    port, pid, path = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    expected, rate = int(sys.argv[4]), float(sys.argv[5]) * 1024 * 1024
    limit = float(sys.argv[6])
    deadline = time.monotonic() + limit
    result = {"expected": expected, "mib_per_s_asked": float(sys.argv[5])}
    got = 0
    try:
        sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

        sock.sendall(request("/"))
        status, length, body = read_head(sock, deadline)
        while len(body) < length:
            chunk = sock.recv(READ_SIZE)
            if not chunk:
                raise RuntimeError("connection closed in the first response")
            body += chunk
        if status != 200:
            raise RuntimeError("status %d for /" % status)
        time.sleep(0.5)
        result["before_kb"], _ = memory_kb(pid)

        max_rss = result["before_kb"]
        max_hwm = 0
        samples = 0
        sock.sendall(request(path))
        start = time.monotonic()
        status, length, body = read_head(sock, deadline)
        if status != 200:
            raise RuntimeError("status %d for %s" % (status, path))
        if length != expected:
            raise RuntimeError("Content-Length %d, not %d" % (length, expected))
        got = len(body)
        next_sample = start
        while got < length:
            now = time.monotonic()
            if now >= next_sample:
                rss, hwm = memory_kb(pid)
                max_rss, max_hwm = max(max_rss, rss), max(max_hwm, hwm)
                samples += 1
                next_sample += SAMPLE_S
                if next_sample < now:
                    next_sample = now + SAMPLE_S
            if now > deadline:
                raise RuntimeError("time limit (%g s) reached" % limit)
            # Ahead of the pace: wait, but not past the next sample.
            ahead = got / rate - (now - start)
            if ahead > 0:
                time.sleep(min(ahead, max(0.0, next_sample - now)) or 0.0001)
                continue
            chunk = sock.recv(min(READ_SIZE, length - got))
            if not chunk:
                raise RuntimeError("connection closed in the body")
            got += len(chunk)
        seconds = time.monotonic() - start
        rss, hwm = memory_kb(pid)
        max_rss, max_hwm = max(max_rss, rss), max(max_hwm, hwm)
        samples += 1
        sock.close()
        result.update({
            "bytes": got, "seconds": round(seconds, 2),
            "mib_per_s": round(got / seconds / 1048576, 1),
            "max_rss_kb": max_rss, "hwm_kb": max_hwm, "samples": samples})
    except Exception as e:  # reported, not raised: the caller prints a row
        result["error"] = "%s: %s (after %d bytes of the body)" % (
            type(e).__name__, e, got)
    print(json.dumps(result), flush=True)
    return 0 if "error" not in result else 1


if __name__ == "__main__":
    sys.exit(main())
