from django.contrib import admin
from django.urls import include, path

from mlapp.api.metrics import metrics_view
from project.demo import views
from project.flowers.views import flower_list

urlpatterns = [
    path("", views.iris_page, name="iris"),
    path("flowers/", flower_list, name="flowers"),
    path("admin/", admin.site.urls),
    path("api/mlapp/", include("mlapp.urls")),
    path("metrics", metrics_view, name="metrics"),
    path("", include("mlapp.api.v2.urls")),
]
