"""Tiny real models that play the demo's parts in the admin tests, built on demand.

- ``iris``: a TorchScript classifier of four measurements into three species, with a label
  handler and training metrics (a confusion matrix); its signature is declared, as a
  TorchScript archive carries none. Petal length alone decides: short is setosa, long is
  virginica.
- ``digits``: an ONNX classifier (the affine model of :mod:`tests.artifacts`) with a label
  handler: the only ONNX model.
"""

from __future__ import annotations

import atexit
import functools
import shutil
import tempfile
from pathlib import Path

import torch

from mlapp.handlers import ClassLabelHandler
from mlapp.models import MLModel, ModelVersion
from mlapp.versions.lifecycle import register_version
from tests import artifacts

IRIS_SIGNATURE = {
    "inputs": [{"name": "input", "datatype": "FP32", "shape": [-1, 4]}],
    "outputs": [{"name": "probabilities", "datatype": "FP32", "shape": [-1, 3]}],
}
IRIS_METRICS = {
    "accuracy": 1.0,
    "labels": ["setosa", "versicolor", "virginica"],
    "confusion_matrix": [[15, 0, 0], [0, 15, 0], [0, 0, 15]],
}


class IrisHandler(ClassLabelHandler):
    labels = ("setosa", "versicolor", "virginica")


class DigitsHandler(ClassLabelHandler):
    labels = ("0", "1")


class Species(torch.nn.Module):
    """Scores 5 - 2 * petal length (setosa), 0 (versicolor), 2 * petal length - 8 (virginica)."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(4, 3)
        with torch.no_grad():
            self.linear.weight.copy_(
                torch.tensor([[0.0, 0.0, -2.0, 0.0], [0.0, 0.0, 0.0, 0.0], [0.0, 0.0, 2.0, 0.0]])
            )
            self.linear.bias.copy_(torch.tensor([5.0, 0.0, -8.0]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.linear(x), dim=1)


@functools.cache
def _folder() -> Path:
    folder = Path(tempfile.mkdtemp(prefix="mlapp-admin-models-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    return folder


@functools.cache
def iris_file() -> Path:
    path = _folder() / "model.pt"
    torch.jit.script(Species().eval()).save(str(path))
    return path


@functools.cache
def digits_file() -> Path:
    return artifacts.onnx(_folder() / "model.onnx")


def register_iris_and_digits() -> tuple[MLModel, MLModel]:
    """Register both models with version 1 in production, as the demo's setup does."""
    classification = MLModel.Task.CLASSIFICATION
    register_version(
        "iris",
        iris_file(),
        signature=IRIS_SIGNATURE,
        metrics=IRIS_METRICS,
        handler=f"{__name__}.IrisHandler",
        task=classification,
        promote=True,
    )
    register_version(
        "digits",
        digits_file(),
        handler=f"{__name__}.DigitsHandler",
        task=classification,
        promote=True,
    )
    return MLModel.objects.get(name="iris"), MLModel.objects.get(name="digits")


def new_iris_version(**kwargs: object) -> ModelVersion:
    """Another iris version (staging), of the same file: it inherits the production signature."""
    return register_version("iris", iris_file(), **kwargs)
