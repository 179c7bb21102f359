"""Derived int8 versions, measured: MiniLM int8 against fp32 (raw call and served), digits.

One run, everything on one core (wrk on another):

1. A fresh database with the demo models (``setup_demo``), then int8 versions derived the way
   a user does (``manage.py derive_version``, method ``auto``: dynamic and static both made and
   measured in the validation sandbox, the one agreeing better kept): MiniLM on 64 sentences,
   digits on the 540 held-out digits.
2. Raw call: the fp32 and the int8 MiniLM files in ONNX Runtime, one thread, batch 1, over the
   64 sentences (the demo's tokenizer), one call of each in turn so that the shared machine's
   load hits both alike: items/s, and the cosine of each int8 embedding to the fp32 one.
3. Served: mlapp's production server (``mlapp_serve``) with the int8 version in production
   against KServe serving the fp32 file (``bench/kserve_server.py``), both pinned to the same
   core and measured in turns with wrk: OIP V2 JSON, one sentence per request.

    .venv/bin/python bench/edge.py             # about 4 minutes
    .venv/bin/python bench/edge.py --quick     # shorter cells
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.cases import SENTENCES, _body, _tensor  # noqa: E402
from bench.run import (  # noqa: E402
    KSERVE_PYTHON,
    PYTHON,
    SERVERS,
    Server,
    django_env,
    free_port,
    log,
    manage,
    measure,
)

MINILM = ROOT / "fixtures/build/minilm"


def sentences() -> list[str]:
    """64 sentences: the benchmark's 16, then each again with a clause added."""
    extra = [" It was noted in the report.", " Nobody expected that.", " See the appendix."]
    return SENTENCES + [
        s.rstrip(".") + "," + extra[i % 3].lower().rstrip(".") + "."
        for i, s in enumerate(SENTENCES * 3)
    ]


def held_out_digits() -> list[dict]:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    images, labels = load_digits(return_X_y=True)
    _, test_x, _, _ = train_test_split(
        images, labels, test_size=0.3, random_state=0, stratify=labels
    )
    return [{"image": row.reshape(8, 8).tolist()} for row in test_x]


def shell(var: Path, code: str) -> str:
    result = subprocess.run(
        [PYTHON, str(ROOT / "manage.py"), "shell", "-c", code],
        cwd=ROOT, env=django_env(var), capture_output=True, text=True, check=False,
    )  # fmt: skip
    if result.returncode:
        raise SystemExit(f"manage.py shell failed:\n{result.stdout}{result.stderr}")
    return result.stdout.strip().splitlines()[-1]


def derive(var: Path, model: str, samples: Path) -> dict:
    started = time.monotonic()
    manage(var, "derive_version", model, "1", "--samples", str(samples))
    code = (
        "import json\nfrom mlapp.models import ModelVersion\n"
        f"v = ModelVersion.objects.get(model__name={model!r}, version=2)\n"
        "print(json.dumps({'path': v.artifact.path, 'derived': v.metrics['derived'], "
        "'size': v.size}))\n"
    )
    info = json.loads(shell(var, code))
    info["seconds"] = time.monotonic() - started
    return info


