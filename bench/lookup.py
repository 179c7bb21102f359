"""What a stored prediction costs to find by key, at 10 k and at 1 M rows, on PostgreSQL.

The by-key route (``GET /api/mlapp/models/<name>/predictions/<key>``) answers from the latest
succeeded job that holds the key (``mlapp.batch.latest_prediction``). This script fills
``BatchPrediction`` with COPY, in two steps, and after each step times random keys three
ways:

- the database alone: ``EXPLAIN ANALYZE`` of the query (its execution time, and the plan);
- the ORM: ``latest_prediction(model, key)``, query building and row decoding included;
- the HTTP route through Django's handler in this process (no network): view, serializer and
  JSON rendering included.

Step one: one succeeded iris job of ``--small-rows`` keys. Step two adds one succeeded job of
``--rows`` keys (newer, so it answers), ten older succeeded jobs and a newer failed one of
``--overlap`` keys each drawn from the same keys (a key then has up to twelve candidate rows,
of which the query must pick the right one). It drops and creates its own database::

    .venv/bin/python bench/lookup.py [--rows 1000000] [--keys 2000]
"""

from __future__ import annotations

import argparse
import io
import os
import random
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.batch import fresh_database  # noqa: E402

#: Outputs like the iris model's, a few variants (the rows' size matters, not their values).
OUTPUTS = [
    '{"label": ["setosa"], "probabilities": [[0.99999297, 7.056266e-06, 1.78261e-10]]}',
    '{"label": ["versicolor"], "probabilities": [[0.00041, 0.9987113, 0.00087861]]}',
    '{"label": ["virginica"], "probabilities": [[2.4e-08, 8.1e-05, 0.99991894]]}',
]


def configure(database: str) -> None:
    os.environ.update(
        DJANGO_SETTINGS_MODULE="project.settings",
        DJANGO_DEBUG="0",
        MLAPP_DB="postgres",
        PGDATABASE=database,
        MLAPP_VAR_DIR=tempfile.mkdtemp(prefix="mlapp-bench-lookup-"),
    )
    fresh_database(database)
    import django

    django.setup()


def new_job(version, status: str, finished: float, rows: int):
    from datetime import UTC, datetime

    from mlapp.models import BatchJob

    when = datetime.fromtimestamp(finished, UTC)
    return BatchJob.objects.create(
        version=version, source_name="bench", status=status, total=rows, done=rows,
        started_at=when, finished_at=when,
    )  # fmt: skip


def copy_rows(job, keys) -> int:
    """COPY one row per key into the predictions table; returns how many."""
    from django.db import connection

    from mlapp.models import BatchPrediction

    table = BatchPrediction._meta.db_table
    columns = "job_id, model_id, version_id, key, outputs, error, created_at"
    prefix = f"{job.pk}\t{job.version.model_id}\t{job.version_id}\t"
    count = 0
    with connection.cursor() as cursor:
        with cursor.cursor.copy(f"COPY {table} ({columns}) FROM STDIN") as copy:
            block = io.StringIO()
            for key in keys:
                block.write(f"{prefix}{key}\t{OUTPUTS[count % 3]}\t\t2026-01-01 00:00:00+00\n")
                count += 1
                if count % 50_000 == 0:
                    copy.write(block.getvalue())
                    block = io.StringIO()
            copy.write(block.getvalue())
        cursor.execute(f"ANALYZE {table}")
    return count


def percentiles(samples: list[float]) -> tuple[float, float, float]:
    """(p50, p99, mean) in milliseconds, from seconds."""
    ordered = sorted(samples)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return 1e3 * statistics.median(ordered), 1e3 * p99, 1e3 * statistics.fmean(ordered)


