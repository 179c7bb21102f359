"""``manage.py run_batch``: output files, summary line, progress bar, exit statuses."""

from __future__ import annotations

import csv
import json
import os
import re
import subprocess
import sys
from io import StringIO
from pathlib import Path

import numpy as np
import pytest
from django.conf import settings as django_settings
from django.core.management import CommandError, call_command
from django.test import override_settings

from mlapp.handlers import BaseHandler
from mlapp.models import BatchJob
from mlapp.versions.lifecycle import register_version
from project.flowers.loading import load_flowers
from tests.artifacts import expected

pytestmark = pytest.mark.django_db

REPO = Path(django_settings.BASE_DIR)
SUMMARY = re.compile(
    r"^Job (\d+) (\w+): (\S+) v(\d+), (\d+) items, (\d+) failed, [\d.]+s \(\d+ items/s\)$", re.M
)
FLOWERS = {
    "flowers": {
        "queryset": "project.flowers.sources.flowers",
        "inputs": ["sepal_length", "sepal_width", "petal_length", "petal_width"],
    }
}


class BrokenHandler(BaseHandler):
    """Broken on the job's rows; its example (zeros) passes the check a load runs."""

    def preprocess(self, inputs):
        if any(value.any() for value in inputs.values()):
            raise RuntimeError("broken on purpose")
        return inputs


@pytest.fixture
def affine(onnx_file):
    return register_version("affine", onnx_file, promote=True)


@pytest.fixture
def rows(tmp_path):
    path = tmp_path / "rows.csv"
    path.write_text("key,a,b,c\n" + "".join(f"row-{i},{i},1,0\n" for i in range(12)))
    return path


def run(*args: str) -> tuple[str, str]:
    out, err = StringIO(), StringIO()
    call_command("run_batch", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def test_run_batch_writes_json_lines_one_native_body_per_item(affine, rows, tmp_path):
    output = tmp_path / "out.jsonl"
    out, _ = run("affine", "--input", str(rows), "--output", str(output), "--chunk-size", "5")
    lines = [json.loads(line) for line in output.read_text().splitlines()]
    assert [line["key"] for line in lines] == [f"row-{i}" for i in range(12)]
    assert set(lines[3]) == {"key", "model", "version", "outputs"}
    assert (lines[3]["model"], lines[3]["version"]) == ("affine", 1)
    np.testing.assert_allclose(
        lines[3]["outputs"]["y"], expected(np.array([[3, 1, 0]], np.float32))
    )
    job_id, status, model, version, items, failed = SUMMARY.search(out).groups()
    assert (status, model, version, items, failed) == ("succeeded", "affine", "1", "12", "0")
    assert f"Wrote 12 predictions to {output}" in out
    assert BatchJob.objects.get(pk=int(job_id)).done == 12


def test_run_batch_shows_a_tqdm_progress_bar_on_stderr(affine, rows, tmp_path):
    _, err = run("affine", "--input", str(rows), "--chunk-size", "4")
    assert "job " in err
    assert "12/12" in err
    assert "100%" in err
    assert "item/s" in err


def test_run_batch_no_progress_keeps_stderr_quiet(affine, rows):
    _, err = run("affine", "--input", str(rows), "--no-progress")
    assert err == ""


def test_run_batch_writes_csv_with_the_same_fields_flattened(affine, rows, tmp_path):
    output = tmp_path / "out.csv"
    run("affine", "--input", str(rows), "--output", str(output))
    table = list(csv.DictReader(output.open()))
    assert list(table[0]) == ["key", "model", "version", "y.0", "y.1", "error"]
    assert table[2]["key"] == "row-2"
    assert float(table[2]["y.0"]) == pytest.approx(2 + 2 + 0.5)
    assert float(table[2]["y.1"]) == pytest.approx(-2 - 0.5)


def test_run_batch_over_a_registered_source_with_params(tmp_path):
    register_version(
        "iris",
        REPO / "fixtures/iris/model.pt",
        signature=json.loads((REPO / "fixtures/iris/signature.json").read_text()),
        handler="project.demo.handlers.IrisHandler",
        promote=True,
    )
    load_flowers()
    output = tmp_path / "setosa.jsonl"
    with override_settings(MLAPP={"THREADS": 1, "BATCH_SOURCES": FLOWERS}):
        out, _ = run(
            "iris",
            "--source",
            "flowers",
            "--params",
            '{"species": "setosa"}',
            "--output",
            str(output),
        )
    lines = [json.loads(line) for line in output.read_text().splitlines()]
    assert len(lines) == 50
    assert {line["outputs"]["label"][0] for line in lines} == {"setosa"}
    assert SUMMARY.search(out).group(5) == "50"


def test_run_batch_runs_the_version_it_is_told(affine, onnx_file, rows):
    register_version("affine", onnx_file)
    out, _ = run("affine", "--input", str(rows), "--version", "2")
    assert SUMMARY.search(out).group(4) == "2"


def test_failed_items_exit_3_and_their_errors_are_written(affine, tmp_path):
    path = tmp_path / "mixed.jsonl"
    path.write_text('{"key": "ok", "inputs": [[1, 2, 3]]}\n{"key": "bad", "inputs": [[1, 2]]}\n')
    output = tmp_path / "out.jsonl"
    out = StringIO()
    with pytest.raises(CommandError, match="1 of 2 items failed") as caught:
        call_command(
            "run_batch",
            "affine",
            "--input",
            str(path),
            "--output",
            str(output),
            stdout=out,
            stderr=StringIO(),
        )
    assert caught.value.returncode == 3
    assert SUMMARY.search(out.getvalue()).group(2) == "succeeded"
    bad = json.loads(output.read_text().splitlines()[1])
    assert bad["key"] == "bad"
    assert "shape" in bad["error"]


def test_a_failed_job_exits_4_with_its_error(affine, rows):
    affine.model.handler = "tests.batch.test_run_batch.BrokenHandler"
    affine.model.save()
    out = StringIO()
    with (
        override_settings(MLAPP={"THREADS": 1, "BATCH_MAX_RETRIES": 1, "BATCH_RETRY_DELAY": 0}),
        pytest.raises(CommandError, match="failed after 2 attempt") as caught,
    ):
        call_command("run_batch", "affine", "--input", str(rows), stdout=out, stderr=StringIO())
    assert caught.value.returncode == 4
    assert SUMMARY.search(out.getvalue()).group(2) == "failed"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--input", "{bad}"], "takes 3 value"),
        (["--input", "/no/such/file.csv"], "No such input file"),
        (["--input", "{rows}", "--output", "out.xlsx"], r"\.jsonl or a \.csv"),
        (["--input", "{rows}", "--enqueue"], "needs a Celery broker"),
        (["--input", "{rows}", "--enqueue", "--output", "o.jsonl"], "does not go with --enqueue"),
        (["--input", "{rows}", "--params", '{"a": 1}'], "Params go with a registered source"),
        (["--source", "flowers", "--params", "[1]"], "must be a JSON object"),
        (["--source", "nope"], "No batch source named 'nope'"),
        (["--input", "{rows}", "--version", "7"], "has no version 7"),
    ],
)
def test_a_refused_job_exits_1_with_the_reason_and_creates_nothing(
    affine, rows, tmp_path, args, message
):
    bad = tmp_path / "bad.csv"
    bad.write_text("key,a,b,c,d\nx,1,2,3,4\n")
    args = [a.replace("{bad}", str(bad)).replace("{rows}", str(rows)) for a in args]
    with pytest.raises(CommandError, match=message) as caught:
        call_command("run_batch", "affine", *args, stdout=StringIO(), stderr=StringIO())
    assert caught.value.returncode == 1
    assert not BatchJob.objects.exists()


