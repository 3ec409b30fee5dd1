"""Settings of the BM Parliament reference app.

Everything that differs between machines comes from the environment, so that
the blue and the green release run the same file against the same database.
The values that matter behind switchd are the connection reuse (CONN_MAX_AGE,
the seed's "10-minute connection reuse") and the absence of any middleware
that could answer before the release header is set.
"""

import os

BASE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

SECRET_KEY = os.environ.get("BMP_SECRET_KEY", "dev-only-not-secret-bm-parliament")
DEBUG = False
ALLOWED_HOSTS = ["*"]

# The name of this release ("blue", "green", ...), sent back in X-Release.
BMP_RELEASE = os.environ.get("BMP_RELEASE", "unnamed")
# When this names a file that exists, the data views answer 500: a broken
# release on demand, for tests of the error watch.
BMP_FAIL_FILE = os.environ.get("BMP_FAIL_FILE", "")

INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "constituents",
    "unified_db",
]

# An API without sessions or forms: no CSRF, no sessions, no CommonMiddleware
# (APPEND_SLASH would turn a missing slash into a redirect).
MIDDLEWARE = [
    "bmp.middleware.release_header",
]

ROOT_URLCONF = "bmp.urls"
WSGI_APPLICATION = "bmp.wsgi.application"

_db = {
    "ENGINE": "django.db.backends.postgresql",
    "HOST": os.environ.get("BMP_DB_HOST", "127.0.0.1"),
    "PORT": os.environ.get("BMP_DB_PORT", "5432"),
    "NAME": os.environ.get("BMP_DB_NAME", "postgres"),
    "USER": os.environ.get("BMP_DB_USER", "postgres"),
    # Each Gunicorn worker keeps its connection for 10 minutes.
    "CONN_MAX_AGE": 600,
}
if os.environ.get("BMP_DB_PASSWORD"):
    _db["PASSWORD"] = os.environ["BMP_DB_PASSWORD"]
DATABASES = {"default": _db}

DEFAULT_AUTO_FIELD = "django.db.models.AutoField"

USE_TZ = True
TIME_ZONE = "UTC"
USE_I18N = False

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {
        "stderr": {"class": "logging.StreamHandler"},
    },
    "loggers": {
        "django": {"handlers": ["stderr"], "level": "ERROR"},
    },
}
