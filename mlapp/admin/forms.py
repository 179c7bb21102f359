"""Forms of the admin: a model (its handler checked), uploading a version (validated before
anything is stored), "try it"."""

from __future__ import annotations

import json
from typing import Any

from django import forms
from django.utils.translation import gettext_lazy as _

from mlapp.conf import settings
from mlapp.exceptions import MLAppError
from mlapp.files import as_local_file
from mlapp.models import MLModel, ModelVersion
from mlapp.runtimes.tensors import Signature
from mlapp.serving.handling import import_handler
from mlapp.versions.inspection import ArtifactReport
from mlapp.versions.lifecycle import validate_upload

#: Largest signature JSON accepted, in bytes.
MAX_SIGNATURE_SIZE = 256 * 1024
#: Largest "try it" body accepted, in characters.
MAX_TRY_BODY = 1024 * 1024


class MLModelForm(forms.ModelForm):
    """A model; its handler must name an importable ``mlapp.handlers.BaseHandler`` subclass."""

    class Meta:
        model = MLModel
        fields = ["name", "description", "task", "handler", "serving", "monitoring"]

    def clean_handler(self) -> str:
        path = (self.cleaned_data.get("handler") or "").strip()
        if path:
            try:
                import_handler(path)
            except MLAppError as exc:
                raise forms.ValidationError(exc.message, code="bad_handler") from None
        return path


class VersionUploadForm(forms.ModelForm):
    """A new version: the model and the artifact are required; the signature only for a
    TorchScript archive whose model has no production version to inherit one from.

    ``clean()`` validates the artifact in a separate process (``mlapp.versions.validation``); the
    report is kept in :attr:`report` and the admin stores the version from it.
    """

    artifact_file = forms.FileField(
        label=_("Artifact"),
        help_text=_(
            "A TorchScript archive, a torch.export .pt2 archive or an ONNX model. The format "
            "is read from the content; pickles (torch.save, joblib) are refused."
        ),
    )
    signature_file = forms.FileField(
        label=_("Signature JSON"),
        required=False,
        help_text=_(
            'Optional: {"inputs": [{"name", "datatype", "shape"}], "outputs": [...]}. '
            "A TorchScript archive without one inherits the production version's signature; "
            "ONNX and torch.export carry their own."
        ),
    )

    class Meta:
        model = ModelVersion
        fields = ["model", "notes"]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.report: ArtifactReport | None = None

    def clean_artifact_file(self) -> Any:
        upload = self.cleaned_data["artifact_file"]
        limit = settings.MAX_UPLOAD_SIZE
        if upload.size > limit:
            raise forms.ValidationError(
                _("The file is %(size)s bytes; the limit (MLAPP['MAX_UPLOAD_SIZE']) is %(limit)s."),
                params={"size": upload.size, "limit": limit},
                code="too_large",
            )
        return upload

    def clean_signature_file(self) -> dict[str, Any] | None:
        upload = self.cleaned_data.get("signature_file")
        if not upload:
            return None
        if upload.size > MAX_SIGNATURE_SIZE:
            raise forms.ValidationError(_("A signature file is a small JSON document."))
        try:
            data = json.loads(upload.read())
            return Signature.from_dict(data).to_dict()
        except ValueError as exc:
            raise forms.ValidationError(
                _("Not valid JSON: %(error)s"), params={"error": exc}
            ) from None
        except MLAppError as exc:
            raise forms.ValidationError(exc.message) from None

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        assert cleaned is not None  # Django's own clean() returns the cleaned data
        model, upload = cleaned.get("model"), cleaned.get("artifact_file")
        if model is None or upload is None or self.has_error("signature_file"):
            return cleaned
        try:
            with as_local_file(upload) as path:
                self.report = validate_upload(
                    path, model.name, signature=cleaned.get("signature_file")
                )
        except MLAppError as exc:
            self.add_error("artifact_file", exc.message)
        return cleaned


class TryItForm(forms.Form):
    """The body of a native predict request: ``{"inputs": ...}``."""

    body = forms.CharField(
        label=_("Request"),
        max_length=MAX_TRY_BODY,
        widget=forms.Textarea(attrs={"rows": 8, "cols": 80, "class": "mlapp-json"}),
        help_text=_('JSON, as sent to the predict endpoint: {"inputs": ...}.'),
    )

    def clean_body(self) -> Any:
        try:
            data = json.loads(self.cleaned_data["body"])
        except ValueError as exc:
            raise forms.ValidationError(
                _("Not valid JSON: %(error)s"), params={"error": exc}
            ) from None
        if not isinstance(data, dict) or "inputs" not in data:
            raise forms.ValidationError(_('Send an object with an "inputs" key.'))
        return data["inputs"]
