"""Query sets holding the state rules of mlapp's models, so no caller spells them again."""

from __future__ import annotations

from django.db import models


class BatchJobQuerySet(models.QuerySet):
    """``BatchJob.objects``: which jobs still run and which have ended."""

    def active(self) -> BatchJobQuerySet:
        """Jobs pending or running: they may still write predictions, and can be cancelled."""
        status = self.model.Status
        return self.filter(status__in=(status.PENDING, status.RUNNING))

    def finished(self) -> BatchJobQuerySet:
        """Jobs that ended: succeeded, failed or cancelled."""
        status = self.model.Status
        return self.filter(status__in=(status.SUCCEEDED, status.FAILED, status.CANCELLED))
