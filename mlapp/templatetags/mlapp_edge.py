"""``{% load mlapp_edge %}{% mlapp_edge_scripts %}``: ONNX Runtime Web and mlapp's edge.js.

A host page embeds in-browser inference with the two script tags this writes (the files ship
in mlapp's static folder: no CDN), then either calls ``window.mlappEdge.run(url, signature,
inputs)`` or marks an element ``data-mlapp-edge`` (see ``mlapp/static/mlapp/edge.js``).
"""

from __future__ import annotations

from django import template
from django.templatetags.static import static
from django.utils.html import format_html
from django.utils.safestring import SafeString

register = template.Library()


@register.simple_tag
def mlapp_edge_scripts() -> SafeString:
    ort = static("mlapp/ort/ort.wasm.min.js")
    # The folder of the files ort loads by name (collectstatic keeps the unhashed names too).
    base = ort.rsplit("/", 1)[0] + "/"
    return format_html(
        '<script src="{}"></script>\n<script src="{}" data-ort-base="{}"></script>',
        ort,
        static("mlapp/edge.js"),
        base,
    )
