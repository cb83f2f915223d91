"""Admin registration: topic and volume pages over the storage engine (django-rq's pattern).

The unmanaged models only give the index entries and permissions; every page is a custom
view from ``admin_views`` routed through ``get_urls`` and ``admin_site.admin_view`` (staff
login required). Topic names are quoted in URLs the way the admin quotes primary keys,
so a nested name such as ``a/delete`` can never be mistaken for an action.
"""

from __future__ import annotations

from django.contrib import admin
from django.urls import path

from . import admin_views as views
from .models import Topic, Volume


class StorageModelAdmin(admin.ModelAdmin):
    """Shared plumbing: permissions come from ``view_permission`` / ``change_permission``."""

    view_permission = ""
    change_permission = ""

    def has_view_permission(self, request, obj=None) -> bool:
        return request.user.has_perm(self.view_permission)

    def has_change_permission(self, request, obj=None) -> bool:
        return bool(self.change_permission) and request.user.has_perm(self.change_permission)

    def has_add_permission(self, request) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False

    def route(self, route: str, view: type[views.AdminPageView], name: str):
        info = (self.opts.app_label, self.opts.model_name)
        callback = self.admin_site.admin_view(view.as_view(model_admin=self))
        return path(route, callback, name="%s_%s_%s" % (*info, name))


@admin.register(Topic)
class TopicAdmin(StorageModelAdmin):
    view_permission = "queues.view_topics"
    change_permission = "queues.change_topics"

    def get_urls(self):
        return [
            self.route("", views.TopicListView, "changelist"),
            self.route("chart.json", views.TopicChartView, "chart"),
            self.route("<str:topic>/", views.TopicDetailView, "change"),
            self.route("<str:topic>/messages/<int:message_id>/", views.MessageView, "message"),
            self.route("<str:topic>/messages/<int:message_id>/raw/", views.MessageRawView, "message_raw"),
            self.route("<str:topic>/produce/", views.ProduceView, "produce"),
            self.route("<str:topic>/truncate/", views.TruncateView, "truncate"),
            self.route("<str:topic>/delete/", views.DeleteView, "delete"),
            self.route("<str:topic>/history/", views.TopicHistoryView, "history"),
        ]


@admin.register(Volume)
class VolumeAdmin(StorageModelAdmin):
    view_permission = "queues.view_volumes"

    def get_urls(self):
        return [
            self.route("", views.VolumeListView, "changelist"),
            self.route("run.json", views.RunStatusView, "run_status"),
            self.route("check/", views.CheckView, "check"),
            self.route("recover/", views.RecoverView, "recover"),
            self.route("history/", views.VolumeHistoryView, "history"),
        ]
