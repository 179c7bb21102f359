"""The drift measures, in numpy: a reference profile, PSI, Kolmogorov-Smirnov, text measures.

A *profile* summarises a sample of inputs and outputs as JSON (stored with the reference):
per numeric feature its quantile bin edges and the share of the sample in each bin, plus a
sorted sub-sample for the KS statistic; per text input the length bins and a vocabulary;
the share of each predicted class; the mean and spread of each numeric output.

PSI (population stability index) is ``sum((cur - ref) * ln(cur / ref))`` over the
reference's quantile bins. On small samples PSI is biased upwards: two samples of one
distribution give about ``(bins - 1) * (1/n_ref + 1/n_cur)`` (its chi-square expectation).
:func:`psi` subtracts that expectation, and :func:`bin_count` chooses fewer bins for small
samples, so that a 45-row window is not an alarm by itself while a real shift still is.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

#: Most quantile bins per feature.
MAX_BINS = 10
#: Values of each feature kept (sorted) in a profile for the KS statistic.
KS_SAMPLE = 2000
#: Words of the vocabulary kept for the out-of-vocabulary rate.
VOCABULARY = 20000
_WORD = re.compile(r"\w+", re.UNICODE)


def bin_count(n_reference: int, n_current: int | None = None) -> int:
    """Quantile bins for samples of these sizes: ``sqrt`` of the smaller one, 2 to 10."""
    smallest = min(n_reference, n_current or n_reference)
    return max(2, min(MAX_BINS, int(math.sqrt(max(smallest, 1)))))


def edges(values: np.ndarray, bins: int) -> list[float]:
    """Inner bin edges: the reference's quantiles, repeated values merged."""
    quantiles = np.quantile(values, np.linspace(0, 1, bins + 1)[1:-1])
    return sorted({float(q) for q in quantiles})


def shares(values: np.ndarray, inner: Sequence[float]) -> list[float]:
    """The share of ``values`` in each bin of ``inner`` edges (left-closed bins)."""
    if len(values) == 0:
        return [0.0] * (len(inner) + 1)
    counts = np.bincount(np.searchsorted(inner, values, side="right"), minlength=len(inner) + 1)
    return (counts / len(values)).tolist()


def psi(reference: Sequence[float], current: Sequence[float], n_ref: int, n_cur: int) -> float:
    """Population stability index of two binned shares of ``n_ref`` and ``n_cur`` rows, less
    its small-sample expectation (never below 0).

    Each bin's count gets half a row (Jeffreys' smoothing) before the shares are compared: an
    empty bin in a small window is then a small difference, not an infinite logarithm.
    """
    bins = len(reference)
    ref = (np.asarray(reference, dtype=float) * n_ref + 0.5) / (n_ref + 0.5 * bins)
    cur = (np.asarray(current, dtype=float) * n_cur + 0.5) / (n_cur + 0.5 * bins)
    raw = float(np.sum((cur - ref) * np.log(cur / ref)))
    bias = (bins - 1) * (1 / max(n_ref, 1) + 1 / max(n_cur, 1))
    return max(0.0, raw - bias)


def ks(reference_sorted: Sequence[float], current: np.ndarray) -> float:
    """The two-sample Kolmogorov-Smirnov statistic: the largest gap between the two
    empirical distribution functions."""
    ref = np.asarray(reference_sorted, dtype=float)
    cur = np.sort(np.asarray(current, dtype=float))
    if len(ref) == 0 or len(cur) == 0:
        return 0.0
    points = np.concatenate([ref, cur])
    cdf_ref = np.searchsorted(ref, points, side="right") / len(ref)
    cdf_cur = np.searchsorted(cur, points, side="right") / len(cur)
    return float(np.max(np.abs(cdf_ref - cdf_cur)))


def _subsample(values: np.ndarray) -> list[float]:
    ordered = np.sort(values)
    if len(ordered) > KS_SAMPLE:
        ordered = ordered[np.linspace(0, len(ordered) - 1, KS_SAMPLE).astype(int)]
    return [float(v) for v in ordered]


# -- inputs and outputs as columns ---------------------------------------------------------


def _is_text(values: list[Any]) -> bool:
    return bool(values) and all(isinstance(v, str) for v in values)


