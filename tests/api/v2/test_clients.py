"""Open Inference Protocol V2 against real, unmodified clients on a live server.

``tritonclient.http`` runs in this process; the KServe SDK (which needs protobuf 6, against
our constraints) runs in its own virtual environment, ``.venv-kserve`` (``make kserve-venv``),
as a subprocess whose JSON output the tests read. The three demo models are registered and
loaded once for the module; the live server thread shares this process's registry.
"""

from __future__ import annotations

import gc
import json
import os
import subprocess
from io import StringIO
from pathlib import Path

import numpy as np
import pytest
import tritonclient.http as triton
from django.apps import apps
from django.conf import settings
from django.core import serializers
from django.core.management import call_command
from tritonclient.utils import InferenceServerException

import mlapp
from mlapp.serving.registry import registry
from mlapp.startup import load_models

ROOT = Path(settings.BASE_DIR)
GOLDEN = ROOT / "tests/golden"
FIXTURES = ROOT / "fixtures"
KSERVE_PYTHON = ROOT / ".venv-kserve/bin/python"
CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}

IRIS = json.loads((FIXTURES / "iris/samples.json").read_text())[:6]
DIGITS = json.loads((FIXTURES / "digits/samples.json").read_text())[:4]
SENTENCES = ["A man is playing a guitar.", "Someone plays the guitar.", "Stocks fell sharply."]


# -- the demo models, once per module ---------------------------------------------------------


@pytest.fixture(autouse=True)
def _clean_registry():
    """Overrides the suite's per-test registry reset: this module loads the models once."""


def _mlapp_rows():
    for model in apps.get_app_config("mlapp").get_models():
        yield from model._default_manager.all()


@pytest.fixture(scope="module")
def demo_rows(django_db_setup, django_db_blocker):
    """Register the demo models, load them into the registry; the rows, serialized."""
    with django_db_blocker.unblock():
        call_command("setup_demo", "--no-admin", stdout=StringIO())
        rows = serializers.serialize("json", _mlapp_rows())
        registry.clear()
        errors = load_models()
    assert errors == {}
    yield rows
    registry.clear()
    gc.unfreeze()


@pytest.fixture
def server(live_server, demo_rows) -> str:
    """The live server's address (host:port). Rows come back after each test's flush."""
    for row in serializers.deserialize("json", demo_rows):
        row.save()
    return live_server.url.removeprefix("http://")


@pytest.fixture
def client(server):
    client = triton.InferenceServerClient(url=server, network_timeout=60)
    yield client
    client.close()


def _iris_inputs(binary: bool) -> list[triton.InferInput]:
    x = np.array([s["input"] for s in IRIS], dtype=np.float32)
    tensor = triton.InferInput("input", list(x.shape), "FP32")
    tensor.set_data_from_numpy(x, binary_data=binary)
    return [tensor]


def _texts(binary: bool) -> list[triton.InferInput]:
    tensor = triton.InferInput("text", [len(SENTENCES)], "BYTES")
    tensor.set_data_from_numpy(np.array(SENTENCES, dtype=object), binary_data=binary)
    return [tensor]


def _text(array: np.ndarray) -> list[str]:
    """BYTES outputs: bytes when sent binary, str when sent as JSON."""
    return [v.decode() if isinstance(v, bytes) else v for v in array.tolist()]


# -- tritonclient: server and models --------------------------------------------------------


def test_tritonclient_sees_the_server_live_and_ready(client):
    assert client.is_server_live()
    assert client.is_server_ready()


def test_tritonclient_server_metadata_lists_binary_tensor_data(client):
    metadata = client.get_server_metadata()
    assert metadata["name"] == "mlapp"
    assert metadata["version"] == mlapp.__version__
    assert "binary_tensor_data" in metadata["extensions"]


@pytest.mark.parametrize("name", ["iris", "digits", "minilm"])
def test_tritonclient_model_metadata_matches_golden(client, name):
    golden = json.loads((GOLDEN / f"v2_model_metadata_{name}.json").read_text())
    assert client.get_model_metadata(name) == golden
    assert client.get_model_metadata(name, model_version="1") == golden


def test_tritonclient_model_ready_per_model_and_version(client):
    assert client.is_model_ready("iris")
    assert client.is_model_ready("minilm", model_version="1")
    assert not client.is_model_ready("iris", model_version="2")
    assert not client.is_model_ready("no-such-model")


def test_tritonclient_unknown_model_metadata_raises_a_404(client):
    with pytest.raises(InferenceServerException) as caught:
        client.get_model_metadata("no-such-model")
    assert caught.value.status() == "404"
    assert "no-such-model" in caught.value.message()


# -- tritonclient: inference ------------------------------------------------------------------


