"""Shared fixtures; PostgreSQL pass handling (skip locally, fail under CI=true)."""

from __future__ import annotations

import gc
import os
import socket
from pathlib import Path

import pytest

from tests import artifacts
from tests.reliability import LEDGER, Ledger

CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}
ON_POSTGRES = os.environ.get("MLAPP_TEST_DB") == "postgres"


def _reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if ON_POSTGRES:
        host, port = os.environ.get("PGHOST", "127.0.0.1"), int(os.environ.get("PGPORT", "5432"))
        if not _reachable(host, port):
            message = f"PostgreSQL is not reachable at {host}:{port}"
            if CI:
                raise pytest.UsageError(f"{message}; CI=true requires it.")
            skip = pytest.mark.skip(reason=f"{message} (start it to run the PostgreSQL pass)")
            for item in items:
                item.add_marker(skip)
        return
    skip_pg = pytest.mark.skip(reason="needs PostgreSQL: runs in the PostgreSQL pass of make test")
    for item in items:
        if "postgres" in item.keywords:
            item.add_marker(skip_pg)


@pytest.fixture(scope="session")
def reliability() -> Ledger:
    """What the fuzz and fault tests tried, printed as a table at the end of the run."""
    return LEDGER


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:
    if LEDGER.rows:
        terminalreporter.section("reliability (the README's table)")
        for line in LEDGER.table():
            terminalreporter.write_line(line)


@pytest.fixture(autouse=True)
def _clean_registry():
    """Every test starts and ends with an empty registry in this process."""
    from mlapp.serving.registry import registry

    registry.clear()
    yield
    registry.clear()
    # load_models() freezes the heap for copy-on-write; let tests collect garbage again.
    gc.unfreeze()


@pytest.fixture(scope="session")
def artifact_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("artifacts")


@pytest.fixture(scope="session")
def torchscript_file(artifact_dir: Path) -> Path:
    return artifacts.torchscript(artifact_dir / "affine.pt")


@pytest.fixture(scope="session")
def torch_export_file(artifact_dir: Path) -> Path:
    return artifacts.torch_export(artifact_dir / "affine.pt2")


@pytest.fixture(scope="session")
def onnx_file(artifact_dir: Path) -> Path:
    return artifacts.onnx(artifact_dir / "affine.onnx")
