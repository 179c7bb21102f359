"""What the fuzz suite sent and what came back, in the reliability ledger.

Every request of the suite goes through :func:`record`, so the table printed at the end of the
run (:mod:`tests.reliability`) counts every request, not only the failing ones; the README
quotes it.
"""

from __future__ import annotations

from tests.reliability import LEDGER


def record(suite: str, status: int) -> None:
    LEDGER.add(
        "HTTP", f"fuzzed requests: {suite}", tried=1, bad=int(status >= 500), unit="answered 5xx"
    )
