"""The real API next to bare views that do the least possible work for the same request.

Each baseline runs in the same gunicorn server, with the same middleware, so a ratio
measures what the queue adds on top of Django/DRF and the raw I/O.
"""

from __future__ import annotations

import os
import threading

from django.http import FileResponse, HttpResponse
from django.urls import path
from django.views.decorators.csrf import csrf_exempt
from rest_framework.views import APIView

from bench import free_messages
from haraqa_site import urls as root_urls
from queues.conf import conf

PAYLOAD = b"x" * 100
CHUNK = 1 << 20
_append_files: dict[int, list[int]] = {}
_append_guard = threading.Lock()
if free_messages.wanted():
    free_messages.install()


def _drain(request) -> int:
    total = 0
    while chunk := request.read(CHUNK):
        total += len(chunk)
    return total


@csrf_exempt  # as DRF's APIView is
def bare_django(request):
    if request.method == "POST":
        _drain(request)
        return HttpResponse(status=204)
    return HttpResponse(PAYLOAD, content_type="application/octet-stream")


class BareDrf(APIView):
    def get(self, request):
        return HttpResponse(PAYLOAD, content_type="application/octet-stream")

    def post(self, request):
        _drain(request._request)
        return HttpResponse(status=204)


def _files_for(copies: int) -> list[int]:
    """Append-only files, one per configured volume up to ``copies``."""
    with _append_guard:
        if copies not in _append_files:
            _append_files[copies] = [
                os.open(os.path.join(volume, f"bare-{os.getpid()}.bin"), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
                for volume in conf.volumes[:copies]
            ]
        return _append_files[copies]


class BarePwrite(APIView):
    """Stream the upload in 1 MiB chunks, appending each chunk to every volume's file."""

    def post(self, request, copies: int):
        fds = _files_for(copies)
        while chunk := request._request.read(CHUNK):
            for fd in fds:
                os.write(fd, chunk)
        return HttpResponse(status=204)


class BareSendfile(APIView):
    """Return the first MiB of a file through the WSGI file wrapper (sendfile)."""

    def get(self, request):
        path = os.path.join(conf.volumes[-1], "bare-range.bin")
        if not os.path.exists(path):
            with open(path, "wb") as f:
                f.write(os.urandom(2 * CHUNK))
        response = FileResponse(open(path, "rb"), content_type="application/octet-stream")
        response["Content-Length"] = str(CHUNK)
        return response


urlpatterns = [
    path("bare/django", bare_django),
    path("bare/drf", BareDrf.as_view()),
    path("bare/pwrite/<int:copies>", BarePwrite.as_view()),
    path("bare/sendfile", BareSendfile.as_view()),
    *root_urls.urlpatterns,  # as in production, with no resolver level in between
]
handler400, handler404, handler500 = root_urls.handler400, root_urls.handler404, root_urls.handler500
