"""A real browser (Debian's Chromium driven by Playwright) goes through the admin: logs in,
uploads a new iris version, promotes it, tries a prediction, rolls back.

Screenshots land in the test's temporary folder; with ``MLAPP_UPDATE_SCREENSHOTS=1`` the
version page is also copied to ``docs/img/version-page.png``. Chromium is never downloaded
(no ``playwright install``): a missing ``/usr/bin/chromium`` skips this test, or fails it
under ``CI=true``.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import connections

from mlapp.models import MLModel, ModelVersion
from mlapp.serving.stats import request_stats
from tests.admin.tiny_models import iris_file, register_iris_and_digits
from tests.conftest import CI

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",  # Chromium refuses to run as root with its sandbox
    "--disable-gpu",
    "--disable-background-networking",  # a closed network: no update or safe-browsing calls
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
DOCS_IMG = Path(settings.BASE_DIR) / "docs" / "img"
PASSWORD = "browser-pw"  # a throwaway test account


def _missing(reason: str) -> None:
    if CI:
        pytest.fail(f"{reason}; CI=true requires it (apt-get install -y chromium).")
    pytest.skip(f"{reason} (apt-get install -y chromium to run the browser test)")


@pytest.fixture
def browser_page(tmp_path, monkeypatch):
    if not os.path.exists(CHROMIUM):
        _missing(f"{CHROMIUM} is not installed")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _missing("playwright is not installed")
    # Playwright's sync API runs an event loop in this thread; the ORM calls of the test
    # itself are still plain synchronous code.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.set_default_timeout(60_000)
        try:
            yield page
        finally:
            browser.close()


def _shot(page, folder: Path, name: str) -> Path:
    path = folder / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


@pytest.mark.django_db(transaction=True)
def test_browser_uploads_promotes_tries_and_rolls_back(
    browser_page, live_server, tmp_path, settings
):
    # Stage changes reach this live server on commit; no poller thread is needed here.
    settings.MLAPP = {"THREADS": 1, "POLL_INTERVAL": 3600}
    try:
        _walk_through(browser_page, live_server.url, tmp_path / "screenshots")
    finally:
        # Under Playwright's sync API this test runs in a greenlet whose database connection
        # is not the one pytest-django closes: close it, or PostgreSQL cannot drop the test
        # database at the end of the session.
        connections.close_all()


def _walk_through(page, base: str, shots: Path) -> None:
    register_iris_and_digits()
    get_user_model().objects.create_superuser("admin", password=PASSWORD)
    request_stats.clear()  # this process's counts: only this test's requests
    iris = MLModel.objects.get(name="iris")
    v1 = iris.production_version
    shots.mkdir()

    # Log in.
    page.goto(f"{base}/admin/login/")
    page.fill("#id_username", "admin")
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")
    page.wait_for_selector("#site-name")

    # Upload a new iris version from the model's page (it inherits the production signature).
    page.goto(f"{base}/admin/mlapp/mlmodel/{iris.pk}/change/")
    page.click("text=Upload a new version")
    assert page.input_value("#id_model") == str(iris.pk)
    page.set_input_files("#id_artifact_file", str(iris_file()))
    page.fill("#id_notes", "Retrained in the browser test.")
    _shot(page, shots, "1-upload")
    page.click("input[name=_save]")
    page.wait_for_selector(".messagelist .success")
    assert "validated and stored in staging" in page.inner_text(".messagelist")
    v2 = ModelVersion.objects.get(model=iris, version=2)
    assert v2.stage == "staging"
    assert v2.signature == v1.signature
    _shot(page, shots, "2-uploaded")

    # Promote it, through the confirmation page.
    page.click(".mlapp-promote-link")
    page.wait_for_selector("table.mlapp-changes")
    assert "iris v2\tstaging\t→\tproduction" in page.inner_text("table.mlapp-changes").lower()
    _shot(page, shots, "3-promote-confirmation")
    page.click("input[value='Yes, promote']")
    page.wait_for_selector(".messagelist .success")
    assert "Promoted 1 version to production." in page.inner_text(".messagelist")
    assert page.inner_text(".field-stage_display .readonly").strip().lower() == "production"
    v1.refresh_from_db()
    assert (v1.stage, ModelVersion.objects.get(pk=v2.pk).stage) == ("archived", "production")

    # Try a prediction on the page of the new version.
    page.fill("#try-it textarea", '{"inputs": [[6.7, 3.0, 5.2, 2.3]]}')
    page.click("#try-it input[type=submit]")
    page.wait_for_selector("#mlapp-output")
    output = page.inner_text("#mlapp-output")
    assert '"version": 2' in output
    assert '"virginica"' in output
    assert "Answered in" in page.inner_text(".mlapp-latency")
    _shot(page, shots, "4-try-it")

    # Roll back to v1.
    page.goto(f"{base}/admin/mlapp/modelversion/{v2.pk}/change/")
    page.click(".mlapp-rollback-link")
    page.click("input[value='Yes, roll back']")
    page.wait_for_selector(".messagelist .success")
    assert "Rolled back 1 model." in page.inner_text(".messagelist")
    v1.refresh_from_db()
    assert v1.stage == "production"

    # The pages people look at: the restored version, and the model with its activity.
    page.goto(f"{base}/admin/mlapp/modelversion/{v1.pk}/change/")
    page.wait_for_selector("svg.mlapp-confusion")
    _assert_section_headers_fit(page)
    version_page = _shot(page, shots, "5-version-page")
    page.goto(f"{base}/admin/mlapp/mlmodel/{iris.pk}/change/")
    page.wait_for_selector("svg.mlapp-activity")
    assert "1 requests in the last 10 minutes" in page.inner_html("svg.mlapp-activity")
    _shot(page, shots, "6-model-page")

    assert sorted(p.name for p in shots.iterdir()) == [
        "1-upload.png",
        "2-uploaded.png",
        "3-promote-confirmation.png",
        "4-try-it.png",
        "5-version-page.png",
        "6-model-page.png",
    ]
    if os.environ.get("MLAPP_UPDATE_SCREENSHOTS") == "1":
        DOCS_IMG.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(version_page, DOCS_IMG / "version-page.png")


def _assert_section_headers_fit(page) -> None:
    """The version page's headers are one line high, and "Try it" sits below the form.

    The admin floats ``#content-main``; a block after it that does not clear the float starts
    at the float's top, and its header, stretched over the whole form, showed through every
    gap between the fieldsets: each section header looked double height, with a band behind
    the Save row.
    """
    boxes = page.evaluate(
        """() => {
            const box = e => e.getBoundingClientRect();
            return {
                fieldsets: [...document.querySelectorAll('#content-main fieldset.module h2')]
                    .map(e => box(e).height),
                tryIt: box(document.querySelector('#try-it h2')).height,
                tryTop: box(document.querySelector('#try-it')).top,
                formBottom: box(document.querySelector('#content-main')).bottom,
            };
        }"""
    )
    assert len(boxes["fieldsets"]) >= 3
    stock = max(boxes["fieldsets"])  # the admin's own fieldset heading: one line and padding
    assert stock < 60
    assert boxes["tryIt"] <= stock + 4, boxes
    assert boxes["tryTop"] >= boxes["formBottom"], boxes
