"""The runtimes layer never imports Django (checked in a fresh interpreter)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

MODULES = [
    "mlapp.runtimes",
    "mlapp.runtimes.base",
    "mlapp.runtimes.tensors",
    "mlapp.runtimes.detect",
    "mlapp.runtimes.onnx",
    "mlapp.runtimes.torchscript",
    "mlapp.runtimes.torch_export",
    "mlapp.exceptions",
    # The edge client (python -m mlapp.edge) and the sandbox's derivation code.
    "mlapp.edge.bundle",
    "mlapp.edge.run",
    "mlapp.edge.__main__",
    "mlapp.versions.derive",
]

SCRIPT = """
import importlib, json, sys
for name in sys.argv[1:]:
    importlib.import_module(name)
print(json.dumps(sorted(m for m in sys.modules if m == "django" or m.startswith("django."))))
"""


def django_modules_after_importing(*modules: str) -> list[str]:
    env = {"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT, *modules],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_runtimes_import_without_django():
    assert django_modules_after_importing(*MODULES) == []


@pytest.mark.parametrize("module", MODULES)
def test_each_runtime_module_imports_without_django(module):
    assert django_modules_after_importing(module) == []


def test_the_probe_sees_django_when_it_is_imported():
    # The probe itself must be able to fail.
    assert "django" in django_modules_after_importing("mlapp.conf")
