"""mlapp scaled out on one machine: what the many-machine topology does, shown with real engines.

Starts two web nodes (``manage.py mlapp_serve``) behind HAProxy, two Celery workers
(``manage.py mlapp_worker``), on one PostgreSQL database, one Redis broker and an S3 server
(moto's) holding the artifacts; every process is a separate node of docs/scaling.md's
topology, sharing nothing but those three. Then, under bounded load through the balancer:

1. **promotion**: version 2 is promoted through node 1's API; every answer of both nodes
   names version 2 within 2 s, and no request fails;
2. **a web node dies**: node 2 is SIGKILLed mid-load; HAProxy retries what it can (connection
   refused, connection closed before any answer) on node 1, and node 1 keeps answering;
3. **a worker dies**: a batch job is submitted through the balancer, its chunks go to both
   workers, worker 2 is SIGKILLed mid-job; its unacknowledged chunks are redelivered to
   worker 1, the job succeeds, and every key is stored exactly once.

Needs haproxy (``apt-get install haproxy``), PostgreSQL and Redis running; drops and creates
its own database (``--database``) and flushes its Redis database (``--redis``, number 13 by
default). About a minute. Prints the figures (JSON with ``--json``)::

    .venv/bin/python bench/scaleout.py [--rows 12000] [--json]

tests/deploy/test_scaleout.py runs it and asserts what it prints.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
BUCKET = "mlapp-artifacts"
INFER = json.dumps(
    {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 3], "data": [1, 2, 3]}]}
).encode()
#: Seconds a promotion may take to reach every node.
PROPAGATION_LIMIT_S = 2.0
#: The broker hands an unacknowledged chunk to another worker after this (seconds).
VISIBILITY_TIMEOUT_S = 8
#: What a Celery worker logs for each chunk it ran to the end.
CELERY_SUCCEEDED = re.compile(r"Task mlapp\.run_batch_chunk\[([^\]]+)\] succeeded")
#: ... and for each chunk it took from the broker.
CELERY_RECEIVED = re.compile(r"Task mlapp\.run_batch_chunk\[([^\]]+)\] received")
STAFF_TOKEN = (
    "from django.contrib.auth.models import User; "
    "from rest_framework.authtoken.models import Token; "
    "u = User.objects.create_superuser('ops', 'ops@example.com', 'pw'); "
    "print(Token.objects.create(user=u).key)"
)

HAPROXY_CONFIG = """\
global
    maxconn 1000

defaults
    mode http
    timeout connect 1s
    timeout client 30s
    timeout server 30s
    # Retry on the other node what never got an answer: a refused connection, or one closed
    # before the first byte of a response (a node killed mid-request).
    retries 3
    option redispatch 1
    retry-on conn-failure empty-response
    # A new connection to a node per request: a request HAProxy sends on a kept-alive
    # connection whose node has just died is not retried by HAProxy, which closes the
    # client's connection instead so that the client may (CI saw one such request fail,
    # begun 4 ms after the kill). Without reuse, that is a refused connection, retried here.
    http-reuse never

frontend lb
    bind 127.0.0.1:{lb}
    default_backend web

frontend stats
    bind 127.0.0.1:{stats}
    stats enable
    stats uri /stats

backend web
    balance roundrobin
    option httpchk
    http-check send meth GET uri /v2/health/ready hdr Host localhost
    http-check expect status 200
    default-server inter 500ms fall 1 rise 2
    server web1 127.0.0.1:{web1} check
    server web2 127.0.0.1:{web2} check
