"""Runtimes that report, from inside the validation sandbox, what an artifact could reach."""

from __future__ import annotations

import json
import os
import resource
import socket

from mlapp.exceptions import ArtifactError
from mlapp.runtimes.base import Runtime


class ProbeRuntime(Runtime):
    """Refuses every artifact with a JSON description of the process it was loaded in."""

    format = "onnx"

    def load(self, path: str, device: str = "cpu") -> None:
        try:
            socket.create_connection(("127.0.0.1", 5432), timeout=2).close()
            network = "reachable"
        except OSError as exc:
            network = f"unreachable: {exc}"
        seen = {
            "environ": dict(os.environ),
            "cwd": os.getcwd(),
            "path": path,
            "neighbours": sorted(os.listdir(os.path.dirname(path))),
            "address_space": resource.getrlimit(resource.RLIMIT_AS)[0],
            "core": resource.getrlimit(resource.RLIMIT_CORE)[0],
            "database": network,
        }
        raise ArtifactError("PROBE " + json.dumps(seen))


class SleepingRuntime(Runtime):
    """Loads nothing, and never returns: what an artifact that hangs its loader does."""

    format = "onnx"

    def load(self, path: str, device: str = "cpu") -> None:
        while True:
            pass
