"""Pre- and post-processing code that lives in the host project, next to its models.

A model's ``handler`` field names a subclass of :class:`BaseHandler` by dotted path. The
weights are uploaded as versions; the handler's code is versioned with the project. A
handler also describes what clients send and get (its public signature), which may differ
from the artifact's tensors: a text encoder takes strings and tokenizes them itself.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import numpy as np

from mlapp.runtimes.tensors import Signature, TensorSpec


class BaseHandler:
    """Pass-through handler; subclass and override what your model needs.

    Class attributes ``inputs`` / ``outputs`` (lists of ``{"name", "datatype", "shape"}``)
    declare the public signature; ``None`` keeps the artifact's own. ``example`` (inputs keyed
    by name, as JSON) is the body the admin's "try it" and the native API's predict page
    offer; ``None`` builds one row from the public signature.
    """

    inputs: ClassVar[Sequence[Mapping[str, Any]] | None] = None
    outputs: ClassVar[Sequence[Mapping[str, Any]] | None] = None
    example: ClassVar[Mapping[str, Any] | None] = None

    def __init__(self, model_name: str, runtime_signature: Signature) -> None:
        self.model_name = model_name
        self.runtime_signature = runtime_signature

    def signature(self) -> Signature:
        """What clients send and receive."""
        base = self.runtime_signature
        return Signature(
            inputs=_specs(self.inputs) if self.inputs is not None else base.inputs,
            outputs=_specs(self.outputs) if self.outputs is not None else base.outputs,
        )

    def preprocess(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Turn validated public inputs into the artifact's input tensors."""
        return inputs

    def postprocess(
        self, outputs: dict[str, np.ndarray], inputs: dict[str, np.ndarray]
    ) -> dict[str, np.ndarray]:
        """Turn the artifact's outputs into what clients get."""
        return outputs

    def edge_manifest(self) -> dict[str, Any]:
        """What an edge client needs to do this handler's work, for the version's bundle.

        Keys (all optional): ``labels`` and ``scores_output`` (a classifier), ``preprocessing``
        (``{"kind": "tokenizer", "file": "assets/NAME", "max_length": N}``), ``assets`` (name
        -> local file, shipped under ``assets/``), ``notes`` (what else it does, in words).
        Default: nothing; the artifact's tensors in and out.
        """
        return {}


class ClassLabelHandler(BaseHandler):
    """Names the predicted class of a classifier whose output holds one score per class.

    Set ``labels`` (class index -> name). Outputs: ``label`` (BYTES ``[-1]``, one name per
    row) and the scores under their own output name.
    """

    labels: ClassVar[Sequence[str]] = ()
    #: Which artifact output holds the scores; default: the first one.
    scores_output: ClassVar[str | None] = None

    def _scores_name(self) -> str:
        return self.scores_output or self.runtime_signature.outputs[0].name

    def signature(self) -> Signature:
        base = super().signature()
        scores = next(t for t in self.runtime_signature.outputs if t.name == self._scores_name())
        label = TensorSpec(name="label", datatype="BYTES", shape=(scores.shape[0],))
        return Signature(inputs=base.inputs, outputs=(label, scores))

    def postprocess(
        self, outputs: dict[str, np.ndarray], inputs: dict[str, np.ndarray]
    ) -> dict[str, np.ndarray]:
        name = self._scores_name()
        scores = outputs[name]
        names = np.asarray(list(self.labels), dtype=object)
        return {"label": names[np.argmax(scores, axis=-1)], name: scores}

    def edge_manifest(self) -> dict[str, Any]:
        return {"labels": list(self.labels), "scores_output": self._scores_name()}


def _specs(items: Sequence[Mapping[str, Any]]) -> tuple[TensorSpec, ...]:
    return tuple(TensorSpec.from_dict(item) for item in items)