"""


class Missing(Exception):
    """A service or program the scale-out needs is not there; the message says which."""


def requirements(pg_host: str, pg_port: int, redis_url: str) -> list[str]:
    """What is missing to run: haproxy, PostgreSQL, Redis (empty when all is there)."""
    missing = []
    if shutil.which("haproxy") is None and not Path("/usr/sbin/haproxy").exists():
        missing.append("haproxy is not installed (apt-get install haproxy)")
    if not _reachable(pg_host, pg_port):
        missing.append(f"PostgreSQL is not reachable at {pg_host}:{pg_port}")
    host, port = _redis_address(redis_url)
    if not _reachable(host, port):
        missing.append(f"Redis is not reachable at {host}:{port}")
    return missing


def _reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def _redis_address(url: str) -> tuple[str, int]:
    netloc = url.split("://", 1)[1].split("/", 1)[0].rsplit("@", 1)[-1]
    host, _, port = netloc.partition(":")
    return host or "127.0.0.1", int(port or 6379)


# -- the nodes ------------------------------------------------------------------------------


@dataclass
class Ports:
    lb: int
    stats: int
    web1: int
    web2: int
    s3: int

    @classmethod
    def starting_at(cls, first: int) -> Ports:
        return cls(first, first + 1, first + 2, first + 3, first + 4)


@dataclass
class Process:
    name: str
    popen: subprocess.Popen
    log: Path

    def kill(self) -> None:
        """SIGKILL the node and every process of it (its own process group)."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, signal.SIGKILL)
        self.popen.wait()

    def stop(self) -> None:
        if self.popen.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, signal.SIGTERM)
        try:
            self.popen.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.kill()

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:]


