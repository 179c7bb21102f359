# mlapp: make demo | make test | make lint | make serve | make bench
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
PORT ?= 8000
# The Open Inference Protocol over gRPC, beside HTTP (as Triton: 8001).
GRPC_PORT ?= 8001
STAMP := $(VENV)/.installed-stamp
PIP := $(BIN)/pip install --quiet --disable-pip-version-check -c constraints.txt

.PHONY: install kserve-venv demo serve bench bench-grpc bench-traffic bench-batch bench-lookup bench-where bench-edge scaleout test test-sqlite test-postgres lint wheel clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(PIP) --upgrade pip setuptools wheel
	# torch first, exact: the CPU wheel, never a range that could pull a CUDA build.
	$(PIP) torch==2.13.0
	$(PIP) -e '.[torch,onnx,edge,postgres,celery,serve,grpc,s3,demo,dev]'
	# ONNX Runtime Web into mlapp/static/mlapp/ort/ (npm; a warning where npm is missing).
	$(BIN)/python web/build_ort.py --if-npm
	touch $(STAMP)

install: $(STAMP)

# KServe in its own environment, for the V2 client tests (its SDK's client) and for the
# benchmark (its model server on the same artifacts: torch, ONNX Runtime, tokenizers at the
# versions mlapp runs): kserve needs protobuf 6, which our constraints do not allow. The
# versions are the ones the tests and the benchmark ran with.
KSERVE_VENV := .venv-kserve
KSERVE_VERSION := 0.21.0
KSERVE_STAMP := $(KSERVE_VENV)/.installed-$(KSERVE_VERSION)-bench

$(KSERVE_STAMP):
	test -x $(KSERVE_VENV)/bin/python || $(PY) -m venv $(KSERVE_VENV)
	$(KSERVE_VENV)/bin/pip install --quiet --disable-pip-version-check kserve==$(KSERVE_VERSION)
	# torch first and exact: the CPU wheel.
	$(KSERVE_VENV)/bin/pip install --quiet --disable-pip-version-check torch==2.13.0
	$(KSERVE_VENV)/bin/pip install --quiet --disable-pip-version-check \
		onnxruntime==1.32.0 tokenizers==0.23.3
	touch $(KSERVE_STAMP)

kserve-venv: $(KSERVE_STAMP)

# Set up (idempotent), then serve the example project in the foreground.
demo: install
	$(BIN)/python manage.py migrate --noinput
	$(BIN)/python manage.py setup_demo
	@echo "Serving on http://127.0.0.1:$(PORT)/ and gRPC on 127.0.0.1:$(GRPC_PORT) (Ctrl-C to stop)"
	GRPC_PORT=$(GRPC_PORT) $(BIN)/python manage.py runserver --noreload 127.0.0.1:$(PORT) < /dev/null

# The production server (manage.py mlapp_serve: granian, chosen by measurement,
# docs/performance.md) over the database `make demo` set up; workers sized from the cores it
# may run on (taskset works), a dead worker replaced.
serve: install
	$(BIN)/python manage.py migrate --noinput
	$(BIN)/python manage.py collectstatic --noinput -v0
	@echo "Serving on http://127.0.0.1:$(PORT)/ and gRPC on 127.0.0.1:$(GRPC_PORT) (Ctrl-C to stop)"
	DJANGO_DEBUG=0 $(BIN)/python manage.py mlapp_serve --port $(PORT) --grpc-port $(GRPC_PORT) < /dev/null

# mlapp against the raw model call and KServe (needs wrk and h2load: apt-get install wrk
# nghttp2-client). About seven minutes; BENCH_ARGS=--quick for a shorter run, see bench/run.py --help.
BENCH_ARGS ?=
bench: install kserve-venv
	$(BIN)/python bench/run.py $(BENCH_ARGS)
	$(BIN)/python bench/grpc_run.py

# The gRPC rows alone: mlapp's gRPC against KServe's, one core each (about five minutes).
bench-grpc: install kserve-venv
	$(BIN)/python bench/grpc_run.py

# The full suite: once on SQLite, once on PostgreSQL (skipped with the reason when
# PostgreSQL is not running, a failure under CI=true).
# Batch throughput on PostgreSQL + Redis with 1 and 2 Celery workers (docs/batch.md), and the
# cost of a lookup by key at 1 M stored predictions. Each drops and creates its own database.
# The cost of a traffic policy (a 10 % canary; a shadow copy of every request) against none,
# same run, same core.
bench-traffic: install
	$(BIN)/python bench/run.py --cases iris,minilm --batching off --no-kserve --no-memory \
		--policies none,canary,canary+shadow $(BENCH_ARGS)

bench-batch: install
	$(BIN)/python bench/batch.py

bench-lookup: install
	$(BIN)/python bench/lookup.py

# Derived int8 versions (docs/edge.md): MiniLM int8 against fp32 as a raw call and served
# (mlapp with int8 against KServe with fp32, one core), digits' agreement and size. About 4 min.
bench-edge: install kserve-venv
	$(BIN)/python bench/edge.py

# Where the server's CPU per request goes, by library, against the raw call (needs Linux
# perf and wrk): docs/performance.md, "By library".
bench-where: install
	$(BIN)/python bench/where.py

# Two web nodes behind HAProxy, two Celery workers, PostgreSQL, Redis and an S3 server on
# this machine: a promotion, a killed web node, a killed worker (docs/scaling.md). About a
# minute; needs haproxy (apt-get install haproxy), PostgreSQL and Redis running.
scaleout: install
	$(BIN)/python bench/scaleout.py

# Both passes run at once (they share nothing: an in-memory SQLite database and a PostgreSQL
# test database, Redis databases and fixed ports apart), each writing var/test-*.log, printed
# when both have ended; it fails when either fails. The PostgreSQL pass runs the tests the
# database engine can change (tests/conftest.py). The demo MiniLM export is made first, once,
# so the two passes never build it together.
test: install kserve-venv
	$(BIN)/python fixtures/export_minilm.py
	mkdir -p var
	@echo "make test: the SQLite and PostgreSQL passes run at once; logs in var/test-*.log"
	@$(BIN)/python -m pytest > var/test-sqlite.log 2>&1 & sqlite=$$!; \
	MLAPP_TEST_DB=postgres $(BIN)/python -m pytest > var/test-postgres.log 2>&1; postgres=$$?; \
	wait $$sqlite; sqlite=$$?; \
	echo "=== SQLite pass (exit $$sqlite)"; cat var/test-sqlite.log; \
	echo "=== PostgreSQL pass (exit $$postgres)"; cat var/test-postgres.log; \
	test $$sqlite -eq 0 && test $$postgres -eq 0

test-sqlite: install
	$(BIN)/python -m pytest

test-postgres: install
	MLAPP_TEST_DB=postgres $(BIN)/python -m pytest

lint: install
	$(BIN)/ruff check mlapp project tests fixtures bench
	$(BIN)/ruff format --check mlapp project tests fixtures bench
	$(BIN)/mypy mlapp
	$(BIN)/lint-imports
	$(BIN)/python manage.py makemigrations --check --dry-run
	$(BIN)/python manage.py check
	$(BIN)/hadolint Dockerfile

# The wheel ships ONNX Runtime Web (built here, with npm: web/build_ort.py), so it installs
# offline and the browser fetches nothing from a CDN.
wheel: install
	$(BIN)/python web/build_ort.py
	rm -rf dist
	$(BIN)/python -m build --wheel --no-isolation --outdir dist .
	$(BIN)/python .ci/check_wheel.py dist/*.whl

clean:
	rm -rf $(VENV) $(KSERVE_VENV) dist build *.egg-info var
