"""mlapp scaled out on one machine (bench/scaleout.py): two mlapp_serve nodes behind HAProxy,
two mlapp_worker nodes, PostgreSQL, Redis and an S3 server, each node with its own media
folder. Under bounded load through the balancer: a promotion through node 1 is served by both
nodes within 2 s with no failed request; node 2 SIGKILLed mid-load loses no request (HAProxy
retries the ones that never got an answer) and node 1 keeps answering; a batch job's chunks
run on both workers, worker 2 is SIGKILLed holding a chunk, which worker 1 runs, and every
key is stored exactly once.

About a minute; runs in the PostgreSQL pass only (it needs PostgreSQL, Redis and haproxy:
skipped with the reason when one is missing, a failure under CI=true)."""

from __future__ import annotations

import os

import pytest

from bench import scaleout

CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}
ROWS, CHUNK = 12000, 400

pytestmark = [pytest.mark.slow, pytest.mark.postgres]


@pytest.fixture(scope="module")
def figures() -> dict:
    redis_url = os.environ.get("MLAPP_TEST_SCALEOUT_REDIS", "redis://127.0.0.1:6379/13")
    missing = scaleout.requirements(
        os.environ.get("PGHOST", "127.0.0.1"), int(os.environ.get("PGPORT", "5432")), redis_url
    )
    if missing:
        message = "; ".join(missing)
        if CI:
            pytest.fail(f"{message}: CI=true requires it")
        pytest.skip(message)
    database = os.environ.get("MLAPP_TEST_DB_NAME", "test_mlapp") + "_scaleout"
    return scaleout.run(database=database, redis_url=redis_url, rows=ROWS, chunk=CHUNK)


def test_a_promotion_reaches_both_nodes_within_2_s_with_no_failed_request(figures):
    promotion = figures["promotion"]
    assert promotion["failed"] == 0, promotion["failures"]
    assert promotion["requests"] > 100
    for node in ("web1", "web2"):
        assert promotion[f"{node}_probes"] > 10
        assert promotion[f"{node}_first_v2_s"] is not None, f"{node} never served version 2"
        # The last answer of version 1 began within the limit after the promotion returned.
        assert promotion[f"{node}_last_v1_s"] <= scaleout.PROPAGATION_LIMIT_S, promotion
    assert promotion["lb_version_1_after_limit"] == 0


def test_a_killed_web_node_loses_no_request_through_the_balancer(figures):
    dies = figures["web_node_dies"]
    # What the balancer could retry is never lost: only a request node 2 had taken when it
    # was killed may fail (one in flight per client at most).
    assert dies["failed_retryable"] == 0, (dies["dead_after_kill_ms"], dies["failures"])
    assert dies["failed_in_flight"] <= dies["during_kill"]
    assert dies["after_kill"] > 50
    assert dies["web2_status"] == "DOWN"
    assert dies["web1_after"] == 200


def test_a_killed_worker_loses_no_chunk_and_stores_every_key_once(figures):
    job = figures["worker_dies"]
    assert job["status"] == "succeeded", job
    assert job["chunks_worker2_before_kill"] is not None, f"worker 2 was never killed: {job}"
    assert job["chunks_worker2_before_kill"] >= 1
    assert job["chunks_worker1"] >= 1
    assert job["done_at_kill"] < ROWS  # killed mid-job
    assert job["chunks_lost_with_worker2"] >= 1
    assert job["lost_chunks_run_by_worker1"] == job["chunks_lost_with_worker2"]
    assert job["stored"] == job["distinct_keys"] == ROWS
    assert job["missing_keys"] == 0
