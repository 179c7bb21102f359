"""A small gRPC load generator for ``bench/grpc_run.py``: ModelInfer at a fixed concurrency.

asyncio over ``grpc.aio``: ``--connections`` channels kept open (HTTP/2), ``--concurrency``
calls in flight, requests serialized once beforehand (tritonclient's form: inputs in
``raw_input_contents``), answers checked for an OK status only. Runs for a fixed time after a
warm-up and prints one JSON line: requests, seconds, p50 / p99 latency, errors.

    .venv/bin/python bench/grpc_load.py 127.0.0.1:8001 iris --concurrency 32 --seconds 5
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path

import grpc
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.cases import cases  # noqa: E402
from mlapp.api.grpc import messages  # noqa: E402

METHOD = "/inference.GRPCInferenceService/ModelInfer"
DATATYPES = {np.dtype(np.float32): "FP32", np.dtype(object): "BYTES"}


def _raw(array: np.ndarray) -> bytes:
    if array.dtype == object:
        parts = []
        for value in array.reshape(-1):
            data = value.encode() if isinstance(value, str) else bytes(value)
            parts += [len(data).to_bytes(4, "little"), data]
        return b"".join(parts)
    return np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<")).tobytes()


def percentiles(latencies: list[int]) -> tuple[float, float]:
    """The p50 and p99 of ``latencies`` (0 when there are none), in their own unit."""
    ordered = np.sort(np.asarray(latencies or [0], dtype=np.int64))
    return (
        float(ordered[len(ordered) // 2]),
        float(ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]),
    )


def requests(case: str) -> list[bytes]:
    """The benchmark's rows of ``case`` (bench/cases.py) as serialized ModelInferRequests."""
    chosen = cases()[case]
    bodies = []
    for arrays in chosen.arrays:
        message = messages.ModelInferRequest(model_name=chosen.model)
        for name, array in arrays.items():
            message.inputs.add(name=name, datatype=DATATYPES[array.dtype], shape=array.shape)
            message.raw_input_contents.append(_raw(array))
        bodies.append(message.SerializeToString())
    return bodies


async def _run(args: argparse.Namespace, bodies: list[bytes], seconds: float) -> dict:
    channels = [grpc.aio.insecure_channel(args.address) for _ in range(args.connections)]
    for channel in channels:
        await asyncio.wait_for(channel.channel_ready(), 30)
    calls = [channel.unary_unary(METHOD) for channel in channels]  # bytes in, bytes out
    latencies: list[int] = []
    errors: list[str] = []
    deadline = time.perf_counter() + seconds

    async def worker(index: int) -> None:
        call = calls[index % len(calls)]
        n = index
        while time.perf_counter() < deadline:
            started = time.perf_counter_ns()
            try:
                await call(bodies[n % len(bodies)], timeout=10)
            except grpc.aio.AioRpcError as exc:
                errors.append(f"{exc.code().name}: {exc.details()}")
            else:
                latencies.append(time.perf_counter_ns() - started)
            n += 1

    began = time.perf_counter()
    await asyncio.gather(*(worker(i) for i in range(args.concurrency)))
    elapsed = time.perf_counter() - began
    for channel in channels:
        await channel.close()
    p50, p99 = percentiles(latencies)
    return {
        "requests": len(latencies),
        "seconds": elapsed,
        "p50_us": p50 / 1000,
        "p99_us": p99 / 1000,
        "errors": len(errors),
        "first_error": errors[0] if errors else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("address")
    parser.add_argument("case", help="a case of bench/cases.py: iris, digits, minilm")
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--connections", type=int, default=1)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--warmup", type=float, default=1.0)
    args = parser.parse_args()
    bodies = requests(args.case)
    if args.warmup:
        asyncio.run(_run(args, bodies, args.warmup))
    print(json.dumps(asyncio.run(_run(args, bodies, args.seconds))))


if __name__ == "__main__":
    main()