def features(inputs: Iterable[dict[str, Any]]) -> dict[str, list[Any]]:
    """One column per feature over many requests: numeric inputs flattened per row
    (``input.2``: the third value of input ``input``; ``image.17``), texts as they are."""
    columns: dict[str, list[Any]] = {}
    for request in inputs:
        if not isinstance(request, dict) or "shapes" in request:
            continue  # stored as shapes only: over the size cap
        for name, value in request.items():
            rows = value if isinstance(value, list) else [value]
            for row in rows:
                if isinstance(row, str):
                    columns.setdefault(name, []).append(row)
                    continue
                try:
                    flat = np.asarray(row, dtype=float).reshape(-1)
                except (TypeError, ValueError):
                    continue  # neither a number nor a text (nested texts, mixed rows)
                if flat.size == 1:
                    columns.setdefault(name, []).append(float(flat[0]))
                    continue
                for index, number in enumerate(flat.tolist()):
                    columns.setdefault(f"{name}.{index}", []).append(number)
    return columns


def classes(outputs: Iterable[dict[str, Any]], scores: bool = True) -> list[str]:
    """The predicted class of every row: its ``label`` output, else (with ``scores``: a
    classifier's) the index of the highest score of its first output when that is a row of
    scores."""
    found: list[str] = []
    for request in outputs:
        if not isinstance(request, dict) or not request or "shapes" in request:
            continue
        if "label" in request:
            found += [str(v) for v in _rows(request["label"])]
            continue
        if not scores:
            continue
        first = next(iter(request.values()))
        for row in _rows(first):
            if isinstance(row, list) and len(row) > 1 and not isinstance(row[0], list):
                found.append(str(int(np.argmax(row))))
    return found


def output_columns(outputs: Iterable[dict[str, Any]]) -> dict[str, list[float]]:
    """Every numeric output's values, flattened, per output name."""
    columns: dict[str, list[float]] = {}
    for request in outputs:
        if not isinstance(request, dict) or "shapes" in request:
            continue
        for name, value in request.items():
            if name == "label":
                continue
            try:
                flat = np.asarray(value, dtype=float).reshape(-1)
            except (TypeError, ValueError):
                continue
            columns.setdefault(name, []).extend(flat.tolist())
    return columns


