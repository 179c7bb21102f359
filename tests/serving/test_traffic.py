"""Traffic policies in one process: the canary split, sticky callers, pinned requests."""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pytest
from django.core.exceptions import ValidationError
from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

import mlapp
from mlapp.models import ModelVersion, TrafficPolicy
from mlapp.serving.inputs import named
from mlapp.serving.routes import Caller
from mlapp.serving.service import service
from mlapp.versions.lifecycle import promote_version, register_version

pytestmark = pytest.mark.django_db

X = [[1.0, 2.0, 3.0]]


@pytest.fixture
def versions(onnx_file) -> tuple[ModelVersion, ModelVersion]:
    production = register_version("affine", onnx_file, promote=True)
    return production, register_version("affine", onnx_file)


def _policy(versions, **fields) -> TrafficPolicy:
    production, canary = versions
    fields.setdefault("canary", canary)
    policy = TrafficPolicy(model=production.model, **fields)
    policy.full_clean()
    policy.save()
    service.traffic.forget("affine")  # tests run in a transaction: no on_commit reload
    return policy


def _answers(n: int, **kwargs) -> Counter:
    return Counter(service.predict("affine", named(X), **kwargs).version for _ in range(n))


def test_a_model_without_a_policy_queries_nothing_after_its_first_request(
    versions, django_assert_num_queries
):
    service.predict("affine", named(X))
    with django_assert_num_queries(0):
        assert _answers(20) == {1: 20}
    assert service.traffic.route("affine") is None


def test_a_request_while_a_policy_is_read_again_finds_the_old_route_and_queries_nothing(
    versions, monkeypatch
):
    # A reload reads the policy again; a request meanwhile must not query: on SQLite its read
    # can meet the write that caused the reload and fail ("table is locked").
    _policy(versions, canary_weight=10)
    traffic = service.traffic
    old = traffic.route("affine")
    read = traffic._load
    during: list = []

    def load(name):
        if not during:
            with CaptureQueriesContext(connection) as queries:
                during.append(traffic.route(name))
            during.append(len(queries.captured_queries))
        return read(name)

    monkeypatch.setattr(traffic, "_load", load)
    traffic.forget("affine")
    assert during == [old, 0]
    assert traffic.route("affine") == old  # read again, the same policy


def test_a_ten_percent_canary_answers_exactly_a_tenth_of_one_process_requests(versions):
    _policy(versions, canary_weight=10)
    answers = _answers(1000)
    assert answers.keys() == {1, 2}
    assert 99 <= answers[2] <= 101, answers


@pytest.mark.parametrize(("weight", "expected"), [(0, {1: 200}), (100, {2: 200})])
def test_weights_at_the_ends_send_everything_one_way(versions, weight, expected):
    _policy(versions, canary_weight=weight)
    assert _answers(200) == expected


def test_a_pinned_request_bypasses_the_policy(versions):
    _policy(versions, canary_weight=100)
    assert _answers(20, version=1) == {1: 20}


def test_sticky_callers_never_change_version_and_split_by_the_weight(versions):
    _policy(versions, canary_weight=30, sticky="field:customer")
    seen: dict[int, set[int]] = {}
    for _ in range(3):
        for customer in range(500):
            caller = Caller(fields={"customer": customer})
            answer = service.predict("affine", named(X), caller=caller).version
            seen.setdefault(customer, set()).add(answer)
    assert all(len(answers) == 1 for answers in seen.values())
    on_canary = sum(answers == {2} for answers in seen.values())
    assert 100 <= on_canary <= 200, on_canary  # 30 % of 500 callers, hashed


def test_a_sticky_request_without_the_attribute_takes_the_split(versions):
    _policy(versions, canary_weight=50, sticky="header:X-Session")
    assert _answers(100, caller=Caller(headers={})) == {1: 50, 2: 50}


def test_the_native_api_sticks_by_header_and_names_the_version_that_answered(versions):
    _policy(versions, canary_weight=50, sticky="header:X-Session")
    client = APIClient()
    by_session: dict[str, set[int]] = {}
    for _ in range(2):
        for session in map(str, range(40)):
            response = client.post(
                "/api/mlapp/models/affine/predict",
                {"inputs": X},
                format="json",
                HTTP_X_SESSION=session,
            )
            assert response.status_code == 200
            by_session.setdefault(session, set()).add(response.json()["version"])
    assert all(len(v) == 1 for v in by_session.values())
    assert set().union(*by_session.values()) == {1, 2}


def test_the_native_api_sticks_by_a_body_field(versions):
    _policy(versions, canary_weight=50, sticky="field:user_id")
    client = APIClient()
    answers = {
        client.post(
            "/api/mlapp/models/affine/predict",
            {"inputs": X, "parameters": {"user_id": 7}},
            format="json",
        ).json()["version"]
        for _ in range(10)
    }
    assert len(answers) == 1


def test_v2_sticks_by_a_field_of_the_request_parameters(versions):
    _policy(versions, canary_weight=50, sticky="field:customer")
    client = APIClient()
    seen: dict[int, set[str]] = {}
    for customer in range(40):  # one caller's requests in a row: a plain split alternates
        for _ in range(3):
            body = {
                "parameters": {"customer": customer},
                "inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 3], "data": X[0]}],
            }
            response = client.post(
                "/v2/models/affine/infer", json.dumps(body), content_type="application/json"
            )
            assert response.status_code == 200, response.content
            seen.setdefault(customer, set()).add(response.json()["model_version"])
    assert all(len(versions) == 1 for versions in seen.values())
    assert set().union(*seen.values()) == {"1", "2"}


