"""Handlers a server started by a test imports by dotted path (tests/ is on its path)."""

from __future__ import annotations

import time

import numpy as np

from mlapp.handlers import BaseHandler


class DoublingHandler(BaseHandler):
    """Doubles every output: a handler whose effect a client can see."""

    def postprocess(
        self, outputs: dict[str, np.ndarray], inputs: dict[str, np.ndarray]
    ) -> dict[str, np.ndarray]:
        return {name: value * 2 for name, value in outputs.items()}


class SleepingHandler(BaseHandler):
    """Sleeps the first input value's seconds (0 to 5) before answering: a call still under
    way when a test stops the server."""

    def postprocess(
        self, outputs: dict[str, np.ndarray], inputs: dict[str, np.ndarray]
    ) -> dict[str, np.ndarray]:
        first = next(iter(inputs.values()))
        time.sleep(min(max(float(first.flat[0]), 0.0), 5.0) if first.size else 0.0)
        return outputs


class MeasurementsHandler(BaseHandler):
    """Iris as text: each row is ``"sepal length,sepal width,petal length,petal width"``.

    Changes the public signature (one BYTES input instead of four floats). Text that is not
    UTF-8 or not four numbers is the client's mistake (the handler raises UnicodeError /
    ValueError); the row ``"crash"`` is a bug in the handler (RuntimeError).
    """

    inputs = ({"name": "text", "datatype": "BYTES", "shape": [-1]},)
    example = {"text": ["5.1,3.5,1.4,0.2"]}

    def preprocess(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        rows = []
        for value in inputs["text"].reshape(-1):
            text = value.decode("utf-8") if isinstance(value, bytes) else str(value)
            if text == "crash":
                raise RuntimeError("a bug in the handler")
            rows.append([float(part) for part in text.split(",", 3)])
        return {"input": np.asarray(rows, dtype=np.float32).reshape(-1, 4)}


class FeaturesHandler(BaseHandler):
    """Feeds a tensor named ``features``: fits an artifact whose input is named so, no other."""

    def preprocess(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {"features": next(iter(inputs.values()))}


class BrokenPostprocessHandler(BaseHandler):
    """Its postprocess fails on every output."""

    def postprocess(
        self, outputs: dict[str, np.ndarray], inputs: dict[str, np.ndarray]
    ) -> dict[str, np.ndarray]:
        raise RuntimeError("postprocess always fails")


class NotAHandler:
    """A class that is not a mlapp.handlers.BaseHandler."""


class WrongWidthHandler(BaseHandler):
    """Names the artifact's input, but with five columns: the artifact itself refuses it."""

    def preprocess(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        name = self.runtime_signature.inputs[0].name
        rows = next(iter(inputs.values())).shape[0]
        return {name: np.ones((rows, 5), dtype=np.float32)}


class SettingsHandler(BaseHandler):
    """Reads Django settings in its preprocess: runs only where settings are configured."""

    def preprocess(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        from django.conf import settings

        assert "mlapp" in settings.INSTALLED_APPS
        return inputs


class UndescribableHandler(BaseHandler):
    """Its signature() raises: a bug in the host's handler code."""

    def signature(self):
        raise RuntimeError("no signature today")


class FailsOnShiftedHandler(BaseHandler):
    """Fails one request in five on a shifted affine version (whose first output is over
    500): those whose first input value is 7. Other versions never fail."""

    def postprocess(
        self, outputs: dict[str, np.ndarray], inputs: dict[str, np.ndarray]
    ) -> dict[str, np.ndarray]:
        y = next(iter(outputs.values()))
        x = next(iter(inputs.values()))
        if float(y.reshape(-1)[0]) > 500 and float(x.reshape(-1)[0]) == 7.0:
            raise RuntimeError("the shifted version fails on this input")
        return outputs
