"""The admin of traffic policies: the inline is audited, the page shows the split, and
promote the canary / end the experiment confirm first, then act."""

from __future__ import annotations

import time

import pytest
from django.contrib.admin.models import LogEntry
from django.contrib.auth import get_user_model
from django.urls import reverse

from mlapp.models import ModelVersion, TrafficEvent, TrafficPolicy, TrafficWindow
from mlapp.serving.traffic_stats import BUCKET_SECONDS, LATENCY_BOUNDS
from mlapp.versions.lifecycle import register_version
from mlapp.versions.traffic import set_policy

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_client(client):
    user = get_user_model().objects.create_superuser("root", "r@example.com", "x")
    client.force_login(user)
    return client


@pytest.fixture
def versions(onnx_file):
    return register_version("affine", onnx_file, promote=True), register_version(
        "affine", onnx_file
    )


def _page(model) -> str:
    return reverse("admin:mlapp_mlmodel_change", args=[model.pk])


def test_the_model_page_shows_each_version_traffic_and_the_actions(admin_client, versions):
    production, _canary = versions
    set_policy(production.model, {"canary": 2, "canary_weight": 10})
    bucket = int(time.time() // BUCKET_SECONDS) * BUCKET_SECONDS
    latency = [0] * len(LATENCY_BOUNDS)
    latency[2] = 1
    for version, requests, errors in ((1, 9, 0), (2, 1, 1)):
        TrafficWindow.objects.create(
            process="elsewhere:1",
            model_name="affine",
            version=version,
            bucket=bucket,
            requests=requests,
            errors=errors,
            total_seconds=0.004 * requests,
            latency=[n * requests for n in latency],
        )
    html = admin_client.get(_page(production.model)).content.decode()
    assert "v1 production: 9 req (90.0%)" in html
    assert "v2 canary 10%: 1 req (10.0%), 100.0% err" in html
    assert "Promote the canary" in html
    assert "End the experiment" in html


def test_saving_the_policy_inline_is_recorded_in_the_history(admin_client, versions):
    production, canary = versions
    page = _page(production.model)
    form = admin_client.get(page).context["adminform"].form
    data = {
        "name": "affine",
        "description": "",
        "task": form.initial["task"],
        "handler": "",
        "serving": "{}",
        "versions-TOTAL_FORMS": "0",
        "versions-INITIAL_FORMS": "0",
        "traffic-TOTAL_FORMS": "1",
        "traffic-INITIAL_FORMS": "0",
        "traffic-0-canary": str(canary.pk),
        "traffic-0-canary_weight": "20",
        "traffic-0-sticky": "",
        "traffic-0-shadow": "",
        "traffic-0-shadow_share": "100",
        "traffic-0-rollback_window": "60",
        "traffic-0-rollback_min_requests": "50",
    }
    response = admin_client.post(page, data)
    assert response.status_code == 302, response.context["errors"] if response.context else ""
    policy = TrafficPolicy.objects.get()
    assert (policy.canary, policy.canary_weight) == (canary, 20)
    assert LogEntry.objects.filter(change_message__contains="canary v2 at 20%").exists()
    assert TrafficEvent.objects.get().user.username == "root"


def test_promote_the_canary_asks_then_promotes(admin_client, versions):
    production, canary = versions
    set_policy(production.model, {"canary": 2, "canary_weight": 10})
    url = reverse("admin:mlapp_model_traffic", args=[production.model.pk, "promote-canary"])
    asked = admin_client.get(url)
    assert b"The canary v2 becomes the production version" in asked.content
    assert ModelVersion.objects.get(pk=canary.pk).stage == "staging"
    assert admin_client.post(url).status_code == 302
    assert ModelVersion.objects.get(pk=canary.pk).stage == "production"
    assert TrafficPolicy.objects.get().canary is None


def test_end_the_experiment_asks_then_ends_it(admin_client, versions):
    production, _canary = versions
    set_policy(production.model, {"canary": 2, "canary_weight": 10, "shadow": 2})
    url = reverse("admin:mlapp_model_traffic", args=[production.model.pk, "end-experiment"])
    assert admin_client.get(url).status_code == 200
    assert TrafficPolicy.objects.get().canary is not None
    admin_client.post(url)
    policy = TrafficPolicy.objects.get()
    assert (policy.canary, policy.shadow) == (None, None)
    assert TrafficEvent.objects.filter(action="ended").exists()
