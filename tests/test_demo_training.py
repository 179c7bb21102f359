"""The demo-model scripts in fixtures/ and the artifacts they produce.

No database: these are plain functions. Accuracy is always recomputed here from the exported
file on the held-out split (rebuilt with the documented split parameters), so a metrics.json
that flattered its model would be caught.
"""

from __future__ import annotations

import importlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import onnxruntime as ort
import pytest
import torch
from sklearn.datasets import load_digits, load_iris
from sklearn.model_selection import train_test_split
from tokenizers import Tokenizer

FIXTURES_DIR = Path(__file__).resolve().parents[1] / "fixtures"
IRIS_THRESHOLD = 0.90
DIGITS_THRESHOLD = 0.95


def fixture_script(name: str) -> ModuleType:
    """Import a script from fixtures/; they import their shared helpers by bare name."""
    if str(FIXTURES_DIR) not in sys.path:
        sys.path.append(str(FIXTURES_DIR))
    return importlib.import_module(name)


def held_out(data) -> tuple[np.ndarray, np.ndarray]:
    """The test split every demo model is scored on."""
    _, x_test, _, y_test = train_test_split(
        data.data, data.target, test_size=0.3, random_state=0, stratify=data.target
    )
    return x_test, y_test


def iris_accuracy(model_file: Path) -> float:
    x_test, y_test = held_out(load_iris())
    model = torch.jit.load(str(model_file))
    with torch.no_grad():
        probabilities = model(torch.as_tensor(x_test, dtype=torch.float32)).numpy()
    assert probabilities.shape == (len(x_test), 3)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)
    return float((probabilities.argmax(axis=1) == y_test).mean())


def digits_accuracy(model_file: Path) -> float:
    data = load_digits()
    # load_digits().data is the flattened 8x8 image; the model wants [n, 1, 8, 8], 0..16.
    x_test, y_test = held_out(data)
    images = x_test.reshape(-1, 1, 8, 8).astype(np.float32)
    session = ort.InferenceSession(str(model_file), providers=["CPUExecutionProvider"])
    (probabilities,) = session.run(["probabilities"], {"image": images})
    assert probabilities.shape == (len(images), 10)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)
    # The dynamic batch axis also takes a single image.
    (single,) = session.run(["probabilities"], {"image": images[:1]})
    np.testing.assert_allclose(single, probabilities[:1], atol=1e-6)
    return float((probabilities.argmax(axis=1) == y_test).mean())


@pytest.mark.slow
def test_iris_training_reaches_threshold_and_torchscript_file_reproduces_it(tmp_path):
    deterministic_before = torch.are_deterministic_algorithms_enabled()

    metrics = fixture_script("train_iris").train(tmp_path)

    assert metrics["accuracy"] >= IRIS_THRESHOLD
    assert iris_accuracy(tmp_path / "model.pt") == pytest.approx(metrics["accuracy"])
    assert json.loads((tmp_path / "metrics.json").read_text()) == metrics
    # train() must not leave its torch settings behind in the shared test process.
    assert torch.are_deterministic_algorithms_enabled() == deterministic_before


@pytest.mark.slow
def test_digits_training_reaches_threshold_and_onnx_file_reproduces_it(tmp_path):
    metrics = fixture_script("train_digits").train(tmp_path)

    assert metrics["accuracy"] >= DIGITS_THRESHOLD
    assert digits_accuracy(tmp_path / "model.onnx") == pytest.approx(metrics["accuracy"])
    assert json.loads((tmp_path / "metrics.json").read_text()) == metrics


def test_committed_iris_model_classifies_raw_centimetres_above_threshold():
    folder = FIXTURES_DIR / "iris"
    accuracy = iris_accuracy(folder / "model.pt")

    assert accuracy >= IRIS_THRESHOLD
    assert json.loads((folder / "metrics.json").read_text())["accuracy"] == pytest.approx(accuracy)
    signature = json.loads((folder / "signature.json").read_text())
    assert signature["inputs"] == [{"name": "input", "datatype": "FP32", "shape": [-1, 4]}]
    # The README examples: each sample is classified as its label.
    model = torch.jit.load(str(folder / "model.pt"))
    labels = ["setosa", "versicolor", "virginica"]
    for sample in json.loads((folder / "samples.json").read_text()):
        with torch.no_grad():
            probabilities = model(torch.tensor([sample["input"]], dtype=torch.float32))
        assert labels[int(probabilities.argmax())] == sample["label"]


def test_committed_digits_model_classifies_raw_pixels_above_threshold():
    folder = FIXTURES_DIR / "digits"
    accuracy = digits_accuracy(folder / "model.onnx")

    assert accuracy >= DIGITS_THRESHOLD
    assert json.loads((folder / "metrics.json").read_text())["accuracy"] == pytest.approx(accuracy)
    signature = json.loads((folder / "signature.json").read_text())
    assert signature["inputs"] == [{"name": "image", "datatype": "FP32", "shape": [-1, 1, 8, 8]}]
    session = ort.InferenceSession(str(folder / "model.onnx"), providers=["CPUExecutionProvider"])
    for sample in json.loads((folder / "samples.json").read_text()):
        image = np.asarray(sample["image"], dtype=np.float32).reshape(1, 1, 8, 8)
        (probabilities,) = session.run(["probabilities"], {"image": image})
        assert str(int(probabilities.argmax())) == sample["label"]


