"""What the admin pages show: lists with filters, the version page (signature, metrics,
confusion matrix, lineage, batch jobs), "try it", and the model's activity charts."""

from __future__ import annotations

import json
import re

from django.contrib.auth import get_user_model
from django.test import SimpleTestCase, TestCase
from django.urls import reverse

import mlapp
from mlapp.admin import charts
from mlapp.admin.display import example_request
from mlapp.models import BatchJob, ModelVersion
from mlapp.serving.stats import RequestStats, request_stats
from tests.admin.tiny_models import new_iris_version, register_iris_and_digits


class AdminPagesTest(TestCase):
    @classmethod
    def setUpTestData(cls) -> None:
        cls.iris, cls.digits = register_iris_and_digits()
        cls.v1 = cls.iris.production_version
        cls.v2 = new_iris_version(notes="candidate")
        cls.v2.parent = cls.v1
        cls.v2.save(update_fields=["parent"])
        cls.job = BatchJob.objects.create(
            version=cls.v1, status=BatchJob.Status.RUNNING, total=200, done=120, failed=3
        )
        cls.admin = get_user_model().objects.create_superuser("root", password="pw")

    def setUp(self) -> None:
        self.client.force_login(self.admin)
        request_stats.clear()

    def version_page(self, version: ModelVersion):
        return self.client.get(reverse("admin:mlapp_modelversion_change", args=[version.pk]))

    # -- lists ----------------------------------------------------------------------------

    def test_model_list_shows_the_production_version_of_each_model(self) -> None:
        response = self.client.get("/admin/mlapp/mlmodel/")
        self.assertContains(
            response,
            f'<a href="{reverse("admin:mlapp_modelversion_change", args=[self.v1.pk])}">v1</a>',
        )
        self.assertContains(response, "digits")

    def test_model_list_filters_by_version_format(self) -> None:
        response = self.client.get("/admin/mlapp/mlmodel/", {"versions__format": "onnx"})
        self.assertEqual([m.name for m in response.context["cl"].result_list], ["digits"])

    def test_version_list_filters_by_stage_and_searches(self) -> None:
        staging = self.client.get("/admin/mlapp/modelversion/", {"stage__exact": "staging"})
        self.assertEqual(list(staging.context["cl"].result_list), [self.v2])
        found = self.client.get("/admin/mlapp/modelversion/", {"q": "candidate"})
        self.assertEqual(list(found.context["cl"].result_list), [self.v2])

    def test_model_page_lists_versions_inline_with_key_metrics(self) -> None:
        response = self.client.get(reverse("admin:mlapp_mlmodel_change", args=[self.iris.pk]))
        self.assertContains(response, "mlapp-stage-production")
        self.assertContains(response, "mlapp-stage-staging")
        self.assertContains(response, "accuracy 1")
        self.assertContains(response, self.v1.sha256[:12])
        self.assertContains(response, f"?model={self.iris.pk}")  # upload a new version

    # -- the version page -------------------------------------------------------------------

    def test_version_page_shows_the_signature_as_a_table(self) -> None:
        response = self.version_page(self.v1)
        self.assertContains(
            response,
            "<tr><td>input</td><td><code>input</code></td><td>FP32</td>"
            "<td><code>[-1, 4]</code></td></tr>",
            html=False,
        )
        # The handler's public output (the species name) and the artifact's own tensors.
        self.assertContains(response, "<td><code>label</code></td><td>BYTES</td>")
        self.assertContains(response, "the artifact itself runs")

    def test_version_page_draws_the_confusion_matrix_from_training(self) -> None:
        response = self.version_page(self.v1)
        svg = _svg(response.content.decode(), "mlapp-confusion")
        self.assertEqual(svg.count('class="mlapp-cell mlapp-cell-hit"'), 3)
        self.assertIn("true virginica, predicted virginica: 15", svg)

    def test_version_page_shows_metrics_validation_lineage_and_batch_jobs(self) -> None:
        response = self.version_page(self.v2)
        self.assertContains(response, "smoke prediction (2 rows) in")
        parent_url = reverse("admin:mlapp_modelversion_change", args=[self.v1.pk])
        self.assertContains(response, f'<a href="{parent_url}">v1</a>')
        jobs = self.version_page(self.v1)
        self.assertContains(jobs, f"#{self.job.pk} v1 running 120/200")
        self.assertContains(jobs, "3 failed items")
        self.assertContains(jobs, "<th>accuracy</th>")

    def test_version_page_prefills_try_it_with_a_valid_example(self) -> None:
        response = self.version_page(self.v1)
        form = response.context["try_form"]
        body = json.loads(form.initial["body"])
        self.assertEqual(body, {"inputs": {"input": [[0.0, 0.0, 0.0, 0.0]]}})

    # -- try it ---------------------------------------------------------------------------

    def test_try_it_runs_the_version_through_the_service(self) -> None:
        url = reverse("admin:mlapp_version_try", args=[self.v2.pk])
        body = {"inputs": [[6.7, 3.0, 5.2, 2.3], [5.1, 3.5, 1.4, 0.2]]}
        response = self.client.post(url, {"body": json.dumps(body)})
        result = json.loads(response.context["result"])
        self.assertEqual((result["model"], result["version"]), ("iris", 2))
        self.assertEqual(result["outputs"]["label"], ["virginica", "setosa"])
        self.assertGreater(response.context["latency_ms"], 0)
        self.assertContains(response, "Answered in")

    def test_every_prefilled_example_is_accepted_by_its_model(self) -> None:
        for version in ModelVersion.objects.all():
            url = reverse("admin:mlapp_version_try", args=[version.pk])
            response = self.client.post(url, {"body": json.dumps(example_request(version))})
            self.assertIsNone(response.context["error"], version)
            self.assertIn('"outputs"', response.context["result"])

    def test_try_it_shows_the_service_error_for_bad_inputs(self) -> None:
        url = reverse("admin:mlapp_version_try", args=[self.v1.pk])
        response = self.client.post(url, {"body": '{"inputs": {"petals": [1]}}'})
        self.assertEqual(response.status_code, 200)
        self.assertIn("Missing input(s): input", response.context["error"])

    def test_try_it_refuses_a_body_that_is_not_json(self) -> None:
        url = reverse("admin:mlapp_version_try", args=[self.v1.pk])
        response = self.client.post(url, {"body": "{inputs: [1, 2"})
        self.assertIn("Not valid JSON", response.context["form"].errors["body"][0])
        self.assertIsNone(response.context["result"])

    # -- activity ---------------------------------------------------------------------------

    def test_model_page_charts_the_requests_this_process_answered(self) -> None:
        for _ in range(5):
            mlapp.predict("iris", [[5.1, 3.5, 1.4, 0.2]])
        response = self.client.get(reverse("admin:mlapp_mlmodel_change", args=[self.iris.pk]))
        svg = _svg(response.content.decode(), "mlapp-activity")
        self.assertIn("5 requests in the last 10 minutes", svg)
        self.assertEqual(svg.count('class="mlapp-bar"'), 1)
        self.assertIn(f"#{self.job.pk} v1 running 120/200", response.content.decode())

    def test_model_page_without_requests_says_so(self) -> None:
        response = self.client.get(reverse("admin:mlapp_mlmodel_change", args=[self.digits.pk]))
        self.assertContains(response, "no requests in this process yet")
        self.assertContains(response, "no batch jobs yet")


