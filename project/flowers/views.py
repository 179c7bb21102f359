"""The batch pattern end to end: the host's own rows beside their stored predictions."""

from __future__ import annotations

from django.contrib import messages
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render

from mlapp import batch
from mlapp.exceptions import MLAppError
from mlapp.models import BatchJob, BatchPrediction
from project.flowers.loading import load_flowers
from project.flowers.models import Flower

MODEL = "iris"
SOURCE = "flowers"


def _stored(keys: list[str]) -> dict[str, BatchPrediction]:
    """The latest succeeded job's prediction for each key, in one query."""
    rows = (
        BatchPrediction.objects.select_related("version")
        .filter(model__name=MODEL, key__in=keys, job__status=BatchJob.Status.SUCCEEDED)
        .order_by("job__finished_at", "job_id")
    )
    return {p.key: p for p in rows}  # later jobs overwrite earlier ones


def flower_list(request: HttpRequest) -> HttpResponse:
    """Each flower with its stored prediction; staff can score the table with a batch job."""
    if request.method == "POST":
        return _score(request)
    page = Paginator(Flower.objects.all(), 50).get_page(request.GET.get("page"))
    stored = _stored([str(f.pk) for f in page])
    rows = []
    for flower in page:
        prediction = stored.get(str(flower.pk))
        outputs = prediction.outputs if prediction and not prediction.error else {}
        label = (outputs.get("label") or [None])[0]
        rows.append(
            {
                "flower": flower,
                "prediction": prediction,
                "label": label,
                "confidence": max(outputs["probabilities"][0]) if label else None,
                "agrees": label == flower.species if label else None,
            }
        )
    last_job = (
        BatchJob.objects.filter(source_name=SOURCE, version__model__name=MODEL)
        .select_related("version")
        .first()
    )
    return render(
        request,
        "flowers/flower_list.html",
        {"page": page, "rows": rows, "job": last_job, "count": page.paginator.count},
    )


def _score(request: HttpRequest) -> HttpResponse:
    if not request.user.is_staff:
        messages.error(request, "Log in as staff (/admin/) to start a batch job.")
        return redirect("flowers")
    added = load_flowers() if not Flower.objects.exists() else 0
    try:
        job = batch.create_job(MODEL, source=SOURCE, created_by=request.user)
    except MLAppError as exc:
        messages.error(request, exc.message)
    else:
        loaded = f"Loaded {added} flowers; " if added else ""
        messages.success(request, f"{loaded}batch job {job.pk} scores {job.total} flowers.")
    return redirect("flowers")
