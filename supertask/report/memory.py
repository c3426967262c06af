"""Memory requested beside memory used, per task label: where a run's requests waste slots.

Shared by ``bps report`` (text and HTML) and ``bps prepare --resources-from``; pure
standard library, so that whoever imports it loads nothing else.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import NamedTuple


def quantile(values: Iterable[float], q: float) -> float:
    """Linear-interpolated quantile (numpy's default method) of ``values`` (not empty)."""
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q
    lo = math.floor(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


class LabelMemory(NamedTuple):
    """One task label's memory: what its jobs requested beside what its quanta used (MB)."""

    label: str
    quanta: int
    requested_mb: float | None
    median_mb: float
    max_mb: float

    @property
    def unused_fraction(self) -> float | None:
        """Share of the request its largest quantum left unused (negative: it used more)."""
        if not self.requested_mb:
            return None
        return 1.0 - self.max_mb / self.requested_mb


def memory_by_label(peaks_of: Iterable[tuple[str, float]], requested: dict[str, float]) -> list[LabelMemory]:
    """Per task label, sorted: the peaks (MB) of ``(label, peak)`` pairs beside ``requested`` (label -> MB)."""
    peaks: dict[str, list[float]] = {}
    for label, peak in peaks_of:
        peaks.setdefault(label, []).append(peak)
    return [
        LabelMemory(label, len(values), requested.get(label), quantile(values, 0.5), max(values))
        for label, values in sorted(peaks.items())
    ]


#: the columns of a per-label memory table (``bps report``, the HTML report)
COLUMNS: tuple[str, ...] = (
    "task label",
    "quanta",
    "requested MB",
    "used MB (median)",
    "used MB (max)",
    "unused",
)


def cells(row: LabelMemory) -> tuple[str, ...]:
    """``row`` as the text of the `COLUMNS` ('-' where no request is known)."""
    unused = row.unused_fraction
    return (
        row.label,
        str(row.quanta),
        f"{row.requested_mb:.0f}" if row.requested_mb else "-",
        f"{row.median_mb:.0f}",
        f"{row.max_mb:.0f}",
        f"{unused:.0%}" if unused is not None else "-",
    )
