"""Serializers of the native API, one module per resource (as its views)."""
