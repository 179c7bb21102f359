"""JSON in and out of the predict views with orjson: the hot path parses and renders fast.

Same media type as DRF's JSON classes. NaN and Infinity are refused in requests (they are
not JSON); in responses orjson writes them as ``null``, where DRF's strict renderer fails.
"""

from __future__ import annotations

from typing import Any

import orjson
from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser
from rest_framework.renderers import JSONRenderer


class FastJSONParser(JSONParser):
    def parse(self, stream: Any, media_type: str | None = None, parser_context: Any = None) -> Any:
        try:
            return orjson.loads(stream.read())
        except orjson.JSONDecodeError as exc:
            raise ParseError(f"JSON parse error: {exc}") from None


class FastJSONRenderer(JSONRenderer):
    def render(
        self, data: Any, accepted_media_type: str | None = None, renderer_context: Any = None
    ) -> bytes:
        if data is None:
            return b""
        option = orjson.OPT_SERIALIZE_NUMPY
        if self.get_indent(accepted_media_type or "", renderer_context or {}):
            # The browsable API asks for indented JSON; orjson indents by two spaces.
            option |= orjson.OPT_INDENT_2
        return orjson.dumps(data, option=option)
