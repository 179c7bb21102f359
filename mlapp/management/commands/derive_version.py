"""``manage.py derive_version MODEL VERSION [--kind int8|onnx] [--method M] [--samples FILE]``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from mlapp.exceptions import MLAppError
from mlapp.models import ModelVersion
from mlapp.versions.derivation import PARENT_FORMAT, derive_version
from mlapp.versions.derive import METHODS


class Command(BaseCommand):
    help = (
        "Derive a version from a stored one: int8 (ONNX Runtime quantization) from an ONNX "
        "version, or ONNX from a TorchScript version. It is made and measured against its "
        "parent in the validation sandbox, validated like an upload, and stored in staging."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("name", help="Model name.")
        parser.add_argument("version", type=int, help="The version to derive from.")
        parser.add_argument("--kind", choices=list(PARENT_FORMAT), default="int8")
        parser.add_argument(
            "--method",
            choices=list(METHODS),
            default="auto",
            help="int8 only: dynamic, static (calibrated on the sample) or auto (both, "
            "measured, the better kept).",
        )
        parser.add_argument(
            "--samples",
            help="JSON file: a list of rows keyed by the model's input names, to measure and "
            "calibrate on (default: MLAPP['DERIVE_SAMPLES'], else the handler's example).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        version = (
            ModelVersion.objects.select_related("model")
            .filter(model__name=options["name"], version=options["version"])
            .first()
        )
        if version is None:
            raise CommandError(f"No version {options['version']} of model {options['name']!r}.")
        samples = None
        if options["samples"]:
            try:
                samples = json.loads(Path(options["samples"]).read_text())
            except (OSError, ValueError) as exc:
                raise CommandError(f"Cannot read {options['samples']}: {exc}") from None
        try:
            derived = derive_version(
                version, kind=options["kind"], method=options["method"], samples=samples
            )
        except MLAppError as exc:
            raise CommandError(f"Nothing derived from {version}: {exc.message}") from None
        self.stdout.write(self.style.SUCCESS(f"Stored {derived} in staging: {derived.notes}"))
