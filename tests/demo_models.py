"""The demo's iris (TorchScript) and digits (ONNX) fixtures, registered as the demo does, for
the tests of derived versions, edge bundles and the in-browser runtime."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from mlapp.models import MLModel, ModelVersion
from mlapp.versions.lifecycle import register_version

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
_FILES = {"iris": "model.pt", "digits": "model.onnx"}


def samples(name: str) -> list[dict[str, Any]]:
    """The ten held-out rows of the fixture (keyed by input name, with their ``label``)."""
    return json.loads((FIXTURES / name / "samples.json").read_text())


def register_demo(name: str) -> ModelVersion:
    """Version 1 of the demo model ``name``, in production, with the demo's handler."""
    folder = FIXTURES / name
    return register_version(
        name,
        folder / _FILES[name],
        signature=json.loads((folder / "signature.json").read_text()),
        handler=f"project.demo.handlers.{name.capitalize()}Handler",
        task=MLModel.Task.CLASSIFICATION,
        promote=True,
    )
