"""Batch job throughput on PostgreSQL with 1 and 2 Celery workers, beside its two limits.

For iris (100 k rows) and minilm (10 k sentences) it measures, in the same run:

- the raw model call: the inference service over the same rows, in calls of the size the job
  makes (``mlapp.batch.runner.PART_SIZE``), in this one process, nothing stored (the limit
  when the model is the bottleneck);
- a bare bulk insert: ``bulk_create`` of as many ready-made result rows into the same
  ``BatchPrediction`` table, one transaction per chunk (the limit when the database is);
- the batch job end to end, from ``create_job`` (the file is read and checked) to
  ``succeeded``, on 1 and then 2 ``celery worker -c 1`` processes, warmed up first.

Needs PostgreSQL and Redis; it drops and creates its own database (``--database``) and uses
Redis database 10 (``--broker``). Every process runs with ``MLAPP_THREADS=1``. Run::

    .venv/bin/python bench/batch.py [--iris-rows 100000] [--minilm-rows 10000]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
#: Words the synthetic sentences are drawn from.
VOCABULARY = """the a one some every small large red quiet bright old new river city garden model
server request answer player guitar market morning evening table window music runs plays reads
writes falls rises opens closes waits sings talks quickly slowly today again near under over
with without and but because while after before"""


def configure(args: argparse.Namespace) -> dict[str, str]:
    var = tempfile.mkdtemp(prefix="mlapp-bench-batch-")
    env = {
        "DJANGO_SETTINGS_MODULE": "project.settings",
        "MLAPP_DB": "postgres",
        "PGDATABASE": args.database,
        "MLAPP_VAR_DIR": var,
        "MLAPP_BROKER_URL": args.broker,
        "MLAPP_THREADS": "1",
    }
    os.environ.update(env)
    sys.path.insert(0, str(REPO))
    fresh_database(args.database)
    return {**os.environ, **env}


def fresh_database(name: str) -> None:
    """Drop and create the bench's own PostgreSQL database."""
    import psycopg

    with psycopg.connect(
        host=os.environ.get("PGHOST", "127.0.0.1"),
        user=os.environ.get("PGUSER", "postgres"),
        dbname="postgres",
        autocommit=True,
    ) as conn:
        # The bench's own database, fresh each run (its artifacts live in a fresh folder).
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')


def iris_rows(n: int, folder: Path) -> tuple[Path, np.ndarray]:
    rng = np.random.default_rng(0)
    x = rng.uniform([4.3, 2.0, 1.0, 0.1], [7.9, 4.4, 6.9, 2.5], size=(n, 4)).round(1)
    path = folder / "iris.csv"
    with path.open("w") as fh:
        fh.write("sepal_length,sepal_width,petal_length,petal_width\n")
        fh.writelines(",".join(map(str, row)) + "\n" for row in x.tolist())
    return path, x.astype(np.float32)


def sentences(n: int, folder: Path) -> tuple[Path, list[str]]:
    rng = np.random.default_rng(0)
    texts = [
        " ".join(rng.choice(VOCABULARY.split(), size=int(rng.integers(6, 24)))).capitalize() + "."
        for _ in range(n)
    ]
    path = folder / "sentences.jsonl"
    with path.open("w") as fh:
        fh.writelines(json.dumps({"inputs": [t]}) + "\n" for t in texts)
    return path, texts


def raw_call(model: str, inputs) -> float:
    """The inference service over the rows, in calls of the size a job's chunk makes."""
    from mlapp.batch.runner import PART_SIZE
    from mlapp.serving.inputs import named
    from mlapp.serving.service import service

    service.predict(model, named(inputs[:2]))  # load and warm up
    started = time.perf_counter()
    for start in range(0, len(inputs), PART_SIZE):
        service.predict(model, named(inputs[start : start + PART_SIZE]))
    return len(inputs) / (time.perf_counter() - started)


def bulk_insert(model: str, rows: int, chunk: int) -> float:
    from django.db import transaction

    from mlapp.models import BatchJob, BatchPrediction, ModelVersion
    from mlapp.serving.inputs import named
    from mlapp.serving.service import service

    version = ModelVersion.objects.resolve(model)
    sample = service.predict(model, named(_sample_input(model))).to_dict()["outputs"]
    job = BatchJob.objects.create(version=version, source_name="bench", status="succeeded")
    started = time.perf_counter()
    for start in range(0, rows, chunk):
        with transaction.atomic():
            BatchPrediction.objects.bulk_create(
                (
                    BatchPrediction(
                        job_id=job.pk,
                        model_id=version.model_id,
                        version_id=version.pk,
                        key=str(i),
                        outputs=sample,
                    )
                    for i in range(start, min(start + chunk, rows))
                ),
                batch_size=1000,
            )
    elapsed = time.perf_counter() - started
    job.delete()
    return rows / elapsed


