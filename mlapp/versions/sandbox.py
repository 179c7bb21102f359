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
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from typing import Any

from mlapp.exceptions import ArtifactError

#: Longest error text taken from a validation process's output.
MAX_ERROR_CHARS = 600
#: Largest file the worker may write (RLIMIT_FSIZE): enough for a runtime's caches, not a
#: disk filled by an artifact.
MAX_WRITTEN_FILE = 256 * 1024**2
#: Most standard error kept from a validation process (its tail says why it failed).
MAX_STDERR = 1024**2
#: The file in the scratch folder that carries the handler's tensors to the worker.
HANDLER_INPUTS = "handler-inputs.json"
_SUFFIX = {"onnx": ".onnx", "torchscript": ".pt", "torch_export": ".pt2"}

#: Given the artifact's settled signature (as a dict), the tensors to run it on (encoded by
#: :func:`mlapp.versions.inspection.encode_arrays`). Runs in this process, never the worker.
Respond = Callable[[dict[str, Any]], Mapping[str, Any]]


def run(
    request: dict[str, Any],
    artifact: str,
    *,
    timeout: float,
    memory: int,
    respond: Respond | None = None,
    files: Mapping[str, Any] | None = None,
    output: tuple[str, str] | None = None,
) -> dict[str, Any]:
    """Inspect ``artifact`` in a contained worker; its answer (``report`` or ``error``).

    ``request`` is what :func:`mlapp.versions.inspection.run_validation_request` reads; the
    artifact's path and the limits are added here. With ``respond``, the worker asks for
    tensors once the artifact is loaded (see :mod:`mlapp.versions.worker`): ``respond`` makes
    them here, from the signature, and an exception it raises stops the worker and
    propagates. ``ArtifactError`` when the worker was killed, crashed or timed out.

    ``files`` (name -> a JSON value) are written into the worker's scratch folder before it
    starts; ``output`` = (name, destination): the file of that name the worker left in its
    scratch folder is moved to ``destination`` (a derived artifact) when it answered without
    an error.
    """
    scratch = tempfile.mkdtemp(prefix="mlapp-sandbox-")
    try:
        local = os.path.join(scratch, "artifact" + _SUFFIX.get(str(request.get("format")), ""))
        _place(artifact, local)
        for name, value in (files or {}).items():
            with open(os.path.join(scratch, os.path.basename(name)), "w", encoding="utf-8") as out:
                json.dump(value, out)
        request = {
            **request,
            "path": local,
            "limits": {"memory": memory, "cpu_seconds": int(timeout) + 5},
            "handler": respond is not None,
        }
        answer = _spawn(request, scratch, timeout=timeout, memory=memory, respond=respond)
        if output is not None and "error" not in answer:
            made = os.path.join(scratch, os.path.basename(output[0]))
            if not os.path.isfile(made) or os.path.islink(made):
                raise ArtifactError("The validation process answered without writing its file.")
            shutil.move(made, output[1])
        return answer
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


def _spawn(
    request: dict[str, Any],
    scratch: str,
    *,
    timeout: float,
    memory: int,
    respond: Respond | None = None,
) -> dict[str, Any]:
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
        stdout, stderr = _converse(process, request, scratch, time.monotonic() + timeout, respond)
    except TimeoutError:
        raise ArtifactError(
            f"Loading the artifact and running a sample prediction took longer than "
            f"{timeout:g} s (MLAPP['VALIDATION_TIMEOUT']); the validation process was stopped."
        ) from None
    finally:
        _kill_group(process)  # anything still running, or left behind in its group
        if process.stdin is not None and not process.stdin.closed:
            with contextlib.suppress(BrokenPipeError):
                process.stdin.close()
    answer = last_json_line(stdout)
    if answer is not None and "signature" not in answer:
        return answer
    if mentions_out_of_memory(stderr.decode("utf-8", "replace")):
        raise ArtifactError(_memory_refusal(memory))
    raise ArtifactError(
        f"The artifact crashed the validation process ({exit_reason(process.returncode)})"
        f"{tail(stderr)}."
    )


def _converse(
    process: subprocess.Popen[bytes],
    request: dict[str, Any],
    scratch: str,
    deadline: float,
    respond: Respond | None,
) -> tuple[bytes, bytes]:
    """Send the request, answer the worker's one question, read until it exits.

    Both output pipes are drained together (a worker blocked on a full standard error would
    never answer). ``TimeoutError`` past ``deadline``. Only short lines go to its standard
    input (the tensors travel in a file), so writing never blocks.
    """
    assert process.stdin is not None
    assert process.stdout is not None
    assert process.stderr is not None
    with contextlib.suppress(BrokenPipeError):  # a worker that died at once: read why below
        process.stdin.write(json.dumps(request).encode() + b"\n")
        process.stdin.flush()
        if respond is None:
            process.stdin.close()
    stdout = bytearray()
    stderr = bytearray()
    asked = False
    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ, stdout)
        selector.register(process.stderr, selectors.EVENT_READ, stderr)
        while selector.get_map():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError
            for key, _ in selector.select(remaining):
                chunk = os.read(key.fd, 65536)
                if not chunk:
                    selector.unregister(key.fileobj)
                    continue
                key.data.extend(chunk)
                if key.data is stderr and len(stderr) > MAX_STDERR:
                    del stderr[: len(stderr) - MAX_STDERR]
            if respond is not None and not asked:
                question = _question(stdout)
                if question is not None:
                    asked = True
                    _reply(process, scratch, respond, question)
    remaining = deadline - time.monotonic()
    try:
        process.wait(max(remaining, 0.01))
    except subprocess.TimeoutExpired:
        raise TimeoutError from None
    return bytes(stdout), bytes(stderr)


def _question(stdout: bytearray) -> dict[str, Any] | None:
    """The worker's ``{"signature": ...}`` line, once it is complete."""
    for line in bytes(stdout).decode("utf-8", "replace").splitlines(keepends=True):
        if not line.endswith("\n"):
            break
        with contextlib.suppress(ValueError):
            value = json.loads(line)
            if isinstance(value, dict) and isinstance(value.get("signature"), dict):
                return value["signature"]
    return None


def _reply(
    process: subprocess.Popen[bytes], scratch: str, respond: Respond, signature: dict[str, Any]
) -> None:
    assert process.stdin
    try:
        tensors = respond(signature)
    except BaseException:
        _kill_group(process)
        raise
    with open(os.path.join(scratch, HANDLER_INPUTS), "w", encoding="utf-8") as out:
        json.dump(tensors, out)
    with contextlib.suppress(BrokenPipeError):
        process.stdin.write(json.dumps({"inputs_file": HANDLER_INPUTS}).encode() + b"\n")
        process.stdin.close()


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
