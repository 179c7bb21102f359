"""A model's handler in the admin: a path that names no handler is a form error; a change that
changes the public signature asks first and is recorded; a promotion the handler cannot serve
is refused with the reason."""

from __future__ import annotations

from django.contrib.admin.models import LogEntry
from django.contrib.auth import get_user_model
from django.contrib.messages import get_messages
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import TestCase
from django.urls import reverse

from mlapp.models import MLModel, ModelVersion
from tests.admin.tiny_models import (
    IrisHandler,
    iris_file,
    new_iris_version,
    register_iris_and_digits,
)

HANDLERS = "tests.importable.handlers"
IRIS_HANDLER = "tests.admin.tiny_models.IrisHandler"


class SameSignatureHandler(IrisHandler):
    """Another handler with IrisHandler's public signature."""


class ModelHandlerAdminTest(TestCase):
    @classmethod
    def setUpTestData(cls) -> None:
        cls.iris, _ = register_iris_and_digits()
        cls.admin = get_user_model().objects.create_superuser("root", password="pw")

    def setUp(self) -> None:
        self.client.force_login(self.admin)
        self.change_url = reverse("admin:mlapp_mlmodel_change", args=[self.iris.pk])

    def post_iris(self, handler: str, **extra: str):
        v1 = self.iris.production_version
        return self.client.post(
            self.change_url,
            {
                "name": "iris",
                "description": "",
                "task": self.iris.task,
                "handler": handler,
                "serving": "{}",
                "versions-TOTAL_FORMS": "1",
                "versions-INITIAL_FORMS": "1",
                "versions-MIN_NUM_FORMS": "0",
                "versions-MAX_NUM_FORMS": "1000",
                # The traffic policy inline, left empty.
                "traffic-TOTAL_FORMS": "0",
                "traffic-INITIAL_FORMS": "0",
                "versions-0-id": str(v1.pk),
                "versions-0-model": str(self.iris.pk),
                **extra,
            },
        )

    def stored_handler(self) -> str:
        return MLModel.objects.get(pk=self.iris.pk).handler

    def test_a_handler_path_that_names_no_handler_is_a_form_error(self) -> None:
        cases = {
            f"{HANDLERS}.Typo": "Cannot import handler",
            "no_such_package.Handler": "Cannot import handler",
            f"{HANDLERS}.NotAHandler": "is not a mlapp.handlers.BaseHandler",
        }
        for path, reason in cases.items():
            with self.subTest(path=path):
                response = self.post_iris(path)
                self.assertEqual(response.status_code, 200)
                errors = response.context["adminform"].form.errors
                self.assertIn(reason, " ".join(errors["handler"]))
                self.assertEqual(self.stored_handler(), IRIS_HANDLER)

    def test_a_new_model_with_a_bad_handler_path_is_a_form_error(self) -> None:
        response = self.client.post(
            reverse("admin:mlapp_mlmodel_add"),
            {"name": "new", "description": "", "task": "", "handler": "x.Y", "serving": "{}"},
        )
        self.assertEqual(response.status_code, 200)
        self.assertIn(
            "Cannot import handler", " ".join(response.context["adminform"].form.errors["handler"])
        )
        self.assertFalse(MLModel.objects.filter(name="new").exists())

    def test_a_handler_change_that_changes_the_public_signature_asks_first(self) -> None:
        response = self.post_iris(f"{HANDLERS}.MeasurementsHandler")
        self.assertEqual(response.status_code, 200)
        self.assertTemplateUsed(response, "admin/mlapp/mlmodel/handler_confirmation.html")
        self.assertContains(response, "Yes, change the signature")
        self.assertContains(response, "<code>text</code>")  # the new public input
        self.assertEqual(self.stored_handler(), IRIS_HANDLER)
        self.assertFalse(LogEntry.objects.filter(object_id=str(self.iris.pk)).exists())

    def test_a_confirmed_signature_change_is_saved_and_recorded(self) -> None:
        response = self.post_iris(f"{HANDLERS}.MeasurementsHandler", confirm_handler_change="yes")
        self.assertEqual(response.status_code, 302, response.content[:2000])
        self.assertEqual(self.stored_handler(), f"{HANDLERS}.MeasurementsHandler")
        messages = [
            e.get_change_message() for e in LogEntry.objects.filter(object_id=str(self.iris.pk))
        ]
        recorded = [m for m in messages if m.startswith("Handler:")]
        self.assertEqual(len(recorded), 1, messages)
        self.assertIn(f"{IRIS_HANDLER} → {HANDLERS}.MeasurementsHandler", recorded[0])
        self.assertIn("Public signature changed (confirmed)", recorded[0])
        self.assertIn("inputs input FP32 [-1, 4]", recorded[0])
        self.assertIn("→ inputs text BYTES [-1]", recorded[0])

    def test_the_confirmation_page_posts_the_whole_form_back(self) -> None:
        response = self.post_iris(f"{HANDLERS}.MeasurementsHandler")
        reposted = dict(response.context["reposted"])
        self.assertEqual(reposted["handler"], f"{HANDLERS}.MeasurementsHandler")
        self.assertEqual(reposted["versions-TOTAL_FORMS"], "1")
        self.assertNotIn("csrfmiddlewaretoken", reposted)

    def test_a_handler_change_that_keeps_the_signature_saves_at_once_and_is_recorded(self) -> None:
        same = f"{__name__}.SameSignatureHandler"
        response = self.post_iris(same)
        self.assertEqual(response.status_code, 302, response.content[:2000])
        self.assertEqual(self.stored_handler(), same)
        messages = [
            e.get_change_message() for e in LogEntry.objects.filter(object_id=str(self.iris.pk))
        ]
        self.assertIn(f"Handler: {IRIS_HANDLER} → {same}.", messages)

    def test_promoting_a_version_its_handler_cannot_serve_shows_why(self) -> None:
        v2 = new_iris_version()
        MLModel.objects.filter(pk=self.iris.pk).update(handler=f"{HANDLERS}.FeaturesHandler")
        response = self.client.post(
            reverse("admin:mlapp_version_promote", args=[v2.pk]), {"post": "yes"}
        )
        self.assertEqual(response.status_code, 302)
        messages = [str(m) for m in get_messages(response.wsgi_request)]
        self.assertTrue(
            any("cannot go to production" in m and "features" in m for m in messages), messages
        )
        v2.refresh_from_db()
        self.assertEqual(v2.stage, ModelVersion.Stage.STAGING)

    def test_an_upload_its_models_handler_cannot_serve_is_a_form_error(self) -> None:
        MLModel.objects.filter(pk=self.iris.pk).update(handler=f"{HANDLERS}.FeaturesHandler")
        artifact = SimpleUploadedFile("model.pt", iris_file().read_bytes())
        response = self.client.post(
            reverse("admin:mlapp_modelversion_add"),
            {"model": self.iris.pk, "artifact_file": artifact},
        )
        self.assertEqual(response.status_code, 200)
        errors = " ".join(response.context["adminform"].form.errors["artifact_file"])
        self.assertIn("FeaturesHandler does not fit this artifact", errors)
        self.assertEqual(ModelVersion.objects.filter(model=self.iris).count(), 1)
