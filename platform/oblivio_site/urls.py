"""URL map: health, REST API v1, OpenAPI schema and docs (served locally, no CDN)."""

from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from . import views

urlpatterns = [
    path("healthz", views.healthz, name="healthz"),
    path("api/", include("compliance.api.urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="api-schema"), name="api-docs"),
    path("admin/", admin.site.urls),
]

# API paths answer errors in the API's JSON shape; other paths keep Django's pages.
handler400 = "compliance.api.errors.handler400"
handler404 = "compliance.api.errors.handler404"
handler500 = "compliance.api.errors.handler500"
