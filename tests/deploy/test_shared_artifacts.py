"""Artifacts in S3-compatible object storage (django-storages' S3 back end), shared by nodes
that share nothing else but the database: against a real S3 server (moto's, started here on a
local port), node A registers a version; node B, a web server (``mlapp_serve``) whose
MEDIA_ROOT is another, empty folder, loads it from the bucket, verifies its sha256 and serves
it; takes an upload over the API, streams an artifact back with its checksum; a tampered
object is refused by ``check --deploy``; the admin's delete removes the object. Neither
MEDIA_ROOT ever receives a file. Runs in the PostgreSQL pass, the nodes sharing a
PostgreSQL database of their own (``MLAPP_TEST_DB_NAME`` + ``_s3``, dropped and created)."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import boto3
import moto.server as moto_server
import pytest
from django.conf import settings

from bench.scaleout import fresh_database

ROOT = Path(settings.BASE_DIR)
#: Nodes sharing nothing but the database are a PostgreSQL deployment: its pass runs this.
pytestmark = [pytest.mark.slow, pytest.mark.postgres]
#: In the PostgreSQL pass the nodes share a PostgreSQL database, else a SQLite file.
ON_POSTGRES = os.environ.get("MLAPP_TEST_DB") == "postgres"
DATABASE = os.environ.get("MLAPP_TEST_DB_NAME", "test_mlapp") + "_s3"
S3_PORT = 18610
WEB_PORT = 18611
BUCKET = "mlapp-artifacts"
INFER = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 3], "data": [1, 2, 3]}]}
STAFF_TOKEN = (
    "from django.contrib.auth.models import User; "
    "from rest_framework.authtoken.models import Token; "
    "u = User.objects.create_superuser('ops', 'ops@example.com', 'pw'); "
    "print(Token.objects.create(user=u).key)"
)
ADMIN_DELETE = (
    "from django.test import Client; from django.contrib.auth.models import User; "
    "from mlapp.models import ModelVersion; "
    "c = Client(HTTP_HOST='localhost'); c.force_login(User.objects.get(username='ops')); "
    "v = ModelVersion.objects.get(model__name='affine', version=1); "
    "r = c.post(f'/admin/mlapp/modelversion/{v.pk}/delete/', {'post': 'yes'}); "
    "print(r.status_code, ModelVersion.objects.filter(pk=v.pk).exists())"
)


@pytest.fixture(scope="module")
def s3() -> Iterator:
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=S3_PORT, verbose=False)
    server.start()
    # moto keeps its buckets in this process, across servers: start from none.
    reset = f"http://127.0.0.1:{S3_PORT}/moto-api/reset"
    urllib.request.urlopen(urllib.request.Request(reset, method="POST"), timeout=10).close()
    client = boto3.client(
        "s3",
        endpoint_url=f"http://127.0.0.1:{S3_PORT}",
        region_name="us-east-1",
        aws_access_key_id="test",
        aws_secret_access_key="test",
    )
    client.create_bucket(Bucket=BUCKET)
    yield client
    server.stop()


def _objects(s3) -> dict[str, bytes]:
    listed = s3.list_objects_v2(Bucket=BUCKET).get("Contents", [])
    return {o["Key"]: s3.get_object(Bucket=BUCKET, Key=o["Key"])["Body"].read() for o in listed}


def _files(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.is_file()] if folder.exists() else []


class Node:
    """A process environment of the example project: shared database, own MEDIA_ROOT."""

    def __init__(self, tmp: Path, name: str) -> None:
        self.media = tmp / f"media-{name}"
        self.env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(
                ("MLAPP_", "DJANGO_", "WEB_", "GRPC_", "PROMETHEUS_", "CELERY_", "AWS_")
            )
            and k != "PGDATABASE"
        }
        self.env.update(
            DJANGO_SETTINGS_MODULE="project.settings",
            DJANGO_DEBUG="0",
            MLAPP_VAR_DIR=str(tmp / "var"),
            **({"MLAPP_DB": "postgres", "PGDATABASE": DATABASE} if ON_POSTGRES else {}),
            DJANGO_MEDIA_ROOT=str(self.media),
            DJANGO_STATIC_ROOT=str(tmp / "static"),
            MLAPP_S3_BUCKET=BUCKET,
            MLAPP_S3_ENDPOINT_URL=f"http://127.0.0.1:{S3_PORT}",
            MLAPP_S3_REGION="us-east-1",
            AWS_ACCESS_KEY_ID="test",
            AWS_SECRET_ACCESS_KEY="test",
            MLAPP_THREADS="1",
            WEB_WORKERS="1",
        )

    def manage(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        done = subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=ROOT, env=self.env, capture_output=True, text=True, timeout=180,
        )  # fmt: skip
        if check:
            assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
        return done


def _get(path: str, token: str | None = None, body: bytes | None = None, headers=None):
    request = urllib.request.Request(
        f"http://127.0.0.1:{WEB_PORT}{path}", data=body, headers=dict(headers or {})
    )
    if token:
        request.add_header("Authorization", f"Token {token}")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.headers, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.headers, error.read()


def _multipart(fields: dict[str, str], filename: str, content: bytes) -> tuple[bytes, dict]:
    boundary = "mlapp-s3-boundary"
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode()
        for k, v in fields.items()
    ]
    parts.append(
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{filename}"'
        "\r\nContent-Type: application/octet-stream\r\n\r\n".encode()
        + content
        + b"\r\n"
    )
    body = b"".join(parts) + f"--{boundary}--\r\n".encode()
    return body, {"Content-Type": f"multipart/form-data; boundary={boundary}"}


STORED = (
    "import json; from mlapp.models import ModelVersion; "
    "print(json.dumps(list(ModelVersion.objects.order_by('version')"
    ".values_list('version', 'artifact', 'sha256'))))"
)


def _stored(node: Node) -> list[tuple[int, str, str]]:
    """(version, artifact name, sha256) of every version, read by ``node``."""
    return [tuple(row) for row in json.loads(node.manage("shell", "-v", "0", "-c", STORED).stdout)]


def test_a_node_that_never_saw_the_upload_serves_it_from_object_storage(s3, onnx_file, tmp_path):
    node_a, node_b = Node(tmp_path, "a"), Node(tmp_path, "b")
    if ON_POSTGRES:
        fresh_database(DATABASE)
    node_a.manage("migrate", "--noinput", "-v0")
    node_a.manage("register_model", "affine", str(onnx_file), "--promote")

    # The artifact is an object of the bucket, with the recorded sha256; no local file.
    ((version, name, sha256),) = _stored(node_a)
    objects = _objects(s3)
    assert list(objects) == [name]
    assert hashlib.sha256(objects[name]).hexdigest() == sha256 == _sha256(onnx_file)
    assert _files(node_a.media) == []

    token = node_b.manage("shell", "-v", "0", "-c", STAFF_TOKEN).stdout.strip()
    log = tmp_path / "web-b.log"
    with log.open("wb") as out:
        web = subprocess.Popen(
            [sys.executable, "manage.py", "mlapp_serve", "--port", str(WEB_PORT)],
            cwd=ROOT, env=node_b.env, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
    try:
        _wait_ready(web, log)
        # Loaded from the bucket at startup (sha256 verified), and serving.
        status, _, body = _get(
            "/v2/models/affine/infer", body=json.dumps(INFER).encode(),
            headers={"Content-Type": "application/json"},
        )  # fmt: skip
        assert status == 200, body
        assert json.loads(body)["outputs"][0]["data"] == pytest.approx([14.5, 1.5])

        # Streamed back from the bucket with its checksum.
        status, headers, body = _get(f"/api/mlapp/models/affine/versions/{version}/artifact", token)
        assert status == 200, body[:500]
        assert headers["X-Checksum-SHA256"] == hashlib.sha256(body).hexdigest() == sha256

        # An upload through node B goes to the bucket too.
        body, headers = _multipart({}, "affine.onnx", onnx_file.read_bytes())
        status, _, answer = _get("/api/mlapp/models/affine/versions/", token, body, headers)
        assert status == 201, answer[:2000]
        promote = "/api/mlapp/models/affine/versions/2/promote"
        status, _, answer = _get(promote, token, b"", {"Content-Type": "application/json"})
        assert status == 200, answer[:2000]
    finally:
        os.killpg(web.pid, signal.SIGTERM)
        web.wait(timeout=60)
    names = [row[1] for row in _stored(node_b)]
    assert sorted(_objects(s3)) == sorted(names)
    assert len(set(names)) == 2

    # A changed object is refused, by any node: check --deploy reads the bucket.
    original = _objects(s3)[names[1]]
    s3.put_object(Bucket=BUCKET, Key=names[1], Body=original[:-1] + b"\0")
    done = node_a.manage("check", "--deploy", "--fail-level", "ERROR", check=False)
    assert done.returncode != 0
    assert "sha256" in done.stderr + done.stdout
    s3.put_object(Bucket=BUCKET, Key=names[1], Body=original)
    node_a.manage("check", "--deploy", "--fail-level", "ERROR", "--tag", "database")

    # The admin's delete of the archived version removes its object from the bucket.
    answer = node_a.manage("shell", "-v", "0", "-c", ADMIN_DELETE).stdout.split()
    assert answer == ["302", "False"]
    assert list(_objects(s3)) == [names[1]]
    assert _files(node_a.media) == _files(node_b.media) == []


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _wait_ready(web: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and web.poll() is None:
        try:
            if _get("/v2/health/ready")[0] == 200:
                return
        except OSError:
            pass
        time.sleep(0.3)
    raise AssertionError(f"node B did not get ready:\n{log.read_text()[-3000:]}")
