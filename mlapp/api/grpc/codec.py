"""Open Inference Protocol gRPC messages <-> numpy arrays, through the V2 REST codec.

A ``ModelInferRequest`` is read with the checks of :mod:`mlapp.api.v2.protocol` (names,
datatypes, shapes, declared sizes against the bytes at hand, BYTES length prefixes), so a
request means the same over gRPC as over REST and is refused with the same message. Inputs
come either all in ``raw_input_contents`` (what ``tritonclient.grpc`` sends: one entry per
input, little-endian, BYTES elements length-prefixed) or each in its typed ``contents``
field (what KServe's client sends); the response answers in kind. No element is converted
before its count has been checked against the shape, so a huge shape claim costs nothing.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from google.protobuf.message import Message

from mlapp.api.grpc import messages as pb
from mlapp.api.v2 import protocol
from mlapp.api.v2.responses import binary_data
from mlapp.exceptions import InvalidInput
from mlapp.runtimes.tensors import Signature, TensorSpec, coerce_input, datatype_of

#: Datatype -> the typed field of ``InferTensorContents`` that holds its values (FP16 has
#: none: it travels raw).
CONTENTS_FIELDS = {
    "BOOL": "bool_contents",
    "INT8": "int_contents",
    "INT16": "int_contents",
    "INT32": "int_contents",
    "INT64": "int64_contents",
    "UINT8": "uint_contents",
    "UINT16": "uint_contents",
    "UINT32": "uint_contents",
    "UINT64": "uint64_contents",
    "FP32": "fp32_contents",
    "FP64": "fp64_contents",
    "BYTES": "bytes_contents",
}
_ALL_FIELDS = tuple(dict.fromkeys(CONTENTS_FIELDS.values()))


def parameters(fields: Mapping[str, Message]) -> dict[str, Any]:
    """A ``map<string, InferParameter>`` as plain Python values."""
    if not fields:  # the usual case; iterating a map costs more than asking its length
        return {}
    result: dict[str, Any] = {}
    for key, value in fields.items():
        choice = value.WhichOneof("parameter_choice")
        result[key] = None if choice is None else getattr(value, choice)
    return result


def decode_request(message: Any, signature: Signature) -> protocol.InferenceRequest:
    """Read a ``ModelInferRequest`` against the model's public ``signature``.

    Raises :class:`InvalidInput` naming the tensor, as the REST codec does.
    """
    request_params = protocol.check_parameters(parameters(message.parameters), "the request")
    items = message.inputs
    if not items:
        raise InvalidInput(
            "The inference request needs at least one input (ModelInferRequest.inputs)."
        )
    raw = message.raw_input_contents
    if raw and len(raw) != len(items):
        raise InvalidInput(
            f"The request has {len(items)} input(s) but {len(raw)} raw_input_contents entries: "
            "send one entry per input, in the order of the inputs, or none."
        )
    inputs: dict[str, np.ndarray] = {}
    for index, item in enumerate(items):
        header = {
            "name": item.name,
            "datatype": item.datatype,
            "shape": list(item.shape),
            "parameters": parameters(item.parameters),
        }
        name, spec, shape, _params = protocol.input_header(header, signature)
        if name in inputs:
            raise InvalidInput(f"Input {name!r} is given twice.")
        if raw:
            if item.HasField("contents"):
                raise InvalidInput(
                    f"Input {name!r} has both contents and a raw_input_contents entry: "
                    "send one of them."
                )
            chunk = memoryview(bytearray(raw[index]))  # writable: handlers and torch expect it
            inputs[name] = protocol.binary_tensor(spec, shape, chunk, 0, len(chunk))
        else:
            inputs[name] = _typed_tensor(spec, shape, item.contents)
    missing = [n for n in signature.input_names if n not in inputs]
    if missing:
        raise InvalidInput(
            f"Missing input(s): {', '.join(missing)}; this model takes "
            f"{', '.join(signature.input_names)}."
        )
    outputs = [{"name": o.name, "parameters": parameters(o.parameters)} for o in message.outputs]
    return protocol.InferenceRequest(
        inputs=inputs,
        id=message.id or None,
        parameters=request_params,
        outputs=protocol.requested_outputs(outputs, signature),
        binary_output=bool(raw),
    )


def _typed_tensor(spec: TensorSpec, shape: tuple[int, ...], contents: Any) -> np.ndarray:
    name, datatype = spec.name, spec.datatype
    field = CONTENTS_FIELDS.get(datatype)
    if field is None:
        raise InvalidInput(
            f"Input {name!r} is {datatype}, which has no typed contents field: send it in "
            "raw_input_contents."
        )
    others = [f for f in _ALL_FIELDS if f != field and len(getattr(contents, f))]
    if others:
        raise InvalidInput(
            f"Input {name!r} is {datatype}: its values go in contents.{field}, not in "
            f"contents.{others[0]}."
        )
    values = getattr(contents, field)
    count = math.prod(shape)
    if len(values) != count:
        raise InvalidInput(
            f"Input {name!r} has {len(values)} value(s) in contents.{field}, but its shape "
            f"{list(shape)} needs {count}."
        )
    if datatype == "BYTES":
        array = np.empty(count, dtype=object)
        array[:] = list(values)
    else:
        # INT8/16 and UINT8/16 travel in 32-bit fields: read them at that width, then check
        # the range (numpy refuses, or wraps, an out-of-range value cast at once).
        wide = {"int_contents": np.int32, "uint_contents": np.uint32}.get(field, spec.dtype)
        array = np.array(values, dtype=wide)
        if wide is not spec.dtype and spec.dtype.itemsize < 4:
            info = np.iinfo(spec.dtype)
            if count and (array.min() < info.min or array.max() > info.max):
                raise InvalidInput(
                    f"Input {name!r} holds values outside the range of {datatype} "
                    f"({info.min}..{info.max})."
                )
    return coerce_input(spec, array.reshape(shape))


def encode_response(
    *,
    model_name: str,
    model_version: str,
    request: protocol.InferenceRequest,
    outputs: Mapping[str, np.ndarray],
    output_names: Sequence[str],
) -> Any:
    """The ``ModelInferResponse``: raw outputs when the request sent its inputs raw, else
    typed contents; only the outputs asked for, in the order asked (else the signature's)."""
    if request.outputs is None:
        selected = [name for name in output_names if name in outputs]
    else:
        selected = [o.name for o in request.outputs if o.name in outputs]
    response = pb.ModelInferResponse(
        model_name=model_name, model_version=model_version, id=request.id or ""
    )
    raw = request.binary_output
    for name in selected:
        array = outputs[name]
        datatype = datatype_of(array)
        tensor = response.outputs.add(name=name, datatype=datatype, shape=array.shape)
        if raw:
            response.raw_output_contents.append(bytes(binary_data(array, datatype)))
            continue
        flat = array.reshape(-1)
        if datatype == "BYTES":
            values: list[Any] = [
                v if isinstance(v, bytes) else str(v).encode("utf-8") for v in flat.tolist()
            ]
        else:
            values = flat.tolist()
        if datatype not in CONTENTS_FIELDS:
            # FP16 has no typed field: it goes raw whatever the request did.
            raise InvalidInput(
                f"Output {name!r} is {datatype}, which only travels raw: send the inputs in "
                "raw_input_contents."
            )
        getattr(tensor.contents, CONTENTS_FIELDS[datatype]).extend(values)
    return response
