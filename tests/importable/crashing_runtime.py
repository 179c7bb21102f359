"""A runtime whose load kills its process with SIGSEGV, as a hostile artifact can (admin tests)."""

import os
import signal

from mlapp.runtimes.base import Runtime


class CrashingRuntime(Runtime):
    format = "onnx"

    def load(self, path: str, device: str = "cpu") -> None:
        os.kill(os.getpid(), signal.SIGSEGV)
