"""The Open Inference Protocol V2 codec: JSON requests and responses, binary tensors.

This module reads requests (:mod:`mlapp.api.v2.responses` writes the answers). Requests
arrive as one JSON object, optionally followed by raw tensor bytes (the binary
tensor data extension that ``tritonclient.http`` uses by default): the
``Inference-Header-Content-Length`` header says where the JSON ends, each binary input says
its size in ``parameters.binary_data_size``, numbers are little-endian and BYTES elements are
4-byte little-endian length-prefixed strings. Responses go back the same way when any output
is asked for in binary (``parameters.binary_data`` on an output, or
``parameters.binary_data_output`` on the request).

No declared size is trusted beyond the bytes at hand: every length is checked against what
remains of the body before anything is allocated. Numeric binary tensors become numpy views
over the body; nothing loops over elements in Python except BYTES tensors, whose elements
are Python objects anyway. No Django here: views hand bytes in and get bytes back.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson

from mlapp.exceptions import InvalidInput, PayloadTooLarge
from mlapp.runtimes.tensors import DATATYPES, Signature, TensorSpec, coerce_input

#: The ``Content-Encoding`` values a request may use, and zlib's window bits for each.
ENCODINGS = {"gzip": 16 + zlib.MAX_WBITS, "x-gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS}


@dataclass(frozen=True)
class RequestedOutput:
    """An output the client asked for; ``binary`` None means the request's default."""

    name: str
    binary: bool | None = None


@dataclass
class InferenceRequest:
    """A decoded inference request: inputs as arrays checked against the signature."""

    inputs: dict[str, np.ndarray]
    id: str | None = None
    parameters: dict[str, Any] = field(default_factory=dict)
    #: None: every output of the signature.
    outputs: list[RequestedOutput] | None = None
    #: ``parameters.binary_data_output``: outputs not asked for otherwise go back binary.
    binary_output: bool = False


# -- request body -------------------------------------------------------------------------


def decompress(body: bytes, encoding: str, limit: int | None) -> bytes:
    """Inflate a gzip or deflate body, never producing more than ``limit`` bytes.

    A body that would inflate beyond the limit (a decompression bomb, or just a big
    request) raises :class:`PayloadTooLarge` once ``limit + 1`` bytes are out, whatever
    its compressed size. ``deflate`` is read as zlib data (what HTTP means by it), or raw
    deflate data when there is no zlib header.
    """
    wbits = ENCODINGS[encoding]
    chunks: list[bytes] = []
    total = 0
    data = body
    while True:
        inflater = zlib.decompressobj(wbits)
        budget = 0 if limit is None else limit - total + 1  # 0: no limit
        try:
            out = inflater.decompress(data, budget)
        except zlib.error as exc:
            if encoding == "deflate" and wbits > 0 and not chunks:
                wbits = -zlib.MAX_WBITS  # raw deflate, no zlib header
                continue
            raise InvalidInput(
                f"The {encoding} request body cannot be decompressed: {exc}"
            ) from None
        total += len(out)
        if limit is not None and total > limit:
            raise PayloadTooLarge(
                f"The request body decompresses to more than the limit of {limit} bytes."
            )
        chunks.append(out)
        if not inflater.eof:
            raise InvalidInput(f"The {encoding} request body is truncated.")
        data = inflater.unused_data
        if not data:
            return b"".join(chunks)
        if wbits != ENCODINGS["gzip"]:
            raise InvalidInput(f"The {encoding} request body has data after its end.")
        # gzip allows several members one after the other; read the next one.


def _json_length(header_length: str | None, body_length: int) -> int:
    """Where the JSON part of the body ends (``Inference-Header-Content-Length``)."""
    if header_length is None:
        return body_length
    value = header_length.strip()
    if not (value.isascii() and value.isdigit()):
        raise InvalidInput(
            f"Inference-Header-Content-Length must be a byte count, got {header_length[:40]!r}."
        )
    length = int(value)
    if length > body_length:
        raise InvalidInput(
            f"Inference-Header-Content-Length says the JSON is {length} bytes, "
            f"but the whole body is {body_length} bytes."
        )
    return length