@dataclass
class Cluster:
    """Two web nodes, a balancer, two workers, and what they share."""

    ports: Ports
    database: str
    redis_url: str
    rows_chunk: int
    workdir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="mlapp-scale-")))
    processes: dict[str, Process] = field(default_factory=dict)
    token: str = ""
    s3_server: Any = None

    # environment ---------------------------------------------------------------------------

    def env(self, node: str) -> dict[str, str]:
        """A node's environment: its own var folder (media included), the shared services."""
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(
                ("MLAPP_", "DJANGO_", "WEB_", "GRPC_", "PROMETHEUS_", "CELERY_", "AWS_")
            )
            and k not in {"PGDATABASE", "PYTEST_CURRENT_TEST"}
        }
        var = self.workdir / node
        env.update(
            DJANGO_SETTINGS_MODULE="project.settings",
            DJANGO_DEBUG="0",
            DJANGO_SECRET_KEY="scale-out",
            MLAPP_VAR_DIR=str(var),
            DJANGO_STATIC_ROOT=str(self.workdir / "static"),
            MLAPP_DB="postgres",
            PGDATABASE=self.database,
            CELERY_BROKER_URL=self.redis_url,
            # A dead worker's chunks come back within seconds (a chunk here takes < 1 s).
            MLAPP_CELERY_TRANSPORT_OPTIONS=json.dumps(
                {"visibility_timeout": VISIBILITY_TIMEOUT_S, "unacked_restore_interval": 1}
            ),
            MLAPP_BATCH_CHUNK_SIZE=str(self.rows_chunk),
            MLAPP_S3_BUCKET=BUCKET,
            MLAPP_S3_ENDPOINT_URL=f"http://127.0.0.1:{self.ports.s3}",
            MLAPP_S3_REGION="us-east-1",
            AWS_ACCESS_KEY_ID="scale-out",
            AWS_SECRET_ACCESS_KEY="scale-out",
            MLAPP_THREADS="1",
            WEB_WORKERS="1",
            PYTHONUNBUFFERED="1",
        )
        return env

    def manage(self, node: str, *args: str) -> str:
        done = subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=REPO, env=self.env(node), capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        if done.returncode != 0:
            raise RuntimeError(f"manage.py {' '.join(args)}: {done.stderr[-3000:]}")
        return done.stdout

    def spawn(self, name: str, argv: list[str], node: str | None = None) -> Process:
        log = self.workdir / f"{name}.log"
        with log.open("wb") as out:
            popen = subprocess.Popen(
                argv, cwd=REPO, env=self.env(node or name), stdout=out,
                stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        self.processes[name] = Process(name, popen, log)
        return self.processes[name]

    # start / stop --------------------------------------------------------------------------

    def start(self, artifact: Path) -> None:
        """Every shared service, the schema, version 1 in production, then the nodes."""
        fresh_database(self.database)
        flush_redis(self.redis_url)
        self.start_s3()
        self.manage("admin", "migrate", "--noinput", "-v0")
        self.manage("admin", "register_model", "affine", str(artifact), "--promote")
        self.token = self.manage("admin", "shell", "-v", "0", "-c", STAFF_TOKEN).strip()
        for name, port in (("web1", self.ports.web1), ("web2", self.ports.web2)):
            serve = [sys.executable, "manage.py", "mlapp_serve", "--port", str(port)]
            self.spawn(name, serve)
        config = self.workdir / "haproxy.cfg"
        config.write_text(HAPROXY_CONFIG.format(**vars(self.ports)))
        haproxy = shutil.which("haproxy") or "/usr/sbin/haproxy"
        self.spawn("haproxy", [haproxy, "-db", "-f", str(config)], node="admin")
        for name in ("worker1", "worker2"):
            worker = [sys.executable, "manage.py", "mlapp_worker", "--concurrency", "1"]
            self.spawn(name, worker)
        for name, port in (("web1", self.ports.web1), ("web2", self.ports.web2)):
            self.wait_ready(name, port)
        for name in ("worker1", "worker2"):
            self.wait_log(name, "ready.", 90)
        self.wait_balanced()

    def start_s3(self) -> None:
        import boto3
        from moto.server import ThreadedMotoServer

        # One line per S3 request otherwise.
        logging.getLogger("werkzeug").setLevel(logging.WARNING)

        self.s3_server = ThreadedMotoServer(
            ip_address="127.0.0.1", port=self.ports.s3, verbose=False
        )
        self.s3_server.start()
        # moto keeps its buckets in this process, across servers: start from none.
        reset = f"http://127.0.0.1:{self.ports.s3}/moto-api/reset"
        urllib.request.urlopen(urllib.request.Request(reset, method="POST"), timeout=10).close()
        boto3.client(
            "s3",
            endpoint_url=f"http://127.0.0.1:{self.ports.s3}",
            region_name="us-east-1",
            aws_access_key_id="scale-out",
            aws_secret_access_key="scale-out",
        ).create_bucket(Bucket=BUCKET)

    def stop(self) -> None:
        for process in self.processes.values():
            process.stop()
        if self.s3_server is not None:
            self.s3_server.stop()

    def wait_ready(self, name: str, port: int, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        process = self.processes[name]
        while time.monotonic() < deadline and process.popen.poll() is None:
            with contextlib.suppress(OSError):
                if request(port, "GET", "/v2/health/ready")[0] == 200:
                    return
            time.sleep(0.3)
        raise RuntimeError(f"{name} did not get ready:\n{process.tail()}")

    def wait_log(self, name: str, text: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        process = self.processes[name]
        while time.monotonic() < deadline and process.popen.poll() is None:
            if text in process.log.read_text(errors="replace"):
                return
            time.sleep(0.3)
        raise RuntimeError(f"{name} never logged {text!r}:\n{process.tail()}")

    def wait_balanced(self, timeout: float = 30) -> None:
        """Until HAProxy's checks mark both web nodes up."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if all(s["status"] == "UP" for s in self.haproxy_servers().values()):
                return
            time.sleep(0.3)
        raise RuntimeError(f"HAProxy never saw both nodes up:\n{self.haproxy_servers()}")

    def haproxy_servers(self) -> dict[str, dict[str, str]]:
        """HAProxy's statistics of each web server (status, retries, redispatches...)."""
        status, body = request(self.ports.stats, "GET", "/stats;csv")
        if status != 200:
            return {}
        lines = body.decode().lstrip("# ").splitlines()
        header = lines[0].split(",")
        rows = [dict(zip(header, line.split(","), strict=False)) for line in lines[1:]]
        return {r["svname"]: r for r in rows if r["pxname"] == "web" and r["svname"] != "BACKEND"}

    def haproxy_backend(self) -> dict[str, str]:
        _, body = request(self.ports.stats, "GET", "/stats;csv")
        lines = body.decode().lstrip("# ").splitlines()
        header = lines[0].split(",")
        for line in lines[1:]:
            row = dict(zip(header, line.split(","), strict=False))
            if row["pxname"] == "web" and row["svname"] == "BACKEND":
                return row
        return {}


def fresh_database(name: str) -> None:
    """Drop and create the scale-out's own PostgreSQL database."""
    import psycopg

    with psycopg.connect(
        host=os.environ.get("PGHOST", "127.0.0.1"),
        port=os.environ.get("PGPORT", "5432"),
        user=os.environ.get("PGUSER", "postgres"),
        dbname="postgres",
        autocommit=True,
    ) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')


def flush_redis(url: str) -> None:
    """Empty the scale-out's Redis database (only that one)."""
    import redis

    redis.Redis.from_url(url).flushdb()


# -- clients --------------------------------------------------------------------------------


def request(
    port: int, method: str, path: str, body: bytes | None = None, headers: dict | None = None
) -> tuple[int, bytes]:
    url = f"http://127.0.0.1:{port}{path}"
    req = urllib.request.Request(url, data=body, method=method, headers=dict(headers or {}))
    try:
        with urllib.request.urlopen(req, timeout=30) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


@dataclass
class Answer:
    started: float
    ended: float
    status: int  # 0: no HTTP answer at all
    version: str | None
    error: str = ""


class Load:
    """Bounded load: ``clients`` threads, each one request at a time on a kept-alive
    connection to ``port``, a pause between requests; every answer recorded."""

    def __init__(self, port: int, clients: int, pause_s: float = 0.01) -> None:
        self.port, self.clients, self.pause_s = port, clients, pause_s
        self.answers: list[Answer] = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(clients)]
        self._lock = threading.Lock()

    def __enter__(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join()

    def _run(self) -> None:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        headers = {"Content-Type": "application/json"}
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                connection.request("POST", "/v2/models/affine/infer", INFER, headers)
                response = connection.getresponse()
                body = response.read()
                version = json.loads(body).get("model_version") if response.status == 200 else None
                answer = Answer(started, time.monotonic(), response.status, version)
                if response.status != 200:
                    answer.error = body[:200].decode(errors="replace")
            except (OSError, http.client.HTTPException) as exc:
                answer = Answer(started, time.monotonic(), 0, None, repr(exc))
                connection.close()
                connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
            with self._lock:
                self.answers.append(answer)
            time.sleep(self.pause_s)
        connection.close()

    def failed(self) -> list[Answer]:
        return [a for a in self.answers if a.status != 200]


# -- the three scenarios --------------------------------------------------------------------


def promotion(cluster: Cluster, artifact: Path, clients: int) -> dict[str, Any]:
    """Version 2 uploaded and promoted through node 1 under load through the balancer; each
    node probed directly: when does it first answer version 2, and never 1 again?"""
    web1, auth = cluster.ports.web1, {"Authorization": f"Token {cluster.token}"}
    body, headers = multipart(artifact)
    status, answer = request(
        web1, "POST", "/api/mlapp/models/affine/versions/", body, {**headers, **auth}
    )
    if status != 201:
        raise RuntimeError(f"upload of version 2: {status} {answer[:500]!r}")
    probes = {name: Load(getattr(cluster.ports, name), 1, 0.02) for name in ("web1", "web2")}
    with Load(cluster.ports.lb, clients) as load, probes["web1"], probes["web2"]:
        time.sleep(2)
        sent = time.monotonic()
        status, answer = request(
            web1, "POST", "/api/mlapp/models/affine/versions/2/promote", b"",
            {**auth, "Content-Type": "application/json"},
        )  # fmt: skip
        promoted = time.monotonic()
        if status != 200:
            raise RuntimeError(f"promotion: {status} {answer[:500]!r}")
        time.sleep(PROPAGATION_LIMIT_S + 2)
    result: dict[str, Any] = {
        "requests": len(load.answers),
        "failed": len(load.failed()) + sum(len(p.failed()) for p in probes.values()),
        "failures": [vars(a) for a in load.failed()][:5],
        "promote_call_s": round(promoted - sent, 3),
    }
    for name, probe in probes.items():
        first_v2 = min((a.ended for a in probe.answers if a.version == "2"), default=None)
        # Served version 1 after the promotion returned (started after it) is stale.
        last_v1 = max((a.started for a in probe.answers if a.version == "1"), default=sent)
        result[f"{name}_first_v2_s"] = None if first_v2 is None else round(first_v2 - promoted, 3)
        result[f"{name}_last_v1_s"] = round(last_v1 - promoted, 3)
        result[f"{name}_probes"] = len(probe.answers)
    late = [
        a for a in load.answers if a.started > promoted + PROPAGATION_LIMIT_S and a.version != "2"
    ]
    result["lb_version_1_after_limit"] = len(late)
    return result


def refused_since(port: int, timeout: float = 5) -> float:
    """When connections to ``port`` began to be refused (``time.monotonic()``)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
        except ConnectionRefusedError:
            return time.monotonic()
        except OSError:
            pass
        time.sleep(0.001)
    raise RuntimeError(f"port {port} still accepts connections {timeout:g} s after the kill")


def web_node_dies(cluster: Cluster, clients: int) -> dict[str, Any]:
    """Node 2 SIGKILLed mid-load: what the clients of the balancer saw, and node 1 after."""
    before = cluster.haproxy_backend()
    with Load(cluster.ports.lb, clients) as load:
        time.sleep(1.5)
        killed = time.monotonic()
        cluster.processes["web2"].kill()
        # Dead to the balancer once its port refuses: until then (the exiting processes'
        # sockets close last, after their memory is torn down, a few ms) a connection may
        # still be accepted by node 2's kernel and the request sent there, then reset.
        dead = refused_since(cluster.ports.web2)
        time.sleep(3)
    after = cluster.haproxy_backend()
    status, _ = request(
        cluster.ports.web1, "POST", "/v2/models/affine/infer", INFER,
        {"Content-Type": "application/json"},
    )  # fmt: skip

    def in_flight(answer: Answer) -> bool:
        return answer.started <= dead and answer.ended >= killed

    return {
        "requests": len(load.answers),
        "during_kill": sum(1 for a in load.answers if in_flight(a)),
        "after_kill": sum(1 for a in load.answers if a.started > dead),
        "failed": len(load.failed()),
        # A request node 2 had already taken when it died cannot be retried by the balancer
        # (a POST may have run); every other one must be answered.
        "failed_in_flight": sum(1 for a in load.failed() if in_flight(a)),
        "failed_retryable": sum(1 for a in load.failed() if not in_flight(a)),
        "dead_after_kill_ms": round(1000 * (dead - killed), 1),
        "killed_at": killed,
        "failures": [vars(a) for a in load.failed()][:5],
        "haproxy_retries": int(after.get("wretr") or 0) - int(before.get("wretr") or 0),
        "haproxy_redispatches": int(after.get("wredis") or 0) - int(before.get("wredis") or 0),
        "web1_after": status,
        "web2_status": cluster.haproxy_servers().get("web2", {}).get("status"),
    }


def worker_dies(cluster: Cluster, rows: int, timeout: float = 90) -> dict[str, Any]:
    """A job through the balancer, its chunks on both workers, worker 2 SIGKILLed mid-job."""
    csv = "key,x0,x1,x2\n" + "".join(f"k{i},{i % 7},{i % 5},{i % 3}\n" for i in range(rows))
    body, headers = multipart_csv(csv.encode())
    auth = {"Authorization": f"Token {cluster.token}"}
    status, answer = request(
        cluster.ports.lb, "POST", "/api/mlapp/jobs/", body, {**headers, **auth}
    )
    if status not in (201, 202):
        raise RuntimeError(f"job submission: {status} {answer[:500]!r}")
    job = json.loads(answer)["id"]
    started = time.monotonic()
    killed_after: int | None = None
    done_at_kill = None
    lost: set[str] = set()
    while time.monotonic() - started < timeout:
        counts = chunks_run(cluster)
        # Killed after both ran a chunk, while worker 2 holds one it has not finished.
        both_ran = counts["worker2"] >= 1 and counts["worker1"] >= 1
        if killed_after is None and both_ran and chunks_held(cluster, "worker2"):
            cluster.processes["worker2"].kill()
            done_at_kill = job_state(cluster, job)
            killed_after = counts["worker2"]
            lost = chunks_held(cluster, "worker2")
        state = job_state(cluster, job)
        if state["status"] in ("succeeded", "failed", "cancelled"):
            break
        time.sleep(0.2)
    elapsed = time.monotonic() - started
    # A chunk worker 2 held may have stored its rows just before the kill (the job then
    # succeeds without it); its message was never acknowledged, so the broker still hands it
    # to worker 1 once the visibility timeout passes, and running it again must store nothing
    # twice. Wait for that before counting.
    redelivery_deadline = time.monotonic() + VISIBILITY_TIMEOUT_S + 15
    while lost - chunk_ids(cluster, "worker1", CELERY_SUCCEEDED):
        if time.monotonic() > redelivery_deadline:
            break
        time.sleep(0.5)
    stored = stored_keys(cluster.database, job)
    return {
        "rows": rows,
        "chunks": -(-rows // cluster.rows_chunk),
        "status": job_state(cluster, job)["status"],
        "seconds": round(elapsed, 2),
        "chunks_worker1": chunks_run(cluster)["worker1"],
        "chunks_worker2_before_kill": killed_after,
        "done_at_kill": done_at_kill and done_at_kill["done"],
        # Chunks worker 2 took and never finished, and how many of them worker 1 then ran.
        "chunks_lost_with_worker2": len(lost),
        "lost_chunks_run_by_worker1": len(lost & chunk_ids(cluster, "worker1", CELERY_SUCCEEDED)),
        "stored": stored["rows"],
        "distinct_keys": stored["distinct"],
        "missing_keys": rows - len({f"k{i}" for i in range(rows)} & stored["keys"]),
    }


def chunk_ids(cluster: Cluster, worker: str, pattern: re.Pattern) -> set[str]:
    """Task ids of the chunks ``worker`` logged with ``pattern`` (received, succeeded)."""
    return set(pattern.findall(cluster.processes[worker].log.read_text(errors="replace")))


def chunks_run(cluster: Cluster) -> dict[str, int]:
    return {
        name: len(chunk_ids(cluster, name, CELERY_SUCCEEDED)) for name in ("worker1", "worker2")
    }


def chunks_held(cluster: Cluster, worker: str) -> set[str]:
    """Chunks ``worker`` received and has not finished."""
    return chunk_ids(cluster, worker, CELERY_RECEIVED) - chunk_ids(
        cluster, worker, CELERY_SUCCEEDED
    )


def job_state(cluster: Cluster, job: int) -> dict[str, Any]:
    auth = {"Authorization": f"Token {cluster.token}"}
    status, body = request(cluster.ports.web1, "GET", f"/api/mlapp/jobs/{job}/", None, auth)
    return json.loads(body) if status == 200 else {"status": f"http {status}", "done": None}


def stored_keys(database: str, job: int) -> dict[str, Any]:
    import psycopg

    with psycopg.connect(
        host=os.environ.get("PGHOST", "127.0.0.1"),
        port=os.environ.get("PGPORT", "5432"),
        user=os.environ.get("PGUSER", "postgres"),
        dbname=database,
    ) as conn:
        keys = [k for (k,) in conn.execute(
            "SELECT key FROM mlapp_batchprediction WHERE job_id = %s", (job,)
        )]  # fmt: skip
    return {"rows": len(keys), "distinct": len(set(keys)), "keys": set(keys)}


def multipart(artifact: Path) -> tuple[bytes, dict[str, str]]:
    return _multipart("affine.onnx", "application/octet-stream", artifact.read_bytes(), {})


def multipart_csv(content: bytes) -> tuple[bytes, dict[str, str]]:
    return _multipart("rows.csv", "text/csv", content, {"model": "affine"})


def _multipart(filename: str, kind: str, content: bytes, fields: dict) -> tuple[bytes, dict]:
    boundary = "mlapp-scale-out"
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode()
        for k, v in fields.items()
    ]
    parts.append(
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{filename}"'
        f"\r\nContent-Type: {kind}\r\n\r\n".encode()
        + content
        + b"\r\n"
    )
    return b"".join(parts) + f"--{boundary}--\r\n".encode(), {
        "Content-Type": f"multipart/form-data; boundary={boundary}"
    }


def tiny_model(folder: Path) -> Path:
    """The affine ONNX model of the test suite (three inputs, two outputs)."""
    sys.path.insert(0, str(REPO))
    from tests import artifacts

    return artifacts.onnx(folder / "affine.onnx")


def run(
    *,
    first_port: int = 18620,
    database: str = "mlapp_scaleout",
    redis_url: str = "redis://127.0.0.1:6379/13",
    rows: int = 12000,
    chunk: int = 400,
    clients: int = 4,
) -> dict[str, Any]:
    """Start the cluster, run the three scenarios, stop everything; the figures."""
    missing = requirements(
        os.environ.get("PGHOST", "127.0.0.1"), int(os.environ.get("PGPORT", "5432")), redis_url
    )
    if missing:
        raise Missing("; ".join(missing))
    cluster = Cluster(Ports.starting_at(first_port), database, redis_url, chunk)
    started = time.monotonic()
    try:
        artifact = tiny_model(cluster.workdir)
        cluster.start(artifact)
        ready = time.monotonic() - started
        figures = {
            "startup_s": round(ready, 1),
            "promotion": promotion(cluster, artifact, clients),
            "web_node_dies": web_node_dies(cluster, clients),
            "worker_dies": worker_dies(cluster, rows),
        }
        figures["total_s"] = round(time.monotonic() - started, 1)
        return figures
    except Exception as exc:
        logs = "\n".join(f"--- {p.name}\n{p.tail()}" for p in cluster.processes.values())
        raise RuntimeError(f"{exc}\n{logs}") from exc
    finally:
        cluster.stop()
        shutil.rmtree(cluster.workdir, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--first-port", type=int, default=18620, help="five ports from it")
    parser.add_argument("--database", default="mlapp_scaleout", help="dropped and created")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/13", help="flushed")
    parser.add_argument("--rows", type=int, default=12000, help="rows of the batch job")
    parser.add_argument("--chunk", type=int, default=400, help="rows per chunk")
    parser.add_argument("--clients", type=int, default=4, help="concurrent clients")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args()
    try:
        figures = run(
            first_port=args.first_port, database=args.database, redis_url=args.redis,
            rows=args.rows, chunk=args.chunk, clients=args.clients,
        )  # fmt: skip
    except Missing as exc:
        sys.exit(f"scaleout: {exc}")
    if args.json:
        print(json.dumps(figures, indent=2, default=str))
        return
    for scenario, values in figures.items():
        print(f"{scenario}: {values}")


if __name__ == "__main__":
    main()
