"""Comparing a shadow version's answers with the answered ones.

:meth:`mlapp.serving.traffic.Traffic.shadow` queues a copy of a request; its thread runs the
shadow version on it and compares both outputs (:func:`compare`). The process adds the
results up (:meth:`Comparison.add`) and writes them into
:class:`~mlapp.models.ShadowComparison`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np


@dataclass
class Comparison:
    """Shadow copies run, failed and compared, and how their answers agreed."""

    requests: int = 0
    errors: int = 0
    label_rows: int = 0
    label_agreed: int = 0
    tensor_rows: int = 0
    cosine_sum: float = 0.0
    max_abs_diff: float = 0.0
    seconds: float = 0.0

    def add(self, other: Comparison) -> None:
        """Add ``other``'s counts to these (the largest difference is the larger one)."""
        for attr in ("requests", "errors", "label_rows", "label_agreed", "tensor_rows"):
            setattr(self, attr, getattr(self, attr) + getattr(other, attr))
        self.cosine_sum += other.cosine_sum
        self.seconds += other.seconds
        self.max_abs_diff = max(self.max_abs_diff, other.max_abs_diff)


def compare(answered: Mapping[str, np.ndarray], shadow: Mapping[str, np.ndarray]) -> Comparison:
    """Compare two versions' outputs row by row: labels agree or not; floats by cosine and
    largest absolute difference. An output the shadow lacks, or of another shape, disagrees."""
    result = Comparison(requests=1)
    for name, a in answered.items():
        a = np.asarray(a)
        rows = a.shape[0] if a.ndim else 1
        b = shadow.get(name)
        b = None if b is None else np.asarray(b)
        if b is None or b.shape != a.shape:
            result.label_rows += rows
            continue
        left = a.reshape(rows, -1)
        right = b.reshape(rows, -1)
        if a.dtype.kind == "f" and b.dtype.kind == "f":
            x = left.astype(np.float64)
            y = right.astype(np.float64)
            norms = np.linalg.norm(x, axis=1) * np.linalg.norm(y, axis=1)
            dots = np.einsum("ij,ij->i", x, y)
            same = np.all(x == y, axis=1)  # zero rows included
            cosine = np.where(same, 1.0, dots / np.where(norms == 0, 1.0, norms))
            result.tensor_rows += rows
            result.cosine_sum += float(cosine.sum())
            if x.size:
                result.max_abs_diff = max(result.max_abs_diff, float(np.abs(x - y).max()))
        else:
            result.label_rows += rows
            result.label_agreed += int(np.all(left == right, axis=1).sum())
    return result
