"""Stage actions in the admin: a confirmation page each, the same service functions as the API,
an admin log entry per change (who, from, to), counts in the messages, and the swap."""

from __future__ import annotations

from pathlib import Path

from django.contrib.admin.models import CHANGE, LogEntry
from django.contrib.auth import get_user_model
from django.contrib.messages import get_messages
from django.test import TestCase
from django.urls import reverse

from mlapp.models import ChangeMarker, MLModel, ModelVersion
from mlapp.serving.registry import registry
from mlapp.startup import load_models
from mlapp.versions.lifecycle import promote_version, register_version
from tests.admin.tiny_models import digits_file, new_iris_version, register_iris_and_digits

CHANGELIST = "/admin/mlapp/modelversion/"


def _messages(response) -> list[str]:
    return [str(m) for m in get_messages(response.wsgi_request)]


class StageActionsTest(TestCase):
    @classmethod
    def setUpTestData(cls) -> None:
        cls.iris, digits = register_iris_and_digits()
        cls.v1 = cls.iris.production_version
        cls.v2 = new_iris_version()
        cls.digits_v1 = digits.production_version
        cls.admin = get_user_model().objects.create_superuser("root", password="pw")

    def setUp(self) -> None:
        self.client.force_login(self.admin)

    def stage(self, version: ModelVersion) -> str:
        version.refresh_from_db()
        return version.stage

    def url(self, version: ModelVersion, action: str) -> str:
        return reverse(f"admin:mlapp_version_{action}", args=[version.pk])

    # -- promote --------------------------------------------------------------------------

    def test_promote_page_shows_the_changes_and_changes_nothing(self) -> None:
        response = self.client.get(self.url(self.v2, "promote"))
        self.assertEqual(response.status_code, 200)
        changes = [
            (c.version.pk, c.from_stage, c.to_stage) for c in response.context["plan"].changes
        ]
        self.assertEqual(
            changes,
            [(self.v2.pk, "staging", "production"), (self.v1.pk, "production", "archived")],
        )
        self.assertContains(response, "Yes, promote")
        self.assertEqual((self.stage(self.v1), self.stage(self.v2)), ("production", "staging"))

    def test_confirmed_promote_swaps_stages_and_logs_both_versions(self) -> None:
        response = self.client.post(self.url(self.v2, "promote"), {"post": "yes"})
        self.assertRedirects(
            response,
            reverse("admin:mlapp_modelversion_change", args=[self.v2.pk]),
            fetch_redirect_response=False,
        )
        self.assertEqual((self.stage(self.v1), self.stage(self.v2)), ("archived", "production"))
        self.assertIn("Promoted 1 version to production.", _messages(response))
        promoted = LogEntry.objects.get(object_id=str(self.v2.pk), action_flag=CHANGE)
        self.assertEqual(promoted.user, self.admin)
        self.assertEqual(
            promoted.get_change_message(), "Stage: staging → production (promoted, replacing v1)."
        )
        archived = LogEntry.objects.get(object_id=str(self.v1.pk), action_flag=CHANGE)
        self.assertEqual(
            archived.get_change_message(), "Stage: production → archived (replaced by v2)."
        )

    def test_promote_moves_the_change_marker_and_swaps_this_process(self) -> None:
        load_models()
        self.assertEqual(registry.get("iris").version, 1)
        before = ChangeMarker.objects.get(model_name="iris").counter
        with self.captureOnCommitCallbacks(execute=True):
            self.client.post(self.url(self.v2, "promote"), {"post": "yes"})
        self.assertEqual(ChangeMarker.objects.get(model_name="iris").counter, before + 1)
        self.assertEqual(registry.get("iris").version, 2)

    def test_promote_selected_from_the_list_asks_first_then_reports_the_count(self) -> None:
        data = {"action": "promote_selected", "_selected_action": [self.v2.pk]}
        confirm = self.client.post(CHANGELIST, data)
        self.assertTemplateUsed(confirm, "admin/mlapp/stage_confirmation.html")
        self.assertEqual(self.stage(self.v2), "staging")
        done = self.client.post(CHANGELIST, {**data, "post": "yes"})
        self.assertEqual(done.status_code, 302)
        self.assertEqual(self.stage(self.v2), "production")
        self.assertIn("Promoted 1 version to production.", _messages(done))

    def test_two_versions_of_one_model_cannot_be_promoted_together(self) -> None:
        data = {
            "action": "promote_selected",
            "_selected_action": [self.v1.pk, self.v2.pk],
            "post": "yes",
        }
        response = self.client.post(CHANGELIST, data)
        self.assertEqual((self.stage(self.v1), self.stage(self.v2)), ("production", "staging"))
        self.assertTrue(any("a model has one production version" in m for m in _messages(response)))

    def test_promote_of_two_models_reports_two(self) -> None:
        digits_v2 = register_version("digits", digits_file())
        data = {
            "action": "promote_selected",
            "_selected_action": [self.v2.pk, digits_v2.pk],
            "post": "yes",
        }
        response = self.client.post(CHANGELIST, data)
        self.assertIn("Promoted 2 versions to production.", _messages(response))
        self.assertEqual(ModelVersion.objects.filter(stage="production").count(), 2)
        self.assertEqual(self.stage(self.digits_v1), "archived")

    # -- roll back ------------------------------------------------------------------------

    def test_rollback_brings_back_the_previous_production_version(self) -> None:
        promote_version(self.v2)
        page = self.client.get(self.url(self.v2, "rollback"))
        changes = [(c.version.pk, c.to_stage) for c in page.context["plan"].changes]
        self.assertEqual(changes, [(self.v1.pk, "production"), (self.v2.pk, "archived")])
        response = self.client.post(self.url(self.v2, "rollback"), {"post": "yes"})
        self.assertEqual((self.stage(self.v1), self.stage(self.v2)), ("production", "archived"))
        self.assertIn("Rolled back 1 model.", _messages(response))
        entry = LogEntry.objects.filter(object_id=str(self.v1.pk)).latest("action_time")
        self.assertEqual(
            entry.get_change_message(), "Stage: archived → production (rolled back, replacing v2)."
        )

    def test_rollback_without_history_is_refused_on_its_page(self) -> None:
        response = self.client.post(self.url(self.v1, "rollback"), {"post": "yes"})
        self.assertEqual(self.stage(self.v1), "production")
        page = self.client.get(self.url(self.v1, "rollback"))
        self.assertContains(page, "no earlier production version")
        self.assertNotContains(page, "Yes, roll back")
        self.assertEqual(response.status_code, 302)

    def test_model_page_rolls_back_selected_models(self) -> None:
        promote_version(self.v2)
        data = {"action": "rollback_selected", "_selected_action": [self.iris.pk], "post": "yes"}
        response = self.client.post("/admin/mlapp/mlmodel/", data)
        self.assertIn("Rolled back 1 model.", _messages(response))
        self.assertEqual(self.stage(self.v1), "production")

    # -- archive --------------------------------------------------------------------------

    def test_archive_moves_a_staging_version_to_archived(self) -> None:
        response = self.client.post(self.url(self.v2, "archive"), {"post": "yes"})
        self.assertEqual(self.stage(self.v2), "archived")
        self.assertIn("Archived 1 version.", _messages(response))
        entry = LogEntry.objects.get(object_id=str(self.v2.pk), action_flag=CHANGE)
        self.assertEqual(entry.get_change_message(), "Stage: staging → archived.")

    def test_archive_of_production_is_refused(self) -> None:
        data = {"action": "archive_selected", "_selected_action": [self.v1.pk], "post": "yes"}
        response = self.client.post(CHANGELIST, data)
        self.assertEqual(self.stage(self.v1), "production")
        self.assertTrue(any("is in production" in m for m in _messages(response)))

    # -- deletion -------------------------------------------------------------------------

    def test_production_version_cannot_be_deleted(self) -> None:
        response = self.client.get(reverse("admin:mlapp_modelversion_delete", args=[self.v1.pk]))
        self.assertEqual(response.status_code, 403)

    def test_deleting_an_archived_version_removes_its_artifact(self) -> None:
        extra = new_iris_version()
        path = Path(extra.artifact.path)
        self.client.post(self.url(extra, "archive"), {"post": "yes"})
        with self.captureOnCommitCallbacks(execute=True):
            self.client.post(
                reverse("admin:mlapp_modelversion_delete", args=[extra.pk]), {"post": "yes"}
            )
        self.assertFalse(ModelVersion.objects.filter(pk=extra.pk).exists())
        self.assertFalse(path.exists())

    def _post_digits(self, serving: str = "{}", handler: str | None = None, **extra: str):
        digits = MLModel.objects.get(name="digits")
        return self.client.post(
            reverse("admin:mlapp_mlmodel_change", args=[digits.pk]),
            {
                "name": "digits",
                "description": digits.description,
                "task": digits.task,
                "handler": digits.handler if handler is None else handler,
                "serving": serving,
                "versions-TOTAL_FORMS": "1",
                "versions-INITIAL_FORMS": "1",
                "versions-MIN_NUM_FORMS": "0",
                "versions-MAX_NUM_FORMS": "1000",
                # The traffic policy inline, left empty.
                "traffic-TOTAL_FORMS": "0",
                "traffic-INITIAL_FORMS": "0",
                "versions-0-id": str(self.digits_v1.pk),
                "versions-0-model": str(digits.pk),
                **extra,
            },
        )

    def test_editing_a_handler_tells_every_process_to_reload(self) -> None:
        before = ChangeMarker.objects.filter(model_name="digits").values_list("counter", flat=True)
        before = before.first() or 0
        response = self._post_digits(handler="", confirm_handler_change="yes")
        self.assertEqual(response.status_code, 302, response.content[:2000])
        self.assertEqual(ChangeMarker.objects.get(model_name="digits").counter, before + 1)

    def test_a_valid_batching_config_is_stored_and_swaps_the_batcher(self) -> None:
        load_models()
        self.assertIsNone(registry.get("digits").batcher)
        with self.captureOnCommitCallbacks(execute=True):
            response = self._post_digits('{"batching": {"enabled": true, "max_batch_size": 4}}')
        self.assertEqual(response.status_code, 302, response.content[:2000])
        stored = MLModel.objects.get(name="digits").serving
        self.assertEqual(stored, {"batching": {"enabled": True, "max_batch_size": 4}})
        registry.reload("digits")
        self.assertEqual(registry.get("digits").batcher.max_batch_size, 4)

    def test_a_bad_serving_config_is_a_form_error_and_stores_nothing(self) -> None:
        MLModel.objects.filter(name="digits").update(serving={"batching": {"enabled": False}})
        before = ChangeMarker.objects.filter(model_name="digits").values_list("counter", flat=True)
        before = list(before)
        cases = {
            '{"batching": {"max_batch_size": 0}}': "max_batch_size must be an integer >= 1",
            '{"batching": {"max_batch": 4}}': "unknown key(s) max_batch",
            '{"batching": {"enabled": "yes"}}': "enabled must be true or false",
            '{"batching": [1, 2]}': "batching must be a JSON object, not an array",
            '{"batchng": {}}': "unknown key(s) batchng; known: batching",
            "[]": "must be a JSON object, not an array",
            '"fast"': "must be a JSON object, not a string",
            "3": "must be a JSON object, not a number",
        }
        for serving, reason in cases.items():
            with self.subTest(serving=serving):
                response = self._post_digits(serving)
                self.assertEqual(response.status_code, 200)
                errors = response.context["adminform"].form.errors
                self.assertIn(reason, " ".join(errors["serving"]))
        digits = MLModel.objects.get(name="digits")
        self.assertEqual(digits.serving, {"batching": {"enabled": False}})
        after = ChangeMarker.objects.filter(model_name="digits").values_list("counter", flat=True)
        self.assertEqual(list(after), before)

    def test_an_emptied_serving_field_stores_an_empty_config(self) -> None:
        response = self._post_digits("")
        self.assertEqual(response.status_code, 302, response.content[:2000])
        self.assertEqual(MLModel.objects.get(name="digits").serving, {})
