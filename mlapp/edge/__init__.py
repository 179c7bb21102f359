"""The edge client: fetch a model's bundle from an mlapp server, verify it, run it.

Needs no Django and no torch: the standard library, numpy and ONNX Runtime (``tokenizers``
too for a bundle whose preprocessing is a tokenizer). ``python -m mlapp.edge --help``.
"""