def _sample_input(model: str):
    return [[5.1, 3.5, 1.4, 0.2]] if model == "iris" else ["A man is playing a guitar."]


class Workers:
    def __init__(self, count: int, env: dict[str, str], folder: Path) -> None:
        self.procs = []
        self.names = []
        for i in range(count):
            name = f"bench{i}@{socket.gethostname()}"
            log = (folder / f"worker{i}.log").open("wb")
            self.procs.append(
                subprocess.Popen(
                    [
                        *(sys.executable, "-m", "celery", "-A", "project", "worker", "-c", "1"),
                        *("--pool=prefork", "-n", name, "--without-gossip", "--without-mingle"),
                    ],
                    cwd=REPO,
                    env=env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            )
            self.names.append(name)

    def wait_ready(self, app) -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            replies = app.control.ping(destination=self.names, timeout=1.0)
            if len(replies) == len(self.names):
                return
        raise SystemExit("the Celery workers did not start; see their logs")

    def stop(self) -> None:
        for proc in self.procs:
            os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.procs:
            proc.wait(timeout=60)


def run_job(model: str, path: Path, chunk: int) -> tuple[float, int]:
    from mlapp import batch
    from mlapp.models import BatchJob

    started = time.perf_counter()
    job = batch.create_job(model, file=path, chunk_size=chunk)
    while BatchJob.objects.active().filter(pk=job.pk).exists():
        time.sleep(0.05)
    job.refresh_from_db()
    elapsed = time.perf_counter() - started
    if job.status != BatchJob.Status.SUCCEEDED or job.failed:
        raise SystemExit(f"job {job.pk} {job.status}: {job.error or job.failed}")
    return job.done / elapsed, job.pk


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--iris-rows", type=int, default=100_000)
    parser.add_argument("--minilm-rows", type=int, default=10_000)
    parser.add_argument("--iris-chunk", type=int, default=1000)
    parser.add_argument("--minilm-chunk", type=int, default=250)
    parser.add_argument("--database", default="mlapp_bench_batch")
    parser.add_argument("--broker", default="redis://127.0.0.1:6379/10")
    args = parser.parse_args()
    env = configure(args)

    import django

    django.setup()
    from django.core.management import call_command

    from mlapp.models import BatchJob
    from project.celery import app

    call_command("migrate", verbosity=0)
    call_command("setup_demo", "--no-admin", stdout=open(os.devnull, "w"))  # noqa: SIM115
    BatchJob.objects.all().delete()
    folder = Path(tempfile.mkdtemp(prefix="mlapp-bench-batch-data-"))
    cases = [
        ("iris", *iris_rows(args.iris_rows, folder), args.iris_chunk),
        ("minilm", *sentences(args.minilm_rows, folder), args.minilm_chunk),
    ]
    results = []
    for model, _, inputs, chunk in cases:
        raw = raw_call(model, inputs)
        insert = bulk_insert(model, len(inputs), chunk)
        results.append({"model": model, "rows": len(inputs), "raw": raw, "insert": insert})
        print(f"{model}: raw call {raw:,.0f} rows/s, bulk insert {insert:,.0f} rows/s", flush=True)
    for count in (1, 2):
        workers = Workers(count, env, folder)
        try:
            workers.wait_ready(app)
            for (model, path, _, chunk), result in zip(cases, results, strict=True):
                warm = folder / f"warm-{model}{path.suffix}"
                lines = path.read_text().splitlines(keepends=True)
                warm.write_text("".join(lines[: 1 + 4 * count * 2]))
                run_job(model, warm, 2)  # every worker loads the model before the clock runs
                rate, job = run_job(model, path, chunk)
                result[f"w{count}"] = rate
                print(f"{model}: {count} worker(s) {rate:,.0f} rows/s (job {job})", flush=True)
        finally:
            workers.stop()
    BatchJob.objects.all().delete()
    _table(results, args)


def _table(results: list[dict], args: argparse.Namespace) -> None:
    cpus = len(os.sched_getaffinity(0))
    print()
    print(
        f"Batch jobs on PostgreSQL + Redis, {cpus} CPUs, MLAPP_THREADS=1 per process, "
        f"chunks: iris {args.iris_chunk}, minilm {args.minilm_chunk} rows"
    )
    print()
    print(
        "| model | rows | raw call rows/s | bulk insert rows/s | 1 worker rows/s | "
        "2 workers rows/s | 1 worker vs its limit |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: | --- |")
    for r in results:
        if r["model"] == "iris":
            limit, name = r["insert"], "bulk insert"
        else:
            limit, name = r["raw"], "raw call"
        print(
            f"| {r['model']} | {r['rows']:,} | {r['raw']:,.0f} | {r['insert']:,.0f} | "
            f"{r['w1']:,.0f} | {r['w2']:,.0f} ({r['w2'] / r['w1']:.2f}x) | "
            f"{100 * r['w1'] / limit:.0f} % of the {name} |"
        )


if __name__ == "__main__":
    main()
