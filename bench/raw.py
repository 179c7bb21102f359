"""The raw model call: each benchmark input run through the loaded model in this process.

What a request costs without HTTP, JSON or validation: handler pre- and post-processing and
the runtime, one row per call, the same thread settings as the server (``MLAPP_THREADS``).
Run by ``bench/run.py`` pinned to the server's core, between the cells of that model (the
servers are idle then); prints JSON.

    MLAPP_VAR_DIR=... python bench/raw.py iris digits minilm --seconds 3
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def measure(run, inputs: list, seconds: float) -> dict[str, float]:
    warm_up = inputs * 3
    for item in warm_up:
        run(item)
    latencies = []
    started = time.perf_counter()
    deadline = started + seconds
    while time.perf_counter() < deadline:
        for item in inputs:
            t = time.perf_counter()
            run(item)
            latencies.append(time.perf_counter() - t)
    elapsed = time.perf_counter() - started
    latencies.sort()
    return {
        "calls_per_s": len(latencies) / elapsed,
        "p50_us": 1e6 * latencies[len(latencies) // 2],
        "p99_us": 1e6 * latencies[int(len(latencies) * 0.99)],
        # Every call made, the warm-up's too (bench/where.py divides a profile by it).
        "calls": len(latencies) + len(warm_up),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("models", nargs="+")
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument(
        "--serve",
        action="store_true",
        help="load the models, then answer one JSON line per line 'MODEL [SECONDS]' on stdin",
    )
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")
    import django

    django.setup()
    from bench.cases import cases
    from mlapp.models import ModelVersion
    from mlapp.serving.loading import load_version

    by_model = {case.model: case for case in cases().values()}
    loaded = {}
    for name in args.models:
        version = ModelVersion.objects.select_related("model").get(
            model__name=name, stage="production"
        )
        loaded[name] = load_version(version)
    if not args.serve:
        results = {
            name: measure(model.run, by_model[name].arrays, args.seconds)
            for name, model in loaded.items()
        }
        print(json.dumps(results), flush=True)
        return
    print("ready", flush=True)
    for line in sys.stdin:  # "MODEL [SECONDS [first]]"
        name, *rest = line.split()
        duration = float(rest[0]) if rest else args.seconds
        arrays = by_model[name].arrays
        if rest[1:] == ["first"]:
            # Only the case's first input: what a load generator replaying one request sends.
            arrays = arrays[:1]
        result = measure(loaded[name].run, arrays, duration)
        print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
