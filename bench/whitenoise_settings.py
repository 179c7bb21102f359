"""The example project with WhiteNoise serving the static files (bench/static.py).

``mlapp_serve`` sees WhiteNoise's middleware and leaves the static files to it.
"""

from project.settings import *  # noqa: F403
from project.settings import MIDDLEWARE

# WhiteNoise's documented place: right after the security middleware.
MIDDLEWARE = [MIDDLEWARE[0], "whitenoise.middleware.WhiteNoiseMiddleware", *MIDDLEWARE[1:]]
