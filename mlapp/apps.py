from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class MLAppConfig(AppConfig):
    name = "mlapp"
    verbose_name = _("Machine learning models")
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Checks and signal receivers only: ready() runs in every manage.py command and in
        # pytest, so it loads no model and queries no database (mlapp.startup loads).
        # mlapp.api.connections hears of every connection opened from now on, before the
        # models load: the front doors close a thread's old connections only if it opened one.
        from mlapp import checks, signals  # noqa: F401
        from mlapp.api import connections  # noqa: F401