def decode_request(
    body: bytes | bytearray, header_length: str | None, signature: Signature
) -> InferenceRequest:
    """Parse an inference request body against the model's public ``signature``.

    Checks each input's name, datatype and shape against the signature and its data against
    its shape; raises :class:`InvalidInput` (400) with a message naming the tensor.
    """
    if not body:
        raise InvalidInput("The request body is empty: send an inference request (JSON).")
    json_end = _json_length(header_length, len(body))
    view = memoryview(body)
    try:
        header = orjson.loads(view[:json_end])
    except orjson.JSONDecodeError as exc:
        raise InvalidInput(f"The inference request is not valid JSON: {exc}") from None
    if not isinstance(header, dict):
        raise InvalidInput("The inference request must be a JSON object with 'inputs'.")
    request_id = header.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise InvalidInput("'id' must be a string.")
    parameters = check_parameters(header.get("parameters"), "the request")
    binary_output = _flag(parameters, "binary_data_output", "the request")
    items = header.get("inputs")
    if not isinstance(items, list) or not items:
        raise InvalidInput(
            "The inference request needs a non-empty 'inputs' list of "
            '{"name", "datatype", "shape", "data"} objects.'
        )
    # Binary tensors follow the JSON; copied once so that the arrays viewing them are
    # writable (handlers and torch expect that), and only when there are any.
    tail = memoryview(bytearray(view[json_end:])) if json_end < len(body) else memoryview(b"")
    offset = 0
    inputs: dict[str, np.ndarray] = {}
    for item in items:
        name, spec, shape, params = input_header(item, signature)
        if name in inputs:
            raise InvalidInput(f"Input {name!r} is given twice.")
        size = params.get("binary_data_size")
        if size is not None:
            if "data" in item:
                raise InvalidInput(
                    f"Input {name!r} has both 'data' and parameters.binary_data_size: "
                    "send one of them."
                )
            inputs[name] = binary_tensor(spec, shape, tail, offset, size)
            offset += size
        elif "data" in item:
            inputs[name] = _json_tensor(spec, shape, item["data"])
        else:
            raise InvalidInput(f"Input {name!r} has no 'data' and no parameters.binary_data_size.")
    missing = [n for n in signature.input_names if n not in inputs]
    if missing:
        raise InvalidInput(
            f"Missing input(s): {', '.join(missing)}; this model takes "
            f"{', '.join(signature.input_names)}."
        )
    if offset != len(tail):
        raise InvalidInput(
            f"The body holds {len(tail) - offset} byte(s) after the tensors it declares: "
            "the binary_data_size values must add up to the binary part of the body."
        )
    return InferenceRequest(
        inputs=inputs,
        id=request_id,
        parameters=parameters,
        outputs=requested_outputs(header.get("outputs"), signature),
        binary_output=binary_output,
    )


def request_parameters(body: bytes, header_length: str | None) -> dict[str, Any]:
    """The request's ``parameters`` object read alone, before the body is decoded (a traffic
    policy sticky by ``field:<name>`` chooses the version from it); ``{}`` for a body that
    does not have one, and the decoding then says what is wrong with it."""
    try:
        header = orjson.loads(memoryview(body)[: _json_length(header_length, len(body))])
    except (orjson.JSONDecodeError, InvalidInput):
        return {}
    parameters = header.get("parameters") if isinstance(header, dict) else None
    return parameters if isinstance(parameters, dict) else {}


def check_parameters(value: Any, where: str) -> dict[str, Any]:
    """``parameters`` of ``where`` (the request, an input, an output) as a dict, checked."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidInput(f"'parameters' of {where} must be a JSON object.")
    if "shared_memory_region" in value:
        raise InvalidInput(
            "The shared memory extensions are not supported: send the tensor data in the request."
        )
    return value


def _flag(parameters: Mapping[str, Any], key: str, where: str) -> bool:
    value = parameters.get(key, False)
    if not isinstance(value, bool):
        raise InvalidInput(f"Parameter {key!r} of {where} must be true or false.")
    return value


def input_header(
    item: Any, signature: Signature
) -> tuple[str, TensorSpec, tuple[int, ...], dict[str, Any]]:
    """An input's name, spec, shape and parameters, checked against ``signature``
    (also for gRPC: :mod:`mlapp.api.grpc.codec` reads its tensors with it)."""
    if not isinstance(item, dict):
        raise InvalidInput('Each input must be an object: {"name", "datatype", "shape", "data"}.')
    name = item.get("name")
    if not isinstance(name, str) or not name:
        raise InvalidInput("Each input needs a 'name' (a non-empty string).")
    try:
        spec = signature.input(name)
    except KeyError:
        raise InvalidInput(
            f"Unknown input {name!r}; this model takes {', '.join(signature.input_names)}."
        ) from None
    datatype = item.get("datatype")
    if datatype != spec.datatype:
        # Any JSON value may stand here; a list or an object is not even a dict key.
        if not isinstance(datatype, str) or datatype not in DATATYPES:
            raise InvalidInput(
                f"Input {name!r} has datatype {_excerpt(datatype)}; expected {spec.datatype} "
                f"(datatypes: {', '.join(DATATYPES)})."
            )
        raise InvalidInput(
            f"Input {name!r} has datatype {datatype}; this model takes {spec.datatype}."
        )
    shape = item.get("shape")
    if not isinstance(shape, list) or not all(
        isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape
    ):
        raise InvalidInput(f"Input {name!r} needs a 'shape': a list of integers >= 0.")
    shape = tuple(shape)
    if not spec.accepts_shape(shape):
        raise InvalidInput(
            f"Input {name!r} has shape {list(shape)}, expected {list(spec.shape)} "
            "(-1 means any size)."
        )
    if 0 in shape:
        raise InvalidInput(f"Input {name!r} is empty (shape {list(shape)}).")
    params = check_parameters(item.get("parameters"), f"input {name!r}")
    return name, spec, shape, params


def _excerpt(value: Any, limit: int = 40) -> str:
    """A client's value for an error message: its repr, cut at ``limit`` characters."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[: limit - 3]}..."


