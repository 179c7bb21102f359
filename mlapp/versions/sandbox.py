"""Run an untrusted artifact's load and smoke prediction in a child process that is contained.

Every upload path (the admin, the native API, ``manage.py register_model``, the Python API)
inspects an artifact here, through :func:`mlapp.versions.validation.validate_artifact`:

- a fresh interpreter (``python -m mlapp.versions.worker``), never a fork of the web worker, so
  nothing of the server's memory (secret key, database connections) is in it;
- an environment of its own: ``PATH``, ``PYTHONPATH`` (to import the runtimes), a locale, and
  a scratch folder as ``HOME``, ``TMPDIR`` and working directory. No ``DJANGO_SETTINGS_MODULE``,
  no database URL, no secret inherited;
- the artifact is linked (or copied) alone into that scratch folder and loaded from there, so
  a file it names beside itself (ONNX external data) resolves to nothing;
- limits the worker sets on itself before it reads the artifact: address space
  (``MLAPP["VALIDATION_MEMORY"]``), CPU seconds, no core files, a cap on the size of files it
  writes, and, where the kernel allows it, a network namespace of its own (no network);
- a wall-clock limit (``MLAPP["VALIDATION_TIMEOUT"]``) after which the whole process group is
  killed.

The web request that uploads waits for the answer: a bounded synchronous wait, at most the
time limit, after which the upload is refused with the reason. No Django here.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from typing import Any

from mlapp.exceptions import ArtifactError

#: Longest error text taken from a validation process's output.
MAX_ERROR_CHARS = 600
#: Largest file the worker may write (RLIMIT_FSIZE): enough for a runtime's caches, not a
#: disk filled by an artifact.
MAX_WRITTEN_FILE = 256 * 1024**2
_SUFFIX = {"onnx": ".onnx", "torchscript": ".pt", "torch_export": ".pt2"}


def run(request: dict[str, Any], artifact: str, *, timeout: float, memory: int) -> dict[str, Any]:
    """Inspect ``artifact`` in a contained worker; its answer (``report`` or ``error``).

    ``request`` is what :func:`mlapp.versions.inspection.run_validation_request` reads; the
    artifact's path and the limits are added here. ``ArtifactError`` when the worker was
    killed, crashed or timed out.
    """
    scratch = tempfile.mkdtemp(prefix="mlapp-sandbox-")
    try:
        local = os.path.join(scratch, "artifact" + _SUFFIX.get(str(request.get("format")), ""))
        _place(artifact, local)
        request = {
            **request,
            "path": local,
            "limits": {"memory": memory, "cpu_seconds": int(timeout) + 5},
        }
        return _spawn(request, scratch, timeout=timeout, memory=memory)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _place(source: str, target: str) -> None:
    try:
        os.link(source, target)
    except OSError:
        shutil.copyfile(source, target)
    os.chmod(target, 0o400)


def child_environment(scratch: str) -> dict[str, str]:
    """The worker's whole environment: nothing inherited beyond what it needs to start."""
    return {
        "PATH": os.environ.get("PATH", os.defpath),
        # The worker imports mlapp and the configured runtimes as this process does.
        "PYTHONPATH": os.pathsep.join(p for p in sys.path if p),
        "HOME": scratch,
        "TMPDIR": scratch,
        "LANG": "C.UTF-8",
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONHASHSEED": "0",
    }


def _spawn(request: dict[str, Any], scratch: str, *, timeout: float, memory: int) -> dict[str, Any]:
    process = subprocess.Popen(
        [sys.executable, "-m", "mlapp.versions.worker"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=scratch,
        env=child_environment(scratch),
        start_new_session=True,  # its own process group: a time-out kills what it started
        close_fds=True,
    )
    try:
        stdout, stderr = process.communicate(json.dumps(request).encode(), timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill_group(process)
        raise ArtifactError(
            f"Loading the artifact and running a sample prediction took longer than "
            f"{timeout:g} s (MLAPP['VALIDATION_TIMEOUT']); the validation process was stopped."
        ) from None
    finally:
        if process.poll() is None:
            _kill_group(process)
    _kill_group(process)  # anything it left behind in its group
    answer = last_json_line(stdout)
    if answer is not None:
        return answer
    if mentions_out_of_memory(stderr.decode("utf-8", "replace")):
        raise ArtifactError(_memory_refusal(memory))
    raise ArtifactError(
        f"The artifact crashed the validation process ({exit_reason(process.returncode)})"
        f"{tail(stderr)}."
    )


def _kill_group(process: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


#: How allocation failures read in Python, C++, torch and ONNX Runtime errors.
_OUT_OF_MEMORY_SIGNS = (
    "MemoryError",
    "std::bad_alloc",
    "Cannot allocate memory",
    "out of memory",
    "can't allocate memory",
    "Failed to allocate memory",
    "BFCArena",
)


def mentions_out_of_memory(text: str) -> bool:
    return any(sign in text for sign in _OUT_OF_MEMORY_SIGNS)


def _memory_refusal(memory: int) -> str:
    return (
        f"Loading the artifact and running a sample prediction needed more than "
        f"{memory / 1024**3:.1f} GiB of memory (MLAPP['VALIDATION_MEMORY']); the validation "
        "process was stopped."
    )


def out_of_memory_answer(memory: int, detail: str = "") -> dict[str, Any]:
    """The worker's answer when the artifact exhausted its memory limit."""
    message = _memory_refusal(memory) + (f" ({detail[:MAX_ERROR_CHARS]})" if detail else "")
    return {"error": message, "error_class": "ArtifactError"}


def last_json_line(output: bytes) -> dict[str, Any] | None:
    for line in reversed(output.decode("utf-8", "replace").splitlines()):
        try:
            value = json.loads(line)
        except ValueError:
            continue
        if isinstance(value, dict):
            return value
    return None


def exit_reason(code: int | None) -> str:
    if code is None:
        return "still running"
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"


def tail(stderr: bytes) -> str:
    lines = [line for line in stderr.decode("utf-8", "replace").splitlines() if line.strip()]
    return f": {lines[-1][:MAX_ERROR_CHARS]}" if lines else ""
