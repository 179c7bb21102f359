"""The ONNX versions of iris and digits run in a real browser (ONNX Runtime Web, shipped in
mlapp's static files) and answer as the server does.

Debian's Chromium driven by Playwright, as in tests/admin/test_browser.py: a missing
``/usr/bin/chromium``, Playwright or built runtime files (``python web/build_ort.py``) skips,
or fails under ``CI=true``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import connections

import mlapp
from mlapp.models import ModelVersion
from mlapp.versions.derivation import derive_version
from tests.admin.test_browser import PASSWORD, _missing
from tests.demo_models import register_demo, samples

ORT = Path(settings.BASE_DIR) / "mlapp" / "static" / "mlapp" / "ort" / "ort.wasm.min.js"
TOLERANCE = 1e-4

IRIS_ROWS = [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3], [5.9, 3.0, 4.2, 1.5], [4.4, 2.9, 1.4, 0.2]]


def _held_out_digits() -> tuple[np.ndarray, np.ndarray]:
    """The digits test split the fixture's accuracy is measured on (540 images)."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    images, labels = load_digits(return_X_y=True)
    _, test_x, _, test_y = train_test_split(
        images, labels, test_size=0.3, random_state=0, stratify=labels
    )
    return test_x.reshape(-1, 1, 8, 8).astype(np.float32), test_y


@pytest.fixture
def ort_built():
    if not ORT.exists():
        _missing(f"{ORT} is not built (python web/build_ort.py)")


@pytest.mark.django_db(transaction=True)
def test_browser_answers_equal_the_server_and_int8_agrees(
    ort_built, browser_page, live_server, settings
):
    settings.MLAPP = {"THREADS": 1, "POLL_INTERVAL": 3600}
    try:
        _check(browser_page, live_server.url)
    finally:
        connections.close_all()  # see tests/admin/test_browser.py


def _check(page, base: str) -> None:
    iris_ts = register_demo("iris")
    iris = derive_version(iris_ts, kind="onnx", samples=samples("iris"))
    digits = register_demo("digits")
    # What a user gets by default: both methods measured, the better kept (static, here).
    int8 = derive_version(digits, kind="int8", method="auto", samples=samples("digits"))
    get_user_model().objects.create_superuser("admin", password=PASSWORD)
    page.goto(f"{base}/admin/login/")
    page.fill("#id_username", "admin")
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")
    page.wait_for_selector("#site-name")

    grids = [s["image"] for s in samples("digits")]
    tries = [
        (iris, IRIS_ROWS),
        (iris, IRIS_ROWS[1:2]),
        (digits, [[g] for g in grids[:6]]),
        (digits, [[g] for g in grids[6:]]),
    ]
    for version, rows in tries:
        browser, largest = _try_in_page(page, base, version, rows)
        server = mlapp.predict(version.model.name, rows, version=version.version)
        expected = np.asarray(server.outputs["probabilities"])
        got = np.asarray(browser["probabilities"]["data"]).reshape(expected.shape)
        assert np.max(np.abs(got - expected)) <= TOLERANCE, (version, got, expected)
        assert 0 <= largest <= TOLERANCE

    # The int8 digits version, in the browser, against the fp32 server on held-out digits.
    images, _ = _held_out_digits()
    got = page.evaluate(
        """async ([url, signature, images]) => {
            const out = await window.mlappEdge.run(url, signature, images);
            return out.probabilities.data;
        }""",
        [
            f"/admin/mlapp/modelversion/{int8.pk}/model.onnx",
            int8.signature,
            images.tolist(),
        ],
    )
    int8_labels = np.asarray(got).reshape(len(images), 10).argmax(axis=1)
    fp32 = mlapp.predict("digits", {"image": images}, version=digits.version)
    fp32_labels = np.asarray(fp32.outputs["probabilities"]).argmax(axis=1)
    agreement = float(np.mean(int8_labels == fp32_labels))
    assert len(images) == 540
    assert agreement >= 0.99, agreement


def _try_in_page(page, base: str, version: ModelVersion, rows: list) -> tuple[dict, float]:
    """Fill the version page's "Try it" with ``rows``, run it in the browser beside the server."""
    page.goto(f"{base}/admin/mlapp/modelversion/{version.pk}/change/")
    page.fill("#try-it textarea", json.dumps({"inputs": rows}))
    page.click("button.mlapp-browser-run")
    page.wait_for_selector(
        "#mlapp-browser-result[data-max-diff], #mlapp-browser-result[data-error]"
    )
    box = page.locator("#mlapp-browser-result")
    error = box.get_attribute("data-error")
    assert error is None, error
    assert "Largest difference between the server and this browser" in box.inner_text()
    if os.environ.get("MLAPP_EDGE_SHOT"):
        page.screenshot(path=os.environ["MLAPP_EDGE_SHOT"], full_page=True)
    return json.loads(box.get_attribute("data-browser")), float(box.get_attribute("data-max-diff"))
