from django.apps import AppConfig


class FlowersConfig(AppConfig):
    name = "project.flowers"
    label = "flowers"
    verbose_name = "Iris flowers (batch example)"
    default_auto_field = "django.db.models.BigAutoField"
