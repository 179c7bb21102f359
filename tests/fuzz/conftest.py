"""The fuzz suite's fixtures (its tally goes to the reliability ledger: tests/reliability.py)."""

from __future__ import annotations

import pytest

from tests.fuzz.common import register_models


@pytest.fixture
def models(db, onnx_file):
    """The three fuzzed models in production (see :mod:`tests.fuzz.common`)."""
    register_models(onnx_file)
