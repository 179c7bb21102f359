"""Schemathesis over the native API's OpenAPI schema, in-process against the WSGI app.

Every operation of the schema that drf-spectacular generates is called with requests
generated from it (and requests that break it), anonymously and as staff with a DRF token.
Every answer must be below 500, have a status code and content type the schema documents,
and a body that fits the documented schema; a schema-valid request must not be refused as
invalid and a schema-violating one must not be accepted. An invalid token is a 401 on every
operation.
"""

from __future__ import annotations

import pytest
import schemathesis
from django.contrib.auth import get_user_model
from django.core import signals as signal
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
from hypothesis import HealthCheck, settings
from rest_framework.authtoken.models import Token
from schemathesis import GenerationMode
from schemathesis.config import SchemathesisConfig

from tests.conftest import ON_POSTGRES
from tests.fuzz import tally
from tests.fuzz.common import CI

SCHEMA_URL = "/api/mlapp/schema/?format=json"
#: Examples per operation; each operation is tried anonymously and as staff. The PostgreSQL
#: pass tries fewer (each example costs database round trips there; the codecs are the same).
EXAMPLES = 5 if ON_POSTGRES else 25


def load_schema(*modes: GenerationMode) -> schemathesis.BaseSchema:
    """The schema read from the app itself (at collection: no database needed); calls go to
    the same app. Credentials are the tests' own, never generated."""
    config = SchemathesisConfig()
    config.projects.default.generation.update(
        modes=list(modes) or None, with_security_parameters=False
    )
    return schemathesis.openapi.from_wsgi(SCHEMA_URL, get_wsgi_application(), config=config)


schema = load_schema()
#: Requests the schema allows: they reach their operation (an invalid path parameter would
#: meet no route, and no view to check credentials).
valid_requests = load_schema(GenerationMode.POSITIVE)


@pytest.fixture(autouse=True)
def _keep_the_test_connection():
    """Calls go straight to the WSGI app, whose request signals would close the test's
    database connection (inside its transaction) after every call; Django's test client
    disconnects ``close_old_connections`` the same way."""
    signal.request_started.disconnect(close_old_connections)
    signal.request_finished.disconnect(close_old_connections)
    try:
        yield
    finally:
        signal.request_started.connect(close_old_connections)
        signal.request_finished.connect(close_old_connections)


@pytest.fixture
def staff_token(db) -> str:
    user = get_user_model().objects.create_user("fuzz-staff", is_staff=True)
    return Token.objects.create(user=user).key


schema_settings = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=CI,
    database=None,
    suppress_health_check=list(HealthCheck),
)


#: Operations whose schema-valid bodies may still be refused, for what no static schema can
#: say: predict inputs fit the model's signature (GET .../predict describes it), an upload
#: must be a model artifact, a job's input file or source must hold rows for its model, a
#: derivation's kind must fit the version's format and its samples the model's inputs.
CONTENT_CHECKED = {
    ("POST", "/api/mlapp/models/{name}/predict"),
    ("POST", "/api/mlapp/models/{name}/versions/{version}/predict"),
    ("POST", "/api/mlapp/models/{name}/versions/"),
    ("POST", "/api/mlapp/jobs/"),
    ("POST", "/api/mlapp/models/{name}/versions/{version}/derive"),
}


def call_and_validate(case, suite: str, headers: dict[str, str]) -> None:
    response = case.call(headers=headers)
    tally.record(suite, response.status_code)
    excluded = []
    if (case.method.upper(), case.path) in CONTENT_CHECKED:
        excluded.append(schemathesis.checks.positive_data_acceptance)
    case.validate_response(response, headers=headers, excluded_checks=excluded)


@schema.parametrize()
@schema_settings
def test_native_api_conforms_to_its_schema_anonymously(case, models):
    call_and_validate(case, "schemathesis anonymous", {})


@schema.parametrize()
@schema_settings
def test_native_api_conforms_to_its_schema_as_staff(case, models, staff_token):
    call_and_validate(case, "schemathesis staff", {"Authorization": f"Token {staff_token}"})


@valid_requests.parametrize()
@settings(schema_settings, max_examples=3)
def test_an_invalid_token_is_a_401_on_every_operation(case, models):
    response = case.call(headers={"Authorization": "Token not-a-token"})
    tally.record("schemathesis invalid token", response.status_code)
    assert response.status_code == 401, (case.method, case.path, response.text[:200])
