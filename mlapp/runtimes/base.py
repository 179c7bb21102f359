"""The interface every runtime implements. No Django import in this package."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np

from mlapp.runtimes.tensors import Signature


class Runtime:
    """Loads one artifact file and runs batches of named numpy arrays through it.

    Subclasses set ``format`` (the key stored on ``ModelVersion.format``) and implement
    :meth:`load` and :meth:`run`. A runtime instance serves exactly one artifact.
    """

    #: The format key this runtime serves, e.g. ``"onnx"``.
    format: ClassVar[str] = ""
    #: The pip extra that installs this runtime's library, named in error messages.
    extra: ClassVar[str] = ""

    def __init__(self, options: Mapping[str, Any] | None = None) -> None:
        self.options: dict[str, Any] = dict(options or {})
        self.device = "cpu"
        self._signature: Signature | None = None

    def load(self, path: str, device: str = "cpu") -> None:
        """Load the artifact at ``path`` onto ``device``; raise ``ArtifactError`` if broken."""
        raise NotImplementedError("subclasses of Runtime must provide a load() method")

    @property
    def signature(self) -> Signature | None:
        """The signature the artifact itself carries, or ``None`` (TorchScript)."""
        return self._signature

    def bind(self, signature: Signature) -> None:
        """Attach the signature declared for this version (validated against the artifact)."""
        self._signature = signature

    def run(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run one batch; ``inputs`` are already validated against the signature."""
        raise NotImplementedError("subclasses of Runtime must provide a run() method")

    def close(self) -> None:
        """Release what the runtime holds; the instance is not used afterwards."""

    def __repr__(self) -> str:
        return f"<{type(self).__name__} format={self.format!r} device={self.device!r}>"
