"""``manage.py run_batch MODEL (--source NAME | --input FILE)``: run a batch job from a shell;
``manage.py run_batch --resume JOB_ID``: resume a failed, cancelled or stuck one.

Exit status: 0 when every item was predicted; 1 when the job was refused before it started
(bad file, unknown model or source); 3 when the job finished but some items failed (their
errors are stored, and written to ``--output``); 4 when the job failed or was cancelled.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from tqdm import tqdm

from mlapp.batch import jobs, runner, writers
from mlapp.batch.sources import Plan
from mlapp.exceptions import MLAppError
from mlapp.models import BatchJob
from mlapp.serving.service import service

EXIT_ITEMS_FAILED = 3
EXIT_JOB_FAILED = 4
#: Seconds between two reads of a job's counters while workers run it.
POLL_INTERVAL = 0.5


class Command(BaseCommand):
    help = (
        "Run MODEL over an input file (CSV, JSON Lines, NPY, NPZ) or a registered source; "
        "store the predictions; optionally write them to a .jsonl or .csv file."
    )

    def create_parser(self, prog_name: str, subcommand: str, **kwargs: Any) -> CommandParser:
        # --version names the model version here, in place of Django's own --version.
        kwargs.setdefault("conflict_handler", "resolve")
        return super().create_parser(prog_name, subcommand, **kwargs)

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("model", nargs="?", help="Name of the model.")
        what = parser.add_mutually_exclusive_group(required=True)
        what.add_argument("--input", metavar="FILE", help="Input file: .csv .jsonl .npy .npz")
        what.add_argument("--source", metavar="NAME", help="A source of MLAPP['BATCH_SOURCES'].")
        what.add_argument(
            "--resume",
            metavar="JOB_ID",
            type=int,
            help="Resume a failed, cancelled or stuck job where it stopped (no MODEL).",
        )
        parser.add_argument(
            "--params", metavar="JSON", help='Params of the source, e.g. \'{"species": "setosa"}\'.'
        )
        parser.add_argument("--version", type=int, help="Version to run (default: production).")
        parser.add_argument(
            "--chunk-size", type=int, help="Items per chunk (default MLAPP['BATCH_CHUNK_SIZE'])."
        )
        parser.add_argument(
            "--output", metavar="FILE", help="Write the predictions to FILE (.jsonl or .csv)."
        )
        parser.add_argument(
            "--enqueue", action="store_true", help="Queue the job on Celery and print its id."
        )
        parser.add_argument(
            "--in-process",
            action="store_true",
            help="Run the chunks in this process even when a Celery broker is configured.",
        )
        parser.add_argument("--no-progress", action="store_true", help="No progress bar.")

    def handle(self, *args: Any, **options: Any) -> None:
        output = options["output"]
        fmt = self._output_format(output, options["enqueue"])
        where = "thread" if options["in_process"] else jobs.executor()
        if options["enqueue"] and where != "celery":
            raise CommandError(
                "--enqueue needs a Celery broker (CELERY_BROKER_URL); without one, run "
                "without --enqueue and the job runs here."
            )
        job, plan = self._prepare(options)
        resumed = options["resume"] is not None
        if plan is None:  # a resumed job whose every item was stored already
            self._finish(job, output, fmt, 0.0)
            return
        if options["enqueue"]:
            jobs.enqueue(job, plan, where="celery", skip_stored=resumed)
            self.stdout.write(str(job.pk))
            return
        if where != "celery":
            # Load the model before the clock starts: the summary's rate is the job's own.
            try:
                service.model(job.version.model.name, job.version.version)
            except MLAppError as exc:
                jobs.cancel(job)
                raise CommandError(exc.message) from None
        started = time.perf_counter()
        bar = tqdm(
            total=plan.total,
            initial=job.done + job.failed,
            unit="item",
            file=self.stderr._out,
            disable=options["no_progress"],
            desc=f"job {job.pk}",
            mininterval=0.2,
        )
        with bar:
            if where == "celery":
                jobs.enqueue(job, plan, where="celery", skip_stored=resumed)
                try:
                    self._follow(job, bar)
                except KeyboardInterrupt:
                    raise CommandError(
                        f"Interrupted; job {job.pk} goes on on the workers."
                    ) from None
            else:
                try:
                    self._run_here(job, plan, bar)
                except KeyboardInterrupt:
                    jobs.cancel(job)
                    raise CommandError(f"Interrupted; job {job.pk} cancelled.") from None
        self._finish(job, output, fmt, time.perf_counter() - started)

    # -- steps --------------------------------------------------------------------------

    def _prepare(self, options: dict[str, Any]) -> tuple[BatchJob, Plan | None]:
        """The new job and its plan, or the resumed job and what is left of it."""
        resume = options["resume"]
        if resume is not None and (options["model"] or options["version"] or options["params"]):
            raise CommandError("--resume takes the job's id only: no MODEL, --version, --params.")
        if resume is None and not options["model"]:
            raise CommandError("Name the MODEL to run (or --resume JOB_ID).")
        try:
            if resume is not None:
                return jobs.prepare_resume(resume, chunk_size=options["chunk_size"])
            return jobs.prepare_job(
                options["model"],
                version=options["version"],
                file=options["input"],
                source=options["source"],
                params=self._params(options["params"]),
                chunk_size=options["chunk_size"],
            )
        except MLAppError as exc:
            raise CommandError(exc.message) from None
        except FileNotFoundError as exc:
            raise CommandError(f"No such input file: {exc.filename}") from None

    def _finish(self, job: BatchJob, output: str | None, fmt: str | None, elapsed: float) -> None:
        job.refresh_from_db()
        if output:
            self._write(job, output, fmt)
        self._summary(job, elapsed)

    @staticmethod
    def _params(text: str | None) -> dict[str, Any] | None:
        if not text:
            return None
        try:
            params = json.loads(text)
        except json.JSONDecodeError as exc:
            raise CommandError(f"--params is not valid JSON: {exc}") from None
        if not isinstance(params, dict):
            raise CommandError('--params must be a JSON object, e.g. \'{"species": "setosa"}\'.')
        return params

    @staticmethod
    def _output_format(output: str | None, enqueue: bool) -> str | None:
        if not output:
            return None
        if enqueue:
            raise CommandError("--output waits for the results; it does not go with --enqueue.")
        try:
            return writers.output_format(output)
        except MLAppError as exc:
            raise CommandError(exc.message) from None

    @staticmethod
    def _run_here(job: BatchJob, plan: Plan, bar: tqdm) -> None:
        runner.run_job(
            job.pk,
            plan.chunks,
            **jobs.retry_policy(),
            progress=lambda outcome: bar.update(outcome.written + outcome.failed),
        )

    @staticmethod
    def _follow(job: BatchJob, bar: tqdm) -> None:
        """Feed the bar from the job's counters while Celery workers run it."""
        while True:
            # The status first: the counters read after a job ended are its final ones.
            active = BatchJob.objects.active().filter(pk=job.pk).exists()
            done, failed = BatchJob.objects.filter(pk=job.pk).values_list("done", "failed").get()
            bar.update(done + failed - bar.n)
            if not active:
                return
            time.sleep(POLL_INTERVAL)

    def _write(self, job: BatchJob, output: str, fmt: str | None) -> None:
        tmp = f"{output}.part"
        try:
            with open(tmp, "wb") as fh:
                for block in writers.stream(job, fmt or "jsonl"):
                    fh.write(block)
            os.replace(tmp, output)
        except MLAppError as exc:
            os.unlink(tmp)
            raise CommandError(exc.message) from None
        self.stdout.write(f"Wrote {job.done + job.failed} predictions to {output}")

    def _summary(self, job: BatchJob, elapsed: float) -> None:
        items = job.done + job.failed
        rate = items / elapsed if elapsed > 0 else 0.0
        line = (
            f"Job {job.pk} {job.status}: {job.version.model.name} v{job.version.version}, "
            f"{items} items, {job.failed} failed, {elapsed:.2f}s ({rate:.0f} items/s)"
        )
        if job.status in (BatchJob.Status.FAILED, BatchJob.Status.CANCELLED):
            self.stdout.write(line)
            raise CommandError(
                job.error or f"The job was {job.status}.", returncode=EXIT_JOB_FAILED
            )
        if job.failed:
            self.stdout.write(line)
            raise CommandError(
                f"{job.failed} of {items} items failed; their errors are stored with the job.",
                returncode=EXIT_ITEMS_FAILED,
            )
        self.stdout.write(self.style.SUCCESS(line))
