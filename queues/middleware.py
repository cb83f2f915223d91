"""Site-wide middlewares: haraqa's CORS headers and whitenoise for the self-hosted static files."""

from __future__ import annotations

import os

from django.core.exceptions import MiddlewareNotUsed
from whitenoise.middleware import WhiteNoiseMiddleware

from queues.conf import conf

# Browsers hide response headers from cross-origin scripts unless they are listed here.
EXPOSED_HEADERS = "X-Sizes, X-Errors, X-Start-Time, X-End-Time"


class CorsMiddleware:
    """haraqa's ``-cors``: ``Access-Control-Allow-Origin: *`` on every response.

    The preflight answer (echoing the requested headers and method) is the topic view's
    OPTIONS handler, part of the wire contract; without this middleware it carries no
    allowed origin, so browsers refuse cross-origin calls.
    """

    def __init__(self, get_response):
        if not conf.cors:
            raise MiddlewareNotUsed
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        response["Access-Control-Allow-Origin"] = "*"
        response["Access-Control-Expose-Headers"] = EXPOSED_HEADERS
        return response


class StaticFilesMiddleware(WhiteNoiseMiddleware):
    """whitenoise, silent when ``collectstatic`` has not run: the app finders serve the files then."""

    def add_files(self, root, prefix=None):
        if os.path.isdir(root):
            super().add_files(root, prefix)
