"""Stored outputs are encoded by orjson, and read back as they were written."""

from __future__ import annotations

import json

import numpy as np
import pytest
from django.db import connection

from mlapp.jsonenc import FastJSONEncoder
from mlapp.models import BatchJob, BatchPrediction
from mlapp.serving.service import to_json_value
from mlapp.versions.lifecycle import register_version

pytestmark = pytest.mark.django_db


def test_the_encoder_writes_what_the_standard_one_means():
    value = {"label": ["setosa", "é"], "p": [[0.25, 1e-8]], "n": [1, -2], "ok": [True, None]}
    assert json.loads(json.dumps(value, cls=FastJSONEncoder)) == value


def test_values_orjson_cannot_write_fall_back_to_the_standard_encoder():
    huge = {"big": [2**70]}
    assert json.dumps(huge, cls=FastJSONEncoder) == json.dumps(huge)


def test_nan_and_infinity_are_stored_as_null_not_as_invalid_json():
    assert json.loads(json.dumps({"p": [float("nan"), float("inf")]}, cls=FastJSONEncoder)) == {
        "p": [None, None]
    }


def test_stored_outputs_read_back_equal_and_keep_float32_values_exactly(onnx_file):
    version = register_version("affine", onnx_file, promote=True)
    job = BatchJob.objects.create(version=version, total=1)
    embedding = np.random.default_rng(5).standard_normal((1, 384)).astype(np.float32)
    outputs = {"embedding": to_json_value(embedding), "label": ["x"]}
    BatchPrediction.objects.bulk_create(
        [BatchPrediction(job=job, model=version.model, version=version, key="k", outputs=outputs)]
    )
    stored = BatchPrediction.objects.get(job=job, key="k").outputs
    assert stored == outputs
    np.testing.assert_array_equal(np.array(stored["embedding"], np.float32), embedding)
    with connection.cursor() as cursor:
        cursor.execute("SELECT outputs FROM mlapp_batchprediction WHERE key = %s", ["k"])
        (raw,) = cursor.fetchone()
    text = raw if isinstance(raw, str) else json.dumps(raw)
    # Short float32 decimals, not float64 expansions: about 10 characters a value, not 20.
    assert len(text) < 14 * 384
