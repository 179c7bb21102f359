"""``manage.py register_model NAME FILE [--signature F] [--handler P] [--promote]
[--confirm-handler-change]``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from mlapp.exceptions import MLAppError
from mlapp.models import MLModel
from mlapp.versions.lifecycle import register_version


def _read_json(path: str | None, what: str) -> Any:
    if path is None:
        return None
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise CommandError(f"Cannot read the {what} file {path}: {exc}") from None


class Command(BaseCommand):
    help = (
        "Validate an artifact and store it as the next version of a model (created if "
        "needed). A refused artifact exits non-zero with the reason and stores nothing."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("name", help="Model name (a slug).")
        parser.add_argument("file", help="Artifact: TorchScript, torch.export .pt2 or ONNX.")
        parser.add_argument("--signature", help="JSON file with inputs/outputs.")
        parser.add_argument("--metrics", help="JSON file of metrics to store on the version.")
        parser.add_argument("--handler", help="Dotted path to a handler class.")
        parser.add_argument("--description", help="Model description.")
        parser.add_argument("--task", choices=[c for c, _ in MLModel.Task.choices])
        parser.add_argument("--notes", default="", help="Notes stored on the version.")
        parser.add_argument(
            "--promote", action="store_true", help="Make it the production version."
        )
        parser.add_argument(
            "--confirm-handler-change",
            action="store_true",
            help="Confirm a --handler that changes the production version's public signature.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        path = Path(options["file"])
        if not path.is_file():
            raise CommandError(f"No such file: {path}")
        try:
            version = register_version(
                options["name"],
                path,
                signature=_read_json(options["signature"], "signature"),
                metrics=_read_json(options["metrics"], "metrics"),
                handler=options["handler"],
                description=options["description"],
                task=options["task"],
                notes=options["notes"],
                promote=options["promote"],
                confirm_handler_change=options["confirm_handler_change"],
            )
        except MLAppError as exc:
            raise CommandError(f"{path} was refused: {exc.message}") from None
        self.stdout.write(
            self.style.SUCCESS(
                f"Registered {version} ({version.format}, {version.size} bytes, "
                f"sha256 {version.sha256[:12]}) in stage {version.stage}."
            )
        )
