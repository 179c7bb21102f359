"""A page of the host project that calls a model in-process, without HTTP."""

from __future__ import annotations

from django import forms
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

import mlapp
from mlapp.exceptions import MLAppError


class FlowerForm(forms.Form):
    sepal_length = forms.FloatField(
        min_value=0, max_value=20, initial=5.1, label="Sepal length (cm)"
    )
    sepal_width = forms.FloatField(min_value=0, max_value=20, initial=3.5, label="Sepal width (cm)")
    petal_length = forms.FloatField(
        min_value=0, max_value=20, initial=1.4, label="Petal length (cm)"
    )
    petal_width = forms.FloatField(min_value=0, max_value=20, initial=0.2, label="Petal width (cm)")


def iris_page(request: HttpRequest) -> HttpResponse:
    """Name the species of a flower from its measurements with ``mlapp.predict``."""
    result = error = None
    form = FlowerForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        row = [
            form.cleaned_data[f]
            for f in ("sepal_length", "sepal_width", "petal_length", "petal_width")
        ]
        try:
            prediction = mlapp.predict("iris", [row])
        except MLAppError as exc:
            error = exc.message
        else:
            probabilities = prediction.outputs["probabilities"][0]
            result = {
                "species": prediction.outputs["label"][0],
                "confidence": float(probabilities.max()),
                "version": prediction.version,
            }
    return render(
        request,
        "demo/iris.html",
        {"form": form, "result": result, "error": error},
        status=503 if error else 200,
    )