class ChartsTest(SimpleTestCase):
    def test_confusion_matrix_escapes_its_labels(self) -> None:
        svg = charts.confusion_matrix_chart([[1, 0], [0, 1]], ["<b>a</b>", "b&c"])
        self.assertIn("&lt;b&gt;a&lt;/b&gt;", svg)
        self.assertIn("b&amp;c", svg)
        self.assertNotIn("<b>", svg)

    def test_confusion_matrix_keeps_rare_misses_visible(self) -> None:
        svg = charts.confusion_matrix_chart([[99, 1], [0, 100]], ["a", "b"])
        opacities = re.findall(r'mlapp-cell-miss" [^>]*fill-opacity="([0-9.]+)"', svg)
        self.assertEqual(sorted(map(float, opacities)), [0.08, 0.31])

    def test_stats_keep_ten_minutes_in_ten_second_buckets(self) -> None:
        stats = RequestStats()
        stats.record("m", 0.010, now=1000.0)
        stats.record("m", 0.030, now=1005.0)
        stats.record("m", 0.020, now=1011.0)
        stats.record("m", 0.500, now=100.0)  # long ago: outside the window
        buckets = stats.recent("m", now=1015.0)
        self.assertEqual(len(buckets), 60)
        self.assertEqual([b.count for b in buckets[-2:]], [2, 1])
        self.assertAlmostEqual(buckets[-2].mean_ms, 20.0)
        self.assertAlmostEqual(buckets[-2].max_ms, 30.0)
        self.assertEqual(sum(b.count for b in buckets), 3)
        self.assertEqual(stats.recent("other", now=1015.0)[-1].count, 0)


def _svg(html: str, css_class: str) -> str:
    match = re.search(rf'<svg class="mlapp-chart {css_class}".*?</svg>', html, re.S)
    assert match, f"no {css_class} chart on the page"
    return match.group(0)
