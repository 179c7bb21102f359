"""The version page's edge tools: derive an int8 (or ONNX) version, compare it with its parent.

"Derive" shows what will happen, then on the confirming POST makes the version through
:func:`mlapp.versions.derivation.derive_version` (the sandbox does the work) and goes to the
new version's page; a refusal comes back as an error message on the parent's page. It needs
the ``add`` permission on model versions.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from django import forms
from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import (
    FileResponse,
    Http404,
    HttpRequest,
    HttpResponse,
    HttpResponseNotAllowed,
    HttpResponseRedirect,
    JsonResponse,
)
from django.http.response import HttpResponseBase
from django.template.defaultfilters import filesizeformat
from django.template.response import TemplateResponse
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString
from django.utils.translation import gettext_lazy as _

from mlapp.admin.display import version_url
from mlapp.exceptions import MLAppError
from mlapp.models import ModelVersion
from mlapp.serving.inputs import named
from mlapp.serving.service import service
from mlapp.versions.bundles import bundle_file
from mlapp.versions.derivation import MAX_SAMPLE_ROWS, PARENT_FORMAT, derivable, derive_version

__all__ = [
    "answer_view",
    "bundle_view",
    "comparison_table",
    "derivable",
    "derive_view",
    "model_file_view",
]
from mlapp.versions.derive import METHODS

logger = logging.getLogger("mlapp.admin")

#: Largest sample file accepted by the admin's derive form.
MAX_SAMPLE_FILE = 16 * 1024**2


class DeriveForm(forms.Form):
    kind = forms.ChoiceField(choices=[(k, k) for k in PARENT_FORMAT])
    method = forms.ChoiceField(
        choices=[(m, m) for m in METHODS],
        initial="auto",
        help_text=_(
            "int8 only. dynamic: weights quantized, activations as they run; static: "
            "activation ranges calibrated on the sample; auto: both made and measured, the one "
            "agreeing better with the parent kept."
        ),
    )
    samples = forms.FileField(
        required=False,
        help_text=_(
            "Optional JSON file: a list of rows keyed by the model's input names (default: "
            "MLAPP['DERIVE_SAMPLES'] for this model, else the handler's example)."
        ),
    )

    def clean_samples(self) -> Any:
        upload = self.cleaned_data.get("samples")
        if not upload:
            return None
        if upload.size > MAX_SAMPLE_FILE:
            raise forms.ValidationError(_("The sample file is larger than 16 MB."))
        try:
            rows = json.loads(upload.read())
        except ValueError as exc:
            raise forms.ValidationError(f"Not JSON: {exc}") from None
        if not isinstance(rows, list) or not 0 < len(rows) <= MAX_SAMPLE_ROWS:
            raise forms.ValidationError(f"A list of 1 to {MAX_SAMPLE_ROWS} rows is expected.")
        return rows


def derive_view(model_admin: Any, request: HttpRequest, version: ModelVersion) -> HttpResponse:
    if not model_admin.has_add_permission(request):
        raise PermissionDenied
    kinds = derivable(version)
    if not kinds:
        messages.error(
            request,
            _(
                "Nothing can be derived from a %(format)s version (int8 from ONNX, ONNX from "
                "TorchScript)."
            )
            % {"format": version.format},
        )
        return HttpResponseRedirect(version_url(version))
    if request.method == "POST":
        form = DeriveForm(request.POST, request.FILES)
        if form.is_valid():
            try:
                derived = derive_version(
                    version,
                    kind=form.cleaned_data["kind"],
                    method=form.cleaned_data["method"],
                    samples=form.cleaned_data["samples"],
                    user=request.user,
                )
            except MLAppError as exc:
                messages.error(request, _("Nothing was derived: %(e)s") % {"e": exc.message})
                return HttpResponseRedirect(version_url(version))
            messages.success(
                request, format_html("{} stored in staging: {}", derived, derived.notes)
            )
            return HttpResponseRedirect(version_url(derived))
    else:
        form = DeriveForm(initial={"kind": kinds[0]})
    kind_field = form.fields["kind"]
    assert isinstance(kind_field, forms.ChoiceField)
    kind_field.choices = [(k, k) for k in kinds]
    context = {
        **model_admin.admin_site.each_context(request),
        "opts": model_admin.model._meta,
        "title": _("Derive a version from %(version)s") % {"version": version},
        "original": version,
        "form": form,
        "media": model_admin.media,
    }
    return TemplateResponse(request, "admin/mlapp/modelversion/derive.html", context)


def bundle_view(model_admin: Any, request: HttpRequest, version: ModelVersion) -> HttpResponseBase:
    """The version's edge bundle, for anyone who may view the version."""
    if not model_admin.has_view_or_change_permission(request, version):
        raise PermissionDenied
    try:
        handle, digest = bundle_file(version)
    except MLAppError as exc:
        messages.error(request, _("No bundle: %(e)s") % {"e": exc.message})
        return HttpResponseRedirect(version_url(version))
    response = FileResponse(
        handle,
        as_attachment=True,
        filename=f"{version.model.name}-v{version.version}.zip",
        content_type="application/zip",
    )
    response["X-Checksum-SHA256"] = digest
    return response