def test_v2_sticky_by_field_reads_a_binary_body_and_survives_a_broken_one(versions):
    _policy(versions, canary_weight=50, sticky="field:customer")
    client = APIClient()
    header = json.dumps(
        {
            "parameters": {"customer": "c-9"},
            "inputs": [
                {"name": "x", "datatype": "FP32", "shape": [1, 3],
                 "parameters": {"binary_data_size": 12}}
            ],
        }
    ).encode()  # fmt: skip
    body = header + np.array(X[0], dtype="<f4").tobytes()
    answers = {
        client.post(
            "/v2/models/affine/infer",
            body,
            content_type="application/octet-stream",
            HTTP_INFERENCE_HEADER_CONTENT_LENGTH=str(len(header)),
        ).json()["model_version"]
        for _ in range(10)
    }
    assert len(answers) == 1
    broken = client.post(
        "/v2/models/affine/infer",
        b'{"parameters": {"customer": 1}, "inp',
        content_type="application/json",
    )
    assert broken.status_code == 400
    assert "not valid JSON" in broken.json()["error"]


def test_v2_infer_names_the_canary_that_answered(versions):
    _policy(versions, canary_weight=100)
    body = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 3], "data": X[0]}]}
    response = APIClient().post(
        "/v2/models/affine/infer", json.dumps(body), content_type="application/json"
    )
    assert response.status_code == 200
    assert response.json()["model_version"] == "2"


def test_mlapp_predict_takes_a_sticky_key(versions):
    _policy(versions, canary_weight=50, sticky="user")
    for key in range(10):
        answers = {mlapp.predict("affine", X, sticky=key).version for _ in range(5)}
        assert len(answers) == 1


def test_a_canary_promoted_since_answers_as_production(versions):
    _policy(versions, canary_weight=10)
    promote_version(versions[1])
    service.traffic.forget("affine")
    assert _answers(50) == {2: 50}


def test_a_canary_that_cannot_load_leaves_production_answering(versions):
    _policy(versions, canary_weight=100)
    versions[1].artifact.storage.delete(versions[1].artifact.name)
    assert _answers(5) == {1: 5}


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"canary_weight": 120}, "canary_weight"),
        ({"shadow_share": -1}, "shadow_share"),
        ({"sticky": "cookie:x"}, "sticky"),
        ({"sticky": "header:"}, "sticky"),
        ({"rollback_error_rate": 2}, "rollback_error_rate"),
        ({"rollback_p99_ratio": 0.5}, "rollback_p99_ratio"),
    ],
)
def test_a_bad_policy_is_a_form_error(versions, fields, field):
    with pytest.raises(ValidationError) as error:
        TrafficPolicy(model=versions[0].model, **fields).full_clean()
    assert field in error.value.message_dict


def test_the_production_version_cannot_be_its_own_canary(versions):
    with pytest.raises(ValidationError) as error:
        TrafficPolicy(model=versions[0].model, canary=versions[0]).full_clean()
    assert "canary" in error.value.message_dict


def test_saving_a_policy_moves_the_change_marker(versions):
    from mlapp.models import ChangeMarker

    before = ChangeMarker.objects.counters("affine")["affine"]
    _policy(versions, canary_weight=5)
    assert ChangeMarker.objects.counters("affine")["affine"] == before + 1


def test_latency_of_a_model_under_a_policy_is_labelled_by_the_version_that_answered(versions):
    from prometheus_client import REGISTRY

    def count(version: str) -> float:
        labels = {"model": "affine", "version": version}
        return REGISTRY.get_sample_value("mlapp_version_request_seconds_count", labels) or 0.0

    before = {v: count(v) for v in ("1", "2")}
    _policy(versions, canary_weight=10)
    answers = _answers(100)
    assert {v: count(v) - before[v] for v in ("1", "2")} == {"1": answers[1], "2": answers[2]}


def test_grpc_sticks_by_a_field_of_the_request_parameters(versions):
    import tritonclient.grpc as triton

    from mlapp.api.grpc.server import start_server

    _policy(versions, canary_weight=50, sticky="field:customer")
    # Policy and both versions loaded in this thread: the server's threads cannot see this
    # test's transaction.
    for _ in range(4):  # production and canary both answer (an even, unsticky split)
        service.predict("affine", named(X))
    assert service.traffic.route("affine") is not None
    server = start_server("127.0.0.1", 0, max_message_size=None)
    client = triton.InferenceServerClient(f"127.0.0.1:{server.bound_port}")
    seen: dict[int, set[str]] = {}
    try:
        x = triton.InferInput("x", [1, 3], "FP32")
        x.set_data_from_numpy(np.array(X, dtype=np.float32))
        for customer in range(40):  # one caller's calls in a row: a plain split alternates
            for _ in range(3):
                answer = client.infer("affine", [x], parameters={"customer": customer})
                seen.setdefault(customer, set()).add(answer.get_response().model_version)
    finally:
        client.close()
        server.stop()
    assert all(len(versions) == 1 for versions in seen.values())
    assert set().union(*seen.values()) == {"1", "2"}
