"""Tiny real artifacts of every format, built on demand by the tests."""

from __future__ import annotations

from pathlib import Path

import torch

TWO_IN_SIGNATURE = {
    "inputs": [{"name": "x", "datatype": "FP32", "shape": [-1, 3]}],
    "outputs": [{"name": "y", "datatype": "FP32", "shape": [-1, 2]}],
}


class Affine(torch.nn.Module):
    """y = x @ W.T + b with fixed weights, so every runtime's answer can be checked."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(3, 2)
        with torch.no_grad():
            self.linear.weight.copy_(torch.tensor([[1.0, 2.0, 3.0], [-1.0, 0.0, 1.0]]))
            self.linear.bias.copy_(torch.tensor([0.5, -0.5]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x)


def expected(x):  # numpy in, numpy out
    import numpy as np

    w = np.array([[1.0, 2.0, 3.0], [-1.0, 0.0, 1.0]], dtype=np.float32)
    return x @ w.T + np.array([0.5, -0.5], dtype=np.float32)


def torchscript(path: Path) -> Path:
    torch.jit.script(Affine().eval()).save(str(path))
    return path


def torch_export(path: Path) -> Path:
    batch = torch.export.Dim("batch", min=1, max=1024)
    program = torch.export.export(
        Affine().eval(), (torch.zeros(2, 3),), dynamic_shapes={"x": {0: batch}}
    )
    torch.export.save(program, str(path))
    return path


def onnx(path: Path) -> Path:
    torch.onnx.export(
        Affine().eval(),
        (torch.zeros(2, 3),),
        str(path),
        input_names=["x"],
        output_names=["y"],
        dynamic_axes={"x": {0: "batch"}, "y": {0: "batch"}},
        dynamo=False,
    )
    return path
