"""A project's own runtime for the ONNX format (RUNTIMES["onnx"]["BACKEND"]).

Like every runtime, it lives in a module that imports no Django: the validation sandbox loads
it without the project's settings."""

from mlapp.runtimes.onnx import OnnxRuntime


class TaggedOnnxRuntime(OnnxRuntime):
    pass
