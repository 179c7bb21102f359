from django.contrib import admin
from django.urls import include, path

from project.demo import views

urlpatterns = [
    path("", views.iris_page, name="iris"),
    path("admin/", admin.site.urls),
    path("api/mlapp/", include("mlapp.urls")),
    path("", include("mlapp.api.v2.urls")),
]
