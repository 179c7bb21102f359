"""Shared pieces of the fuzz suite: bounded hypothesis settings, JSON strategies, the models.

The suite fuzzes three tiny real models on two runtimes, registered per test:

- ``affine``: ONNX, ``x`` FP32 ``[-1, 3]`` -> ``y`` FP32 ``[-1, 2]`` (:mod:`tests.artifacts`);
- ``texty``: the same ONNX file behind a text handler, ``text`` BYTES ``[-1]`` in (as MiniLM
  takes sentences), reusing the native API tests' ``TextLengthHandler``;
- ``iris``: TorchScript with a label handler, ``input`` FP32 ``[-1, 4]`` -> ``label`` BYTES
  and ``probabilities`` FP32 (the admin tests' tiny iris).

``MLAPP_FUZZ_EXAMPLES`` scales every property (default 100 examples each); under ``CI=true``
the examples are derandomized, so a CI failure replays locally with ``CI=true``.
"""

from __future__ import annotations

import os
from typing import Any

from django.test import Client
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from mlapp.runtimes.tensors import DATATYPES
from mlapp.versions.lifecycle import register_version
from tests.admin import tiny_models
from tests.fuzz import tally

CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}
EXAMPLES = int(os.environ.get("MLAPP_FUZZ_EXAMPLES", "100"))

#: Bounded: a property runs EXAMPLES examples, each a request or two through the test client.
#: The fixtures (models registered once per test) are shared by every example on purpose.
fuzz_settings = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=CI,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

TEXT_HANDLER = "tests.api.native.test_models.TextLengthHandler"
#: model name -> its public inputs (name, datatype, trailing dimensions).
MODELS = {
    "affine": {"x": ("FP32", (3,))},
    "texty": {"text": ("BYTES", ())},
    "iris": {"input": ("FP32", (4,))},
}


def register_models(onnx_file: Any) -> None:
    """The three fuzzed models, each with version 1 in production."""
    register_version("affine", onnx_file, promote=True)
    register_version("texty", onnx_file, promote=True, handler=TEXT_HANDLER)
    register_version(
        "iris",
        tiny_models.iris_file(),
        signature=tiny_models.IRIS_SIGNATURE,
        handler=f"{tiny_models.__name__}.IrisHandler",
        promote=True,
    )


# -- strategies ------------------------------------------------------------------------------

#: Integers as JSON carries them, past int64 on both sides.
json_ints = st.integers(min_value=-(2**70), max_value=2**70) | st.sampled_from(
    [0, 1, -1, 2**31, 2**32, 2**63 - 1, 2**63, 2**64, -(2**63) - 1]
)
json_scalars = (
    st.none()
    | st.booleans()
    | json_ints
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12)
)
#: Any JSON value (nested up to a few levels).
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=10,
)


def one_of_or_any(*choices: Any) -> st.SearchStrategy:
    """One of ``choices`` (what the protocol expects) or any JSON value in its place."""
    return st.sampled_from(choices) | json_values


#: Shapes: lists of dimensions (negative, zero, huge, past int64), or any JSON value.
dims = st.integers(min_value=-3, max_value=5) | json_ints
shapes = st.lists(dims, max_size=4) | json_values
datatypes = one_of_or_any(*DATATYPES)


# -- the client ------------------------------------------------------------------------------


def client() -> Client:
    """A test client that answers an uncaught exception with a 500 (counted) instead of
    raising it, as a real server would."""
    return Client(raise_request_exception=False)


def send(
    http: Client, suite: str, path: str, body: bytes, content_type: str = "", **headers: str
) -> Any:
    """POST ``body`` as it is; count the request and its status in the tally."""
    response = http.generic("POST", path, body, content_type=content_type, **headers)
    tally.record(suite, response.status_code)
    return response


def assert_error_answer(response: Any) -> None:
    """A client mistake: a 4xx status and ``{"error": "<message>"}`` as JSON."""
    assert 400 <= response.status_code < 500, (response.status_code, response.content[:300])
    assert response["Content-Type"].startswith("application/json"), response["Content-Type"]
    body = response.json()
    assert list(body) == ["error"], body
    assert isinstance(body["error"], str)
    assert body["error"], body
