"""Uploading a version on the admin's add page: validated first (in a separate process),
a refused file shows its reason on the form and stores nothing, a good one lands in staging."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import torch
from django.conf import settings
from django.contrib.admin.models import ADDITION, LogEntry
from django.contrib.auth import get_user_model
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import TestCase, override_settings
from django.urls import reverse

from mlapp.models import MLModel, ModelVersion
from mlapp.runtimes.integrity import file_sha256
from tests import artifacts
from tests.admin.tiny_models import iris_file, register_iris_and_digits

ADD_URL = "/admin/mlapp/modelversion/add/"


class Spin(torch.nn.Module):
    """A TorchScript model whose forward never returns on the validation's sample inputs."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        while bool(x.sum() > -1.0):
            x = x + 1.0
        return x


def _upload(path: Path, name: str | None = None) -> SimpleUploadedFile:
    return SimpleUploadedFile(name or path.name, path.read_bytes())


def _stored_files() -> set[Path]:
    root = Path(settings.MEDIA_ROOT) / "mlapp" / "artifacts"
    return {p for p in root.rglob("*") if p.is_file()}


class AdminUploadTest(TestCase):
    @classmethod
    def setUpTestData(cls) -> None:
        cls.iris, _ = register_iris_and_digits()
        cls.fresh = MLModel.objects.create(name="fresh")
        cls.admin = get_user_model().objects.create_superuser("root", password="pw")

    def setUp(self) -> None:
        tmp = tempfile.TemporaryDirectory(prefix="mlapp-admin-upload-")
        self.addCleanup(tmp.cleanup)
        self.tmp = Path(tmp.name)
        self.client.force_login(self.admin)
        self.files_before = _stored_files()
        self.versions_before = ModelVersion.objects.count()

    def assert_nothing_stored(self) -> None:
        self.assertEqual(ModelVersion.objects.count(), self.versions_before)
        self.assertEqual(_stored_files(), self.files_before)

    def post(self, model: MLModel, artifact: SimpleUploadedFile, **extra):
        return self.client.post(ADD_URL, {"model": model.pk, "artifact_file": artifact, **extra})

    def test_add_page_asks_for_model_and_file_only(self) -> None:
        response = self.client.get(ADD_URL)
        self.assertEqual(response.status_code, 200)
        form = response.context["adminform"].form
        required = sorted(name for name, field in form.fields.items() if field.required)
        self.assertEqual(required, ["artifact_file", "model"])
        self.assertEqual(sorted(form.fields), ["artifact_file", "model", "notes", "signature_file"])

    def test_add_page_preselects_the_model_from_the_query_string(self) -> None:
        response = self.client.get(f"{ADD_URL}?model={self.iris.pk}")
        self.assertEqual(response.context["adminform"].form.initial["model"], str(self.iris.pk))

    def test_good_upload_is_stored_in_staging_with_the_inherited_signature(self) -> None:
        path = iris_file()
        response = self.post(self.iris, _upload(path), notes="retrained")
        version = ModelVersion.objects.get(model=self.iris, version=2)
        self.assertRedirects(
            response,
            reverse("admin:mlapp_modelversion_change", args=[version.pk]),
            fetch_redirect_response=False,
        )
        self.assertEqual(version.stage, ModelVersion.Stage.STAGING)
        self.assertEqual(version.format, "torchscript")
        self.assertEqual(version.sha256, file_sha256(str(path)))
        self.assertEqual(version.size, path.stat().st_size)
        self.assertEqual(version.signature, self.iris.production_version.signature)
        self.assertEqual((version.created_by, version.notes), (self.admin, "retrained"))
        self.assertIn("predict_seconds", version.metrics["validation"])
        self.assertTrue(version.artifact.storage.exists(version.artifact.name))
        entry = LogEntry.objects.get(object_id=str(version.pk), action_flag=ADDITION)
        self.assertEqual(entry.user, self.admin)
        page = self.client.get(response.url)
        self.assertContains(page, "validated and stored in staging")

    def test_pickle_is_refused_on_the_form_and_nothing_is_stored(self) -> None:
        pickled = SimpleUploadedFile("model.onnx", b"\x80\x04\x95" + b"\x00" * 64)
        response = self.post(self.iris, pickled)
        self.assertEqual(response.status_code, 200)
        errors = response.context["adminform"].form.errors["artifact_file"]
        self.assertIn("pickle", errors[0])
        self.assert_nothing_stored()

    def test_torch_save_file_is_refused_and_nothing_is_stored(self) -> None:
        path = self.tmp / "weights.pt"
        torch.save(torch.nn.Linear(4, 3).state_dict(), path)
        response = self.post(self.iris, _upload(path))
        self.assertIn("torch.save", response.context["adminform"].form.errors["artifact_file"][0])
        self.assert_nothing_stored()

    def test_unknown_format_is_refused_with_the_reason(self) -> None:
        response = self.post(self.iris, SimpleUploadedFile("model.onnx", b"not a model at all"))
        self.assertContains(response, "Unknown artifact format")
        self.assert_nothing_stored()

    @override_settings(MLAPP={"THREADS": 1, "MAX_UPLOAD_SIZE": 1000})
    def test_file_over_the_size_limit_is_refused(self) -> None:
        response = self.post(self.iris, _upload(iris_file()))
        self.assertIn("the limit", response.context["adminform"].form.errors["artifact_file"][0])
        self.assert_nothing_stored()

    def test_torchscript_without_any_signature_is_refused(self) -> None:
        path = artifacts.torchscript(self.tmp / "affine.pt")
        response = self.post(self.fresh, _upload(path))
        self.assertIn(
            "carries no signature", response.context["adminform"].form.errors["artifact_file"][0]
        )
        self.assert_nothing_stored()

    def test_signature_file_lets_a_first_torchscript_version_in(self) -> None:
        path = artifacts.torchscript(self.tmp / "affine.pt")
        signature = SimpleUploadedFile(
            "signature.json", json.dumps(artifacts.TWO_IN_SIGNATURE).encode()
        )
        response = self.post(self.fresh, _upload(path), signature_file=signature)
        self.assertEqual(response.status_code, 302)
        version = ModelVersion.objects.get(model=self.fresh)
        self.assertEqual(version.signature, artifacts.TWO_IN_SIGNATURE)

    def test_broken_signature_json_is_refused_on_its_field(self) -> None:
        path = artifacts.torchscript(self.tmp / "affine.pt")
        signature = SimpleUploadedFile(
            "signature.json", b'{"inputs": [{"name": "x"}], "outputs": []}'
        )
        response = self.post(self.fresh, _upload(path), signature_file=signature)
        errors = response.context["adminform"].form.errors
        self.assertIn("needs 'name', 'datatype' and 'shape'", errors["signature_file"][0])
        self.assert_nothing_stored()

    @override_settings(MLAPP={"THREADS": 1, "VALIDATION_TIMEOUT": 4})
    def test_artifact_that_never_returns_is_stopped_by_the_time_limit(self) -> None:
        path = self.tmp / "spin.pt"
        torch.jit.script(Spin()).save(str(path))
        response = self.post(self.iris, _upload(path))
        errors = response.context["adminform"].form.errors["artifact_file"]
        self.assertIn("took longer than 4 s", errors[0])
        self.assert_nothing_stored()
        # This process (the web worker) is unharmed and keeps serving.
        self.assertEqual(self.client.get(ADD_URL).status_code, 200)

    @override_settings(
        MLAPP={
            "THREADS": 1,
            "RUNTIMES": {"onnx": "tests.importable.crashing_runtime.CrashingRuntime"},
        }
    )
    def test_artifact_that_crashes_its_loader_is_refused_and_the_server_survives(self) -> None:
        # A "runtime" that dies with SIGSEGV while loading: what a hostile or broken
        # artifact does to native code. Only the validation process dies.
        onnx = artifacts.onnx(self.tmp / "affine.onnx")
        response = self.post(self.fresh, _upload(onnx))
        errors = response.context["adminform"].form.errors["artifact_file"]
        self.assertIn("crashed the validation process (killed by SIGSEGV)", errors[0])
        self.assert_nothing_stored()
        self.assertEqual(self.client.get(ADD_URL).status_code, 200)
