from __future__ import annotations

from django.urls import path

from . import views

app_name = "oauth2_integrator"

urlpatterns = [
    path("<slug:name>/login/", views.login, name="login"),
    path("<slug:name>/callback/", views.callback, name="callback"),
]
