"""Open Inference Protocol V2 routes. Include at the site root: ``path("", include(...))``."""

app_name = "mlapp-v2"

urlpatterns: list = []
