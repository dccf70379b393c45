from __future__ import annotations

from django.contrib import admin
from django.urls import include, path

from . import views

urlpatterns = [
    path("admin/", admin.site.urls),
    path("oauth2/", include("oauth2_integrator.urls")),
    path("needs-token/<slug:name>/", views.needs_token, name="needs-token"),
    path("raises/<slug:kind>/", views.raises, name="raises"),
]
