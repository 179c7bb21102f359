"""A bundle whose preprocessing is a tokenizer: the edge client tokenizes as the server does."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from django.conf import settings
from onnx import TensorProto, helper

from mlapp.edge.bundle import bundle_bytes, open_bundle
from mlapp.edge.run import Model
from mlapp.runtimes.tensors import Signature
from project.demo.handlers import MiniLMHandler
from tests.conftest import CI

TEXTS = ["Rain is expected tomorrow.", "Hi", "Sentence embeddings map text to vectors, we hope."]


def _echo_model(path: Path) -> None:
    """input_ids * attention_mask, as floats: the model shows exactly the tensors it got."""
    ids = helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["b", "t"])
    mask = helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["b", "t"])
    out = helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["b", "t"])
    graph = helper.make_graph(
        [
            helper.make_node("Mul", ["input_ids", "attention_mask"], ["masked"]),
            helper.make_node("Cast", ["masked"], ["embedding"], to=TensorProto.FLOAT),
        ],
        "echo",
        [ids, mask],
        [out],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))


def test_edge_client_tokenizes_as_the_minilm_handler_does(tmp_path):
    tokenizer = Path(settings.DEMO_MINILM_DIR) / "tokenizer.json"
    if not tokenizer.exists():
        message = f"{tokenizer} is not built (fixtures/export_minilm.py)"
        if CI:
            pytest.fail(message)
        pytest.skip(message)
    model_path = tmp_path / "model.onnx"
    _echo_model(model_path)
    signature = {
        "inputs": [
            {"name": "input_ids", "datatype": "INT64", "shape": [-1, -1]},
            {"name": "attention_mask", "datatype": "INT64", "shape": [-1, -1]},
        ],
        "outputs": [{"name": "embedding", "datatype": "FP32", "shape": [-1, -1]}],
    }
    handler = MiniLMHandler("minilm", Signature.from_dict(signature))
    edge = handler.edge_manifest()
    manifest = {
        "model": "minilm",
        "version": 1,
        "parent": None,
        "format": "onnx",
        "artifact": "model.onnx",
        "sha256": hashlib.sha256(model_path.read_bytes()).hexdigest(),
        "signature": signature,
        "public_signature": handler.signature().to_dict(),
        "handler": {"labels": None},
        "preprocessing": edge["preprocessing"],
    }
    members = {"model.onnx": str(model_path)}
    members.update({f"assets/{n}": p for n, p in edge["assets"].items()})
    data = bundle_bytes(manifest, members)
    (tmp_path / "b.zip").write_bytes(data)
    bundle = open_bundle(str(tmp_path / "b.zip"), str(tmp_path / "out"))
    got = np.asarray(Model(bundle).predict({"inputs": {"text": TEXTS}})["embedding"])
    server = handler.preprocess({"text": np.asarray(TEXTS, dtype=object)})
    expected = server["input_ids"] * server["attention_mask"]
    assert got.shape == expected.shape  # padded to the longest text, as the handler does
    np.testing.assert_array_equal(got, expected.astype(np.float32))
    assert json.loads((tmp_path / "out" / "assets" / "tokenizer.json").read_text())
