"""A handler change set with an upload (the native API, ``register_model``, Python) that would
change the production version's public signature waits for an explicit confirmation, stores
nothing without one, and is written to the model's history with one."""

from __future__ import annotations

import pytest
from django.contrib.admin.models import LogEntry
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command
from django.test import TestCase

from mlapp.exceptions import Conflict
from mlapp.models import MLModel, ModelVersion
from mlapp.versions.lifecycle import register_version
from tests.admin.tiny_models import IrisHandler, iris_file, register_iris_and_digits

TEXT_HANDLER = "tests.importable.handlers.MeasurementsHandler"
IRIS_HANDLER = "tests.admin.tiny_models.IrisHandler"


class SameSignatureHandler(IrisHandler):
    """Another handler with IrisHandler's public signature."""


class HandlerChangeOnUploadTest(TestCase):
    @classmethod
    def setUpTestData(cls) -> None:
        register_iris_and_digits()
        cls.staff = get_user_model().objects.create_superuser("root", password="pw")

    def versions(self) -> list[int]:
        return list(
            ModelVersion.objects.filter(model__name="iris")
            .order_by("version")
            .values_list("version", flat=True)
        )

    def handler(self) -> str:
        return MLModel.objects.get(name="iris").handler

    def history(self) -> list[str]:
        iris = MLModel.objects.get(name="iris")
        return [
            entry.get_change_message()
            for entry in LogEntry.objects.filter(object_id=str(iris.pk))
            if entry.content_type.model == "mlmodel"
        ]

    def upload(self, **fields: object):
        self.client.force_login(self.staff)
        with iris_file().open("rb") as artifact:
            return self.client.post(
                "/api/mlapp/models/iris/versions/", {"file": artifact, **fields}
            )

    def test_the_api_refuses_an_unconfirmed_signature_change_and_stores_nothing(self) -> None:
        response = self.upload(handler=TEXT_HANDLER)
        self.assertEqual(response.status_code, 409, response.content)
        error = response.json()["error"]
        self.assertIn("inputs input FP32 [-1, 4]", error)
        self.assertIn("inputs text BYTES [-1]", error)
        self.assertIn("confirm_handler_change=true", error)
        self.assertEqual(self.versions(), [1])
        self.assertEqual(self.handler(), IRIS_HANDLER)

    def test_the_api_applies_a_confirmed_change_and_records_it(self) -> None:
        response = self.upload(handler=TEXT_HANDLER, confirm_handler_change="true")
        self.assertEqual(response.status_code, 201, response.content)
        self.assertEqual(self.versions(), [1, 2])
        self.assertEqual(self.handler(), TEXT_HANDLER)
        (line,) = [m for m in self.history() if m.startswith("Handler:")]
        self.assertIn(f"{IRIS_HANDLER} → {TEXT_HANDLER}", line)
        self.assertIn("Public signature changed (confirmed)", line)

    def test_a_change_that_keeps_the_signature_needs_no_confirmation(self) -> None:
        same = f"{__name__}.SameSignatureHandler"
        response = self.upload(handler=same)
        self.assertEqual(response.status_code, 201, response.content)
        self.assertEqual(self.handler(), same)
        self.assertIn(f"Handler: {IRIS_HANDLER} → {same}.", self.history())

    def test_the_same_handler_again_is_no_change(self) -> None:
        response = self.upload(handler=IRIS_HANDLER)
        self.assertEqual(response.status_code, 201, response.content)
        self.assertEqual([m for m in self.history() if m.startswith("Handler:")], [])

    def test_register_model_exits_non_zero_without_the_flag(self) -> None:
        with self.assertRaisesMessage(CommandError, "--confirm-handler-change"):
            call_command("register_model", "iris", str(iris_file()), "--handler", TEXT_HANDLER)
        self.assertEqual(self.versions(), [1])
        self.assertEqual(self.handler(), IRIS_HANDLER)
        call_command(
            "register_model",
            "iris",
            str(iris_file()),
            "--handler",
            TEXT_HANDLER,
            "--confirm-handler-change",
            stdout=open("/dev/null", "w"),  # noqa: SIM115
        )
        self.assertEqual(self.handler(), TEXT_HANDLER)

    def test_python_callers_get_a_conflict(self) -> None:
        with pytest.raises(Conflict):
            register_version("iris", iris_file(), handler="")  # removing it changes it too
        self.assertEqual(self.handler(), IRIS_HANDLER)
