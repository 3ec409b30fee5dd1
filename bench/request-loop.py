#!/usr/bin/python3
"""A fixed number of small requests, one after the other, on one keep-alive
connection.

usage: request-loop.py PORT N

Sends GET / to 127.0.0.1:PORT N times on one connection, each after the
previous response has been read whole (Content-Length framed), and checks
that each is a 200. One request in flight at a time makes the proxy's work
per request the same from run to run (no batching that depends on timing),
which is what bench/proxy-bench.sh's count of instructions per request needs.
Prints one JSON object; exits 1 on the first failure. Standard library only.
"""

import json
import socket
import sys
import time

REQUEST = b"GET / HTTP/1.1\r\nHost: bench\r\nUser-Agent: request-loop\r\n\r\n"


def main():
    port, n = int(sys.argv[1]), int(sys.argv[2])
    done = 0
    t0 = time.monotonic()
    result = {"asked": n}
    try:
        sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        rest = b""
        for _ in range(n):
            sock.sendall(REQUEST)
            data = rest
            while b"\r\n\r\n" not in data:
                chunk = sock.recv(65536)
                if not chunk:
                    raise RuntimeError("connection closed before a response")
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
            while len(body) < length:
                chunk = sock.recv(65536)
                if not chunk:
                    raise RuntimeError("connection closed in a response body")
                body += chunk
            rest = body[length:]
            if status != 200:
                raise RuntimeError("status %d" % status)
            done += 1
        sock.close()
    except Exception as e:  # reported, not raised: the caller prints it
        result["error"] = "%s: %s" % (type(e).__name__, e)
    result["requests"] = done
    result["seconds"] = round(time.monotonic() - t0, 2)
    print(json.dumps(result), flush=True)
    return 0 if "error" not in result else 1


if __name__ == "__main__":
    sys.exit(main())
