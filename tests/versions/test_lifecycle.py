"""Registering, promoting, rolling back and archiving versions (mlapp.versions.lifecycle)."""

from __future__ import annotations

import io

import pytest
from django.db import IntegrityError, transaction

from mlapp.exceptions import ArtifactError, StageError, UnsafeArtifact
from mlapp.models import MLModel, ModelVersion
from mlapp.versions.lifecycle import archive_version, promote_version, register_version, rollback
from tests.artifacts import TWO_IN_SIGNATURE

pytestmark = pytest.mark.django_db


def test_register_stores_validated_version_in_staging(onnx_file):
    version = register_version("affine", onnx_file)
    assert version.version == 1
    assert version.stage == ModelVersion.Stage.STAGING
    assert version.format == "onnx"
    assert len(version.sha256) == 64
    assert version.size == onnx_file.stat().st_size
    assert version.signature["inputs"][0] == {"name": "x", "datatype": "FP32", "shape": [-1, 3]}
    assert version.artifact.storage.exists(version.artifact.name)
    assert "validation" in version.metrics


def test_register_numbers_versions_per_model(onnx_file, torch_export_file):
    assert register_version("a", onnx_file).version == 1
    assert register_version("a", torch_export_file).version == 2
    assert register_version("b", onnx_file).version == 1


def test_register_accepts_an_uploaded_file_object(onnx_file):
    upload = io.BytesIO(onnx_file.read_bytes())
    upload.name = "uploaded.onnx"
    version = register_version("affine", upload)
    assert version.artifact.name.endswith("uploaded.onnx")
    assert version.format == "onnx"


def test_torchscript_without_signature_is_refused_and_nothing_stored(torchscript_file):
    with pytest.raises(ArtifactError, match="carries no signature"):
        register_version("affine", torchscript_file)
    assert not MLModel.objects.exists()
    assert not ModelVersion.objects.exists()


def test_torchscript_inherits_the_production_signature(torchscript_file):
    first = register_version("affine", torchscript_file, signature=TWO_IN_SIGNATURE, promote=True)
    second = register_version("affine", torchscript_file)
    assert second.signature == first.signature


def test_declared_signature_that_contradicts_the_artifact_is_refused(onnx_file):
    wrong = {
        "inputs": [{"name": "x", "datatype": "INT64", "shape": [-1, 3]}],
        "outputs": [{"name": "y", "datatype": "FP32", "shape": [-1, 2]}],
    }
    with pytest.raises(ArtifactError, match="does not match"):
        register_version("affine", onnx_file, signature=wrong)
    assert not ModelVersion.objects.exists()


def test_pickled_upload_is_refused_and_stores_nothing(tmp_path):
    import torch

    path = tmp_path / "model.onnx"
    torch.save(torch.nn.Linear(2, 2), path)
    with pytest.raises(UnsafeArtifact):
        register_version("evil", path)
    assert not ModelVersion.objects.exists()


def test_refused_upload_keeps_existing_versions(onnx_file, tmp_path):
    good = register_version("affine", onnx_file, promote=True)
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a model")
    with pytest.raises(ArtifactError):
        register_version("affine", bad)
    assert list(ModelVersion.objects.values_list("pk", flat=True)) == [good.pk]
    good.refresh_from_db()
    assert good.stage == ModelVersion.Stage.PRODUCTION


def test_promote_archives_the_previous_production_version(onnx_file):
    v1 = register_version("affine", onnx_file, promote=True)
    v2 = register_version("affine", onnx_file)
    promote_version(v2)
    v1.refresh_from_db()
    v2.refresh_from_db()
    assert (v1.stage, v2.stage) == ("archived", "production")
    assert MLModel.objects.get(name="affine").production_version == v2


def test_rollback_restores_the_previous_production_version(onnx_file):
    v1 = register_version("affine", onnx_file, promote=True)
    v2 = register_version("affine", onnx_file, promote=True)
    restored = rollback(v2.model)
    assert restored.pk == v1.pk
    v2.refresh_from_db()
    assert v2.stage == "archived"
    assert ModelVersion.objects.get(stage="production").pk == v1.pk


def test_rollback_without_history_is_refused(onnx_file):
    v1 = register_version("affine", onnx_file, promote=True)
    with pytest.raises(StageError, match="no earlier production version"):
        rollback(v1.model)


def test_archiving_production_is_refused(onnx_file):
    v1 = register_version("affine", onnx_file, promote=True)
    with pytest.raises(StageError):
        archive_version(v1)
    staging = register_version("affine", onnx_file)
    assert archive_version(staging).stage == "archived"


def test_database_refuses_two_production_versions(onnx_file):
    v1 = register_version("affine", onnx_file, promote=True)
    v2 = register_version("affine", onnx_file)
    v2.stage = ModelVersion.Stage.PRODUCTION
    with pytest.raises(IntegrityError), transaction.atomic():
        v2.save()
    assert ModelVersion.objects.filter(stage="production").get().pk == v1.pk
