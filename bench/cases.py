"""The requests of the benchmark: the same inputs as V2 bodies (HTTP) and as arrays (raw call).

Every request carries one row (batch 1). iris and digits cycle through their fixture samples;
minilm through sentences of 9 to 28 tokens.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent

SENTENCES = [
    "The cat sat on the mat.",
    "A quick brown fox jumps over the lazy dog near the river bank.",
    "Django teams want predictions without running another server.",
    "Micro-batching groups concurrent requests into one model call.",
    "The weather today is sunny with a light breeze from the west.",
    "How many requests per second can one core answer?",
    "Copy-on-write pages stay shared between forked worker processes as long as nobody "
    "writes to them.",
    "She bought fresh bread, two apples and a bottle of milk at the corner shop.",
    "Sentence embeddings map text to vectors.",
    "The benchmark pins the server to one core and the load generator to the other.",
    "Open Inference Protocol clients send tensors as JSON or as binary data after a JSON header.",
    "Rain is expected tomorrow.",
    "A model registry keeps versions, stages and signatures of every uploaded artifact.",
    "Latency percentiles matter more than averages when users are waiting.",
    "He walked to the station, missed the train by a minute, and took the bus instead.",
    "Small models answer in microseconds; the HTTP stack around them costs more.",
]


@dataclass
class Case:
    """One row group of the table: a model, its V2 bodies and the same inputs as arrays."""

    name: str
    model: str
    bodies: list[bytes]
    arrays: list[dict[str, np.ndarray]]


def _tensor(name: str, datatype: str, array: np.ndarray) -> dict:
    data = array.reshape(-1).tolist()
    return {"name": name, "datatype": datatype, "shape": list(array.shape), "data": data}


def _body(inputs: list[dict], binary_output: str | None = None) -> bytes:
    body: dict = {"inputs": inputs}
    if binary_output:
        body["outputs"] = [{"name": binary_output, "parameters": {"binary_data": True}}]
    return json.dumps(body, separators=(",", ":")).encode()


def cases() -> dict[str, Case]:
    iris = [
        {"input": np.asarray([s["input"]], dtype=np.float32)}
        for s in json.loads((ROOT / "fixtures/iris/samples.json").read_text())
    ]
    digits = [
        {"image": np.asarray(s["image"], dtype=np.float32).reshape(1, 1, 8, 8)}
        for s in json.loads((ROOT / "fixtures/digits/samples.json").read_text())
    ]
    texts = [{"text": np.asarray([s], dtype=object)} for s in SENTENCES]
    return {
        "iris": Case(
            "iris", "iris", [_body([_tensor("input", "FP32", a["input"])]) for a in iris], iris
        ),
        "digits": Case(
            "digits",
            "digits",
            [_body([_tensor("image", "FP32", a["image"])]) for a in digits],
            digits,
        ),
        "minilm": Case(
            "minilm", "minilm", [_body([_tensor("text", "BYTES", a["text"])]) for a in texts], texts
        ),
        # The same requests, asking for the embedding as binary data (tritonclient's default).
        "minilm-bin": Case(
            "minilm-bin",
            "minilm",
            [
                _body([_tensor("text", "BYTES", a["text"])], binary_output="embedding")
                for a in texts
            ],
            texts,
        ),
    }
