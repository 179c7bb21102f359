"""Run a verified bundle's ONNX model with ONNX Runtime alone, as the server's handler would.

The bundle's manifest says what the server's handler does around the artifact, in data the
client can follow: ``labels`` (a classifier names the class with the highest score) and
``preprocessing`` (``{"kind": "tokenizer", "file": ..., "max_length": N}``: texts become
``input_ids`` / ``attention_mask`` / ``token_type_ids`` with the bundled tokenizer, padded to
the longest text). Anything else the handler does in code is named in its ``notes``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from mlapp.edge.bundle import Bundle, BundleError

_DTYPES = {
    "BOOL": np.bool_,
    "UINT8": np.uint8,
    "INT8": np.int8,
    "INT16": np.int16,
    "INT32": np.int32,
    "INT64": np.int64,
    "FP16": np.float16,
    "FP32": np.float32,
    "FP64": np.float64,
}


class Model:
    """A bundle's model, loaded into an ONNX Runtime session."""

    def __init__(self, bundle: Bundle, *, threads: int | None = None) -> None:
        manifest = bundle.manifest
        if manifest.get("format") != "onnx":
            raise BundleError(
                f"This bundle holds a {manifest.get('format')} model; the edge client runs ONNX "
                "only (derive an ONNX version on the server: Export to ONNX)."
            )
        import onnxruntime as ort

        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        self.session = ort.InferenceSession(
            bundle.artifact, sess_options=options, providers=["CPUExecutionProvider"]
        )
        self.bundle = bundle
        self.manifest = manifest
        self.inputs = {i.name: i for i in self.session.get_inputs()}
        self.output_names = [o.name for o in self.session.get_outputs()]

    def predict(self, body: Any) -> dict[str, Any]:
        """The outputs for ``body`` (``{"inputs": ...}`` or the inputs), as JSON values."""
        if isinstance(body, Mapping) and "inputs" in body:
            body = body["inputs"]
        public = self.manifest.get("public_signature") or self.manifest["signature"]
        names = [spec["name"] for spec in public["inputs"]]
        values = dict(body) if isinstance(body, Mapping) else {names[0]: body}
        missing = [n for n in names if n not in values]
        if missing:
            raise BundleError(f"Missing inputs {missing}; the model takes {names}.")
        tensors = self._tensors(public, values)
        outputs = dict(zip(self.output_names, self.session.run(None, tensors), strict=True))
        return self._postprocess(outputs)

    def _tensors(self, public: Mapping[str, Any], values: Mapping[str, Any]) -> dict[str, Any]:
        preprocessing = self.manifest.get("preprocessing") or {}
        if preprocessing.get("kind") == "tokenizer":
            texts = values[public["inputs"][0]["name"]]
            return self._tokenize([texts] if isinstance(texts, str) else list(texts))
        tensors = {}
        for spec in public["inputs"]:
            dtype = _DTYPES.get(spec["datatype"])
            if dtype is None:
                raise BundleError(f"Input {spec['name']} ({spec['datatype']}) needs the server.")
            array: np.ndarray = np.asarray(values[spec["name"]], dtype=dtype)
            if array.ndim == len(spec["shape"]) - 1:
                array = array[None]  # one row given without its batch axis
            tensors[spec["name"]] = array
        return tensors

    def _tokenize(self, texts: list[str]) -> dict[str, Any]:
        try:
            from tokenizers import Tokenizer
        except ImportError:
            raise BundleError(
                "This model tokenizes its texts: pip install tokenizers to run it at the edge."
            ) from None
        preprocessing = self.manifest["preprocessing"]
        tokenizer = Tokenizer.from_file(self.bundle.path(preprocessing["file"]))
        tokenizer.no_padding()
        tokenizer.enable_padding(pad_id=int(preprocessing.get("pad_id", 0)))
        if preprocessing.get("max_length"):
            tokenizer.enable_truncation(max_length=int(preprocessing["max_length"]))
        encodings = tokenizer.encode_batch(texts)
        fields = {
            "input_ids": [e.ids for e in encodings],
            "attention_mask": [e.attention_mask for e in encodings],
            "token_type_ids": [e.type_ids for e in encodings],
        }
        return {n: np.asarray(fields[n], dtype=np.int64) for n in self.inputs if n in fields}

    def _postprocess(self, outputs: dict[str, Any]) -> dict[str, Any]:
        handler = self.manifest.get("handler") or {}
        result: dict[str, Any] = {}
        labels = handler.get("labels")
        if labels:
            scores = outputs[handler.get("scores_output") or self.output_names[0]]
            result["label"] = [labels[i] for i in np.argmax(scores, axis=-1).tolist()]
        result.update({name: value.tolist() for name, value in outputs.items()})
        return result
