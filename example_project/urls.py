"""The example site: the admin, the app's login/callback, the demo page, the demo provider."""

from __future__ import annotations

from django.contrib import admin
from django.urls import include, path

from example_project.demo import views as demo_views

urlpatterns = [
    path("admin/", admin.site.urls),
    path("oauth2/", include("oauth2_integrator.urls")),
    # The local demo authorization server (django-oauth-toolkit) and one API of it.
    path(
        "demo-provider/api/me/",
        demo_views.ProviderMeView.as_view(),
        name="demo-provider-me",
    ),
    path(
        "demo-provider/",
        include("oauth2_provider.urls", namespace="oauth2_provider"),
    ),
    path("", include("example_project.demo.urls")),
]
