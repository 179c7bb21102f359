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


#: Fixtures through which a test reaches the test database (directly or below its own).
DATABASE_FIXTURES = {
    "db",
    "transactional_db",
    "django_db_reset_sequences",
    "django_db_serialized_rollback",
    "django_db_setup",
    "live_server",
}


def touches_database(item: pytest.Item) -> bool:
    """Whether the result of ``item`` can depend on the database engine: it uses the test
    database (a marker, a fixture, a Django TestCase), or says so (``postgres``,
    ``every_database``: a test that hands the pass's database to processes it starts)."""
    if any(item.get_closest_marker(m) for m in ("django_db", "postgres", "every_database")):
        return True
    if DATABASE_FIXTURES & set(getattr(item, "fixturenames", ())):
        return True
    from django.test import TransactionTestCase

    cls = getattr(item, "cls", None)
    return isinstance(cls, type) and issubclass(cls, TransactionTestCase)


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
        # The PostgreSQL pass runs what the database engine can change; a test that touches
        # no database ran in the SQLite pass already (MLAPP_TEST_EVERYTHING=1 runs it too).
        if os.environ.get("MLAPP_TEST_EVERYTHING") != "1":
            kept = [item for item in items if touches_database(item)]
            dropped = [item for item in items if not touches_database(item)]
            if dropped:
                config.hook.pytest_deselected(items=dropped)
                items[:] = kept
                DESELECTED.append(len(dropped))
        return
    skip_pg = pytest.mark.skip(reason="needs PostgreSQL: runs in the PostgreSQL pass of make test")
    for item in items:
        if "postgres" in item.keywords:
            item.add_marker(skip_pg)


@pytest.fixture(scope="session")
def reliability() -> Ledger:
    """What the fuzz and fault tests tried, printed as a table at the end of the run."""
    return LEDGER


#: How many tests the PostgreSQL pass left to the SQLite pass (they touch no database).
DESELECTED: list[int] = []


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:
    if DESELECTED:
        terminalreporter.write_line(
            f"PostgreSQL pass: {DESELECTED[0]} tests that touch no database were deselected "
            "(they ran in the SQLite pass; MLAPP_TEST_EVERYTHING=1 runs them here too)."
        )
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
