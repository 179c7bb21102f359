"""The native API. Include under a prefix of your choice, e.g.::

path("api/mlapp/", include("mlapp.urls")),
"""

from django.urls import path

from mlapp.api.native import views

app_name = "mlapp"

urlpatterns = [
    path("models/", views.ModelListView.as_view(), name="model-list"),
    path("models/<slug:name>/predict", views.PredictView.as_view(), name="predict"),
    path(
        "models/<slug:name>/versions/<int:version>/predict",
        views.PredictView.as_view(),
        name="predict-version",
    ),
]
