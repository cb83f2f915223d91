"""The API description and its pages: ``/api/schema/``, haraqa's ``/docs/swagger.yaml``, ``/docs/swagger``,
``/docs/redocs`` and ``/docs/`` linking them. Every asset comes from this server (drf-spectacular-sidecar
served by whitenoise), so the pages work with no internet. ``--no-docs`` turns them into 404s."""

from __future__ import annotations

from django.http import Http404
from django.urls import path
from django.views.generic import TemplateView
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerView
from rest_framework.exceptions import NotAcceptable
from rest_framework.negotiation import DefaultContentNegotiation

from queues.conf import conf


class DocsEnabledMixin:
    def dispatch(self, request, *args, **kwargs):
        if not conf.docs:
            raise Http404("docs are disabled (--no-docs)")
        return super().dispatch(request, *args, **kwargs)


class YamlUnlessJsonAsked(DefaultContentNegotiation):
    """JSON for ``Accept: application/json`` (or ``?format=json``), YAML otherwise; never 406."""

    def select_renderer(self, request, renderers, format_suffix=None):
        try:
            return super().select_renderer(request, renderers, format_suffix)
        except NotAcceptable:
            return renderers[0], renderers[0].media_type


class SchemaView(DocsEnabledMixin, SpectacularAPIView):
    content_negotiation_class = YamlUnlessJsonAsked


class ThisServerOnlyMixin:
    """The page may load nothing from elsewhere: Redoc's footer logo would come from its CDN."""

    def finalize_response(self, request, response, *args, **kwargs):
        response = super().finalize_response(request, response, *args, **kwargs)
        response["Content-Security-Policy"] = "default-src 'self' 'unsafe-inline' data: blob:"
        return response


class SwaggerView(DocsEnabledMixin, ThisServerOnlyMixin, SpectacularSwaggerView):
    pass


class RedocView(DocsEnabledMixin, ThisServerOnlyMixin, SpectacularRedocView):
    template_name = "queues/docs/redoc.html"  # drf-spectacular's page without its Google Fonts links


class DocsIndexView(DocsEnabledMixin, TemplateView):
    template_name = "queues/docs/index.html"


urlpatterns = [
    path("api/schema/", SchemaView.as_view(), name="schema"),
    path("docs/swagger.yaml", SchemaView.as_view(), name="schema-yaml"),
    path("docs/swagger", SwaggerView.as_view(url_name="schema"), name="swagger-ui"),
    path("docs/redocs", RedocView.as_view(url_name="schema"), name="redoc"),
    path("docs/", DocsIndexView.as_view(), name="docs"),
    path("docs", DocsIndexView.as_view()),
]
