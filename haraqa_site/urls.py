"""Root URLs: haraqa's API at /topics, its docs at /docs/, metrics at /metrics, the admin at /admin/."""

from django.contrib import admin
from django.urls import include, path

from queues.metrics import metrics_view

urlpatterns = [
    path("", include("queues.api.urls")),
    path("", include("queues.api.docs_urls")),
    path("metrics", metrics_view, name="prometheus-metrics"),
    path("admin/", admin.site.urls),
]
