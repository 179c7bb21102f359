"""The separate process that loads an uploaded artifact and runs a sample prediction.

``python -m mlapp.versions.worker`` reads one JSON request on standard input (see
``mlapp.versions.validation.validate_artifact(..., isolated=True)``) and writes one JSON line on
standard output: ``{"report": {...}}`` or ``{"error": "...", "error_class": "..."}``. It
imports no Django. Whatever the artifact prints goes to standard error, so stray output
cannot garble the answer.
"""

from __future__ import annotations

import json
import os
import sys


def main() -> int:
    request = json.loads(sys.stdin.buffer.read())
    # Keep the real standard output for the answer; route everything else (Python prints
    # and native libraries writing to fd 1) to standard error.
    answer_fd = os.dup(1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr

    from mlapp.versions.inspection import run_validation_request

    answer = run_validation_request(request)
    with os.fdopen(answer_fd, "w", encoding="utf-8") as out:
        out.write("\n" + json.dumps(answer) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
