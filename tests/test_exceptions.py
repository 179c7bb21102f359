"""mlapp's error vocabulary: each error carries its status, message, code and retry delay."""

from __future__ import annotations

import re

import pytest

from mlapp import exceptions
from mlapp.exceptions import MLAppError, ModelNotFound, ModelNotReady

#: (class, status, code, retry_after) of the errors moved here from the modules that raise them.
MOVED = [
    (exceptions.PayloadTooLarge, 413, "payload_too_large", None),
    (exceptions.UnsupportedMediaType, 415, "unsupported_media_type", None),
    (exceptions.Conflict, 409, "conflict", None),
    (exceptions.BadSource, 400, "bad_source", None),
    (exceptions.UnflattenableOutputs, 400, "unflattenable_outputs", None),
    (exceptions.QueueUnavailable, 503, "queue_unavailable", 1),
]

ALL_ERRORS = [
    value
    for value in vars(exceptions).values()
    if isinstance(value, type) and issubclass(value, MLAppError)
]


@pytest.mark.parametrize(
    ("cls", "status", "code", "retry_after"), MOVED, ids=[case[0].__name__ for case in MOVED]
)
def test_moved_error_has_its_status_code_and_retry_delay(cls, status, code, retry_after):
    error = cls()
    assert (error.status_code, error.code, error.retry_after) == (status, code, retry_after)
    assert error.message == cls.default_message


@pytest.mark.parametrize("cls", ALL_ERRORS, ids=lambda cls: cls.__name__)
def test_every_error_has_a_snake_case_code_and_a_default_message(cls):
    assert re.fullmatch(r"[a-z]+(_[a-z]+)*", cls.code)
    assert cls.default_message.endswith(".")


def test_codes_are_unique():
    codes = [cls.code for cls in ALL_ERRORS]
    assert len(codes) == len(set(codes))


@pytest.mark.parametrize("cls", ALL_ERRORS, ids=lambda cls: cls.__name__)
def test_only_a_503_asks_the_client_to_retry(cls):
    assert (cls.retry_after is not None) == (cls.status_code == 503)


def test_a_message_given_replaces_the_default():
    assert str(exceptions.Conflict("Job 3 has finished.")) == "Job 3 has finished."


def test_model_not_found_messages_name_the_model_and_the_version():
    assert ModelNotFound.no_model("iris").message == "No model named 'iris'."
    assert ModelNotFound.no_version("iris", 9).message == "Model 'iris' has no version 9."
    # A version the client wrote as text shows quoted, as written.
    assert ModelNotFound.no_version("iris", "latest").message == (
        "Model 'iris' has no version 'latest'."
    )


def test_no_production_version_is_a_model_not_ready():
    error = ModelNotReady.no_production("iris")
    assert (error.status_code, error.message) == (503, "Model 'iris' has no production version.")
