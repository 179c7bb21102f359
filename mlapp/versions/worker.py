"""The contained process that loads an uploaded artifact and runs a sample prediction.

``python -m mlapp.versions.worker`` reads one JSON request line on standard input (written by
:mod:`mlapp.versions.sandbox`) and writes one JSON line on standard output: ``{"report": {...}}``
or ``{"error": "...", "error_class": "..."}``. A request with ``"handler": true`` has one
exchange before that: once the artifact is loaded and its signature settled, the worker writes
``{"signature": {...}}`` and reads one more line, ``{"inputs_file": NAME}`` (the handler's
tensors, written by the parent in the scratch folder as :func:`~mlapp.versions.inspection.
encode_arrays` JSON) or ``{"stop": REASON}``; it runs the artifact on those tensors and adds
the outputs to its report. A request with ``"derive"`` derives a version from the artifact
instead (:mod:`mlapp.versions.derive`) and answers ``{"derived": {...}}``. Before it
touches the artifact it limits itself (address space, CPU time, core files, written file
size) and, where the kernel lets it, moves into a network namespace of its own. It imports
no Django. Whatever the artifact prints goes to standard error, so stray output cannot garble
the answer.
"""

from __future__ import annotations

import ctypes
import json
import os
import resource
import sys
from typing import Any

import numpy as np

from mlapp.runtimes.tensors import Signature

_CLONE_NEWNET = 0x40000000
_CLONE_NEWUSER = 0x10000000


def apply_limits(limits: dict[str, Any]) -> dict[str, Any]:
    """Limit this process before it reads anything untrusted; what was applied."""
    from mlapp.versions.sandbox import MAX_WRITTEN_FILE

    memory = int(limits["memory"])
    resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
    cpu = int(limits["cpu_seconds"])
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    resource.setrlimit(resource.RLIMIT_FSIZE, (MAX_WRITTEN_FILE, MAX_WRITTEN_FILE))
    return {"memory": memory, "cpu_seconds": cpu, "network": _leave_network()}


def _leave_network() -> str:
    """Enter a new network namespace (no interfaces but a down loopback) if allowed."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
    except OSError:
        return "shared"
    for flags in (_CLONE_NEWNET, _CLONE_NEWUSER | _CLONE_NEWNET):
        if libc.unshare(flags) == 0:
            return "isolated"
    return "shared"


class StopValidation(Exception):
    """The parent stopped the validation (its handler could not prepare tensors)."""


def exchange_with_parent(answer_fd: int) -> Any:
    """The exchange of a ``"handler": true`` request, over the answer channel and stdin."""

    def exchange(signature: Signature) -> dict[str, np.ndarray]:
        from mlapp.versions.inspection import decode_arrays

        os.write(answer_fd, ("\n" + json.dumps({"signature": signature.to_dict()}) + "\n").encode())
        reply = json.loads(sys.stdin.buffer.readline() or b"{}")
        name = reply.get("inputs_file") if isinstance(reply, dict) else None
        if not isinstance(name, str) or os.path.basename(name) != name:
            raise StopValidation(str(reply.get("stop", "no tensors")) if reply else "no reply")
        with open(name, encoding="utf-8") as source:
            return decode_arrays(json.load(source))

    return exchange


def main() -> int:
    request = json.loads(sys.stdin.buffer.readline())
    # Keep the real standard output for the answer; route everything else (Python prints
    # and native libraries writing to fd 1) to standard error.
    answer_fd = os.dup(1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr

    applied = apply_limits(request["limits"]) if request.get("limits") else {}
    from mlapp.versions.inspection import run_validation_request
    from mlapp.versions.sandbox import mentions_out_of_memory, out_of_memory_answer

    memory = int(applied.get("memory", 0))
    try:
        if request.get("derive"):
            from mlapp.versions.derive import run_derive_request

            answer = run_derive_request(request)
        else:
            answer = run_validation_request(request, exchange_with_parent(answer_fd))
    except StopValidation as exc:
        answer = {"error": f"Stopped by the parent: {exc}", "stopped": True}
    except MemoryError:
        answer = out_of_memory_answer(memory)
    if memory and "error" in answer and mentions_out_of_memory(str(answer["error"])):
        answer = out_of_memory_answer(memory, str(answer["error"]))
    answer["sandbox"] = applied
    with os.fdopen(answer_fd, "w", encoding="utf-8") as out:
        out.write("\n" + json.dumps(answer) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
