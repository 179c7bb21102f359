"""Signatures and helpers shared by the tests of the batch sources."""

from __future__ import annotations

import io

from mlapp.batch.sources import Item, Plan, Source
from mlapp.runtimes.tensors import Signature

IRIS = Signature.from_dict(
    {
        "inputs": [{"name": "input", "datatype": "FP32", "shape": [-1, 4]}],
        "outputs": [{"name": "probabilities", "datatype": "FP32", "shape": [-1, 3]}],
    }
)
TWO_INPUTS = Signature.from_dict(
    {
        "inputs": [
            {"name": "a", "datatype": "FP32", "shape": [-1]},
            {"name": "b", "datatype": "INT64", "shape": [-1, 2]},
        ],
        "outputs": [{"name": "y", "datatype": "FP32", "shape": [-1]}],
    }
)
TEXT = Signature.from_dict(
    {
        "inputs": [{"name": "text", "datatype": "BYTES", "shape": [-1]}],
        "outputs": [{"name": "embedding", "datatype": "FP32", "shape": [-1, 2]}],
    }
)


def opener(data: bytes):
    return lambda: io.BytesIO(data)


def read_all(source: Source, chunk_size: int) -> tuple[Plan, list[Item]]:
    plan = source.plan(chunk_size)
    return plan, [item for chunk in plan.chunks for item in source.read(chunk)]