def model_file_view(
    model_admin: Any, request: HttpRequest, version: ModelVersion
) -> HttpResponseBase:
    """The ONNX file of ``version``, for the page's in-browser run (view permission)."""
    if not model_admin.has_view_or_change_permission(request, version):
        raise PermissionDenied
    if version.format != "onnx":
        raise Http404(_("Only ONNX versions run in the browser."))
    try:
        handle = version.artifact.open("rb")
    except FileNotFoundError:
        raise Http404(_("The artifact file is missing from storage.")) from None
    response = FileResponse(handle, content_type="application/octet-stream")
    response["X-Checksum-SHA256"] = version.sha256
    return response


def answer_view(model_admin: Any, request: HttpRequest, version: ModelVersion) -> HttpResponse:
    """The server's answer to ``{"inputs": ...}`` as JSON, for the side-by-side comparison."""
    if not model_admin.has_view_or_change_permission(request, version):
        raise PermissionDenied
    if request.method != "POST":
        return HttpResponseNotAllowed(["POST"])
    try:
        body = json.loads(request.body)
        inputs = body["inputs"]
    except (ValueError, KeyError, TypeError):
        return JsonResponse({"error": 'Send {"inputs": ...} as JSON.'}, status=400)
    try:
        prediction = service.predict(version.model.name, named(inputs), version=version.version)
    except MLAppError as exc:
        return JsonResponse({"error": exc.message}, status=exc.status_code)
    except Exception as exc:  # the host's handler code: say what, never echo it
        logger.exception("mlapp: the in-browser comparison on %s failed", version)
        error = _("The model raised an unexpected %(error)s (see the server log).")
        return JsonResponse({"error": error % {"error": type(exc).__name__}}, status=500)
    return JsonResponse(prediction.to_dict())


def browser_context(version: ModelVersion) -> dict[str, Any] | None:
    """What the "run in this browser" block needs, for an ONNX version whose public inputs are
    its artifact's own (a handler that preprocesses, e.g. a tokenizer, needs the server)."""
    if version.format != "onnx":
        return None
    inputs = version.signature.get("inputs") or []
    try:
        public = service.public_signature(version).to_dict().get("inputs")
    except MLAppError:
        return None
    if public != inputs:
        return None
    return {"signature": json.dumps(version.signature)}


def comparison_table(version: ModelVersion) -> SafeString | str:
    """A derived version's figures beside its parent's (size, latency, agreement)."""
    figures = (version.metrics or {}).get("derived")
    if not isinstance(figures, dict) or not isinstance(figures.get("child"), dict):
        return "—"
    parent, child = figures.get("parent") or {}, figures["child"]
    if "label_agreement" in child:
        agree = ("label agreement", f"{100 * child['label_agreement']:.2f} %")
    else:
        agree = (
            "cosine (mean / lowest)",
            f"{child.get('cosine_mean', 0):.5f} / {child.get('cosine_min', 0):.5f}",
        )
    parent_name = f"v{version.parent.version}" if version.parent else _("parent")
    rows = [
        ("size", _size(parent.get("size")), _size(child.get("size"))),
        ("ms per row (1 thread)", parent.get("ms_per_row", "—"), child.get("ms_per_row", "—")),
        (agree[0], "—", agree[1]),
        ("largest difference", "—", f"{child.get('max_abs_diff', 0):.3g}"),
    ]
    body = format_html_join("", "<tr><th>{}</th><td>{}</td><td>{}</td></tr>", rows)
    others = format_html_join(
        ", ",
        "{}: {}",
        (
            (name, c.get("error") or _agreement_text(c))
            for name, c in (figures.get("candidates") or {}).items()
            if isinstance(c, dict)
        ),
    )
    return format_html(
        '<table class="mlapp-derived"><thead><tr><th></th><th>{}</th><th>{}</th></tr></thead>'
        '<tbody>{}</tbody></table><p class="help">{} {}, {} rows ({}). Candidates: {}</p>',
        parent_name,
        f"v{version.version} ({figures.get('kind')}, {figures.get('method')})",
        body,
        _("Measured in the validation sandbox on"),
        _("the sample"),
        figures.get("sample_rows", "?"),
        figures.get("sample", "?"),
        others,
    )


def _agreement_text(figures: dict[str, Any]) -> str:
    if "label_agreement" in figures:
        return f"{100 * figures['label_agreement']:.2f} % agreement, {figures['ms_per_row']} ms"
    return f"cosine ≥ {figures.get('cosine_min', 0):.4f}, {figures.get('ms_per_row')} ms"


def _size(value: Any) -> str:
    return filesizeformat(value) if isinstance(value, int) else "—"
