"""Root URLs: haraqa's API at /topics, its docs at /docs/, metrics at /metrics, the admin at /admin/."""

from django.contrib import admin
from django.urls import include, path

from queues import admin_views
from queues.api import errors
from queues.api import urls as api_urls
from queues.metrics import metrics_view
from queues.middleware import ADMIN_PREFIX

urlpatterns = [
    *api_urls.urlpatterns,  # spliced, not include()d: one resolver level less on every API request
    path("", include("queues.api.docs_urls")),
    path("metrics", metrics_view, name="prometheus-metrics"),
    path("admin/", admin.site.urls),
]



def not_found(request, exception):
    """An admin page under /admin/ (a signed-in user's mistyped address); haraqa's answer elsewhere."""
    if request.path.startswith(ADMIN_PREFIX):
        return admin_views.page_not_found(request)
    return errors.not_found(request, exception)


# Django's own errors also carry haraqa's X-Errors (queues.api.errors)
handler400 = "queues.api.errors.bad_request"
handler404 = not_found
handler500 = "queues.api.errors.server_error"
