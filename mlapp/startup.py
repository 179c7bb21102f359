"""Loading production models into a web process before it serves.

Call :func:`load_models` from the WSGI entry point (``mlapp.wsgi.get_wsgi_application``
does it): with a preloading server (gunicorn ``--preload``) the weights are then read once,
before the workers fork, and shared copy-on-write.
"""

from __future__ import annotations

import gc
import logging

from mlapp.conf import settings

logger = logging.getLogger("mlapp.startup")


def load_models(*, force: bool = False) -> dict[str, str]:
    """Load every production version into this process's registry; return load errors."""
    from mlapp.serving.registry import registry

    if not (settings.LOAD_ON_STARTUP or force):
        return {}
    errors = registry.load_production()
    loaded = registry.loaded()
    logger.info(
        "mlapp: %d model(s) loaded: %s",
        len(loaded),
        ", ".join(f"{n} v{m.version}" for n, m in loaded.items()) or "none",
    )
    for name, error in errors.items():
        logger.error("mlapp: %s is NOT ready: %s", name, error)
    # Objects alive now stay in the permanent generation: the collector of forked
    # workers will not touch (and so copy) the pages holding them.
    gc.freeze()
    return errors