def _rows(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


# -- profiles and comparisons ----------------------------------------------------------------


def profile(
    inputs: list[dict[str, Any]], outputs: list[dict[str, Any]], *, scores: bool = True
) -> dict[str, Any]:
    """What a reference keeps of a sample: see the module's doc. ``scores``: the outputs of
    a model without a ``label`` output are class scores (see :func:`classes`)."""
    numeric: dict[str, Any] = {}
    text: dict[str, Any] = {}
    for name, values in features(inputs).items():
        if _is_text(values):
            lengths = np.array([len(words(v)) for v in values], dtype=float)
            counted = Counter(w for v in values for w in words(v))
            vocabulary = [w for w, _ in counted.most_common(VOCABULARY)]
            known = set(vocabulary)
            total = sum(counted.values()) or 1
            text[name] = {
                "rows": len(values),
                "length": _numeric_profile(lengths),
                "vocabulary": vocabulary,
                "oov_rate": sum(c for w, c in counted.items() if w not in known) / total,
            }
        else:
            numeric[name] = _numeric_profile(np.asarray(values, dtype=float))
    predicted = classes(outputs, scores)
    counted_classes = Counter(predicted)
    return {
        "rows": len(inputs),
        "numeric": numeric,
        "text": text,
        "classes": {k: v / len(predicted) for k, v in sorted(counted_classes.items())}
        if predicted
        else {},
        "class_rows": len(predicted),
        "outputs": {
            name: _stats(np.asarray(values, dtype=float))
            for name, values in output_columns(outputs).items()
        },
    }


def _numeric_profile(values: np.ndarray) -> dict[str, Any]:
    bins = bin_count(len(values))
    inner = edges(values, bins) if len(values) else []
    return {
        "rows": len(values),
        "bins": bins,
        "edges": inner,
        "shares": shares(values, inner),
        "sorted": _subsample(values),
        **_stats(values),
    }


def _stats(values: np.ndarray) -> dict[str, float]:
    if len(values) == 0:
        return {"mean": 0.0, "std": 0.0}
    return {"mean": float(np.mean(values)), "std": float(np.std(values))}


def _binned_psi(reference: dict[str, Any], values: np.ndarray) -> float:
    """PSI of ``values`` against a numeric profile, with bins fit for both sample sizes."""
    bins = bin_count(reference["rows"], len(values))
    ref_sorted = np.asarray(reference["sorted"], dtype=float)
    if bins != reference["bins"] and len(ref_sorted):
        # Fewer bins than the profile's: re-cut the reference from its kept sample.
        inner = edges(ref_sorted, bins)
        ref_shares = shares(ref_sorted, inner)
    else:
        inner, ref_shares = reference["edges"], reference["shares"]
    return psi(ref_shares, shares(values, inner), reference["rows"], len(values))


def compare(
    reference: dict[str, Any],
    inputs: list[dict[str, Any]],
    outputs: list[dict[str, Any]],
    *,
    scores: bool = True,
) -> dict[str, Any]:
    """The drift of a window of requests against a reference profile: per numeric feature
    PSI and KS, per text input the PSI of lengths and the out-of-vocabulary rate, the PSI of
    the predicted classes, and each numeric output's mean and spread beside the
    reference's."""
    columns = features(inputs)
    result: dict[str, Any] = {"rows": len(inputs), "features": {}, "text": {}, "outputs": {}}
    for name, ref in reference.get("numeric", {}).items():
        values = columns.get(name)
        if not values or _is_text(values):
            continue
        array = np.asarray(values, dtype=float)
        result["features"][name] = {
            "psi": _binned_psi(ref, array),
            "ks": ks(ref["sorted"], array),
            "mean": float(np.mean(array)),
            "reference_mean": ref["mean"],
        }
    for name, ref in reference.get("text", {}).items():
        values = columns.get(name)
        if not values or not _is_text(values):
            continue
        lengths = np.array([len(words(v)) for v in values], dtype=float)
        known = set(ref["vocabulary"])
        tokens = [w for v in values for w in words(v)]
        oov = sum(w not in known for w in tokens) / (len(tokens) or 1)
        result["text"][name] = {
            "length_psi": _binned_psi(ref["length"], lengths),
            "mean_length": float(np.mean(lengths)),
            "reference_mean_length": ref["length"]["mean"],
            "oov_rate": oov,
            "reference_oov_rate": ref["oov_rate"],
        }
    predicted = classes(outputs, scores)
    if predicted and reference.get("classes"):
        labels = sorted(set(reference["classes"]) | set(predicted))
        counted = Counter(predicted)
        current = {k: counted[k] / len(predicted) for k in labels}
        ref_shares = [reference["classes"].get(k, 0.0) for k in labels]
        result["classes"] = {
            "psi": psi(
                ref_shares, [current[k] for k in labels], reference["class_rows"], len(predicted)
            ),
            "current": current,
            "reference": reference["classes"],
        }
    for name, values in output_columns(outputs).items():
        stats = _stats(np.asarray(values, dtype=float))
        result["outputs"][name] = {**stats, "reference": reference.get("outputs", {}).get(name)}
    return result


def alerts(result: dict[str, Any], thresholds: dict[str, float]) -> list[str]:
    """What crossed a threshold, one line each (empty: no drift)."""
    found = []
    for name, measured in result.get("features", {}).items():
        for measure in ("psi", "ks"):
            if measured[measure] > thresholds[measure]:
                found.append(
                    f"{name}: {measure.upper()} {measured[measure]:.3f} > {thresholds[measure]:g}"
                )
    for name, measured in result.get("text", {}).items():
        if measured["length_psi"] > thresholds["length"]:
            found.append(
                f"{name}: length PSI {measured['length_psi']:.3f} > {thresholds['length']:g}"
            )
        rise = measured["oov_rate"] - measured["reference_oov_rate"]
        if rise > thresholds["oov"]:
            found.append(f"{name}: out-of-vocabulary rate +{rise:.3f} > {thresholds['oov']:g}")
    classes_psi = result.get("classes", {}).get("psi")
    if classes_psi is not None and classes_psi > thresholds["classes"]:
        found.append(f"predicted classes: PSI {classes_psi:.3f} > {thresholds['classes']:g}")
    return found
