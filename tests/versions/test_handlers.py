"""A model's handler where versions are registered and promoted: its path is checked, an upload
runs its example through handler + artifact, a promotion warms the version through it."""

from __future__ import annotations

import pytest

from mlapp.exceptions import ArtifactError, StageError
from mlapp.models import MLModel, ModelVersion
from mlapp.serving.registry import registry
from mlapp.versions.lifecycle import promote_version, register_version, rollback

pytestmark = pytest.mark.django_db

HANDLERS = "tests.importable.handlers"


@pytest.mark.parametrize(
    ("path", "reason"),
    [
        (f"{HANDLERS}.NoSuchHandler", "Cannot import handler"),
        ("no_such_package.Handler", "Cannot import handler"),
        (f"{HANDLERS}.NotAHandler", "is not a mlapp.handlers.BaseHandler"),
        ("mlapp.models.MLModel", "is not a mlapp.handlers.BaseHandler"),
    ],
)
def test_register_refuses_a_handler_path_that_names_no_handler(onnx_file, path, reason):
    with pytest.raises(ArtifactError, match=reason):
        register_version("affine", onnx_file, handler=path)
    assert not MLModel.objects.exists()
    assert not ModelVersion.objects.exists()


def test_upload_is_refused_when_its_handler_feeds_a_tensor_the_artifact_lacks(onnx_file):
    with pytest.raises(ArtifactError) as caught:
        register_version("affine", onnx_file, handler=f"{HANDLERS}.FeaturesHandler")
    assert "FeaturesHandler does not fit this artifact" in caught.value.message
    assert "['x']" in caught.value.message
    assert "['features']" in caught.value.message
    assert not ModelVersion.objects.exists()


@pytest.mark.parametrize("artifact", ["onnx_file", "torchscript_file", "torch_export_file"])
def test_upload_is_refused_when_the_artifact_fails_on_its_handlers_tensors(request, artifact):
    # Names fit, widths do not: only running the artifact (in the sandbox) finds it.
    from tests.artifacts import TWO_IN_SIGNATURE

    path = request.getfixturevalue(artifact)
    signature = TWO_IN_SIGNATURE if artifact == "torchscript_file" else None
    with pytest.raises(ArtifactError, match="A prediction on the model's handler's example failed"):
        register_version(
            "affine", path, signature=signature, handler=f"{HANDLERS}.WrongWidthHandler"
        )
    assert not ModelVersion.objects.exists()


def test_upload_is_refused_when_its_handlers_postprocess_fails(onnx_file):
    with pytest.raises(ArtifactError, match="postprocess always fails"):
        register_version("affine", onnx_file, handler=f"{HANDLERS}.BrokenPostprocessHandler")
    assert not ModelVersion.objects.exists()


def test_upload_is_validated_through_the_models_current_handler(onnx_file):
    MLModel.objects.create(name="affine", handler=f"{HANDLERS}.FeaturesHandler")
    with pytest.raises(ArtifactError, match="features"):
        register_version("affine", onnx_file)
    assert not ModelVersion.objects.exists()


def test_the_handler_runs_in_this_process_and_the_artifact_in_the_sandbox(onnx_file):
    # SettingsHandler reads Django settings, which the sandbox does not have.
    version = register_version("affine", onnx_file, handler=f"{HANDLERS}.SettingsHandler")
    assert version.model.handler == f"{HANDLERS}.SettingsHandler"


def test_upload_through_a_fitting_handler_is_stored(onnx_file):
    version = register_version("affine", onnx_file, handler=f"{HANDLERS}.DoublingHandler")
    assert version.stage == ModelVersion.Stage.STAGING


def test_register_with_promote_returns_the_version_in_production(onnx_file):
    version = register_version("affine", onnx_file, promote=True)
    assert version.stage == ModelVersion.Stage.PRODUCTION


