"""The native management API of traffic policies: read, change, promote, end; audited."""

from __future__ import annotations

import pytest
from django.contrib.admin.models import LogEntry
from django.contrib.auth import get_user_model
from rest_framework.test import APIClient

from mlapp.models import ModelVersion, TrafficEvent, TrafficPolicy
from mlapp.serving.inputs import named
from mlapp.serving.service import service
from mlapp.versions.lifecycle import register_version

pytestmark = pytest.mark.django_db

URL = "/api/mlapp/models/affine/traffic"


@pytest.fixture
def staff() -> APIClient:
    user = get_user_model().objects.create_user("ops", password="x", is_staff=True)
    client = APIClient()
    client.force_authenticate(user)
    return client


@pytest.fixture
def versions(onnx_file):
    return register_version("affine", onnx_file, promote=True), register_version(
        "affine", onnx_file
    )


def test_anonymous_clients_may_not_read_or_change_a_policy(versions):
    assert APIClient().get(URL).status_code in (401, 403)
    assert APIClient().patch(URL, {"canary": 2}, format="json").status_code in (401, 403)
    assert not TrafficPolicy.objects.exists()


def test_a_model_without_a_policy_reads_as_production_only(staff, versions):
    body = staff.get(URL).json()
    assert body["production"] == 1
    assert body["canary"] is None
    assert body["summary"] == "production only"


def test_patch_sets_a_canary_and_records_who_did_it(staff, versions):
    response = staff.patch(URL, {"canary": 2, "canary_weight": 25, "sticky": "user"}, format="json")
    assert response.status_code == 200, response.content
    body = response.json()
    assert (body["canary"], body["canary_weight"], body["sticky"]) == (2, 25.0, "user")
    event = TrafficEvent.objects.get()
    assert event.user.username == "ops"
    assert "canary v2 at 25%" in event.message
    assert LogEntry.objects.filter(change_message__contains="canary v2 at 25%").exists()
    service.traffic.forget("affine")
    assert service.traffic.route("affine").canary == 2


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"canary": 9}, "no version 9"),
        ({"canary": 1}, "production"),
        ({"canary_weight": 101}, "canary_weight"),
        ({"sticky": "cookie:a"}, "sticky"),
        ({"colour": "red"}, "Unknown field"),
        ({"canary": "two"}, "version number"),
    ],
)
def test_a_bad_policy_is_a_400_that_says_why_and_stores_nothing(staff, versions, body, message):
    response = staff.patch(URL, body, format="json")
    assert response.status_code == 400
    assert message in response.json()["error"]
    assert not TrafficPolicy.objects.exists()


def test_promote_canary_makes_it_production_and_ends_the_split(staff, versions):
    staff.patch(URL, {"canary": 2, "canary_weight": 10}, format="json")
    response = staff.post(f"{URL}/promote-canary")
    assert response.status_code == 200
    assert response.json()["production"] == 2
    assert response.json()["canary"] is None
    assert ModelVersion.objects.get(version=2).stage == "production"
    assert TrafficEvent.objects.filter(action="promoted").exists()


def test_promote_without_a_canary_is_a_409(staff, versions):
    assert staff.post(f"{URL}/promote-canary").status_code == 409


def test_end_experiment_sends_everything_to_production(staff, versions):
    staff.patch(URL, {"canary": 2, "canary_weight": 50, "shadow": 2}, format="json")
    body = staff.post(f"{URL}/end").json()
    assert (body["canary"], body["shadow"]) == (None, None)
    service.traffic.forget("affine")
    assert {service.predict("affine", named([[1, 2, 3]])).version for _ in range(20)} == {1}
