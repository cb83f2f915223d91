"""Root URLs: haraqa's API at /topics, the admin at /admin/."""

from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("", include("queues.api.urls")),
    path("admin/", admin.site.urls),
]
