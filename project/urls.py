from django.contrib import admin
from django.urls import include, path

from project.demo import views
from project.flowers.views import flower_list

urlpatterns = [
    # First: Django tries the patterns in order, and inference is the hot path (measured:
    # about 20 µs of CPU per V2 request when it came last; docs/performance.md).
    path("", include("mlapp.site_urls")),  # Open Inference Protocol V2 and /metrics
    path("api/mlapp/", include("mlapp.urls")),
    path("", views.iris_page, name="iris"),
    path("flowers/", flower_list, name="flowers"),
    path("admin/", admin.site.urls),
]
