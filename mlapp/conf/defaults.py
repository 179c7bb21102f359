"""The default of every ``MLAPP`` key, and the values some keys choose from."""

from __future__ import annotations

from typing import Any

GRAPH_OPTIMIZATION_LEVELS = ("disable", "basic", "extended", "all")
BATCH_EXECUTORS = ("auto", "celery", "thread")
DEVICE_PREFIXES = ("cpu", "cuda", "mps")

DEFAULTS: dict[str, Any] = {
    # Alias in Django's STORAGES that holds uploaded artifacts (local media by default;
    # any django-storages back end works).
    "ARTIFACT_STORAGE": "default",
    # Folder (inside that storage) artifacts are written to: <prefix>/<model>/<version>/.
    "ARTIFACT_PREFIX": "mlapp/artifacts",
    # Largest artifact accepted on upload, in bytes.
    "MAX_UPLOAD_SIZE": 1024 * 1024 * 1024,
    # Device models are loaded onto: "cpu", "cuda", "cuda:1" ...
    "DEVICE": "cpu",
    # Intra-op threads of torch / ONNX Runtime per process; None leaves the library default.
    # A runtime's own RUNTIMES[...]["OPTIONS"]["threads"] overrides it.
    "THREADS": None,
    # ONNX Runtime graph optimisation: "disable", "basic", "extended" or "all" (overridden
    # by RUNTIMES["onnx"]["OPTIONS"]["graph_optimization"]).
    "ONNX_GRAPH_OPTIMIZATION": "all",
    # Load every production version when the web process starts (mlapp.startup).
    "LOAD_ON_STARTUP": True,
    # Micro-batching defaults; a model overrides any of them in MLModel.serving["batching"].
    # enabled: group concurrent requests into one model call (models whose signature has no
    # variable first dimension are never batched); max_batch_size: most rows in one batched
    # call (a bigger request is cut into parts); max_queue_delay_ms: extra wait for more
    # requests once batches are forming (0: greedy, a call takes what queued while the
    # previous one ran; an idle model always answers at once); max_queue_size: requests
    # waiting beyond this get 503 with Retry-After; min_call_ms: requests queue behind a
    # running call only when the model's calls take at least this long (sampled), else they
    # run side by side, whole, as with batching off (0: always queue).
    "BATCHING": {
        "enabled": False,
        "max_batch_size": 32,
        "max_queue_delay_ms": 0.0,
        "max_queue_size": 256,
        "min_call_ms": 0.2,
    },
    # Rows per chunk (one Celery task) of a batch job.
    "BATCH_CHUNK_SIZE": 1000,
    # Where batch jobs run: "celery" (one task per chunk), "thread" (a background thread of
    # the process that submits them), or "auto": Celery when its app has a broker URL.
    "BATCH_EXECUTOR": "auto",
    # Dotted path to the project's Celery app (e.g. "project.celery.app"), imported on first
    # use; None: Celery's current app.
    "CELERY_APP": None,
    # Times a failed chunk runs again before its job fails, and seconds between the tries.
    "BATCH_MAX_RETRIES": 3,
    "BATCH_RETRY_DELAY": 5.0,
    # Registered batch sources: name -> {"queryset": dotted path of a function taking the
    # job's params as keyword arguments and returning a QuerySet, "inputs": [fields] (one
    # input) or {input: [fields]}, "key": a unique field (default "pk")}.
    "BATCH_SOURCES": {},
    # Non-production versions kept loaded for pinned-version requests (LRU).
    "STAGING_CACHE_SIZE": 2,
    # Seconds between checks of the change marker that signals a promotion elsewhere.
    "POLL_INTERVAL": 1.0,
    # Seconds an uploaded artifact may take to load and run a sample in its validation process.
    "VALIDATION_TIMEOUT": 60,
    # Bytes of address space the validation process may map (RLIMIT_AS); beyond, the upload is
    # refused. torch alone maps about 0.7 GiB; raise it for large models.
    "VALIDATION_MEMORY": 4 * 1024**3,
    # Seconds a derived version (int8, ONNX export) may take to be made and measured in its
    # sandboxed process (quantizing and comparing a large model takes longer than a smoke run).
    "DERIVE_TIMEOUT": 300,
    # The sample a derived version is measured (and statically calibrated) on, per model name:
    # the path of a JSON file holding a list of rows, each an object keyed by the model's
    # public input names (extra keys such as "label" are ignored). A sample given with the
    # request wins; without either, the handler's example is used.
    "DERIVE_SAMPLES": {},
    # Key that signs the manifest of an edge bundle (HMAC-SHA256), as a string or bytes;
    # None: bundles carry checksums only. Give the edge client the same key to check it.
    "BUNDLE_SIGNING_KEY": None,
    # Largest Open Inference Protocol V2 request body, in bytes, before and after
    # decompression (413 beyond); None: Django's DATA_UPLOAD_MAX_MEMORY_SIZE.
    "V2_MAX_REQUEST_SIZE": None,
    # Send V2 inference requests from mlapp.wsgi straight to their view, skipping URL
    # resolving and MIDDLEWARE (mlapp.api.v2.fastpath), while predicting is open to anyone.
    "V2_SKIP_MIDDLEWARE": False,
    # Serve the Open Inference Protocol over gRPC (mlapp.api.grpc, the ``grpc`` extra) on
    # this port, from the web process itself: mlapp_serve starts it in every worker after
    # the fork (the port shared with SO_REUSEPORT), a single-process server (runserver) when
    # mlapp.wsgi loads the models. None: no gRPC.
    "GRPC_PORT": None,
    # Address the gRPC server binds (mlapp_serve binds its --host).
    "GRPC_HOST": "127.0.0.1",
    # Largest gRPC message received or sent, in bytes (RESOURCE_EXHAUSTED beyond); None:
    # the V2 REST limit (V2_MAX_REQUEST_SIZE, else DATA_UPLOAD_MAX_MEMORY_SIZE).
    "GRPC_MAX_MESSAGE_SIZE": None,
    # Threads serving a process's gRPC calls (mlapp.api.grpc.loop). Measured (iris, one
    # core, c=32): the same req/s from 1 to 8, p99 12 ms with 1, 15 with 2, 24 with 4, 31
    # with 8; but calls that wait (a batched model, a database query) overlap only up to this
    # many, so keep it at or above what a batched model should gather (BATCHING).
    "GRPC_THREADS": 8,
    # DRF permission classes (dotted paths) per kind of access.
    "READ_PERMISSION_CLASSES": ["rest_framework.permissions.AllowAny"],
    "PREDICT_PERMISSION_CLASSES": ["rest_framework.permissions.AllowAny"],
    "MANAGE_PERMISSION_CLASSES": ["rest_framework.permissions.IsAdminUser"],
    # Model monitoring (docs/monitoring.md). The prediction log: each process buffers the
    # sampled requests (a model's MLModel.monitoring["sample_rate"]; 0, the default, logs
    # nothing) and a background thread bulk-inserts them. BUFFER_SIZE: rows waiting at most
    # (beyond, a request's row is dropped and counted, the request never waits);
    # FLUSH_INTERVAL: seconds between writes; FLUSH_ROWS: rows per insert (a fuller buffer is
    # written at once); MAX_PAYLOAD_BYTES: inputs (or outputs) longer than this as JSON are
    # stored as their shapes only; REDACT: dotted path of a function (model name, inputs,
    # outputs) -> (inputs, outputs) on JSON values, run before a row is stored.
    # Drift: THRESHOLDS a model's monitoring["thresholds"] overrides (PSI and KS per numeric
    # feature, PSI of the predicted classes and of text lengths, rise of the out-of-vocabulary
    # rate); REFERENCE_ROWS: logged rows a reference is taken from ("the first N requests").
    "MONITORING": {
        "BUFFER_SIZE": 10000,
        "FLUSH_INTERVAL": 1.0,
        "FLUSH_ROWS": 1000,
        "MAX_PAYLOAD_BYTES": 16384,
        "REDACT": None,
        "THRESHOLDS": {"psi": 0.2, "ks": 0.2, "classes": 0.2, "length": 0.2, "oov": 0.1},
        "REFERENCE_ROWS": 500,
    },
    # Format key -> runtime, in the shape of Django's STORAGES: "BACKEND" is the dotted path
    # of a mlapp.runtimes.Runtime subclass, "OPTIONS" go to its constructor over the global
    # ones (threads, graph_optimization). Add a key to serve a new format; a default format
    # may leave BACKEND out to change only its OPTIONS; a plain dotted path is short for
    # {"BACKEND": path}.
    "RUNTIMES": {
        "torchscript": {"BACKEND": "mlapp.runtimes.torchscript.TorchScriptRuntime"},
        "torch_export": {"BACKEND": "mlapp.runtimes.torch_export.TorchExportRuntime"},
        "onnx": {"BACKEND": "mlapp.runtimes.onnx.OnnxRuntime"},
    },
}