def test_promotion_refuses_a_version_its_handler_cannot_serve(onnx_file):
    version = register_version("affine", onnx_file)
    MLModel.objects.filter(name="affine").update(handler=f"{HANDLERS}.FeaturesHandler")
    version.refresh_from_db()
    with pytest.raises(StageError) as caught:
        promote_version(version)
    assert caught.value.status_code == 409
    assert "affine v1 cannot go to production" in caught.value.message
    assert "features" in caught.value.message
    version.refresh_from_db()
    assert version.stage == ModelVersion.Stage.STAGING


def test_promotion_refuses_a_handler_that_cannot_be_imported(onnx_file):
    version = register_version("affine", onnx_file)
    MLModel.objects.filter(name="affine").update(handler=f"{HANDLERS}.Gone")
    version.refresh_from_db()
    with pytest.raises(StageError, match="Cannot import handler"):
        promote_version(version)
    assert not ModelVersion.objects.filter(stage=ModelVersion.Stage.PRODUCTION).exists()


def test_promotion_of_a_version_whose_handler_changed_since_it_was_loaded(onnx_file):
    version = register_version("affine", onnx_file)
    registry.get("affine", 1)  # loaded (say, by a pinned request) with no handler
    MLModel.objects.filter(name="affine").update(handler=f"{HANDLERS}.FeaturesHandler")
    version.refresh_from_db()
    with pytest.raises(StageError, match="features"):
        promote_version(version)


def test_promotion_leaves_the_registry_to_the_swap(onnx_file):
    # The check loads a copy and releases it: what this process serves changes by the swap.
    version = register_version("affine", onnx_file)
    promote_version(version)
    assert registry.peek("affine", 1) is None


def test_rollback_refuses_a_version_its_handler_cannot_serve(onnx_file):
    register_version("affine", onnx_file, promote=True)
    register_version("affine", onnx_file, promote=True)
    model = MLModel.objects.get(name="affine")
    model.handler = f"{HANDLERS}.FeaturesHandler"
    model.save()
    with pytest.raises(StageError, match="affine v1 cannot go to production"):
        rollback(model)
    assert model.production_version.version == 2


def test_promotion_refuses_a_handler_that_raises_describing_itself(onnx_file):
    version = register_version("affine", onnx_file)
    MLModel.objects.filter(name="affine").update(handler=f"{HANDLERS}.UndescribableHandler")
    version.refresh_from_db()
    with pytest.raises(
        StageError, match=r"cannot describe its public signature.*no signature today"
    ):
        promote_version(version)


def test_upload_is_refused_when_its_handler_raises_describing_itself(onnx_file):
    with pytest.raises(ArtifactError, match="cannot describe its public signature"):
        register_version("affine", onnx_file, handler=f"{HANDLERS}.UndescribableHandler")
    assert not ModelVersion.objects.exists()


def test_a_version_that_fails_on_the_serving_device_is_refused_in_one_line(onnx_file, monkeypatch):
    """What the GPU check saw (bench/gpu_promotion.py on an H200): a TorchScript trace pinned
    to the CPU passes validation (on the CPU), then its run on the GPU at promotion fails
    with the interpreter's whole traceback; the refusal says its last line."""
    from mlapp.runtimes.onnx import OnnxRuntime

    version = register_version("affine", onnx_file)

    def on_the_wrong_device(self, inputs):
        raise RuntimeError(
            "The following operation failed in the TorchScript interpreter.\n"
            "Traceback of TorchScript, serialized code (most recent call last):\n"
            '  File "code/__torch__.py", line 12, in forward\n'
            "RuntimeError: Expected all tensors to be on the same device, but got "
            "attn_bias is on cpu, different from other tensors on cuda:0\n"
        )

    monkeypatch.setattr(OnnxRuntime, "run", on_the_wrong_device)
    with pytest.raises(StageError) as caught:
        promote_version(version)
    assert caught.value.message == (
        "affine v1 cannot go to production: A prediction on the example failed: RuntimeError: "
        "Expected all tensors to be on the same device, but got attn_bias is on cpu, different "
        "from other tensors on cuda:0"
    )
    version.refresh_from_db()
    assert version.stage == ModelVersion.Stage.STAGING
