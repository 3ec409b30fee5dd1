# Gunicorn settings of the reference app behind switchd.
#
#   cd RELEASE_DIR && BMP_BIND=127.0.0.1:8001 BMP_RELEASE=blue \
#       python3 -m gunicorn -c ../gunicorn.conf.py
#
# Only the settings that matter behind a proxy are here; the rest are
# Gunicorn's defaults.

import os

wsgi_app = "bmp.wsgi:application"

# The address switchd's `server` line names.
bind = os.environ.get("BMP_BIND", "127.0.0.1:8000")

# Three sync workers, as in the deployment plan. A sync worker serves one
# request at a time and closes the connection after each response, so
# switchd opens one upstream connection per request; switchd's buffering of
# requests and responses keeps slow clients from holding a worker.
worker_class = "sync"
workers = 3

# Idle keep-alive of a connection. The sync worker ignores it (it never keeps
# a connection); with gthread or an async worker it must stay above switchd's
# upstream idle_timeout (1 s by default) so that switchd, not Gunicorn,
# closes an idle pooled connection: a server that closes first races the
# next request sent on that connection.
keepalive = 5

# On SIGTERM, requests in progress get this long to finish. It matches
# switchd's drain_timeout (30 s): the old colour is stopped only after it
# drained, and whatever it still serves then gets as long as switchd gave it.
graceful_timeout = 30

# A worker silent for this long is killed and restarted. Not above switchd's
# response_timeout (60 s), or switchd answers 504 before Gunicorn notices.
timeout = 30

# switchd writes the access log; Gunicorn only reports errors on stderr.
accesslog = None
errorlog = "-"
loglevel = os.environ.get("BMP_LOG_LEVEL", "info")
