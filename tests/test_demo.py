"""The demo models end to end: setup_demo, accuracy through the service, the endpoint, the page."""

from __future__ import annotations

import json
from io import StringIO
from pathlib import Path

import numpy as np
from django.conf import settings
from django.core.management import call_command
from django.test import TestCase, override_settings
from rest_framework.test import APIClient
from sklearn.datasets import load_digits, load_iris
from sklearn.model_selection import train_test_split

import mlapp
from mlapp.models import MLModel, ModelVersion
from mlapp.serving.registry import registry

FIXTURES = Path(settings.BASE_DIR) / "fixtures"


def _test_split(loader):
    data = loader()
    _, x_test, _, y_test = train_test_split(
        data.data, data.target, test_size=0.3, random_state=0, stratify=data.target
    )
    return x_test.astype(np.float32), y_test


def _cosine(a, b) -> float:
    a, b = np.asarray(a), np.asarray(b)
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


@override_settings(MLAPP={"THREADS": 1})
class DemoModelsTest(TestCase):
    @classmethod
    def setUpTestData(cls) -> None:
        cls.setup_output = StringIO()
        call_command("setup_demo", "--no-admin", stdout=cls.setup_output)

    def setUp(self) -> None:
        registry.clear()
        self.client_api = APIClient()

    def test_setup_registers_three_production_models(self) -> None:
        production = ModelVersion.objects.filter(stage="production")
        self.assertEqual(
            sorted(production.values_list("model__name", "format")),
            [("digits", "onnx"), ("iris", "torchscript"), ("minilm", "onnx")],
        )

    def test_setup_twice_changes_nothing(self) -> None:
        before = list(ModelVersion.objects.values_list("pk", "stage"))
        out = StringIO()
        call_command("setup_demo", "--no-admin", stdout=out)
        self.assertEqual(list(ModelVersion.objects.values_list("pk", "stage")), before)
        self.assertEqual(out.getvalue().count("unchanged"), 3)

    def test_setup_leaves_other_models_alone(self) -> None:
        other = MLModel.objects.create(name="someone-elses")
        call_command("setup_demo", "--no-admin", stdout=StringIO())
        self.assertTrue(MLModel.objects.filter(pk=other.pk).exists())

    def test_iris_accuracy_through_the_service(self) -> None:
        x, y = _test_split(load_iris)
        result = mlapp.predict("iris", x.tolist())
        names = np.array(["setosa", "versicolor", "virginica"])
        accuracy = float(np.mean(result.outputs["label"] == names[y]))
        self.assertGreaterEqual(accuracy, 0.90)
        stored = MLModel.objects.get(name="iris").production_version.metrics["accuracy"]
        self.assertAlmostEqual(accuracy, stored, places=6)

    def test_digits_accuracy_through_the_service(self) -> None:
        x, y = _test_split(load_digits)
        result = mlapp.predict("digits", x.reshape(-1, 1, 8, 8))
        accuracy = float(np.mean(result.outputs["label"].astype(int) == y))
        self.assertGreaterEqual(accuracy, 0.95)

    def test_iris_endpoint_names_the_species(self) -> None:
        samples = json.loads((FIXTURES / "iris/samples.json").read_text())
        for sample in samples[:5]:
            response = self.client_api.post(
                "/api/mlapp/models/iris/predict", {"inputs": [sample["input"]]}, format="json"
            )
            self.assertEqual(response.status_code, 200, response.content)
            body = response.json()
            self.assertEqual(body["outputs"]["label"], [sample["label"]])
            self.assertEqual((body["model"], body["version"]), ("iris", 1))

    def test_digits_endpoint_classifies_a_real_test_image(self) -> None:
        sample = json.loads((FIXTURES / "digits/samples.json").read_text())[0]
        response = self.client_api.post(
            "/api/mlapp/models/digits/predict",
            {"inputs": {"image": [[sample["image"]]]}},
            format="json",
        )
        self.assertEqual(response.status_code, 200, response.content)
        self.assertEqual(response.json()["outputs"]["label"], [sample["label"]])

    def test_minilm_endpoint_returns_384_floats(self) -> None:
        response = self.client_api.post(
            "/api/mlapp/models/minilm/predict",
            {"inputs": ["A man is playing a guitar."]},
            format="json",
        )
        self.assertEqual(response.status_code, 200, response.content)
        embedding = response.json()["outputs"]["embedding"]
        self.assertEqual(len(embedding), 1)
        self.assertEqual(len(embedding[0]), 384)
        self.assertAlmostEqual(float(np.linalg.norm(embedding[0])), 1.0, places=4)

    def test_minilm_paraphrases_are_closer_than_unrelated_sentences(self) -> None:
        texts = [
            "A man is playing a guitar.",
            "Someone is playing the guitar.",
            "The stock market fell sharply today.",
        ]
        emb = mlapp.predict("minilm", texts).outputs["embedding"]
        paraphrase, unrelated = _cosine(emb[0], emb[1]), _cosine(emb[0], emb[2])
        self.assertGreater(paraphrase, 0.7)
        self.assertGreater(paraphrase - unrelated, 0.4)

    def test_minilm_batch_padding_does_not_change_embeddings(self) -> None:
        short = "Hi."
        alone = mlapp.predict("minilm", [short]).outputs["embedding"][0]
        padded = mlapp.predict("minilm", [short, "a much longer sentence " * 8])
        np.testing.assert_allclose(padded.outputs["embedding"][0], alone, atol=1e-4)

    def test_minilm_refuses_numbers_with_a_400(self) -> None:
        response = self.client_api.post(
            "/api/mlapp/models/minilm/predict", {"inputs": [1, 2]}, format="json"
        )
        self.assertEqual(response.status_code, 400)
        self.assertIn("strings", response.json()["error"])

    def test_iris_page_names_the_species_in_process(self) -> None:
        response = self.client.post(
            "/", {"sepal_length": 6.7, "sepal_width": 3.0, "petal_length": 5.2, "petal_width": 2.3}
        )
        self.assertEqual(response.status_code, 200)
        self.assertContains(response, "Iris virginica")
        self.assertEqual(self.client.get("/").status_code, 200)


class DemoAdminUserTest(TestCase):
    def test_admin_user_gets_the_password_from_the_environment(self) -> None:
        import os
        from unittest import mock

        from django.contrib.auth import authenticate

        with mock.patch.dict(os.environ, {"MLAPP_ADMIN_PASSWORD": "s3cret-demo"}):
            out = StringIO()
            call_command("setup_demo", "--skip-minilm", stdout=out)
        self.assertIn("admin / s3cret-demo", out.getvalue())
        user = authenticate(username="admin", password="s3cret-demo")
        self.assertIsNotNone(user)
        self.assertTrue(user.is_superuser)
