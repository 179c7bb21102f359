"""The fuzz suite's fixtures, and its tally printed at the end of the run."""

from __future__ import annotations

import pytest

from tests.fuzz import tally
from tests.fuzz.common import register_models


@pytest.fixture
def models(db, onnx_file):
    """The three fuzzed models in production (see :mod:`tests.fuzz.common`)."""
    register_models(onnx_file)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    lines = tally.summary()
    if lines:
        terminalreporter.section("mlapp fuzz")
        for line in lines:
            terminalreporter.write_line(line)
