"""Fixtures of the monitoring tests: the demo iris model and the tiny affine model, validated
once per session (the sandboxed validation takes seconds; what it checks is tested
elsewhere), registered per test."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from django.conf import settings as django_settings

from mlapp.models import MLModel
from mlapp.serving.predlog import recorder
from mlapp.serving.registry import registry
from mlapp.versions.inspection import ArtifactReport
from mlapp.versions.lifecycle import register_version
from mlapp.versions.validation import validate_artifact

FIXTURES = Path(django_settings.BASE_DIR) / "fixtures"
IRIS = FIXTURES / "iris/model.pt"
IRIS_SIGNATURE = json.loads((FIXTURES / "iris/signature.json").read_text())
IRIS_HANDLER = "project.demo.handlers.IrisHandler"
DIGITS = FIXTURES / "digits/model.onnx"
DIGITS_HANDLER = "project.demo.handlers.DigitsHandler"


@pytest.fixture(scope="session")
def iris_report() -> ArtifactReport:
    return validate_artifact(
        str(IRIS), declared=IRIS_SIGNATURE, handler=IRIS_HANDLER, model_name="iris"
    )


@pytest.fixture(scope="session")
def digits_report() -> ArtifactReport:
    return validate_artifact(str(DIGITS), handler=DIGITS_HANDLER, model_name="digits")


@pytest.fixture(scope="session")
def affine_report(onnx_file: Path) -> ArtifactReport:
    return validate_artifact(str(onnx_file), model_name="affine")


@pytest.fixture
def register_iris(iris_report):
    """``register_iris(promote=True, rate=None)``: the next iris version."""

    def register(promote: bool = True, rate: float | None = None):
        version = register_version(
            "iris", IRIS, signature=IRIS_SIGNATURE, handler=IRIS_HANDLER,
            promote=promote, report=iris_report,
        )  # fmt: skip
        if rate is not None:
            MLModel.objects.filter(name="iris").update(monitoring={"sample_rate": rate})
            registry.clear()
        return version

    return register


@pytest.fixture
def register_affine(onnx_file, affine_report):
    def register(promote: bool = True, rate: float | None = None):
        version = register_version("affine", onnx_file, promote=promote, report=affine_report)
        if rate is not None:
            MLModel.objects.filter(name="affine").update(monitoring={"sample_rate": rate})
            registry.clear()
        return version

    return register


@pytest.fixture
def log():
    """The process's recorder without its thread: rows wait until the test flushes."""
    recorder.close()
    recorder.start(thread=False)
    yield recorder
    recorder._buffer.clear()
    recorder.close()
