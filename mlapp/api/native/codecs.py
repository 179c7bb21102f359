"""The native predict body, ``{"inputs": ...}``, decoded into what the service takes.

``inputs`` comes in three shapes:

- named inputs: ``{"input": [[5.1, 3.5, 1.4, 0.2]]}`` (an object keyed by input name,
  each value a nested list whose first dimension is the rows);
- the bare value, for a model with one input: ``[[5.1, 3.5, 1.4, 0.2]]`` or, for a text
  model, ``["a sentence", "another"]``;
- records, one object per row keyed by input name: ``[{"input": [5.1, 3.5, 1.4, 0.2]}]``;
  each record holds that row's value of every input (the input's shape without its first
  dimension). Records become named inputs, one row per record, in order.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson
from django.http import QueryDict

from mlapp.exceptions import InvalidInput

#: What a predict body may hold: the inputs, and request parameters (a traffic policy sticky by
#: ``field:<name>`` reads ``parameters[name]``).
BODY_FIELDS = frozenset({"inputs", "parameters"})
EXPECTED = 'Send a JSON object {"inputs": ...}; see the schema for the accepted shapes.'


def read_inputs(data: Any) -> Any:
    """The inputs of a parsed predict body (JSON, or the browsable API's HTML form)."""
    if isinstance(data, QueryDict):
        raw = data.get("inputs")
        if raw is None:
            raise InvalidInput(f"Missing 'inputs'. {EXPECTED}")
        try:
            value = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise InvalidInput(f"'inputs' is not valid JSON: {exc}") from None
        return records_to_columns(value)
    if not isinstance(data, Mapping):
        raise InvalidInput(f"The body is a JSON {type(data).__name__}, not an object. {EXPECTED}")
    if "inputs" not in data:
        raise InvalidInput(f"Missing 'inputs'. {EXPECTED}")
    unknown = sorted(str(k) for k in data if k not in BODY_FIELDS)
    if unknown:
        raise InvalidInput(
            f"Unknown field(s) {', '.join(unknown)}: the body takes 'inputs' and 'parameters'."
        )
    if not isinstance(data.get("parameters", {}), Mapping):
        raise InvalidInput("'parameters' is a JSON object (e.g. {\"user_id\": 7}).")
    return records_to_columns(data["inputs"])


def records_to_columns(value: Any) -> Any:
    """Turn a list of records into named inputs; any other value is returned as it is."""
    if not (isinstance(value, list) and value and isinstance(value[0], Mapping)):
        return value
    names = list(value[0])
    if not names:
        raise InvalidInput("Record 0 is empty: each record maps input names to values.")
    columns: dict[str, list[Any]] = {name: [] for name in names}
    for i, record in enumerate(value):
        if not isinstance(record, Mapping):
            raise InvalidInput(
                f"Item {i} of 'inputs' is not a record (an object keyed by input name), "
                "but item 0 is: send all records or none."
            )
        if record.keys() != columns.keys():
            raise InvalidInput(
                f"Record {i} names inputs {sorted(map(str, record))}, record 0 names "
                f"{sorted(names)}: every record names the same inputs."
            )
        for name in names:
            columns[name].append(record[name])
    return columns
