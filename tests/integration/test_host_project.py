"""A host project as a new user makes it: the README's integration, applied literally.

The wheel built from this tree goes into a clean virtual environment (nothing downloaded:
the environment sees the test environment's third-party packages through a ``.pth`` line,
but not its editable mlapp), ``django-admin startproject shop`` writes a project, the blocks
of the README's "Adding mlapp to your project" are added at the end of its files and its
``manage.py`` lines are run (migrate, register_model with a model built here, collectstatic,
check --deploy, mlapp_serve with DEBUG = False), then every kind of page mlapp serves is
fetched through the production server: none may answer 500. The README's "Deploying your
project" is followed too: its settings block, its commands, a Celery worker started with
``mlapp_worker`` (the project has no Celery app of its own) on a real Redis broker, and a
batch job submitted over the API run by that worker.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from http.cookiejar import CookieJar
from pathlib import Path

import numpy as np
import pytest

from tests import artifacts
from tests.integration.readme import DEPLOY, integration

ROOT = Path(__file__).resolve().parents[2]
PASSWORD = "integration-test-password"
ON_POSTGRES = os.environ.get("MLAPP_TEST_DB") == "postgres"
#: The deployment's broker: a Redis database of its own, emptied first.
#: (one per pass: the two passes of make test run at once)
BROKER_URL = os.environ.get(
    "MLAPP_TEST_HOST_BROKER_URL", f"redis://127.0.0.1:6379/{11 if ON_POSTGRES else 10}"
)
CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}
pytestmark = [pytest.mark.slow, pytest.mark.every_database]


def _run(args: list[str], cwd: Path, env: dict[str, str], timeout: float = 180) -> str:
    done = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    output = done.stdout + done.stderr
    assert done.returncode == 0, f"{' '.join(args)} exited {done.returncode}:\n{output[-4000:]}"
    return output


def _clean_env(venv: Path) -> dict[str, str]:
    """The environment of a shell in the new venv: none of the test run's settings."""
    keep = {"HOME", "LANG", "LC_ALL", "TMPDIR", "CI", "PGHOST", "PGPORT", "PGUSER"}
    env = {k: v for k, v in os.environ.items() if k in keep}
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}"
    env["VIRTUAL_ENV"] = str(venv)
    return env


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel, built (as ``make wheel`` does) from a copy of the package's sources."""
    src = tmp_path_factory.mktemp("src")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, src / name)
    shutil.copytree(
        ROOT / "mlapp", src / "mlapp", ignore=shutil.ignore_patterns("__pycache__", "*.pyc")
    )
    dist = tmp_path_factory.mktemp("dist")
    _run(
        [sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(dist), "."],
        cwd=src,
        env={**os.environ},
    )
    (built,) = dist.glob("mlapp-*.whl")
    _run(
        [sys.executable, str(ROOT / ".ci/check_wheel.py"), str(built)], cwd=ROOT, env={**os.environ}
    )
    return built


