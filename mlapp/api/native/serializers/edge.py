"""Serializers of derived versions (int8, ONNX export)."""

from __future__ import annotations

from rest_framework import serializers

from mlapp.versions.derivation import MAX_SAMPLE_ROWS, PARENT_FORMAT
from mlapp.versions.derive import METHODS


class DeriveSerializer(serializers.Serializer):
    kind = serializers.ChoiceField(
        choices=list(PARENT_FORMAT),
        default="int8",
        help_text="int8 (from an ONNX version) or onnx (from a TorchScript version).",
    )
    method = serializers.ChoiceField(
        choices=list(METHODS),
        default="auto",
        help_text="int8: dynamic, static (calibrated on the sample) or auto (both measured, "
        "the one agreeing better with the parent kept).",
    )
    samples = serializers.ListField(
        child=serializers.DictField(),
        required=False,
        min_length=1,
        max_length=MAX_SAMPLE_ROWS,
        help_text="Rows keyed by the model's input names to measure (and calibrate) on; "
        "default: MLAPP['DERIVE_SAMPLES'], else the handler's example.",
    )
