"""Every serving-relevant change moves the change marker, whatever path made it; nothing
else does (mlapp.signals)."""

from __future__ import annotations

import pytest
from django.core import serializers
from django.core.management import call_command

from mlapp.models import ChangeMarker, MLModel, ModelVersion
from mlapp.signals import serving_changed
from mlapp.versions.lifecycle import archive_version, promote_version, register_version

pytestmark = pytest.mark.django_db(transaction=True)

HANDLER = "tests.importable.handlers.DoublingHandler"


def _counter(name: str = "affine") -> int:
    return ChangeMarker.objects.counters(name).get(name, 0)


@pytest.fixture
def served(onnx_file) -> ModelVersion:
    return register_version("affine", onnx_file, promote=True)


def test_registering_a_version_with_a_new_handler_moves_the_marker(onnx_file, served):
    """No promotion: register_model --handler and API uploads with a handler take this path."""
    before = _counter()
    register_version("affine", onnx_file, handler=HANDLER)
    assert _counter() == before + 1


def test_register_model_command_with_a_handler_moves_the_marker(onnx_file, served):
    before = _counter()
    call_command("register_model", "affine", str(onnx_file), "--handler", HANDLER, verbosity=0)
    assert _counter() == before + 1


@pytest.mark.parametrize(
    ("field", "value"),
    [("handler", HANDLER), ("serving", {"batching": {"enabled": True}}), ("name", "renamed")],
)
def test_saving_a_serving_field_of_a_model_moves_its_marker(served, field, value):
    model = MLModel.objects.get(name="affine")
    before = _counter()
    setattr(model, field, value)
    model.save()
    assert _counter() == before + 1
    if field == "name":
        assert _counter("renamed") == 1


def test_saving_other_fields_moves_nothing(served):
    model = MLModel.objects.get(name="affine")
    before = _counter()
    model.description = "only words"
    model.save()
    version = ModelVersion.objects.get(pk=served.pk)
    version.notes = "still only words"
    version.save()
    assert _counter() == before


def test_a_staging_version_moves_nothing_until_promoted(onnx_file, served):
    before = _counter()
    staged = register_version("affine", onnx_file)
    assert _counter() == before
    promote_version(staged)
    assert _counter() == before + 1
    archive_version(served)  # archived already by the promotion: no change
    assert _counter() == before + 1


def test_deleting_a_version_or_a_model_moves_the_marker(onnx_file, served):
    staged = register_version("affine", onnx_file)
    before = _counter()
    staged.delete()
    assert _counter() == before + 1
    MLModel.objects.get(name="affine").delete()
    assert _counter() > before + 1


def test_rows_loaded_raw_move_nothing(served):
    rows = serializers.serialize("json", [served.model, served])
    ChangeMarker.objects.all().delete()
    for row in serializers.deserialize("json", rows):
        row.save()
    assert ChangeMarker.objects.count() == 0


def test_this_process_is_told_once_the_change_commits(served):
    told = []

    def listen(sender, model_name, **kwargs):
        told.append(model_name)

    serving_changed.connect(listen)
    try:
        model = MLModel.objects.get(name="affine")
        model.handler = HANDLER
        model.save()
    finally:
        serving_changed.disconnect(listen)
    assert told == ["affine"]
