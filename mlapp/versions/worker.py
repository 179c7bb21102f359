"""The contained process that loads an uploaded artifact and runs a sample prediction.

``python -m mlapp.versions.worker`` reads one JSON request on standard input (written by
:mod:`mlapp.versions.sandbox`) and writes one JSON line on standard output: ``{"report": {...}}``
or ``{"error": "...", "error_class": "..."}``. Before it touches the artifact it limits itself
(address space, CPU time, core files, written file size) and, where the kernel lets it, moves
into a network namespace of its own. It imports no Django. Whatever the artifact prints goes
to standard error, so stray output cannot garble the answer.
"""

from __future__ import annotations

import ctypes
import json
import os
import resource
import sys
from typing import Any

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


def main() -> int:
    request = json.loads(sys.stdin.buffer.read())
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
        answer = run_validation_request(request)
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
