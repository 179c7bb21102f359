"""Concurrent promotes leave exactly one production version (PostgreSQL: real row locks)."""

from __future__ import annotations

import threading

import pytest
from django.db import connection

from mlapp.models import ModelVersion
from mlapp.versions.lifecycle import promote_version, register_version

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


def test_concurrent_promotes_leave_exactly_one_production_version(onnx_file):
    assert connection.vendor == "postgresql"
    versions = [register_version("race", onnx_file) for _ in range(6)]
    barrier = threading.Barrier(len(versions))
    errors: list[BaseException] = []

    def promote(version: ModelVersion) -> None:
        from django.db import connections

        try:
            barrier.wait()
            for _ in range(3):
                promote_version(version)
        except BaseException as exc:
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=promote, args=(v,)) for v in versions]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert ModelVersion.objects.filter(model__name="race", stage="production").count() == 1
    assert ModelVersion.objects.filter(model__name="race", stage="archived").count() == 5