@pytest.fixture(scope="module")
def venv(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A new virtual environment with the wheel installed, offline."""
    venv = tmp_path_factory.mktemp("venv")
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)], cwd=venv, env={**os.environ})
    python = venv / "bin" / "python"
    site = Path(
        _run(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            cwd=venv,
            env=_clean_env(venv),
        ).strip()
    )
    # Third-party packages (Django, torch, pip ...) from the test environment; its .pth files,
    # the editable install of mlapp among them, are not processed from an added folder.
    (site / "_host_packages.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    env = _clean_env(venv)
    _run(
        [
            str(python),
            "-m",
            "pip",
            "install",
            "--no-deps",
            "--no-index",
            "--ignore-installed",
            "--disable-pip-version-check",
            "--quiet",
            str(wheel),
        ],
        cwd=venv,
        env=env,
    )
    where = _run([str(python), "-c", "import mlapp; print(mlapp.__file__)"], cwd=venv, env=env)
    assert Path(where.strip()) == site / "mlapp" / "__init__.py", where
    return venv


def _pg(**kwargs: str) -> dict[str, str]:
    return {
        "host": os.environ.get("PGHOST", "127.0.0.1"),
        "port": os.environ.get("PGPORT", "5432"),
        "user": os.environ.get("PGUSER", "postgres"),
        **kwargs,
    }


@pytest.fixture(scope="module")
def database() -> Iterator[str]:
    """The host's database: SQLite (startproject's), or a new PostgreSQL database in the
    PostgreSQL pass, as a host project on PostgreSQL has."""
    if not ON_POSTGRES:
        yield ""
        return
    import psycopg

    name = f"mlapp_host_{os.getpid()}"
    with psycopg.connect(**_pg(dbname="postgres"), autocommit=True) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{name}"')
        connection.execute(f'CREATE DATABASE "{name}"')
    settings = _pg(NAME=name)
    yield (
        "\nDATABASES = {'default': {'ENGINE': 'django.db.backends.postgresql', "
        f"'NAME': {name!r}, 'HOST': {settings['host']!r}, 'PORT': {settings['port']!r}, "
        f"'USER': {settings['user']!r}}}}}\n"
    )
    with psycopg.connect(**_pg(dbname="postgres"), autocommit=True) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="module")
def broker() -> str:
    """The Redis database the deployment's broker uses, emptied; a missing Redis fails under
    CI=true and skips with the reason elsewhere."""
    import redis

    client = redis.Redis.from_url(BROKER_URL, socket_connect_timeout=1)
    try:
        client.flushdb()
    except redis.RedisError as exc:
        message = f"Redis is not reachable at {BROKER_URL}: {exc}"
        if CI:
            pytest.fail(f"{message}; CI=true requires it.")
        pytest.skip(message)
    finally:
        client.close()
    return BROKER_URL


@pytest.fixture(scope="module")
def shop(venv: Path, database: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``django-admin startproject shop``, then the README's blocks at the end of its files."""
    home = tmp_path_factory.mktemp("host")
    env = _clean_env(venv)
    _run([str(venv / "bin" / "python"), "-m", "django", "startproject", "shop"], cwd=home, env=env)
    project = home / "shop"
    readme, deploy = integration(), integration(title=DEPLOY)
    assert set(readme.files) == {"settings.py", "urls.py", "wsgi.py"}, readme.files
    for section in (readme, deploy):
        for name, blocks in section.files.items():
            path = project / "shop" / name
            path.write_text(path.read_text() + "".join(f"\n{block}" for block in blocks))
    # What a deployment sets itself (not mlapp's business): no debug pages, the host it serves.
    settings = project / "shop" / "settings.py"
    settings.write_text(
        settings.read_text()
        + '\nDEBUG = False\nALLOWED_HOSTS = ["127.0.0.1", "localhost"]\n'
        + database
    )
    return project


