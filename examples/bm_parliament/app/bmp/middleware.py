"""X-Release on every response, so a client can tell which release (which
colour) served it; and a Content-Length, so that Gunicorn need not chunk the
small JSON bodies (Django sets it only through CommonMiddleware, which this
API leaves out)."""

from django.conf import settings


def release_header(get_response):
    release = settings.BMP_RELEASE

    def middleware(request):
        response = get_response(request)
        response["X-Release"] = release
        if not response.streaming and not response.has_header("Content-Length"):
            response["Content-Length"] = str(len(response.content))
        return response

    return middleware
