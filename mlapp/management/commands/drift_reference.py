"""``manage.py drift_reference MODEL [--model-version N] (--from-log [--rows N] | --file F)``.

Sets the drift reference of a version (default: the production one): its first logged
requests, or the requests of a file a batch job reads (CSV, JSON Lines, NPY, NPZ), with the
version's own answers as outputs.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from mlapp.exceptions import MLAppError
from mlapp.models import ModelVersion
from mlapp.monitoring.drift import reference_from_file, reference_from_log


class Command(BaseCommand):
    help = "Set the drift reference of a model version (first logged requests, or a file)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("model")
        parser.add_argument(
            "--model-version", type=int, help="Version number (default: production)."
        )
        source = parser.add_mutually_exclusive_group(required=True)
        source.add_argument("--from-log", action="store_true", help="The first logged requests.")
        source.add_argument("--file", help="A CSV, JSON Lines, NPY or NPZ file of inputs.")
        parser.add_argument("--rows", type=int, help="With --from-log: how many (default 500).")

    def handle(self, *args: Any, **options: Any) -> None:
        versions = ModelVersion.objects.select_related("model").filter(model__name=options["model"])
        if options["model_version"] is None:
            version = versions.filter(stage=ModelVersion.Stage.PRODUCTION).first()
        else:
            version = versions.filter(version=options["model_version"]).first()
        if version is None:
            raise CommandError(
                f"No such version of {options['model']!r} (give --model-version, or promote one)."
            )
        try:
            if options["from_log"]:
                reference = reference_from_log(version, options["rows"])
            else:
                reference = reference_from_file(version, options["file"])
        except (MLAppError, OSError) as exc:
            raise CommandError(getattr(exc, "message", str(exc))) from None
        self.stdout.write(
            f"Reference of {version}: {reference.rows} request(s) ({reference.source})."
        )
