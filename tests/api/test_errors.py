"""The one error renderer: status, ``{"error": ...}`` and headers for every API."""

from __future__ import annotations

import logging

import pytest
from django.db import connection
from django.urls import path
from rest_framework import exceptions as drf_exceptions
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.test import APIClient

from mlapp.api.errors import render_error
from mlapp.api.native.base import MLAppAPIView
from mlapp.api.permissions import READ
from mlapp.exceptions import (
    Conflict,
    InferenceError,
    MLAppError,
    ModelNotFound,
    ModelNotReady,
    Overloaded,
)
from mlapp.models import MLModel


class Busy(MLAppError):
    status_code = 503
    default_message = "Busy."
    code = "busy"
    retry_after = 7


class CreatesThenFails(MLAppAPIView):
    """Writes a row, then fails: the request's transaction must not keep the row."""

    read_access = write_access = READ
    error: MLAppError = Conflict("Too late.")

    def post(self, request: Request) -> Response:
        MLModel.objects.create(name="half-done")
        raise self.error


urlpatterns = [
    path("conflict", CreatesThenFails.as_view()),
    path("busy", CreatesThenFails.as_view(error=Busy())),
]


# -- render_error -------------------------------------------------------------------------


def test_client_error_answers_its_message_and_no_retry():
    answer = render_error(ModelNotFound.no_model("iris"))
    assert (answer.status, answer.body, answer.headers) == (
        404,
        {"error": "No model named 'iris'."},
        {},
    )


@pytest.mark.parametrize(
    ("error", "retry_after"),
    [(ModelNotReady("Loading."), "1"), (Overloaded(), "1"), (Busy(), "7")],
    ids=["not-ready", "overloaded", "own-delay"],
)
def test_retry_after_comes_from_the_error(error, retry_after):
    answer = render_error(error)
    assert answer.status == 503
    assert answer.headers == {"Retry-After": retry_after}
    assert answer.body == {"error": error.message}


def test_a_500_answers_the_default_message_and_logs_the_error(caplog):
    with caplog.at_level(logging.ERROR, logger="mlapp.api"):
        answer = render_error(InferenceError("CUDA out of memory at 0x7f3a"))
    assert (answer.status, answer.body) == (500, {"error": InferenceError.default_message})
    assert "0x7f3a" in caplog.text


def test_an_unexpected_exception_is_a_500_that_echoes_nothing(caplog):
    with caplog.at_level(logging.ERROR, logger="mlapp.api"):
        answer = render_error(KeyError("secret"))
    assert (answer.status, answer.body) == (500, {"error": "Internal server error."})
    assert "secret" in caplog.text


def test_drf_errors_are_flattened_to_one_message():
    error = drf_exceptions.ValidationError(
        {"model": ["No model named 'x'."], "non_field_errors": ["Give a file."]}
    )
    assert render_error(error).body == {"error": "model: No model named 'x'.; Give a file."}


def test_drf_throttle_and_authentication_keep_their_headers():
    assert render_error(drf_exceptions.Throttled(wait=12)).headers == {"Retry-After": "12"}
    error = drf_exceptions.NotAuthenticated()
    error.auth_header = 'Token realm="api"'
    assert render_error(error).headers == {"WWW-Authenticate": 'Token realm="api"'}


# -- the DRF exception handler ------------------------------------------------------------


@pytest.fixture
def atomic_requests(monkeypatch):
    monkeypatch.setitem(connection.settings_dict, "ATOMIC_REQUESTS", True)


@pytest.mark.django_db
@pytest.mark.urls(__name__)
def test_drf_view_error_rolls_back_the_request_transaction(atomic_requests):
    response = APIClient().post("/conflict")
    assert response.status_code == 409
    assert response.json() == {"error": "Too late."}
    assert not MLModel.objects.filter(name="half-done").exists()


@pytest.mark.django_db
@pytest.mark.urls(__name__)
def test_drf_view_answers_retry_after_from_the_error():
    response = APIClient().post("/busy")
    assert response.status_code == 503
    assert response["Retry-After"] == "7"
    assert response.json() == {"error": "Busy."}


@pytest.mark.django_db
@pytest.mark.urls(__name__)
def test_drf_view_error_without_retry_after_sends_no_header():
    response = APIClient().post("/conflict")
    assert response.status_code == 409
    assert not response.has_header("Retry-After")