@pytest.mark.parametrize("binary_in", [True, False], ids=["binary-in", "json-in"])
@pytest.mark.parametrize("binary_out", [True, False], ids=["binary-out", "json-out"])
def test_tritonclient_infers_iris_species(client, binary_in, binary_out):
    outputs = [
        triton.InferRequestedOutput("label", binary_data=binary_out),
        triton.InferRequestedOutput("probabilities", binary_data=binary_out),
    ]
    result = client.infer("iris", _iris_inputs(binary_in), outputs=outputs)
    labels = _text(result.as_numpy("label"))
    assert labels == [s["label"] for s in IRIS]
    expected = mlapp.predict("iris", [s["input"] for s in IRIS]).outputs["probabilities"]
    np.testing.assert_allclose(result.as_numpy("probabilities"), expected, rtol=1e-6)
    assert result.as_numpy("probabilities").dtype == np.float32


def test_tritonclient_default_request_gets_every_output_in_binary(client):
    result = client.infer("iris", _iris_inputs(True))
    response = result.get_response()
    assert [o["name"] for o in response["outputs"]] == ["label", "probabilities"]
    assert all("binary_data_size" in o["parameters"] for o in response["outputs"])
    assert result.as_numpy("probabilities").shape == (len(IRIS), 3)


def test_tritonclient_gets_only_the_requested_output(client):
    outputs = [triton.InferRequestedOutput("label", binary_data=False)]
    result = client.infer("iris", _iris_inputs(True), outputs=outputs)
    assert result.as_numpy("probabilities") is None
    assert result.get_output("label")["data"] == [s["label"] for s in IRIS]


def test_tritonclient_request_id_is_echoed(client):
    result = client.infer("iris", _iris_inputs(True), request_id="req-42")
    assert result.get_response()["id"] == "req-42"
    assert result.get_response()["model_version"] == "1"


def test_tritonclient_infers_a_pinned_version(client):
    result = client.infer("iris", _iris_inputs(True), model_version="1")
    assert result.get_response()["model_version"] == "1"


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
def test_tritonclient_infers_digits(client, binary):
    images = np.array([s["image"] for s in DIGITS], dtype=np.float32).reshape(-1, 1, 8, 8)
    tensor = triton.InferInput("image", list(images.shape), "FP32")
    tensor.set_data_from_numpy(images, binary_data=binary)
    result = client.infer("digits", [tensor])
    labels = _text(result.as_numpy("label"))
    assert labels == [s["label"] for s in DIGITS]


@pytest.mark.parametrize("binary_in", [True, False], ids=["binary-in", "json-in"])
@pytest.mark.parametrize("binary_out", [True, False], ids=["binary-out", "json-out"])
def test_tritonclient_embeds_text_with_minilm(client, binary_in, binary_out):
    outputs = [triton.InferRequestedOutput("embedding", binary_data=binary_out)]
    result = client.infer("minilm", _texts(binary_in), outputs=outputs)
    embedding = result.as_numpy("embedding")
    assert embedding.shape == (len(SENTENCES), 384)
    expected = mlapp.predict("minilm", SENTENCES).outputs["embedding"]
    np.testing.assert_allclose(embedding, expected, atol=1e-5)


@pytest.mark.parametrize("algorithm", ["gzip", "deflate"])
def test_tritonclient_compressed_request_is_read(client, algorithm):
    result = client.infer(
        "minilm", _texts(True), request_compression_algorithm=algorithm, request_id=algorithm
    )
    assert result.as_numpy("embedding").shape == (len(SENTENCES), 384)
    assert result.get_response()["id"] == algorithm


def test_tritonclient_bad_shape_raises_with_the_server_message(client):
    x = np.zeros((2, 3), dtype=np.float32)
    tensor = triton.InferInput("input", [2, 3], "FP32")
    tensor.set_data_from_numpy(x)
    with pytest.raises(InferenceServerException) as caught:
        client.infer("iris", [tensor])
    assert caught.value.status() == "400"
    assert (
        caught.value.message()
        == "Input 'input' has shape [2, 3], expected [-1, 4] (-1 means any size)."
    )


def test_tritonclient_unknown_model_raises_a_404(client):
    with pytest.raises(InferenceServerException) as caught:
        client.infer("no-such-model", _iris_inputs(True))
    assert caught.value.status() == "404"


# -- the KServe SDK's REST client, in its own virtual environment ----------------------------