def test_unknown_model_is_refused():
    with pytest.raises(CommandError, match="No model named 'ghost'"):
        call_command("run_batch", "ghost", "--input", "x.csv", stdout=StringIO())


def test_input_or_source_is_required():
    with pytest.raises(CommandError, match="one of the arguments --input --source --resume"):
        call_command("run_batch", "affine", stdout=StringIO())


@pytest.mark.slow
def test_exit_status_as_a_shell_sees_it(tmp_path, onnx_file):
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "project.settings",
        "MLAPP_VAR_DIR": str(tmp_path / "var"),
        "MLAPP_THREADS": "1",
        "MLAPP_DB": "sqlite",
    }
    env.pop("MLAPP_BROKER_URL", None)
    env.pop("CELERY_BROKER_URL", None)

    def manage(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )

    assert manage("migrate", "-v", "0").returncode == 0
    assert manage("register_model", "affine", str(onnx_file), "--promote").returncode == 0
    good = tmp_path / "good.csv"
    good.write_text("a,b,c\n1,2,3\n")
    mixed = tmp_path / "mixed.csv"
    mixed.write_text("a,b,c\n1,2,3\n1,x,3\n")
    bad = tmp_path / "bad.csv"
    bad.write_text("a,b\n1,2\n")
    ok = manage("run_batch", "affine", "--input", str(good))
    assert (ok.returncode, SUMMARY.search(ok.stdout).group(2)) == (0, "succeeded")
    partly = manage("run_batch", "affine", "--input", str(mixed))
    assert partly.returncode == 3
    assert "1 of 2 items failed" in partly.stderr
    refused = manage("run_batch", "affine", "--input", str(bad))
    assert refused.returncode == 1
    assert "do not fit the model" in refused.stderr
