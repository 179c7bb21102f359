"""``manage.py purge_predictions --days N``: delete batch jobs and logged predictions older
than N days.

A finished job (succeeded, failed or cancelled) whose end is older than the limit goes with
its stored predictions and its input file. The latest succeeded job of each model is kept
unless ``--include-latest``: it is what predictions by key are served from. Rows of the
prediction log (:class:`~mlapp.models.PredictionLog`) logged before the limit go too
(``--log-days`` gives the log its own limit).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db.models import Max
from django.utils import timezone

from mlapp.models import BatchJob, BatchPrediction, MLModel, PredictionLog


class Command(BaseCommand):
    help = (
        "Delete finished batch jobs older than --days, with their predictions and files, and "
        "logged predictions older than --days (or --log-days)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--days", type=float, required=True, help="Age limit: jobs finished before it go."
        )
        parser.add_argument(
            "--include-latest",
            action="store_true",
            help="Also delete the latest succeeded job of a model (its keys stop answering).",
        )
        parser.add_argument(
            "--log-days",
            type=float,
            help="Age limit of the prediction log (default: --days).",
        )
        parser.add_argument("--dry-run", action="store_true", help="Count, delete nothing.")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["days"] < 0 or (options["log_days"] or 0) < 0:
            raise CommandError("--days and --log-days must be >= 0.")
        cutoff = timezone.now() - timedelta(days=options["days"])
        old = BatchJob.objects.finished().filter(finished_at__lt=cutoff)
        if not options["include_latest"]:
            latest = (
                BatchJob.objects.filter(status=BatchJob.Status.SUCCEEDED)
                .values("version__model")
                .annotate(last=Max("pk"))
                .values_list("last", flat=True)
            )
            old = old.exclude(pk__in=list(latest))
        job_ids = list(old.values_list("pk", flat=True))
        predictions = BatchPrediction.objects.filter(job_id__in=job_ids)
        counted = predictions.count()
        verb = "Would delete" if options["dry_run"] else "Deleted"
        if not options["dry_run"]:
            for job in BatchJob.objects.filter(pk__in=job_ids).exclude(source_file=""):
                job.source_file.delete(save=False)
            # Predictions first, in one statement, then the (now light) jobs.
            predictions.delete()
            BatchJob.objects.filter(pk__in=job_ids).delete()
        self.stdout.write(
            f"{verb} {len(job_ids)} batch job(s) and {counted} prediction(s) "
            f"finished before {cutoff:%Y-%m-%d %H:%M} UTC."
        )
        log_days = options["days"] if options["log_days"] is None else options["log_days"]
        log_cutoff = timezone.now() - timedelta(days=log_days)
        count = 0
        # Model by model: the log is indexed on (model, created_at).
        for model_id in MLModel.objects.values_list("pk", flat=True):
            logged = PredictionLog.objects.filter(model_id=model_id, created_at__lt=log_cutoff)
            count += logged.count() if options["dry_run"] else logged.delete()[0]
        self.stdout.write(
            f"{verb} {count} logged prediction(s) from before {log_cutoff:%Y-%m-%d %H:%M} UTC."
        )
