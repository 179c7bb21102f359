"""System checks of the batch settings: executor, retries, Celery app, registered sources."""

from __future__ import annotations

import pytest
from django.test import override_settings

from mlapp.checks import check_settings

FLOWERS = {
    "queryset": "project.flowers.sources.flowers",
    "inputs": ["sepal_length", "sepal_width", "petal_length", "petal_width"],
}


def issues(**mlapp) -> list[tuple[str, str]]:
    with override_settings(MLAPP=mlapp):
        return [(issue.id, issue.msg) for issue in check_settings()]


def test_the_example_projects_batch_settings_pass():
    assert (
        issues(
            BATCH_EXECUTOR="auto",
            CELERY_APP="project.celery.app",
            BATCH_MAX_RETRIES=0,
            BATCH_RETRY_DELAY=0.5,
            BATCH_SOURCES={"flowers": {**FLOWERS, "key": "pk"}},
        )
        == []
    )


@pytest.mark.parametrize(
    ("setting", "value", "message"),
    [
        ("BATCH_EXECUTOR", "rq", "BATCH_EXECUTOR"),
        ("BATCH_MAX_RETRIES", -1, "BATCH_MAX_RETRIES"),
        ("BATCH_MAX_RETRIES", 1.5, "BATCH_MAX_RETRIES"),
        ("BATCH_RETRY_DELAY", "5", "BATCH_RETRY_DELAY"),
        ("BATCH_SOURCES", ["flowers"], "must be a dict"),
        ("BATCH_SOURCES", {"f": {"inputs": ["a"]}}, "entry 'f' is malformed"),
        ("BATCH_SOURCES", {"f": {**FLOWERS, "keys": "pk"}}, "entry 'f' is malformed"),
    ],
)
def test_bad_batch_values_are_reported_by_name(setting, value, message):
    found = issues(**{setting: value})
    assert [i for i, m in found] == ["mlapp.E002"]
    assert message in found[0][1]


@pytest.mark.parametrize(
    ("mlapp", "message"),
    [
        ({"CELERY_APP": "project.nowhere.app"}, "CELERY_APP"),
        ({"BATCH_SOURCES": {"f": {**FLOWERS, "queryset": "project.flowers.nope"}}}, "'f'"),
    ],
)
def test_paths_that_do_not_import_are_reported(mlapp, message):
    found = issues(**mlapp)
    assert [i for i, m in found] == ["mlapp.E003"]
    assert message in found[0][1]


def test_a_source_that_is_not_callable_is_reported():
    found = issues(BATCH_SOURCES={"f": {**FLOWERS, "queryset": "project.flowers.views.MODEL"}})
    assert found == [
        (
            "mlapp.E002",
            "MLAPP['BATCH_SOURCES']['f'] 'project.flowers.views.MODEL' is not callable.",
        )
    ]