KSERVE_SCRIPT = r"""
import asyncio, json, sys

import httpx
import numpy as np
from kserve import InferenceRESTClient, InferInput, InferRequest, RESTConfig
from kserve.protocol.infer_type import RequestedOutput

URL, IRIS, SENTENCES = sys.argv[1], json.loads(sys.argv[2]), json.loads(sys.argv[3])


def tensor(name, array, datatype, binary):
    value = InferInput(name=name, shape=list(array.shape), datatype=datatype)
    value.set_data_from_numpy(array, binary_data=binary)
    return value


def iris(binary_in, binary_out, outputs=None, rid=None):
    x = np.array(IRIS, dtype=np.float32)
    return InferRequest(
        model_name="iris", infer_inputs=[tensor("input", x, "FP32", binary_in)],
        parameters={"binary_data_output": binary_out}, request_outputs=outputs, request_id=rid,
    )


def texts(binary_in, binary_out):
    x = np.array([s.encode() for s in SENTENCES], dtype=object)
    return InferRequest(
        model_name="minilm", infer_inputs=[tensor("text", x, "BYTES", binary_in)],
        parameters={"binary_data_output": binary_out},
    )


def summary(response):
    out = {"id": response.id, "model_name": response.model_name}
    for output in response.outputs:
        value = output.as_numpy()
        if value.dtype == object:
            out[output.name] = [v.decode() if isinstance(v, bytes) else v for v in value.tolist()]
        else:
            out[output.name] = value.tolist()
    return out


async def failure(call):
    try:
        await call
    except httpx.HTTPStatusError as exc:
        return {"status": exc.response.status_code, "message": str(exc)}
    return None


async def main():
    result = {}
    async with InferenceRESTClient(RESTConfig(protocol="v2", timeout=60)) as client:
        result["live"] = await client.is_server_live(URL)
        result["ready"] = await client.is_server_ready(URL)
        result["iris_ready"] = await client.is_model_ready(URL, "iris")
        result["unknown_ready"] = await client.is_model_ready(URL, "no-such-model")
        for bin_in in (True, False):
            for bin_out in (True, False):
                key = f"iris_in_{'bin' if bin_in else 'json'}_out_{'bin' if bin_out else 'json'}"
                request = iris(bin_in, bin_out, rid=key)
                result[key] = summary(await client.infer(URL, request, model_name="iris"))
                request = texts(bin_in, bin_out)
                key = key.replace("iris", "minilm")
                result[key] = summary(await client.infer(URL, request, model_name="minilm"))
        only_label = [RequestedOutput("label", {"binary_data": False})]
        result["iris_label_only"] = summary(
            await client.infer(URL, iris(True, True, only_label), model_name="iris")
        )
        bad = InferRequest(
            model_name="iris",
            infer_inputs=[tensor("input", np.zeros((2, 3), np.float32), "FP32", False)],
        )
        result["bad_shape"] = await failure(client.infer(URL, bad, model_name="iris"))
        unknown = client.infer(URL, iris(False, False), model_name="nope")
        result["unknown_model"] = await failure(unknown)
    print(json.dumps(result))


asyncio.run(main())
"""


@pytest.fixture(scope="module")
def kserve_results(live_server, demo_rows, django_db_blocker) -> dict:
    """Every KServe client call, made once by a subprocess in ``.venv-kserve``."""
    if not KSERVE_PYTHON.exists():
        message = f"{KSERVE_PYTHON} is missing: run make kserve-venv"
        if CI:
            pytest.fail(f"{message} (CI=true requires the KServe client test).")
        pytest.skip("run make kserve-venv")
    with django_db_blocker.unblock():  # the live server thread reads the demo rows
        completed = _run_kserve_script(live_server.url)
    assert completed.returncode == 0, completed.stderr[-3000:]
    return json.loads(completed.stdout.strip().splitlines()[-1])


def _run_kserve_script(url: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [
            str(KSERVE_PYTHON),
            "-c",
            KSERVE_SCRIPT,
            url,
            json.dumps([s["input"] for s in IRIS]),
            json.dumps(SENTENCES),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


@pytest.fixture
def kserve(server, kserve_results) -> dict:
    return kserve_results


def test_kserve_client_sees_server_and_model_ready(kserve):
    assert kserve["live"] is True
    assert kserve["ready"] is True
    assert kserve["iris_ready"] is True
    assert kserve["unknown_ready"] is False


@pytest.mark.parametrize(
    "combo", ["in_bin_out_bin", "in_bin_out_json", "in_json_out_bin", "in_json_out_json"]
)
def test_kserve_client_infers_iris(kserve, combo):
    result = kserve[f"iris_{combo}"]
    assert result["label"] == [s["label"] for s in IRIS]
    assert result["id"] == f"iris_{combo}"
    assert result["model_name"] == "iris"
    expected = mlapp.predict("iris", [s["input"] for s in IRIS]).outputs["probabilities"]
    np.testing.assert_allclose(result["probabilities"], expected, rtol=1e-6)


@pytest.mark.parametrize(
    "combo", ["in_bin_out_bin", "in_bin_out_json", "in_json_out_bin", "in_json_out_json"]
)
def test_kserve_client_embeds_text_with_minilm(kserve, combo):
    embedding = np.array(kserve[f"minilm_{combo}"]["embedding"])
    expected = mlapp.predict("minilm", SENTENCES).outputs["embedding"]
    np.testing.assert_allclose(embedding, expected, atol=1e-5)


def test_kserve_client_gets_only_the_requested_output(kserve):
    assert set(kserve["iris_label_only"]) == {"id", "model_name", "label"}


def test_kserve_client_bad_shape_error_carries_the_server_message(kserve):
    assert kserve["bad_shape"]["status"] == 400
    assert "Input 'input' has shape [2, 3], expected [-1, 4]" in kserve["bad_shape"]["message"]


def test_kserve_client_unknown_model_is_a_404(kserve):
    assert kserve["unknown_model"]["status"] == 404
    assert "No model named 'nope'" in kserve["unknown_model"]["message"]
