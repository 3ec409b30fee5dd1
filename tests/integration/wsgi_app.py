"""A small WSGI app for switchd's Gunicorn tests (sync and gthread workers).

  /             200 "hello from NAME pid PID\\n"   (NAME: env APP_NAME)
  /echo         200 JSON: method, body_len, body_sha256, name, pid and
                selected request headers
  /status/CODE  that status
  /big/N        N bytes of the tests' deterministic pattern
"""

import hashlib
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from upstream import pattern_iter  # noqa: E402

NAME = os.environ.get("APP_NAME", "app")

REASONS = {200: "OK", 201: "Created", 204: "No Content", 400: "Bad Request",
           404: "Not Found", 500: "Internal Server Error", 503: "Service Unavailable"}

ECHO_HEADERS = ("HTTP_HOST", "HTTP_X_FORWARDED_FOR", "HTTP_X_FORWARDED_PROTO",
                "HTTP_X_FORWARDED_HOST", "HTTP_X_REQUEST_ID", "CONTENT_LENGTH",
                "CONTENT_TYPE", "HTTP_TRANSFER_ENCODING", "HTTP_CONNECTION",
                "HTTP_EXPECT")


def app(environ, start_response):
    path = environ.get("PATH_INFO", "/")
    base = [("X-App", NAME), ("X-Pid", str(os.getpid()))]

    if path == "/echo":
        h = hashlib.sha256()
        n = 0
        stream = environ["wsgi.input"]
        while True:
            b = stream.read(65536)
            if not b:
                break
            n += len(b)
            h.update(b)
        body = json.dumps({
            "name": NAME, "pid": os.getpid(), "method": environ["REQUEST_METHOD"],
            "body_len": n, "body_sha256": h.hexdigest(),
            "headers": {k: environ[k] for k in ECHO_HEADERS if k in environ},
        }).encode()
        start_response("200 OK", base + [("Content-Type", "application/json"),
                                         ("Content-Length", str(len(body)))])
        return [body]

    parts = path.strip("/").split("/")
    if parts[0] == "status" and len(parts) == 2:
        code = int(parts[1])
        body = b"" if code in (204, 304) else ("%s %d\n" % (NAME, code)).encode()
        start_response("%d %s" % (code, REASONS.get(code, "Status")),
                       base + [("Content-Type", "text/plain"),
                               ("Content-Length", str(len(body)))])
        return [body]

    if parts[0] == "big" and len(parts) == 2:
        total = int(parts[1])
        start_response("200 OK", base + [("Content-Type", "application/octet-stream"),
                                         ("Content-Length", str(total))])
        return pattern_iter(total)

    body = ("hello from %s pid %d\n" % (NAME, os.getpid())).encode()
    start_response("200 OK", base + [("Content-Type", "text/plain"),
                                     ("Content-Length", str(len(body)))])
    return [body]
