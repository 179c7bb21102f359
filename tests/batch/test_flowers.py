"""The example app: the host's own flowers table, scored by a batch job, shown with its
stored predictions."""

from __future__ import annotations

import json
from io import StringIO
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.test import override_settings

from mlapp import batch
from mlapp.batch import runner
from mlapp.models import BatchJob
from mlapp.versions.lifecycle import register_version
from project.flowers.loading import load_flowers
from project.flowers.models import Flower

FIXTURES = Path(django_settings.BASE_DIR) / "fixtures"
SOURCES = {
    "flowers": {
        "queryset": "project.flowers.sources.flowers",
        "inputs": ["sepal_length", "sepal_width", "petal_length", "petal_width"],
        "key": "pk",
    }
}


@pytest.fixture
def iris():
    with override_settings(MLAPP={"THREADS": 1, "BATCH_SOURCES": SOURCES}):
        yield register_version(
            "iris",
            FIXTURES / "iris/model.pt",
            signature=json.loads((FIXTURES / "iris/signature.json").read_text()),
            handler="project.demo.handlers.IrisHandler",
            promote=True,
        )


@pytest.mark.django_db
def test_load_flowers_loads_the_150_fixture_rows_once():
    out = StringIO()
    call_command("load_flowers", stdout=out)
    assert "150 added" in out.getvalue()
    assert load_flowers() == 0
    assert Flower.objects.count() == 150
    first = Flower.objects.get(pk=1)
    assert (first.measurements, first.species) == ([5.1, 3.5, 1.4, 0.2], "setosa")
    assert Flower.objects.create(sepal_length=1, sepal_width=1, petal_length=1, petal_width=1).pk


@pytest.mark.django_db
def test_page_says_not_scored_before_any_job(client):
    load_flowers()
    page = client.get("/flowers/").content.decode()
    assert page.count("not scored yet") == 50
    assert "page 1 of 3" in page


@pytest.mark.django_db
def test_page_shows_each_flower_with_its_stored_prediction(client, iris):
    load_flowers()
    job, plan = batch.prepare_job("iris", source="flowers")
    runner.run_job(job.pk, plan.chunks, max_retries=0, retry_delay=0)
    page = client.get("/flowers/?page=3").content.decode()
    assert "not scored yet" not in page
    assert page.count(f"#{job.pk}</td>") == 50
    assert "<td>virginica</td>" in page
    assert f"Latest job: <strong>#{job.pk}</strong>" in page
    assert "succeeded" in page


@pytest.mark.django_db
def test_anonymous_visitors_cannot_start_a_job(client, iris):
    response = client.post("/flowers/", follow=True)
    assert "Log in as staff" in response.content.decode()
    assert not BatchJob.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_staff_scores_the_table_from_the_page_in_process(client, iris):
    staff = get_user_model().objects.create_user("staff", password="pw", is_staff=True)
    client.force_login(staff)
    response = client.post("/flowers/")
    # Wait before the next request: the in-memory test database locks instead of waiting
    # while the runner's thread writes (a SQLite file in WAL mode waits).
    assert batch.inprocess.wait(timeout=120)
    assert response.status_code == 302
    messages = client.get(response["Location"]).content.decode()
    assert "Loaded 150 flowers; batch job" in messages
    job = BatchJob.objects.get()
    assert (job.status, job.done, job.source_name, job.created_by) == (
        "succeeded",
        150,
        "flowers",
        staff,
    )
    page = client.get("/flowers/").content.decode()
    assert "not scored yet" not in page
