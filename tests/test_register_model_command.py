"""manage.py register_model: what deployment pipelines call."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from django.core.management import CommandError, call_command

from mlapp.models import MLModel, ModelVersion
from tests.artifacts import TWO_IN_SIGNATURE

pytestmark = pytest.mark.django_db


def test_register_model_creates_model_and_promotes(torchscript_file, tmp_path, capsys):
    sig = tmp_path / "sig.json"
    sig.write_text(json.dumps(TWO_IN_SIGNATURE))
    call_command(
        "register_model",
        "affine",
        str(torchscript_file),
        "--signature",
        str(sig),
        "--handler",
        "mlapp.handlers.BaseHandler",
        "--promote",
    )
    version = ModelVersion.objects.get()
    assert version.stage == "production"
    assert version.format == "torchscript"
    assert MLModel.objects.get().handler == "mlapp.handlers.BaseHandler"
    out = capsys.readouterr().out
    assert "Registered affine v1" in out
    assert "in stage production" in out


@pytest.mark.parametrize(
    ("handler", "reason"),
    [
        ("tests.importable.handlers.NoSuchHandler", "Cannot import handler"),
        ("no_such_package.handlers.Handler", "Cannot import handler"),
        ("tests.importable.handlers.NotAHandler", "is not a mlapp.handlers.BaseHandler"),
    ],
)
def test_register_model_refuses_a_bad_handler_path_and_stores_nothing(
    torchscript_file, tmp_path, handler, reason
):
    sig = tmp_path / "sig.json"
    sig.write_text(json.dumps(TWO_IN_SIGNATURE))
    with pytest.raises(CommandError, match=reason):
        call_command(
            "register_model", "affine", str(torchscript_file), "--signature", str(sig),
            "--handler", handler,
        )  # fmt: skip
    assert not MLModel.objects.exists()
    assert not ModelVersion.objects.exists()


def test_register_model_refuses_a_version_its_handler_cannot_serve(torchscript_file, tmp_path):
    sig = tmp_path / "sig.json"
    sig.write_text(json.dumps(TWO_IN_SIGNATURE))
    with pytest.raises(CommandError, match=r"features"):
        call_command(
            "register_model", "affine", str(torchscript_file), "--signature", str(sig),
            "--handler", "tests.importable.handlers.FeaturesHandler",
        )  # fmt: skip
    assert not ModelVersion.objects.exists()


def test_register_model_refuses_bad_artifact_and_stores_nothing(tmp_path):
    bad = tmp_path / "model.onnx"
    bad.write_bytes(b"\x80\x04K\x01.")  # a pickle of the int 1
    with pytest.raises(CommandError, match=r"refused: .*pickle"):
        call_command("register_model", "evil", str(bad))
    assert not MLModel.objects.exists()


def test_register_model_exits_non_zero_from_a_shell(tmp_path):
    bad = tmp_path / "bad.bin"
    bad.write_bytes(b"junk")
    env = {**os.environ, "MLAPP_VAR_DIR": str(tmp_path), "DJANGO_SETTINGS_MODULE": ""}
    env.pop("DJANGO_SETTINGS_MODULE")
    manage = [sys.executable, "manage.py"]
    subprocess.run([*manage, "migrate", "-v0"], env=env, check=True)
    result = subprocess.run(
        [*manage, "register_model", "x", str(bad)],
        capture_output=True,
        text=True,
        check=False,
        env=env,
    )
    assert result.returncode != 0
    assert "Unknown artifact format" in result.stderr


def test_register_model_missing_file(tmp_path):
    with pytest.raises(CommandError, match="No such file"):
        call_command("register_model", "x", str(tmp_path / "missing.onnx"))
