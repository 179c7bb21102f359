"""``manage.py check_drift [--model NAME] [--hours 24]``: the drift job, for a cron.

One report per version that has a reference and logged requests in the window; prints each,
with what crossed a threshold. Exits 0 either way (drift is a finding, not a failure) unless
``--fail-on-drift``. References: ``manage.py drift_reference``.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from mlapp.exceptions import MLAppError
from mlapp.monitoring.drift import check_drift


class Command(BaseCommand):
    help = "Compare the logged requests of each version with its drift reference."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--model", help="Only this model (default: every model).")
        parser.add_argument(
            "--hours", type=float, default=24.0, help="Window: the last N hours (default 24)."
        )
        parser.add_argument(
            "--fail-on-drift", action="store_true", help="Exit 1 when a report drifted."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if options["hours"] <= 0:
            raise CommandError("--hours must be > 0.")
        try:
            reports = check_drift(options["model"], hours=options["hours"])
        except MLAppError as exc:
            raise CommandError(exc.message) from None
        if not reports:
            self.stdout.write("No version with a reference logged a request in the window.")
        for report in reports:
            state = "DRIFT" if report.drifted else "ok"
            self.stdout.write(
                f"{report.version}: {state}, {report.rows} request(s) "
                f"from {report.window_start:%Y-%m-%d %H:%M} UTC"
            )
            for line in report.alerts:
                self.stdout.write(f"  {line}")
        if options["fail_on_drift"] and any(r.drifted for r in reports):
            raise CommandError("Drift detected.")
