"""What the fuzz suite sent and what came back, printed at the end of the run.

Every request of the suite goes through :func:`record`, so the summary line counts every
request, not only the failing ones; the README quotes that line.
"""

from __future__ import annotations

from collections import Counter

#: (suite, "requests" | "5xx") -> count
COUNTS: Counter[tuple[str, str]] = Counter()


def record(suite: str, status: int) -> None:
    COUNTS[suite, "requests"] += 1
    if status >= 500:
        COUNTS[suite, "5xx"] += 1


def summary() -> list[str]:
    suites = sorted({suite for suite, _ in COUNTS})
    lines = [
        f"{suite}: {COUNTS[suite, 'requests']} requests, {COUNTS[suite, '5xx']} answered 5xx"
        for suite in suites
    ]
    total = sum(COUNTS[s, "requests"] for s in suites)
    errors = sum(COUNTS[s, "5xx"] for s in suites)
    if suites:
        lines.append(f"total: {total} requests, {errors} answered 5xx")
    return lines
