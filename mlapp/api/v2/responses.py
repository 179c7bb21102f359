"""Open Inference Protocol V2 responses: JSON outputs, or binary tensors after the JSON.

The other half of :mod:`mlapp.api.v2.protocol`: an output goes back in binary when the
request asked for it (``parameters.binary_data`` on the output, or
``parameters.binary_data_output`` on the request), else as JSON data. No Django here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import orjson

from mlapp.api.v2.protocol import InferenceRequest
from mlapp.exceptions import InvalidInput
from mlapp.runtimes.tensors import datatype_of

_NUMPY_JSON = orjson.OPT_SERIALIZE_NUMPY


def encode_response(
    *,
    model_name: str,
    model_version: str,
    request: InferenceRequest,
    outputs: Mapping[str, np.ndarray],
    output_names: Sequence[str],
) -> tuple[bytes, int | None]:
    """The response body, and the JSON part's length when binary tensors follow it.

    ``output_names`` is the signature's order, used when the request names no outputs.
    """
    if request.outputs is None:
        selected = [(name, request.binary_output) for name in output_names if name in outputs]
    else:
        selected = [
            (o.name, request.binary_output if o.binary is None else o.binary)
            for o in request.outputs
            if o.name in outputs
        ]
    entries = []
    blobs: list[Any] = []
    for name, binary in selected:
        array = outputs[name]
        datatype = datatype_of(array)
        entry: dict[str, Any] = {"name": name, "datatype": datatype, "shape": list(array.shape)}
        if binary:
            blob = binary_data(array, datatype)
            entry["parameters"] = {"binary_data_size": len(blob)}
            blobs.append(blob)
        else:
            entry["data"] = _json_data(name, array, datatype)
        entries.append(entry)
    response: dict[str, Any] = {"model_name": model_name, "model_version": model_version}
    if request.id is not None:
        response["id"] = request.id
    response["outputs"] = entries
    header = orjson.dumps(response, option=_NUMPY_JSON)
    if not blobs:
        return header, None
    return b"".join([header, *blobs]), len(header)


def _json_data(name: str, array: np.ndarray, datatype: str) -> Any:
    if datatype != "BYTES":
        # orjson writes the numbers of a contiguous native array itself, in C.
        return np.ascontiguousarray(array).reshape(-1)
    values = array.reshape(-1).tolist()
    try:
        return [v.decode("utf-8") if isinstance(v, bytes) else str(v) for v in values]
    except UnicodeDecodeError:
        raise InvalidInput(
            f"Output {name!r} holds bytes that are not UTF-8 text: ask for it with "
            "parameters.binary_data = true."
        ) from None


def binary_data(array: np.ndarray, datatype: str) -> Any:
    if datatype == "BYTES":
        parts = []
        for value in array.reshape(-1).tolist():
            raw = value if isinstance(value, bytes) else str(value).encode("utf-8")
            parts.append(len(raw).to_bytes(4, "little"))
            parts.append(raw)
        return b"".join(parts)
    little = array.dtype.newbyteorder("<")
    # A contiguous little-endian array is its own buffer: no copy to join it.
    # numpy's stubs give ndarray its buffer protocol (__buffer__) only for Python >= 3.12.
    contiguous = np.ascontiguousarray(array, dtype=little).reshape(-1)
    return memoryview(contiguous).cast("B")  # type: ignore[arg-type]
