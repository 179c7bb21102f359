"""Handlers of the demo models: code versioned with the project, weights uploaded."""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
from django.conf import settings

from mlapp.handlers import BaseHandler, ClassLabelHandler

IRIS_SPECIES = ("setosa", "versicolor", "virginica")


class IrisHandler(ClassLabelHandler):
    """Measurements in cm in; the species name and class probabilities out."""

    labels = IRIS_SPECIES


class DigitsHandler(ClassLabelHandler):
    """An 8x8 image (pixel values 0..16) in; the digit it shows out."""

    labels = tuple(str(d) for d in range(10))


@functools.cache
def _tokenizer(directory: str | Path):  # -> tokenizers.Tokenizer
    """The export's tokenizer, loaded once per directory (the setting, as given, is the key:
    building a path on every request cost ~14 µs)."""
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(Path(directory) / "tokenizer.json"))
    # The shipped tokenizer.json pads every text to 128 tokens; padding to the longest
    # text of the batch is several times faster on CPU and gives the same embeddings.
    tokenizer.no_padding()
    tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")  # noqa: S106 - a token, not a secret
    tokenizer.enable_truncation(max_length=256)
    return tokenizer


class MiniLMHandler(BaseHandler):
    """Sentences in, L2-normalised 384-float embeddings out (all-MiniLM-L6-v2)."""

    inputs = [{"name": "text", "datatype": "BYTES", "shape": [-1]}]
    outputs = [{"name": "embedding", "datatype": "FP32", "shape": [-1, 384]}]

    def edge_manifest(self) -> dict:
        return {
            "assets": {"tokenizer.json": str(Path(settings.DEMO_MINILM_DIR) / "tokenizer.json")},
            "preprocessing": {
                "kind": "tokenizer",
                "file": "assets/tokenizer.json",
                "max_length": 256,
                "pad_id": 0,
            },
            "notes": "Texts are tokenized, padded to the longest text, truncated at 256 tokens.",
        }

    def preprocess(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        texts = [t.decode() if isinstance(t, bytes) else t for t in inputs["text"].tolist()]
        encodings = _tokenizer(settings.DEMO_MINILM_DIR).encode_batch(texts)
        return {
            "input_ids": np.asarray([e.ids for e in encodings], dtype=np.int64),
            "attention_mask": np.asarray([e.attention_mask for e in encodings], dtype=np.int64),
        }
