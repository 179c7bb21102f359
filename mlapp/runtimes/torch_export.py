"""``torch.export`` programs saved as ``.pt2`` archives, loaded with ``torch.export.load``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from mlapp.exceptions import ArtifactError
from mlapp.runtimes._torch import apply_threads, import_torch, to_numpy_outputs, torch_datatype
from mlapp.runtimes.base import Runtime
from mlapp.runtimes.detect import TORCH_EXPORT
from mlapp.runtimes.tensors import Signature, TensorSpec


class TorchExportRuntime(Runtime):
    format = TORCH_EXPORT
    extra = "torch"

    def load(self, path: str, device: str = "cpu") -> None:
        torch = import_torch()
        apply_threads(self.options)
        try:
            program = torch.export.load(path)
        except Exception as exc:
            raise ArtifactError(f"torch.export.load could not read the archive: {exc}") from None
        self._signature = _program_signature(program)
        module = program.module()
        if device != "cpu":
            module = module.to(device)
        self._module = module
        self.device = device

    def bind(self, signature: Signature) -> None:
        """Adopt declared names for the program's tensors (same order, same dtypes)."""
        self._signature = signature

    def run(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        torch = import_torch()
        sig = self._signature
        assert sig is not None
        args = [
            torch.from_numpy(np.ascontiguousarray(inputs[n])).to(self.device)
            for n in sig.input_names
        ]
        with torch.inference_mode():
            result = self._module(*args)
        return to_numpy_outputs(result, sig.output_names)

    def close(self) -> None:
        self._module = None


def _program_signature(program: Any) -> Signature:
    torch = import_torch()
    graph = program.graph
    user_inputs = list(program.graph_signature.user_inputs)
    placeholders = {n.name: n for n in graph.nodes if n.op == "placeholder"}
    inputs = [_spec(name, placeholders[name].meta.get("val"), torch) for name in user_inputs]
    output_node = next(n for n in graph.nodes if n.op == "output")
    returned = output_node.args[0]
    returned = returned if isinstance(returned, (list, tuple)) else [returned]
    user_outputs = list(program.graph_signature.user_outputs)
    # Mutated buffers come first in the output node; the user's outputs are the tail.
    tail = returned[len(returned) - len(user_outputs) :]
    outputs = [
        _spec(
            name if len(user_outputs) > 1 else "output",
            getattr(node, "meta", {}).get("val"),
            torch,
        )
        for name, node in zip(user_outputs, tail, strict=True)
    ]
    return Signature(inputs=tuple(inputs), outputs=tuple(outputs))


def _spec(name: str, val: Any, torch: Any) -> TensorSpec:
    if val is None or not hasattr(val, "shape"):
        raise ArtifactError(f"The exported program does not describe tensor {name!r}.")
    shape = tuple(d if isinstance(d, int) else -1 for d in val.shape)
    return TensorSpec(name=name, datatype=torch_datatype(val.dtype), shape=shape)