@pytest.fixture(scope="session")
def minilm_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The setup-time build if there is one, else a fresh export (about 10-30 s)."""
    export_minilm = fixture_script("export_minilm")
    if (export_minilm.DEFAULT_OUT / "model.onnx").is_file():
        return export_minilm.DEFAULT_OUT
    out_dir = tmp_path_factory.mktemp("minilm")
    export_minilm.export(out_dir)
    return out_dir


@pytest.mark.slow
def test_minilm_export_ranks_paraphrase_above_unrelated_sentence(minilm_dir):
    texts = [
        "A man is playing a guitar.",
        "Someone plays the guitar.",
        "The stock market fell sharply today.",
    ]
    tokenizer = Tokenizer.from_file(str(minilm_dir / "tokenizer.json"))
    tokenizer.enable_padding()  # to the longest text, whatever the file says
    encodings = tokenizer.encode_batch(texts)
    inputs = {
        "input_ids": np.array([e.ids for e in encodings], dtype=np.int64),
        "attention_mask": np.array([e.attention_mask for e in encodings], dtype=np.int64),
    }
    session = ort.InferenceSession(
        str(minilm_dir / "model.onnx"), providers=["CPUExecutionProvider"]
    )
    (embeddings,) = session.run(["embedding"], inputs)

    assert embeddings.shape == (3, 384)
    np.testing.assert_allclose(np.linalg.norm(embeddings, axis=1), 1.0, rtol=1e-5)
    paraphrase = float(embeddings[0] @ embeddings[1])  # unit vectors: dot = cosine
    unrelated = float(embeddings[0] @ embeddings[2])
    assert paraphrase > unrelated + 0.4, (paraphrase, unrelated)


def test_minilm_export_is_skipped_when_stamp_matches_script_and_package(tmp_path):
    export_minilm = fixture_script("export_minilm")
    # Placeholder files: a real build would overwrite them, so unchanged files prove a skip.
    for name in ("model.onnx", "tokenizer.json", "signature.json"):
        (tmp_path / name).write_text("placeholder")
    (tmp_path / ".stamp").write_text(json.dumps(export_minilm.stamp_payload()))

    assert export_minilm.export(tmp_path) == tmp_path / "model.onnx"
    assert (tmp_path / "model.onnx").read_text() == "placeholder"

    stale = {**export_minilm.stamp_payload(), "package_version": "0.0.0"}
    (tmp_path / ".stamp").write_text(json.dumps(stale))
    assert not export_minilm.is_up_to_date(tmp_path)


@pytest.mark.slow
def test_gpu_batching_check_runs_on_cpu_and_groups_requests(minilm_dir):
    """bench/gpu_batching.py, the GPU check of micro-batching, works end to end on a CPU: it
    runs rarely, on a lent machine, and must not have rotted by then. No timing is asserted;
    that both models answered and the batched one grouped its callers' requests is."""
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    result = subprocess.run(
        [sys.executable, str(FIXTURES_DIR.parent / "bench/gpu_batching.py"), "--device", "cpu",
         "--threads", "4", "--seconds", "0.3", "--rounds", "1",
         "--tokenizer-dir", str(minilm_dir)],
        capture_output=True, text=True, timeout=600, env=env,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    rows = re.findall(r"^\| batching (off|on) \| (\d+) \|", result.stdout, re.MULTILINE)
    assert [mode for mode, _ in rows] == ["off", "on"], result.stdout
    assert all(int(rate) > 0 for _, rate in rows), result.stdout
    grouped = re.search(r"batching on: (\d+) requests in (\d+) model calls", result.stdout)
    assert grouped is not None, result.stdout
    requests, calls = map(int, grouped.groups())
    assert 0 < calls < requests, result.stdout


@pytest.mark.slow
def test_gpu_promotion_check_runs_on_cpu_where_both_versions_promote(minilm_dir):
    """bench/gpu_promotion.py, the GPU check that a version which cannot run on the device is
    refused at promotion, works end to end on a CPU, where the CPU-pinned trace runs and is
    promoted (the script checks the outcome each device should give)."""
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    result = subprocess.run(
        [sys.executable, str(FIXTURES_DIR.parent / "bench/gpu_promotion.py"), "--device", "cpu",
         "--tokenizer-dir", str(minilm_dir)],
        capture_output=True, text=True, timeout=600, env=env,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    assert "promotion of version 2: accepted" in result.stdout, result.stdout
    assert "production: version 2; a request is answered by version 2" in result.stdout