@pytest.fixture(scope="module")
def served(
    shop: Path, venv: Path, broker: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """The README's manage.py lines, in order (the integration's, then the deployment's);
    the worker starts, and the last line serves, on a free port."""
    env = {**_clean_env(venv), "CELERY_BROKER_URL": broker}
    python = str(venv / "bin" / "python")
    model = artifacts.onnx(tmp_path_factory.mktemp("export") / "model.onnx")
    commands = integration().commands
    *steps, serve = commands
    assert serve[0] == "mlapp_serve", commands
    *deploy_steps, work, deploy_serve = integration(title=DEPLOY).commands
    assert (work[0], deploy_serve[0]) == ("mlapp_worker", "mlapp_serve")
    outputs = {}
    for step in [*steps, *deploy_steps]:
        step = [str(model) if arg.endswith((".onnx", ".pt", ".pt2")) else arg for arg in step]
        outputs[step[0]] = _run([python, "manage.py", *step], cwd=shop, env=env)
    assert "mlapp." not in outputs["check"], outputs["check"]  # no mlapp error nor warning
    _run(
        [
            python,
            "manage.py",
            "createsuperuser",
            "--noinput",
            "--username",
            "admin",
            "--email",
            "admin@example.com",
        ],
        cwd=shop,
        env={**env, "DJANGO_SUPERUSER_PASSWORD": PASSWORD},
    )
    # docs/batch.md's token command exists (rest_framework.authtoken, from the README).
    token = _run([python, "manage.py", "drf_create_token", "admin"], cwd=shop, env=env)
    assert re.search(r"\b[0-9a-f]{40}\b", token), token

    worker_log = (shop / "worker.log").open("w")
    worker = subprocess.Popen(
        [python, "manage.py", *work, "--concurrency", "1"],
        cwd=shop,
        env=env,
        stdout=worker_log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    port = _free_port()
    serve = [arg if arg != "8000" else str(port) for arg in serve]
    log = (shop / "serve.log").open("w")
    server = subprocess.Popen(
        [python, "manage.py", *serve, "--workers", "1"],
        cwd=shop,
        env={**env, "MLAPP_THREADS": "1"},
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert server.poll() is None, (shop / "serve.log").read_text()[-4000:]
            try:
                with urllib.request.urlopen(f"{base}/v2/health/live", timeout=2):
                    break
            except OSError:
                assert time.monotonic() < deadline, (shop / "serve.log").read_text()[-4000:]
                time.sleep(0.3)
        yield base
    finally:
        for process in (server, worker):
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        log.close()
        worker_log.close()


class Browser:
    """urllib with cookies; every answer's status is recorded, and none may be a 500."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(CookieJar()))
        self.seen: list[tuple[str, int]] = []

    def request(
        self, path: str, data: bytes | None = None, headers: dict[str, str] | None = None
    ) -> tuple[int, bytes, dict[str, str]]:
        url = path if path.startswith("http") else self.base + path
        request = urllib.request.Request(url, data=data, headers=headers or {})
        try:
            with self.opener.open(request, timeout=30) as response:
                status, body, got = response.status, response.read(), dict(response.headers)
        except urllib.error.HTTPError as exc:
            status, body, got = exc.code, exc.read(), dict(exc.headers)
        self.seen.append((path, status))
        assert status < 500, f"{path}: {status}\n{body[:2000]!r}"
        return status, body, got

    def ok(self, path: str, **kwargs) -> bytes:
        status, body, _ = self.request(path, **kwargs)
        assert status == 200, f"{path}: {status}\n{body[:2000]!r}"
        return body

    def assets(self, html: bytes, page: str) -> list[str]:
        """Every local script, stylesheet and image a page references answers 200."""
        refs = re.findall(rb'(?:src|href)="(/[^"]+\.(?:js|css|png|svg|ico))"', html)
        refs += re.findall(rb'["\'](/static/[^"\']+\.(?:js|css))["\']', html)
        found = sorted({ref.decode() for ref in refs})
        for ref in found:
            self.ok(ref)
        return found


@pytest.fixture(scope="module")
def browser(served: str) -> Browser:
    return Browser(served)


def _json(body: bytes) -> dict:
    return json.loads(body)


def test_the_wheel_ships_the_templates_and_static_files(wheel: Path):
    import zipfile

    names = set(zipfile.ZipFile(wheel).namelist())
    assert "mlapp/site_urls.py" in names
    assert "mlapp/templates/mlapp/api/redoc.html" in names


def test_the_host_runs_on_this_pass_database(served: str, shop: Path, venv: Path):
    code = (
        "from django.db import connection; from mlapp.models import ModelVersion; "
        "print(connection.vendor, ModelVersion.objects.filter(stage='production').count())"
    )
    out = _run(
        [str(venv / "bin" / "python"), "manage.py", "shell", "-c", code],
        cwd=shop,
        env=_clean_env(venv),
    )
    assert out.split()[-2:] == ["postgresql" if ON_POSTGRES else "sqlite", "1"], out


def test_v2_health_and_infer(browser: Browser):
    browser.ok("/v2/health/live")
    assert _json(browser.ok("/v2/health/ready"))["ready"] is True
    x = np.array([[1.0, 2.0, 3.0], [0.5, -1.0, 2.0]], dtype=np.float32)
    body = browser.ok(
        "/v2/models/my-model/infer",
        data=json.dumps(
            {
                "inputs": [
                    {"name": "x", "datatype": "FP32", "shape": [2, 3], "data": x.ravel().tolist()}
                ]
            }
        ).encode(),
        headers={"Content-Type": "application/json"},
    )
    (output,) = _json(body)["outputs"]
    got = np.array(output["data"], dtype=np.float32).reshape(output["shape"])
    np.testing.assert_allclose(got, artifacts.expected(x), rtol=1e-5)


def test_native_predict(browser: Browser):
    x = np.array([[1.0, 2.0, 3.0]], dtype=np.float32)
    body = browser.ok(
        "/api/mlapp/models/my-model/predict",
        data=json.dumps({"inputs": x.tolist()}).encode(),
        headers={"Content-Type": "application/json"},
    )
    answer = _json(body)
    assert answer["model"] == "my-model"
    assert answer["version"] == 1
    np.testing.assert_allclose(answer["outputs"]["y"], artifacts.expected(x), rtol=1e-5)


def test_browsable_api_pages_with_their_assets(browser: Browser):
    for page in ("/api/mlapp/", "/api/mlapp/models/", "/api/mlapp/models/my-model/versions/"):
        html = browser.ok(page, headers={"Accept": "text/html"})
        assert b"<html" in html
        assert browser.assets(html, page), page  # DRF's CSS and JS, from STATIC_ROOT
    # The filter form of a list (django-filter's template).
    assert b'name="stage"' in browser.ok(
        "/api/mlapp/models/my-model/versions/", headers={"Accept": "text/html"}
    )


def test_schema_swagger_and_redoc_with_their_assets(browser: Browser):
    schema = _json(browser.ok("/api/mlapp/schema/?format=json"))
    assert schema["openapi"].startswith("3.")
    assert "/api/mlapp/models/{name}/predict" in schema["paths"]
    for page in ("/api/mlapp/schema/swagger/", "/api/mlapp/schema/redoc/"):
        html = browser.ok(page)
        found = browser.assets(html, page)
        assert any("drf_spectacular_sidecar" in ref and ref.endswith(".js") for ref in found), (
            page,
            found,
        )


def test_admin_login_and_changelist_as_superuser(browser: Browser):
    html = browser.ok("/admin/login/")
    browser.assets(html, "/admin/login/")
    (csrf,) = re.findall(rb'name="csrfmiddlewaretoken" value="([^"]+)"', html)
    form = urllib.parse.urlencode(
        {
            "csrfmiddlewaretoken": csrf.decode(),
            "username": "admin",
            "password": PASSWORD,
            "next": "/admin/",
        }
    ).encode()
    page = browser.ok(
        "/admin/login/?next=/admin/",
        data=form,
        headers={
            "Referer": browser.base + "/admin/login/",
            "Content-Type": "application/x-www-form-urlencoded",
        },
    )
    assert b"Log out" in page or b"logout" in page
    for path in ("/admin/mlapp/mlmodel/", "/admin/mlapp/modelversion/"):
        html = browser.ok(path)
        assert b"my-model" in html, path
        browser.assets(html, path)  # the admin's CSS with DEBUG = False


def test_metrics_count_the_requests(browser: Browser):
    browser.ok(
        "/api/mlapp/models/my-model/predict",
        data=b'{"inputs": [[1, 2, 3]]}',
        headers={"Content-Type": "application/json"},
    )
    text = browser.ok("/metrics").decode()
    assert re.search(r'^mlapp_\w+\{[^}]*model="my-model"', text, re.MULTILINE), text[:2000]


def _multipart(fields: dict[str, str], name: str, filename: str, content: bytes):
    boundary = "mlapp-integration-boundary"
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="{key}"\r\n\r\n{value}\r\n'.encode()
        for key, value in fields.items()
    ]
    parts.append(
        f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; '
        f'filename="{filename}"\r\nContent-Type: text/csv\r\n\r\n'.encode()
        + content
        + b"\r\n"
    )
    body = b"".join(parts) + f"--{boundary}--\r\n".encode()
    return body, {"Content-Type": f"multipart/form-data; boundary={boundary}"}


def test_a_batch_job_runs_on_the_celery_worker(browser: Browser, shop: Path, venv: Path):
    token = _run(
        [str(venv / "bin" / "python"), "manage.py", "drf_create_token", "admin"],
        cwd=shop,
        env=_clean_env(venv),
    )
    (key,) = re.findall(r"\b[0-9a-f]{40}\b", token)
    auth = {"Authorization": f"Token {key}"}
    rows = np.array([[1.0, 2.0, 3.0], [0.5, -1.0, 2.0], [4.0, 0.0, -2.0]], dtype=np.float32)
    csv = "key,a,b,c\n" + "".join(
        f"row-{i},{a},{b},{c}\n" for i, (a, b, c) in enumerate(rows.tolist())
    )
    body, headers = _multipart({"model": "my-model"}, "file", "rows.csv", csv.encode())
    client = Browser(browser.base)  # a service: a token, no session cookie (no CSRF then)
    status, answer, _ = client.request("/api/mlapp/jobs/", data=body, headers={**headers, **auth})
    assert status == 201, answer
    job = _json(answer)
    deadline = time.monotonic() + 90
    while job["status"] not in {"succeeded", "failed", "cancelled"}:
        assert time.monotonic() < deadline, (job, (shop / "worker.log").read_text()[-3000:])
        time.sleep(0.5)
        job = _json(client.ok(f"/api/mlapp/jobs/{job['id']}/", headers=auth))
    assert (job["status"], job["done"], job["failed"]) == ("succeeded", 3, 0), job
    for i, x in enumerate(rows):
        stored = _json(client.ok(f"/api/mlapp/models/my-model/predictions/row-{i}"))
        np.testing.assert_allclose(stored["outputs"]["y"], artifacts.expected(x[None]), rtol=1e-5)
    # The worker, not a thread of the server, ran the chunk.
    assert "mlapp.run_batch_chunk" in (shop / "worker.log").read_text()


def test_nothing_answered_500(browser: Browser):
    assert browser.seen
    assert all(status < 500 for _, status in browser.seen)
