"""The edge bundle: served with its checksums, verified and run by the Django-free client."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import zipfile

import numpy as np
import pytest
from django.contrib.auth import get_user_model
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

import mlapp
from mlapp.edge.__main__ import main as edge_main
from mlapp.versions.derivation import derive_version
from tests.demo_models import register_demo, samples

pytestmark = pytest.mark.django_db
KEY = "a-test-signing-key-of-some-length"


@pytest.fixture
def staff_client():
    client = APIClient()
    client.force_authenticate(get_user_model().objects.create_superuser("ops", password="pw"))
    return client


def _bundle(client, name: str, version: int) -> bytes:
    response = client.get(f"/api/mlapp/models/{name}/versions/{version}/bundle")
    assert response.status_code == 200, response.content
    assert response["Content-Type"] == "application/zip"
    return b"".join(response.streaming_content)


def _rewrite(data: bytes, change) -> bytes:
    """The bundle with ``change(name, bytes) -> bytes`` applied to every member."""
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as source, zipfile.ZipFile(out, "w") as target:
        for info in source.infolist():
            target.writestr(info.filename, change(info.filename, source.read(info)))
    return out.getvalue()


def _run(tmp_path, data: bytes, inputs, *extra: str, capsys) -> tuple[int, str, str]:
    bundle, body = tmp_path / "b.zip", tmp_path / "in.json"
    bundle.write_bytes(data)
    body.write_text(json.dumps({"inputs": inputs}))
    code = edge_main(["run", str(bundle), str(body), *extra])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_bundle_holds_artifact_and_a_manifest_of_checksums(staff_client):
    digits = register_demo("digits")
    child = derive_version(digits, kind="int8", method="dynamic", samples=samples("digits"))
    response = staff_client.get("/api/mlapp/models/digits/versions/2/bundle")
    data = b"".join(response.streaming_content)
    import hashlib

    assert response["X-Checksum-SHA256"] == hashlib.sha256(data).hexdigest()
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        assert sorted(archive.namelist()) == ["manifest.json", "model.onnx"]
        manifest = json.loads(archive.read("manifest.json"))
        model = archive.read("model.onnx")
    assert (manifest["model"], manifest["version"], manifest["parent"]) == ("digits", 2, 1)
    assert manifest["format"] == "onnx"
    assert manifest["sha256"] == child.sha256 == hashlib.sha256(model).hexdigest()
    assert manifest["files"]["model.onnx"] == {"size": len(model), "sha256": child.sha256}
    assert manifest["handler"]["labels"] == [str(d) for d in range(10)]
    assert manifest["public_signature"]["outputs"][0]["name"] == "label"
    assert manifest["metrics"]["derived"]["kind"] == "int8"


def test_edge_client_answers_as_the_server_does(staff_client, tmp_path, capsys):
    register_demo("digits")
    data = _bundle(staff_client, "digits", 1)
    rows = [s["image"] for s in samples("digits")]
    code, out, err = _run(tmp_path, data, [[r] for r in rows], capsys=capsys)
    assert code == 0, err
    edge = json.loads(out)
    server = mlapp.predict("digits", {"image": [[r] for r in rows]})
    assert edge["outputs"]["label"] == [s["label"] for s in samples("digits")]
    assert edge["outputs"]["label"] == list(server.outputs["label"])
    np.testing.assert_allclose(
        edge["outputs"]["probabilities"], server.outputs["probabilities"], atol=1e-6
    )


def test_one_changed_byte_of_the_model_is_refused(staff_client, tmp_path, capsys):
    register_demo("digits")

    def flip(name: str, body: bytes) -> bytes:
        if name != "model.onnx":
            return body
        return body[:100] + bytes([body[100] ^ 1]) + body[101:]

    data = _rewrite(_bundle(staff_client, "digits", 1), flip)
    code, out, err = _run(tmp_path, data, [[[0.0] * 8] * 8], capsys=capsys)
    assert code == 2
    assert out == ""
    assert "refused: model.onnx does not match its sha256 in the manifest" in err


def test_an_edited_manifest_is_refused(staff_client, tmp_path, capsys, settings):
    register_demo("digits")

    def swap_sha(name: str, body: bytes) -> bytes:
        if name != "manifest.json":
            return body
        manifest = json.loads(body)
        manifest["files"]["model.onnx"]["sha256"] = "0" * 64
        return json.dumps(manifest).encode()

    data = _rewrite(_bundle(staff_client, "digits", 1), swap_sha)
    code, _, err = _run(tmp_path, data, [[[0.0] * 8] * 8], capsys=capsys)
    assert code == 2
    assert "does not match its sha256" in err

    # Signed: an edit that keeps the checksums consistent is caught by the signature.
    settings.MLAPP = {**settings.MLAPP, "BUNDLE_SIGNING_KEY": KEY}
    signed = _bundle(staff_client, "digits", 1)
    code, _, err = _run(tmp_path, signed, [[[0.0] * 8] * 8], "--key", KEY, capsys=capsys)
    assert code == 0, err

    def relabel(name: str, body: bytes) -> bytes:
        if name != "manifest.json":
            return body
        return body.replace(b'"9"', b'"nine"')

    edited = _rewrite(signed, relabel)
    code, _, err = _run(tmp_path, edited, [[[0.0] * 8] * 8], "--key", KEY, capsys=capsys)
    assert code == 2
    assert "The manifest's signature does not match" in err
    code, _, err = _run(tmp_path, signed, [[[0.0] * 8] * 8], "--key", KEY + "x", capsys=capsys)
    assert code == 2
    assert "The manifest's signature does not match" in err


def test_an_unsigned_bundle_is_refused_when_a_key_is_expected(staff_client, tmp_path, capsys):
    register_demo("digits")
    data = _bundle(staff_client, "digits", 1)
    code, _, err = _run(tmp_path, data, [[[0.0] * 8] * 8], "--key", KEY, capsys=capsys)
    assert code == 2
    assert "not signed" in err


def test_bundle_needs_manage_access_and_names_a_missing_version():
    register_demo("digits")
    assert APIClient().get("/api/mlapp/models/digits/versions/1/bundle").status_code in (401, 403)
    staff = APIClient()
    staff.force_authenticate(get_user_model().objects.create_superuser("a", password="pw"))
    missing = staff.get("/api/mlapp/models/digits/versions/7/bundle")
    assert missing.status_code == 404
    assert "no version 7" in missing.json()["error"]


def test_admin_links_the_bundle_from_the_version_page(client):
    digits = register_demo("digits")
    client.force_login(get_user_model().objects.create_superuser("a", password="pw"))
    page = client.get(f"/admin/mlapp/modelversion/{digits.pk}/change/").content.decode()
    assert f'href="/admin/mlapp/modelversion/{digits.pk}/bundle/"' in page
    response = client.get(f"/admin/mlapp/modelversion/{digits.pk}/bundle/")
    assert response["Content-Disposition"] == 'attachment; filename="digits-v1.zip"'
    with zipfile.ZipFile(io.BytesIO(b"".join(response.streaming_content))) as archive:
        assert json.loads(archive.read("manifest.json"))["sha256"] == digits.sha256


@pytest.mark.django_db(transaction=True)
def test_fetch_from_a_live_server_without_django(live_server, tmp_path):
    register_demo("digits")
    user = get_user_model().objects.create_superuser("edge", password="pw")
    token = Token.objects.create(user=user).key
    target = tmp_path / "digits.zip"
    probe = (
        "import runpy, sys\n"
        "sys.argv = ['mlapp.edge', *sys.argv[1:]]\n"
        "try:\n"
        "    runpy.run_module('mlapp.edge', run_name='__main__')\n"
        "except SystemExit as exc:\n"
        "    print('django imported:', 'django' in sys.modules)\n"
        "    raise\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            probe,
            "fetch",
            f"{live_server.url}/api/mlapp",
            "digits",
            "--out",
            str(target),
            "--token",
            token,
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "digits v1 (onnx" in done.stdout
    assert "checksums verified" in done.stdout
    assert "django imported: False" in done.stdout
    assert zipfile.is_zipfile(target)