def measure(keys: list[str], explain_keys: int) -> dict[str, tuple[float, float, float]]:
    from django.test import Client

    from mlapp.batch import latest_prediction, predictions_by_key

    executions = []
    for key in keys[:explain_keys]:
        plan = predictions_by_key("iris", key)[:1].explain(analyze=True)
        found = re.search(r"Execution Time: ([\d.]+) ms", plan)
        executions.append(float(found.group(1)) / 1e3)
    orm = []
    for key in keys:
        started = time.perf_counter()
        found = latest_prediction("iris", key)
        orm.append(time.perf_counter() - started)
        if found is None:
            raise SystemExit(f"key {key!r} was not found")
    client = Client(HTTP_HOST="127.0.0.1")
    http = []
    for key in keys:
        started = time.perf_counter()
        response = client.get(f"/api/mlapp/models/iris/predictions/{key}")
        http.append(time.perf_counter() - started)
        if response.status_code != 200:
            raise SystemExit(f"GET {key!r}: {response.status_code} {response.content[:200]!r}")
    return {
        "EXPLAIN ANALYZE execution": percentiles(executions),
        "latest_prediction() (ORM)": percentiles(orm),
        "GET .../predictions/<key>": percentiles(http),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--small-rows", type=int, default=10_000)
    parser.add_argument("--overlap", type=int, default=10_000)
    parser.add_argument("--keys", type=int, default=2000, help="random keys timed per step")
    parser.add_argument("--explain-keys", type=int, default=200)
    parser.add_argument("--database", default="mlapp_bench_lookup")
    args = parser.parse_args()
    configure(args.database)

    from django.core.management import call_command
    from django.db import connection

    from mlapp.batch import predictions_by_key
    from mlapp.models import BatchPrediction, MLModel

    call_command("migrate", verbosity=0)
    call_command("setup_demo", "--no-admin", "--skip-minilm", stdout=io.StringIO())
    version = MLModel.objects.get(name="iris").production_version
    rng = random.Random(0)
    now = time.time()
    results = []

    small = new_job(version, "succeeded", now - 7200, args.small_rows)
    copy_rows(small, (f"s{i}" for i in range(args.small_rows)))
    keys = [f"s{rng.randrange(args.small_rows)}" for _ in range(args.keys)]
    results.append((BatchPrediction.objects.count(), 1, measure(keys, args.explain_keys)))
    print(f"measured at {results[-1][0]:,} rows", file=sys.stderr, flush=True)

    started = time.perf_counter()
    big = new_job(version, "succeeded", now - 60, args.rows)
    copy_rows(big, (str(i) for i in range(args.rows)))
    for older in range(10):
        job = new_job(version, "succeeded", now - 3600 + older, args.overlap)
        copy_rows(job, (str(k) for k in rng.sample(range(args.rows), args.overlap)))
    failed = new_job(version, "failed", now, args.overlap)
    copy_rows(failed, (str(k) for k in rng.sample(range(args.rows), args.overlap)))
    print(f"filled in {time.perf_counter() - started:.0f} s", file=sys.stderr, flush=True)
    keys = [str(rng.randrange(args.rows)) for _ in range(args.keys)]
    results.append((BatchPrediction.objects.count(), 13, measure(keys, args.explain_keys)))
    plan = predictions_by_key("iris", keys[0])[:1].explain(analyze=True)
    with connection.cursor() as cursor:
        table = BatchPrediction._meta.db_table
        cursor.execute("SELECT pg_size_pretty(pg_total_relation_size(%s))", [table])
        size = cursor.fetchone()[0]

    print()
    print(f"Lookup by key on PostgreSQL, {args.keys} random keys per step (median / p99 / mean ms)")
    print()
    print("| rows in the table | jobs | what | p50 ms | p99 ms | mean ms |")
    print("| ---: | ---: | --- | ---: | ---: | ---: |")
    for rows, jobs, figures in results:
        for what, (p50, p99, mean) in figures.items():
            print(f"| {rows:,} | {jobs} | {what} | {p50:.3f} | {p99:.3f} | {mean:.3f} |")
    print()
    print(f"table + indexes at {results[-1][0]:,} rows: {size}; plan of one key:")
    print(plan)


if __name__ == "__main__":
    main()
