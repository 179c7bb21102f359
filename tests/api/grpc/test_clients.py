"""The Open Inference Protocol over gRPC against real, unmodified clients on a live server.

One gRPC server for the module, on a free port, in this process (conftest.py); the REST
answers come from the live HTTP server of the same process. ``tritonclient.grpc`` (sync and asyncio)
runs here; KServe's ``InferenceGRPCClient`` runs in ``.venv-kserve`` (it needs protobuf 6)
as a subprocess whose JSON output the tests read. The launcher serving gRPC from its forked
workers is tested in tests/serving/test_production_launcher.py.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as triton
import tritonclient.grpc.aio as triton_aio
import tritonclient.http as triton_http
from django.conf import settings
from tritonclient.utils import InferenceServerException

import mlapp
from mlapp.serving import metrics

ROOT = Path(settings.BASE_DIR)
GOLDEN = ROOT / "tests/golden"
FIXTURES = ROOT / "fixtures"
KSERVE_PYTHON = ROOT / ".venv-kserve/bin/python"
CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}

IRIS = json.loads((FIXTURES / "iris/samples.json").read_text())[:6]
DIGITS = json.loads((FIXTURES / "digits/samples.json").read_text())[:4]
SENTENCES = ["A man is playing a guitar.", "Someone plays the guitar.", "Stocks fell sharply."]


@pytest.fixture(autouse=True)
def _clean_registry():
    """Overrides the suite's per-test registry reset: this module loads the models once."""


@pytest.fixture
def client(address):
    client = triton.InferenceServerClient(url=address)
    yield client
    client.close()


@pytest.fixture
def rest(live_server):
    client = triton_http.InferenceServerClient(url=live_server.url.removeprefix("http://"))
    yield client
    client.close()


def _iris() -> np.ndarray:
    return np.array([s["input"] for s in IRIS], dtype=np.float32)


def _digits() -> np.ndarray:
    return np.array([s["image"] for s in DIGITS], dtype=np.float32).reshape(-1, 1, 8, 8)


def _texts() -> np.ndarray:
    return np.array([s.encode() for s in SENTENCES], dtype=object)


def _input(module, name: str, array: np.ndarray, datatype: str):
    tensor = module.InferInput(name, list(array.shape), datatype)
    tensor.set_data_from_numpy(array)
    return tensor


CASES = {
    "iris": ("input", _iris, "FP32", ["label", "probabilities"]),
    "digits": ("image", _digits, "FP32", ["label", "probabilities"]),
    "minilm": ("text", _texts, "BYTES", ["embedding"]),
}


# -- tritonclient.grpc: server and models ---------------------------------------------------


def test_tritonclient_sees_the_server_live_and_ready(client):
    assert client.is_server_live()
    assert client.is_server_ready()


def test_tritonclient_server_metadata_names_mlapp(client):
    metadata = client.get_server_metadata(as_json=True)
    assert metadata["name"] == "mlapp"
    assert metadata["version"] == mlapp.__version__


@pytest.mark.parametrize("name", ["iris", "digits", "minilm"])
def test_tritonclient_model_metadata_is_the_rest_golden(client, name):
    golden = json.loads((GOLDEN / f"v2_model_metadata_{name}.json").read_text())
    for version in ("", "1"):
        metadata = client.get_model_metadata(name, model_version=version, as_json=True)
        # Protobuf's JSON writes int64 values as strings.
        for tensor in metadata["inputs"] + metadata["outputs"]:
            tensor["shape"] = [int(d) for d in tensor["shape"]]
        assert metadata == golden


def test_tritonclient_model_ready_per_model_and_version(client):
    assert client.is_model_ready("iris")
    assert client.is_model_ready("minilm", model_version="1")


def test_unknown_model_or_version_is_not_found(client):
    with pytest.raises(InferenceServerException) as caught:
        client.is_model_ready("iris", model_version="2")
    assert caught.value.status() == "StatusCode.NOT_FOUND"
    assert "no version 2" in caught.value.message()
    with pytest.raises(InferenceServerException) as caught:
        client.get_model_metadata("no-such-model")
    assert caught.value.status() == "StatusCode.NOT_FOUND"
    assert "no-such-model" in caught.value.message()
    with pytest.raises(InferenceServerException) as caught:
        client.is_model_ready("no-such-model")
    assert caught.value.status() == "StatusCode.NOT_FOUND"


# -- tritonclient.grpc: inference, equal to REST --------------------------------------------


@pytest.mark.parametrize("name", ["iris", "digits", "minilm"])
def test_tritonclient_answers_equal_rest(client, rest, name):
    input_name, make, datatype, outputs = CASES[name]
    array = make()
    answer = client.infer(name, [_input(triton, input_name, array, datatype)])
    expected = rest.infer(name, [_input(triton_http, input_name, array, datatype)])
    assert [o.name for o in answer.get_response().outputs] == outputs
    for output in outputs:
        np.testing.assert_array_equal(answer.as_numpy(output), expected.as_numpy(output))
    assert answer.get_response().model_version == "1"


def test_iris_labels_and_probabilities_are_the_models(client):
    answer = client.infer("iris", [_input(triton, "input", _iris(), "FP32")])
    assert [v.decode() for v in answer.as_numpy("label")] == [s["label"] for s in IRIS]
    expected = mlapp.predict("iris", _iris()).outputs["probabilities"]
    np.testing.assert_array_equal(answer.as_numpy("probabilities"), expected)
    assert answer.as_numpy("probabilities").dtype == np.float32


