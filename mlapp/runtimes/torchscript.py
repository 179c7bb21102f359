"""TorchScript archives, loaded with ``torch.jit.load``.

A TorchScript archive carries no tensor names or shapes, so its signature is the one
declared at upload (or inherited from the model's production version).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from mlapp.exceptions import ArtifactError
from mlapp.runtimes._torch import apply_threads, import_torch, to_numpy_outputs
from mlapp.runtimes.base import Runtime
from mlapp.runtimes.detect import TORCHSCRIPT
from mlapp.runtimes.tensors import Signature


class TorchScriptRuntime(Runtime):
    format = TORCHSCRIPT
    extra = "torch"

    def load(self, path: str, device: str = "cpu") -> None:
        torch = import_torch()
        apply_threads(self.options)
        try:
            module = torch.jit.load(path, map_location=device)
        except Exception as exc:  # torch raises RuntimeError and friends for broken archives
            raise ArtifactError(f"torch.jit.load could not read the archive: {exc}") from None
        module.eval()
        self._module = module
        # forward() itself: calling the module goes through nn.Module's Python dispatch
        # (hooks, which a scripted module cannot have), a few µs a call.
        self._forward = module.forward
        self._torch = torch
        self.device = device
        # The forward schema minus ``self`` gives the number of positional inputs.
        self.n_inputs = len(module.forward.schema.arguments) - 1
        self._input_names: list[str] = []
        self._output_names: list[str] = []

    def bind(self, signature: Signature) -> None:
        """Give the archive the declared signature it lacks (input order = argument order)."""
        if len(signature.inputs) != self.n_inputs:
            raise ArtifactError(
                f"The TorchScript module's forward() takes {self.n_inputs} input(s) but the "
                f"signature declares {len(signature.inputs)}."
            )
        self._signature = signature
        self._input_names = signature.input_names
        self._output_names = signature.output_names

    def run(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        torch = self._torch
        names = self._input_names or list(inputs)
        args = [torch.from_numpy(np.ascontiguousarray(inputs[n])) for n in names]
        if self.device != "cpu":
            args = [arg.to(self.device) for arg in args]
        with torch.inference_mode():
            result = self._forward(*args)
        return to_numpy_outputs(result, self._output_names)

    def close(self) -> None:
        self._module = self._forward = None