def raw_call(int8_path: str, texts: list[str], seconds: float) -> dict:
    """fp32 and int8 MiniLM, one thread, batch 1, alternating slices of the 64 sentences."""
    import onnxruntime as ort
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(MINILM / "tokenizer.json"))
    tokenizer.no_padding()
    tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")
    tokenizer.enable_truncation(max_length=256)
    feeds = []
    for text in texts:
        encoding = tokenizer.encode(text)
        feeds.append(
            {
                "input_ids": np.asarray([encoding.ids], dtype=np.int64),
                "attention_mask": np.asarray([encoding.attention_mask], dtype=np.int64),
            }
        )

    def session(path: str):
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        return ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])

    sessions = {"fp32": session(str(MINILM / "model.onnx")), "int8": session(int8_path)}
    outputs = {k: np.concatenate([s.run(None, f)[0] for f in feeds]) for k, s in sessions.items()}
    # One call of each in turn, the order swapped every sentence: the machine is shared, and
    # a load that comes and goes must hit both models alike.
    spent = dict.fromkeys(sessions, 0.0)
    items = 0
    deadline = time.monotonic() + 2 * seconds
    while time.monotonic() < deadline:
        for index, feed in enumerate(feeds):
            order = list(sessions.items())
            for name, model in order if index % 2 else reversed(order):
                started = time.perf_counter()
                model.run(None, feed)
                spent[name] += time.perf_counter() - started
        items += len(feeds)
    a, b = outputs["fp32"], outputs["int8"]
    cosine = np.sum(a * b, axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
    return {
        "fp32_items_per_s": items / spent["fp32"],
        "int8_items_per_s": items / spent["int8"],
        "cosine_min": float(cosine.min()),
        "cosine_mean": float(cosine.mean()),
    }


def served(args, work: Path, server_core: int, load_core: int, texts: list[str]) -> dict:
    """mlapp serving the int8 version against KServe serving the fp32 file, in turns."""
    shell(
        work / "var",
        "from mlapp.models import ModelVersion\n"
        "from mlapp.versions.lifecycle import promote_version\n"
        "promote_version(ModelVersion.objects.get(model__name='minilm', version=2))\n"
        "print('ok')\n",
    )
    bodies = work / "minilm.bodies"
    bodies.write_bytes(
        b"\n".join(_body([_tensor("text", "BYTES", np.asarray([t], dtype=object))]) for t in texts)
        + b"\n"
    )
    with ExitStack() as stack:
        port = free_port()
        mlapp = Server(
            "mlapp (int8)",
            ["taskset", "-c", str(server_core), *SERVERS["granian"]],
            django_env(work / "var", port),
            port,
            work / "mlapp.log",
        )
        stack.callback(mlapp.stop)
        port = free_port()
        kserve = Server(
            "KServe (fp32)",
            ["taskset", "-c", str(server_core), str(KSERVE_PYTHON),
             str(ROOT / "bench/kserve_server.py"), "--http_port", str(port)],
            {k: v for k, v in os.environ.items() if not k.startswith("PROMETHEUS_")},
            port,
            work / "kserve.log",
        )  # fmt: skip
        stack.callback(kserve.stop)
        mlapp.wait_ready()
        kserve.wait_ready()
        runs: dict[str, list[float]] = {mlapp.label: [], kserve.label: []}
        for repeat in range(args.repeat):
            order = [mlapp, kserve] if repeat % 2 == 0 else [kserve, mlapp]
            for server in order:
                cell = measure(
                    server, load_core, bodies, "/v2/models/minilm/infer", args.concurrency, args
                )
                if cell.errors:
                    raise SystemExit(f"{server.label}: {cell.errors} errors")
                runs[server.label].append(cell.requests_per_s)
                log(f"{server.label:14} {cell.requests_per_s:7.1f} req/s")
    return {label: statistics.median(values) for label, values in runs.items()}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="Shorter cells, one repeat.")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--keep", action="store_true", help="Keep the work folder.")
    args = parser.parse_args(argv)
    args.duration, args.warmup, args.repeat = (5.0, 2.0, 1) if args.quick else (10.0, 3.0, 3)
    raw_seconds = 4.0 if args.quick else 10.0
    if shutil.which("wrk") is None or not KSERVE_PYTHON.exists():
        raise SystemExit(
            "Needs wrk (apt-get install wrk) and KServe's environment (make kserve-venv)."
        )
    cores = sorted(os.sched_getaffinity(0))
    if len(cores) < 2:
        raise SystemExit("Needs two cores: one for the servers and the raw call, one for wrk.")
    server_core, load_core = cores[0], cores[1]
    texts = sentences()
    work = Path(tempfile.mkdtemp(prefix="mlapp-bench-edge-"))
    started = time.monotonic()
    try:
        log(f"setting up the demo models in {work}")
        manage(work / "var", "migrate", "--noinput", "-v0")
        manage(work / "var", "setup_demo", "--no-admin")
        (work / "sentences.json").write_text(json.dumps([{"text": t} for t in texts]))
        (work / "digits.json").write_text(json.dumps(held_out_digits()))
        log("deriving int8 versions (method auto: dynamic and static, measured)")
        minilm = derive(work / "var", "minilm", work / "sentences.json")
        digits = derive(work / "var", "digits", work / "digits.json")
        log("raw call, fp32 against int8, on one core")
        os.sched_setaffinity(0, {server_core})
        raw = raw_call(minilm["path"], texts, raw_seconds)
        os.sched_setaffinity(0, set(cores))
        log("served: mlapp with int8 against KServe with fp32")
        http = served(args, work, server_core, load_core, texts)
    finally:
        if args.keep:
            log(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    print(report(minilm, digits, raw, http, args))
    print(f"one core ({server_core}) for the models, wrk on {load_core}; "
          f"{time.monotonic() - started:.0f} s in all")  # fmt: skip


def report(minilm: dict, digits: dict, raw: dict, http: dict, args) -> str:
    ratio = raw["int8_items_per_s"] / raw["fp32_items_per_s"]
    served_ratio = http["mlapp (int8)"] / http["KServe (fp32)"]
    lines = ["| measure | fp32 | int8 | ratio |", "| --- | --- | --- | --- |"]
    lines.append(
        f"| MiniLM raw call, items/s (batch 1, 64 sentences) | {raw['fp32_items_per_s']:.1f} | "
        f"{raw['int8_items_per_s']:.1f} | {ratio:.2f}x |"
    )
    lines.append(
        f"| MiniLM served, req/s (c={args.concurrency}): KServe fp32 vs mlapp int8 | "
        f"{http['KServe (fp32)']:.1f} | {http['mlapp (int8)']:.1f} | {served_ratio:.2f}x |"
    )
    for name, info in (("MiniLM", minilm), ("digits", digits)):
        d = info["derived"]
        child = d["child"]
        agree = (
            f"label agreement {100 * child['label_agreement']:.2f} %"
            if "label_agreement" in child
            else f"cosine mean {child['cosine_mean']:.4f}, lowest {child['cosine_min']:.4f}"
        )
        others = ", ".join(
            f"{k}: {c.get('error') or _short(c)}" for k, c in d["candidates"].items()
        )
        lines.append(
            f"| {name} size, bytes (method {d['method']}; {agree} on {d['sample_rows']} rows; "
            f"derived in {info['seconds']:.0f} s; candidates {others}) | {d['parent']['size']} | "
            f"{child['size']} | {child['size'] / d['parent']['size']:.2f}x |"
        )
    lines.append(
        f"\nMiniLM int8 against fp32 on the 64 sentences (raw call): lowest cosine "
        f"{raw['cosine_min']:.4f}, mean {raw['cosine_mean']:.4f}."
    )
    return "\n".join(lines)


def _short(figures: dict) -> str:
    if "label_agreement" in figures:
        return f"{100 * figures['label_agreement']:.1f} %, {figures['ms_per_row']} ms/row"
    return f"cos >= {figures['cosine_min']:.4f}, {figures['ms_per_row']} ms/row"


if __name__ == "__main__":
    main()
