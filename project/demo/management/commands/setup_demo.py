"""Build and register the demo models, and make sure an admin user exists.

Idempotent: a model whose production version already holds the same artifact is left
alone, other models and versions in the database are untouched, and the MiniLM export is
reused when it is up to date.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from mlapp.exceptions import MLAppError
from mlapp.models import MLModel
from mlapp.versions.inspection import file_sha256
from mlapp.versions.lifecycle import register_version

FIXTURES = Path(settings.BASE_DIR) / "fixtures"


def demo_models() -> list[dict[str, Any]]:
    minilm = Path(settings.DEMO_MINILM_DIR)
    return [
        {
            "name": "iris",
            "artifact": FIXTURES / "iris/model.pt",
            "signature": FIXTURES / "iris/signature.json",
            "metrics": FIXTURES / "iris/metrics.json",
            "handler": "project.demo.handlers.IrisHandler",
            "task": MLModel.Task.CLASSIFICATION,
            "description": "Iris species from sepal and petal measurements (MLP, TorchScript).",
        },
        {
            "name": "digits",
            "artifact": FIXTURES / "digits/model.onnx",
            "signature": None,
            "metrics": FIXTURES / "digits/metrics.json",
            "handler": "project.demo.handlers.DigitsHandler",
            "task": MLModel.Task.CLASSIFICATION,
            "description": "Handwritten digit in an 8x8 image (small CNN, ONNX).",
        },
        {
            "name": "minilm",
            "artifact": minilm / "model.onnx",
            "signature": None,
            "metrics": None,
            "handler": "project.demo.handlers.MiniLMHandler",
            "task": MLModel.Task.EMBEDDING,
            "description": "Sentence embeddings, all-MiniLM-L6-v2 with mean pooling (ONNX).",
        },
    ]


class Command(BaseCommand):
    help = "Build (if needed) and register the demo models; ensure an admin user exists."

    def add_arguments(self, parser) -> None:
        parser.add_argument(
            "--skip-minilm",
            action="store_true",
            help="Do not build or register the MiniLM encoder.",
        )
        parser.add_argument("--no-admin", action="store_true", help="Do not create an admin user.")

    def handle(self, *args: Any, **options: Any) -> None:
        for spec in demo_models():
            if spec["name"] == "minilm":
                if options["skip_minilm"]:
                    continue
                self._build_minilm(Path(settings.DEMO_MINILM_DIR))
            self._register(spec)
        if not options["no_admin"]:
            self._ensure_admin()

    def _build_minilm(self, out: Path) -> None:
        script = FIXTURES / "export_minilm.py"
        self.stdout.write(f"Building the MiniLM export in {out} (reused when up to date) ...")
        result = subprocess.run([sys.executable, str(script), "--out", str(out)], check=False)
        if result.returncode:
            raise CommandError(f"{script} failed with exit code {result.returncode}.")

    def _register(self, spec: dict[str, Any]) -> None:
        name, artifact = spec["name"], Path(spec["artifact"])
        model = MLModel.objects.filter(name=name).first()
        current = model.production_version if model else None
        if current is not None and current.sha256 == file_sha256(str(artifact)):
            self.stdout.write(f"{name}: v{current.version} already in production, unchanged.")
            return
        try:
            version = register_version(
                name,
                artifact,
                signature=_json(spec["signature"]),
                metrics=_json(spec["metrics"]),
                handler=spec["handler"],
                task=spec["task"],
                description=spec["description"],
                notes="Demo model registered by manage.py setup_demo.",
                promote=True,
            )
        except MLAppError as exc:
            raise CommandError(f"{name}: {artifact} was refused: {exc.message}") from None
        self.stdout.write(
            self.style.SUCCESS(f"{name}: registered and promoted v{version.version}.")
        )

    def _ensure_admin(self) -> None:
        user_model = get_user_model()
        password_file = Path(settings.VAR_DIR) / "admin-password.txt"
        password = os.environ.get("MLAPP_ADMIN_PASSWORD")
        if not password and password_file.exists():
            password = password_file.read_text().strip()
        if not password:
            password = secrets.token_urlsafe(12)
            password_file.parent.mkdir(parents=True, exist_ok=True)
            password_file.write_text(password + "\n")
            password_file.chmod(0o600)
        user, created = user_model.objects.get_or_create(
            username="admin", defaults={"is_staff": True, "is_superuser": True}
        )
        if created or not user.check_password(password):
            user.is_staff = user.is_superuser = True
            user.set_password(password)
            user.save()
        self.stdout.write(f"Admin user: admin / {password}  (log in at /admin/)")


def _json(path: Path | None) -> Any:
    return json.loads(Path(path).read_text()) if path else None
