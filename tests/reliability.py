"""The reliability ledger: tests that throw hostile input or faults at mlapp record what they
tried and what went wrong, and the session ends with the table the README quotes.

    def test_x(reliability):
        reliability.add("artifacts", "hostile artifacts x upload paths", tried=120, bad=0,
                        unit="accepted or payload run")
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Row:
    area: str
    what: str
    tried: int
    bad: int
    unit: str


@dataclass
class Ledger:
    rows: dict[tuple[str, str], Row] = field(default_factory=dict)

    def add(self, area: str, what: str, *, tried: int, bad: int, unit: str) -> None:
        """Add to a row (rows with the same area and description are summed)."""
        row = self.rows.get((area, what))
        if row is None:
            self.rows[(area, what)] = Row(area, what, tried, bad, unit)
        else:
            row.tried += tried
            row.bad += bad

    def table(self) -> list[str]:
        lines = ["| area | what was tried | tried | went wrong |", "| --- | --- | ---: | --- |"]
        for row in sorted(self.rows.values(), key=lambda r: (r.area, r.what)):
            lines.append(f"| {row.area} | {row.what} | {row.tried:,} | {row.bad} {row.unit} |")
        return lines


LEDGER = Ledger()