def test_minilm_embeddings_are_the_models(client):
    answer = client.infer("minilm", [_input(triton, "text", _texts(), "BYTES")])
    embedding = answer.as_numpy("embedding")
    assert embedding.shape == (len(SENTENCES), 384)
    np.testing.assert_allclose(
        embedding, mlapp.predict("minilm", SENTENCES).outputs["embedding"], atol=1e-6
    )


def test_only_the_requested_output_comes_back(client):
    outputs = [triton.InferRequestedOutput("probabilities")]
    answer = client.infer("iris", [_input(triton, "input", _iris(), "FP32")], outputs=outputs)
    assert [o.name for o in answer.get_response().outputs] == ["probabilities"]
    assert answer.as_numpy("label") is None


def test_request_id_is_echoed_and_a_pinned_version_answers(client):
    answer = client.infer(
        "iris", [_input(triton, "input", _iris(), "FP32")], request_id="req-42", model_version="1"
    )
    assert answer.get_response().id == "req-42"
    assert answer.get_response().model_version == "1"


def test_request_parameters_are_accepted(client):
    answer = client.infer(
        "iris",
        [_input(triton, "input", _iris(), "FP32")],
        parameters={"trace": "yes", "priority_hint": 3, "flag": True},
    )
    assert answer.as_numpy("probabilities").shape == (len(IRIS), 3)


def test_grpc_requests_are_counted_with_their_protocol(client):
    def count() -> float:
        value = metrics.REGISTRY.get_sample_value(
            "mlapp_requests_total",
            {"model": "iris", "version": "1", "protocol": "grpc", "outcome": "ok"},
        )
        return value or 0.0

    before = count()
    client.infer("iris", [_input(triton, "input", _iris(), "FP32")])
    client.infer("iris", [_input(triton, "input", _iris(), "FP32")])
    assert count() == before + 2


def test_tritonclient_asyncio_client(address):
    async def run() -> tuple[bool, list[np.ndarray]]:
        client = triton_aio.InferenceServerClient(url=address)
        try:
            live = await client.is_server_live()
            answers = await asyncio.gather(
                *(
                    client.infer("minilm", [_input(triton_aio, "text", _texts(), "BYTES")])
                    for _ in range(4)
                )
            )
        finally:
            await client.close()
        return live, [a.as_numpy("embedding") for a in answers]

    live, embeddings = asyncio.run(run())
    assert live
    expected = mlapp.predict("minilm", SENTENCES).outputs["embedding"]
    for embedding in embeddings:
        np.testing.assert_allclose(embedding, expected, atol=1e-6)


# -- KServe's client, in its own environment -------------------------------------------------

KSERVE_SCRIPT = """
import asyncio, json, sys
import numpy as np
from kserve import InferenceGRPCClient, InferInput, InferRequest

address, cases = sys.argv[1], json.loads(sys.argv[2])

async def main():
    client = InferenceGRPCClient(address)
    out = {"live": await client.is_server_live(), "ready": await client.is_server_ready()}
    for name, (input_name, datatype, data) in cases.items():
        out[name + "_ready"] = await client.is_model_ready(name)
        array = np.array(data, dtype=object if datatype == "BYTES" else np.float32)
        tensor = InferInput(input_name, list(array.shape), datatype)
        tensor.set_data_from_numpy(array, binary_data=False)
        request = InferRequest(model_name=name, infer_inputs=[tensor], request_id="k-" + name)
        response = await client.infer(request)
        out[name] = {
            "id": response.id,
            "outputs": {
                o.name: [
                    v.decode() if isinstance(v, bytes) else v
                    for v in o.as_numpy().reshape(-1).tolist()
                ]
                for o in response.outputs
            },
        }
    await client.close()
    print(json.dumps(out))

asyncio.run(main())
"""


def test_kserve_grpc_client_answers_equal_rest(address, rest):
    if not KSERVE_PYTHON.exists():
        if CI:
            pytest.fail(f"{KSERVE_PYTHON} is missing: run make kserve-venv.")
        pytest.skip(f"{KSERVE_PYTHON} is missing: run make kserve-venv.")
    cases = {
        "iris": ["input", "FP32", _iris().tolist()],
        "digits": ["image", "FP32", _digits().tolist()],
        "minilm": ["text", "BYTES", SENTENCES],
    }
    result = subprocess.run(
        [str(KSERVE_PYTHON), "-c", KSERVE_SCRIPT, address, json.dumps(cases)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    answers = json.loads(result.stdout.strip().splitlines()[-1])
    assert answers["live"] is True
    assert answers["ready"] is True
    for name, (input_name, make, datatype, outputs) in CASES.items():
        assert answers[f"{name}_ready"] is True
        assert answers[name]["id"] == f"k-{name}"
        expected = rest.infer(name, [_input(triton_http, input_name, make(), datatype)])
        assert list(answers[name]["outputs"]) == outputs
        for output in outputs:
            want = expected.as_numpy(output).reshape(-1)
            got = answers[name]["outputs"][output]
            if want.dtype == object:
                assert got == [v.decode() for v in want.tolist()]
            else:
                np.testing.assert_array_equal(np.array(got, dtype=want.dtype), want)
