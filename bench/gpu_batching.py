"""Micro-batching where it pays: minilm on a GPU, 32 concurrent callers, batching off and on.

The performance issue's last target: where a GPU is lent, minilm at concurrency 32 with
batching at least 4x the requests/s without. On a GPU a batch of 32 texts costs about what
one costs, so grouping concurrent requests multiplies throughput; on this project's CPU it
does not (docs/performance.md). This script is the device check, made to run in one go on the
device machine, which has PyTorch (CUDA), transformers and tokenizers but not this project's
web stack and cannot download anything:

- the model: the all-MiniLM-L6-v2 architecture (BERT, 6 layers, 384 wide, mean pooling,
  L2 norm) with random weights, traced to TorchScript here. Throughput depends on the shapes,
  not on the values of the weights, and the trained weights (90 MB) are more than the device
  machine takes along;
- the handler: the demo's ``MiniLMHandler`` with the shipped tokenizer
  (``fixtures/build/minilm/tokenizer.json``, built by ``make demo``);
- the callers: ``--threads`` Python threads calling ``mlapp.predict`` in this process, one text
  each (the server's threads do the same; HTTP is left out: its cost is the CPU's, measured
  by ``bench/run.py``), for ``--seconds`` with batching off, then on, then off and on again.

Django, orjson and the rest come from the project's virtual environment here, and from wheels
carried to the device machine (``pip download`` for its Python; docs/performance.md, "GPU").

    python bench/gpu_batching.py --device cuda [--threads 32] [--seconds 10]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.cases import SENTENCES  # noqa: E402

MINILM = {  # all-MiniLM-L6-v2's architecture
    "vocab_size": 30522,
    "hidden_size": 384,
    "num_hidden_layers": 6,
    "num_attention_heads": 12,
    "intermediate_size": 1536,
}
RUNTIME_SIGNATURE = {
    "inputs": [
        {"name": "input_ids", "datatype": "INT64", "shape": [-1, -1]},
        {"name": "attention_mask", "datatype": "INT64", "shape": [-1, -1]},
    ],
    "outputs": [{"name": "embedding", "datatype": "FP32", "shape": [-1, 384]}],
}


def build_encoder(path: Path, *, portable: bool = True) -> None:
    """A MiniLM-shaped sentence encoder with random weights, traced to TorchScript (on CPU;
    mlapp moves it to the device when it loads it). ``portable=False`` traces it the naive
    way, which writes the CPU into the trace (bench/gpu_promotion.py)."""
    import torch
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    bert = BertModel(BertConfig(**MINILM, torchscript=True)).eval()

    class Encoder(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.bert = bert

        def forward(self, input_ids, attention_mask):
            # The additive attention bias made here, from the input: given the 2-D mask,
            # transformers builds it with the tracing machine's device written into the trace
            # as a constant, and the archive then fails on any other device (seen on the
            # device machine: "attn_bias is on cpu, different from other tensors on cuda:0").
            if portable:
                keep = attention_mask[:, None, None, :].to(torch.float32)
                bias = (1.0 - keep) * torch.finfo(torch.float32).min
                hidden = self.bert(input_ids=input_ids, attention_mask=bias)[0]
            else:
                hidden = self.bert(input_ids=input_ids, attention_mask=attention_mask)[0]
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            return torch.nn.functional.normalize(pooled, dim=1)

    ids = torch.randint(1, MINILM["vocab_size"], (2, 16))
    mask = torch.ones(2, 16, dtype=torch.long)
    mask[1, 10:] = 0
    with torch.no_grad():
        torch.jit.trace(Encoder().eval(), (ids, mask), check_trace=False).save(str(path))


def parse_with_tokenizer(parser: argparse.ArgumentParser) -> argparse.Namespace:
    """``parser``'s arguments plus ``--tokenizer-dir``, checked to hold the demo's tokenizer."""
    parser.add_argument(
        "--tokenizer-dir",
        type=Path,
        default=ROOT / "fixtures/build/minilm",
        help="folder of the demo's tokenizer.json (make demo builds it)",
    )
    args = parser.parse_args()
    if not (args.tokenizer_dir / "tokenizer.json").is_file():
        raise SystemExit(f"No tokenizer.json in {args.tokenizer_dir}: run make demo first.")
    return args


def configure(work: Path, device: str, cpu_threads: int, tokenizer_dir: Path) -> None:
    from django.conf import settings

    settings.configure(
        INSTALLED_APPS=["django.contrib.contenttypes", "django.contrib.auth", "mlapp"],
        DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": work / "db"}},
        MEDIA_ROOT=work / "media",
        USE_TZ=True,
        DEFAULT_AUTO_FIELD="django.db.models.BigAutoField",
        MLAPP={"DEVICE": device, "THREADS": cpu_threads},
        DEMO_MINILM_DIR=tokenizer_dir,
    )
    import django

    django.setup()


def drive(name: str, threads: int, seconds: float) -> dict[str, float]:
    """``threads`` callers of ``mlapp.predict(name, ...)`` for ``seconds``: requests/s, p50."""
    import mlapp

    latencies: list[list[float]] = [[] for _ in range(threads)]
    start = threading.Barrier(threads + 1)
    deadline = [0.0]
    failures: list[BaseException] = []

    def caller(index: int) -> None:
        start.wait()
        own, k = latencies[index], index
        try:
            while time.perf_counter() < deadline[0]:
                began = time.perf_counter()
                mlapp.predict(name, {"text": [SENTENCES[k % len(SENTENCES)]]})
                own.append(time.perf_counter() - began)
                k += 1
        except BaseException as exc:  # reported below, not swallowed
            failures.append(exc)

    workers = [threading.Thread(target=caller, args=(i,)) for i in range(threads)]
    for worker in workers:
        worker.start()
    deadline[0] = time.perf_counter() + seconds
    began = time.perf_counter()
    start.wait()
    for worker in workers:
        worker.join()
    elapsed = time.perf_counter() - began
    if failures:
        raise SystemExit(f"{name}: a call failed: {failures[0]!r}")
    every = sorted(x for own in latencies for x in own)
    return {"requests_per_s": len(every) / elapsed, "p50_ms": 1e3 * statistics.median(every)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cuda", help="cuda, cuda:1 or cpu")
    parser.add_argument("--threads", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--rounds", type=int, default=2, help="off and on, in turns")
    parser.add_argument(
        "--cpu-threads", type=int, default=1, help="torch's intra-op threads (MLAPP['THREADS'])"
    )
    parser.add_argument("--max-batch-size", type=int, default=32)
    parser.add_argument("--max-queue-delay-ms", type=float, default=0.0)
    args = parse_with_tokenizer(parser)
    work = Path(tempfile.mkdtemp(prefix="mlapp-gpu-batching-"))
    configure(work, args.device, args.cpu_threads, args.tokenizer_dir)

    import torch
    from django.core.management import call_command

    from mlapp.models import MLModel
    from mlapp.versions.lifecycle import register_version

    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit("No CUDA device visible to torch.")
    call_command("migrate", verbosity=0)
    artifact = work / "minilm-random.pt"
    build_encoder(artifact)
    batching = {
        "off": {"enabled": False},
        "on": {
            "enabled": True,
            "max_batch_size": args.max_batch_size,
            "max_queue_delay_ms": args.max_queue_delay_ms,
        },
    }
    for mode, config in batching.items():
        name = f"minilm-batching-{mode}"
        register_version(
            name,
            artifact,
            signature=RUNTIME_SIGNATURE,
            handler="project.demo.handlers.MiniLMHandler",
            promote=True,
        )
        MLModel.objects.filter(name=name).update(serving={"batching": config})
    device_name = torch.cuda.get_device_name() if args.device.startswith("cuda") else "CPU"
    print(f"device: {args.device} ({device_name}), torch {torch.__version__}", flush=True)
    results: dict[str, list[dict[str, float]]] = {mode: [] for mode in batching}
    for mode in batching:  # load and warm both before timing either
        drive(f"minilm-batching-{mode}", args.threads, 1.0)
    for n in range(args.rounds):
        for mode in batching:
            result = drive(f"minilm-batching-{mode}", args.threads, args.seconds)
            results[mode].append(result)
            print(
                f"round {n + 1}, batching {mode}: {result['requests_per_s']:.0f} req/s, "
                f"p50 {result['p50_ms']:.2f} ms",
                flush=True,
            )
    off = statistics.median(r["requests_per_s"] for r in results["off"])
    on = statistics.median(r["requests_per_s"] for r in results["on"])
    print()
    print(f"| minilm, {args.threads} callers, {args.device} | req/s | p50 ms |")
    print("| --- | ---: | ---: |")
    for mode in batching:
        rate = statistics.median(r["requests_per_s"] for r in results[mode])
        p50 = statistics.median(r["p50_ms"] for r in results[mode])
        print(f"| batching {mode} | {rate:.0f} | {p50:.2f} |")
    print(f"\nbatching on / off: {on / off:.2f} (the issue's target on a GPU: at least 4)")
    calls, rows = batch_sizes("minilm-batching-on")
    print(f"batching on: {rows:.0f} requests in {calls:.0f} model calls, "
          f"{rows / max(calls, 1):.1f} a call")  # fmt: skip


def batch_sizes(model: str) -> tuple[float, float]:
    """Model calls made by ``model``'s batcher and the requests they carried (its
    ``mlapp_batch_size`` histogram: count and sum)."""
    from prometheus_client import REGISTRY

    from mlapp.serving import metrics

    metrics.fold_batch_counts()
    labels = {"model": model}
    count = REGISTRY.get_sample_value("mlapp_batch_size_count", labels) or 0.0
    total = REGISTRY.get_sample_value("mlapp_batch_size_sum", labels) or 0.0
    return count, total


if __name__ == "__main__":
    main()
