"""Handlers a server started by a test imports by dotted path (tests/ is on its path)."""

from __future__ import annotations

import numpy as np

from mlapp.handlers import BaseHandler


class DoublingHandler(BaseHandler):
    """Doubles every output: a handler whose effect a client can see."""

    def postprocess(
        self, outputs: dict[str, np.ndarray], inputs: dict[str, np.ndarray]
    ) -> dict[str, np.ndarray]:
        return {name: value * 2 for name, value in outputs.items()}