def binary_tensor(
    spec: TensorSpec, shape: tuple[int, ...], tail: memoryview, offset: int, size: Any
) -> np.ndarray:
    """The tensor in ``tail[offset:offset + size]``, checked against ``shape`` first."""
    name = spec.name
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise InvalidInput(f"binary_data_size of input {name!r} must be an integer >= 0.")
    remaining = len(tail) - offset
    if size > remaining:
        raise InvalidInput(
            f"Input {name!r} declares binary_data_size {size}, but only {remaining} byte(s) of "
            "binary data remain in the body."
        )
    chunk = tail[offset : offset + size]
    count = math.prod(shape)
    if spec.datatype == "BYTES":
        return _bytes_elements(name, chunk, count).reshape(shape)
    expected = count * spec.dtype.itemsize
    if size != expected:
        raise InvalidInput(
            f"Input {name!r} of shape {list(shape)} and datatype {spec.datatype} needs "
            f"{expected} bytes, but its binary_data_size is {size}."
        )
    array = np.frombuffer(chunk, dtype=spec.dtype.newbyteorder("<"), count=count).reshape(shape)
    if not array.dtype.isnative or not array.flags.aligned:
        # The JSON part has any length, so a tensor may start at an odd address.
        array = array.astype(spec.dtype)
    return array


def _bytes_elements(name: str, chunk: memoryview, count: int) -> np.ndarray:
    """BYTES elements: each a 4-byte little-endian length, then that many bytes."""
    end = len(chunk)
    if 4 * count > end:
        raise InvalidInput(
            f"Input {name!r} has {count} BYTES element(s), which need at least {4 * count} "
            f"bytes, but its binary_data_size is {end}."
        )
    items: list[bytes] = []
    position = 0
    for index in range(count):
        if end - position < 4:
            raise InvalidInput(f"Input {name!r}: BYTES element {index} has no length prefix.")
        length = int.from_bytes(chunk[position : position + 4], "little")
        position += 4
        if length > end - position:
            raise InvalidInput(
                f"Input {name!r}: BYTES element {index} says {length} bytes, but only "
                f"{end - position} remain."
            )
        items.append(bytes(chunk[position : position + length]))
        position += length
    if position != end:
        raise InvalidInput(
            f"Input {name!r} has {end - position} byte(s) after its {count} BYTES element(s)."
        )
    array = np.empty(count, dtype=object)
    array[:] = items
    return array


def _json_tensor(spec: TensorSpec, shape: tuple[int, ...], data: Any) -> np.ndarray:
    name = spec.name
    count = math.prod(shape)
    if spec.datatype == "BYTES":
        if isinstance(data, list) and all(isinstance(v, str) for v in data):
            array = np.empty(len(data), dtype=object)
            array[:] = data
        else:
            try:
                array = np.array(data, dtype=object)
            except ValueError as exc:
                raise InvalidInput(
                    f"Input {name!r}: 'data' is not a regular array: {exc}"
                ) from None
    else:
        try:
            array = np.asarray(data)
        except (ValueError, TypeError) as exc:
            raise InvalidInput(f"Input {name!r}: 'data' is not a regular array: {exc}") from None
    if array.size != count:
        raise InvalidInput(
            f"Input {name!r} has {array.size} value(s) in 'data', but its shape {list(shape)} "
            f"needs {count}."
        )
    # Flat row-major data (the protocol's form) or nested lists: the same elements.
    return coerce_input(spec, array.reshape(shape))


def requested_outputs(value: Any, signature: Signature) -> list[RequestedOutput] | None:
    """The outputs asked for, checked; None for every output of the signature."""
    if value is None or value == []:
        return None
    if not isinstance(value, list):
        raise InvalidInput("'outputs' must be a list of {\"name\"} objects.")
    known = signature.output_names
    result: list[RequestedOutput] = []
    for item in value:
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            raise InvalidInput("Each requested output must be an object with a 'name'.")
        name = item["name"]
        if name not in known:
            raise InvalidInput(f"Unknown output {name!r}; this model returns {', '.join(known)}.")
        if any(o.name == name for o in result):
            raise InvalidInput(f"Output {name!r} is requested twice.")
        params = check_parameters(item.get("parameters"), f"output {name!r}")
        if params.get("classification"):
            raise InvalidInput("The classification extension is not supported.")
        binary = params.get("binary_data")
        if binary is not None and not isinstance(binary, bool):
            raise InvalidInput(f"binary_data of output {name!r} must be true or false.")
        result.append(RequestedOutput(name=name, binary=binary))
    return result
