"""WSGI entry point for Gunicorn: bmp.wsgi:application."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bmp.settings")

application = get_wsgi_application()
