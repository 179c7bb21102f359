"""Rows the prediction log's writer inserts per second, on this process's database.

Buffers ``--rows`` iris-sized requests (4 floats in; a label and 3 probabilities out) in a
:class:`mlapp.serving.predlog.PredictionRecorder` without its thread, then times the flush
that encodes them and bulk-inserts ``FLUSH_ROWS`` per statement: the writer thread's work.
Runs on a throw-away database made by Django's test-database machinery: a SQLite file, or
PostgreSQL with ``MLAPP_DB=postgres`` (then ``test_<PGDATABASE>``). Prints one JSON line.

    .venv/bin/python bench/predlog.py --rows 20000
    MLAPP_DB=postgres PGDATABASE=mlapp_bench_log .venv/bin/python bench/predlog.py
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=20000)
    args = parser.parse_args()
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")
    import django
    from django.conf import settings

    scratch = tempfile.mkdtemp(prefix="mlapp-bench-log-")
    if settings.DATABASES["default"]["ENGINE"].endswith("sqlite3"):
        settings.DATABASES["default"]["TEST"] = {"NAME": str(Path(scratch) / "log.sqlite3")}
    settings.MLAPP = {**settings.MLAPP, "MONITORING": {"BUFFER_SIZE": args.rows}}
    django.setup()
    from django.db import connection

    from mlapp.models import MLModel, ModelVersion
    from mlapp.serving.predlog import PredictionRecorder

    old_name = connection.creation.create_test_db(verbosity=0, autoclobber=True)
    try:
        model = MLModel.objects.create(name="iris")
        version = ModelVersion.objects.create(
            model=model, version=1, format="onnx", sha256="0" * 64, artifact="iris.onnx"
        )
        loaded = SimpleNamespace(name="iris", version_id=version.pk, log_rate=1.0)
        recorder = PredictionRecorder()
        recorder.start(thread=False)
        rng = np.random.default_rng(0)
        for number in range(args.rows):
            inputs = {"input": rng.uniform(0, 8, (1, 4)).astype(np.float32)}
            outputs = {
                "label": np.array(["setosa"], dtype=object),
                "probabilities": rng.dirichlet((1, 1, 1), 1).astype(np.float32),
            }
            recorder.offer(loaded, inputs, outputs, 0.0003, "v2", None, f"k{number}")  # type: ignore[arg-type]
        started = time.perf_counter()
        written = recorder.flush()
        seconds = time.perf_counter() - started
        print(
            json.dumps(
                {
                    "database": connection.vendor,
                    "rows": written,
                    "rows_per_s": written / seconds,
                    "rows_per_insert": recorder._settings.flush_rows,
                }
            )
        )
    finally:
        connection.creation.destroy_test_db(old_name, verbosity=0)


if __name__ == "__main__":
    main()
