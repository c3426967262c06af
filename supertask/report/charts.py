"""The pictures of a run report, as inline SVG text (no plotting library, nothing fetched).

Each function returns one ``<svg>`` element. Every mark carries a ``<title>`` (the
browser shows it on hover) and ``data-label`` so the page's script can highlight a
label; nothing here needs the script to be readable.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Iterable, Sequence
from html import escape

from ..states import JobState, QuantumState
from .model import STATE_COLOURS, JobRecord

#: states whose bars get a red outline on the timeline
_OUTLINED = frozenset({QuantumState.FAILED, QuantumState.TIMED_OUT, JobState.HELD})

#: Label colours: distinct, readable on white, cycled when a pipeline has more labels.
PALETTE: tuple[str, ...] = (
    "#4e79a7",
    "#f28e2b",
    "#59a14f",
    "#b07aa1",
    "#76b7b2",
    "#edc948",
    "#e15759",
    "#9c755f",
    "#ff9da7",
    "#bab0ac",
    "#1f77b4",
    "#8c564b",
)
FONT = 'font-family="system-ui, sans-serif" font-size="12"'


def _e(text: object) -> str:
    return escape(str(text), quote=True)


def label_colours(labels: Iterable[str]) -> dict[str, str]:
    """A colour per label, stable for a given label order."""
    return {label: PALETTE[i % len(PALETTE)] for i, label in enumerate(labels)}


def format_seconds(seconds: float) -> str:
    """``0.42 s``, ``12.3 s``, ``4 min 05 s``, ``2 h 03 min``: short and unambiguous."""
    if seconds < 10:
        return f"{seconds:.2f} s"
    if seconds < 60:
        return f"{seconds:.1f} s"
    if seconds < 3600:
        return f"{int(seconds // 60)} min {int(seconds % 60):02d} s"
    return f"{int(seconds // 3600)} h {int(seconds % 3600 // 60):02d} min"


def state_bar(counts: dict[str, int], states: Sequence[str], width: int = 240, height: int = 14) -> str:
    """One stacked bar of a label's jobs by state, each part in its state's colour."""
    total = sum(counts.get(s, 0) for s in states)
    parts = []
    x = 0.0
    for state in states:
        n = counts.get(state, 0)
        if not n or not total:
            continue
        w = width * n / total
        parts.append(
            f'<rect class="state-part" data-state="{_e(state)}" x="{x:.2f}" y="0" width="{w:.2f}" '
            f'height="{height}" fill="{STATE_COLOURS.get(state, "#999")}"><title>{n} {_e(state)}</title></rect>'
        )
        x += w
    if not parts:
        parts.append(f'<rect x="0" y="0" width="{width}" height="{height}" fill="#eee"/>')
    return (
        f'<svg class="state-bar" width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
        f'role="img">{"".join(parts)}</svg>'
    )


def _lanes(jobs: Sequence[JobRecord]) -> list[int]:
    """A lane per job such that no two jobs of a lane overlap (as few lanes as a greedy fill needs)."""
    order = sorted(range(len(jobs)), key=lambda i: (jobs[i].start or 0.0, jobs[i].end or 0.0))
    free: list[tuple[float, int]] = []  # (end time, lane)
    lanes = [0] * len(jobs)
    count = 0
    for i in order:
        start, end = jobs[i].start or 0.0, jobs[i].end or 0.0
        if free and free[0][0] <= start:
            _, lane = heapq.heappop(free)
        else:
            lane, count = count, count + 1
        lanes[i] = lane
        heapq.heappush(free, (end, lane))
    return lanes


def _ticks(span: float, count: int = 8) -> list[float]:
    """Round tick positions from 0 to ``span`` seconds."""
    if span <= 0:
        return [0.0]
    raw = span / count
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= raw)
    return [i * step for i in range(int(span / step) + 1)]


def timeline(jobs: Sequence[JobRecord], colours: dict[str, str], width: int = 960) -> str:
    """A Gantt chart: one bar per job from its start to its end, packed into lanes, coloured by label.

    Jobs without a start are left out (the caller says how many); a job still running
    (no end) is drawn up to the latest time known.
    """
    timed = [j for j in jobs if j.start is not None]
    if not timed:
        return '<p class="empty">No job recorded a start time.</p>'
    t0 = min(j.start for j in timed if j.start is not None)
    t1 = max(max(j.end or j.start or t0 for j in timed), t0)
    drawn = [
        JobRecord(j.name, j.label, j.state, j.start, j.end if j.end is not None else t1, j.peak_memory_mb)
        for j in timed
    ]
    span = max(t1 - t0, 1e-3)
    lanes = _lanes(drawn)
    n_lanes = max(lanes) + 1
    row = 14 if n_lanes <= 40 else max(2, 560 // n_lanes)
    left, top, bottom = 28, 8, 28  # room for the first and last tick's text
    plot_w = width - 2 * left
    height = top + n_lanes * row + bottom
    parts = []
    for t in _ticks(span):
        x = left + plot_w * t / span
        parts.append(
            f'<line x1="{x:.1f}" y1="{top}" x2="{x:.1f}" y2="{top + n_lanes * row}" stroke="#ddd"/>'
            f'<text x="{x:.1f}" y="{height - 10}" text-anchor="middle" {FONT}>{_e(format_seconds(t))}</text>'
        )
    for job, lane, original in zip(drawn, lanes, timed, strict=True):
        assert job.start is not None and job.end is not None
        x = left + plot_w * (job.start - t0) / span
        w = max(plot_w * (job.end - job.start) / span, 1.0)
        y = top + lane * row
        outline = ' stroke="#d7301f" stroke-width="2"' if job.state in _OUTLINED else ""
        tip = f"{job.name} ({job.label}): {job.state}, {format_seconds(job.end - job.start)}"
        if original.end is None:
            tip += " so far"
        if job.peak_memory_mb is not None:
            tip += f", peak {job.peak_memory_mb:.0f} MB"
        parts.append(
            f'<rect class="bar" data-label="{_e(job.label)}" data-job="{_e(job.name)}" '
            f'data-state="{_e(job.state)}" x="{x:.2f}" y="{y + 1}" width="{w:.2f}" height="{max(row - 2, 1)}" '
            f'fill="{colours.get(job.label, "#888")}"{outline}><title>{_e(tip)}</title></rect>'
        )
    return (
        f'<svg class="timeline" width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img">'
        f"{''.join(parts)}</svg>"
    )


def _quantile(ordered: Sequence[float], q: float) -> float:
    """Linear-interpolated quantile of already sorted values."""
    if len(ordered) == 1:
        return ordered[0]
    pos = (len(ordered) - 1) * q
    lo = math.floor(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def distribution(
    values: dict[str, list[float]],
    colours: dict[str, str],
    unit: str,
    fmt: str = "{:.1f}",
    requested: dict[str, float] | None = None,
    width: int = 960,
) -> str:
    """Per label, a box (quartiles, median, whiskers to min and max) and up to 400 of its points.

    ``requested`` (per label) is drawn as a dashed line: what was asked of the slot
    beside what was used.
    """
    rows = [(label, sorted(v)) for label, v in values.items() if v]
    if not rows:
        return f'<p class="empty">No {_e(unit)} recorded.</p>'
    requested = requested or {}
    hi = max(max(v[-1] for _, v in rows), max(requested.values(), default=0.0))
    hi = hi * 1.05 if hi > 0 else 1.0
    name_w, stats_w, row = 170, 290, 26
    plot_x, plot_w = name_w, width - name_w - stats_w
    height = row * len(rows) + 30

    def x_of(v: float) -> float:
        return plot_x + plot_w * v / hi

    parts = []
    for t in _ticks(hi, 6):
        x = x_of(t)
        parts.append(
            f'<line x1="{x:.1f}" y1="0" x2="{x:.1f}" y2="{row * len(rows)}" stroke="#eee"/>'
            f'<text x="{x:.1f}" y="{height - 10}" text-anchor="middle" {FONT}>{_e(fmt.format(t))}</text>'
        )
    for i, (label, v) in enumerate(rows):
        y = i * row + row / 2
        colour = colours.get(label, "#888")
        q1, med, q3 = (_quantile(v, q) for q in (0.25, 0.5, 0.75))
        stats = f"n={len(v)}, median {fmt.format(med)}, max {fmt.format(v[-1])}"
        parts.append(
            f'<g class="dist-row" data-label="{_e(label)}"><title>{_e(label)}: {_e(stats)}</title>'
            f'<text x="{name_w - 8}" y="{y + 4:.1f}" text-anchor="end" {FONT}>{_e(label)}</text>'
            f'<line x1="{x_of(v[0]):.1f}" y1="{y:.1f}" x2="{x_of(v[-1]):.1f}" y2="{y:.1f}" stroke="#555"/>'
            f'<rect x="{x_of(q1):.1f}" y="{y - 7:.1f}" width="{max(x_of(q3) - x_of(q1), 1):.1f}" height="14" '
            f'fill="{colour}" fill-opacity="0.35" stroke="{colour}"/>'
            f'<line x1="{x_of(med):.1f}" y1="{y - 7:.1f}" x2="{x_of(med):.1f}" y2="{y + 7:.1f}" '
            f'stroke="#222" stroke-width="2"/>'
        )
        step = max(1, len(v) // 400)
        for j, value in enumerate(v[::step]):
            jitter = ((j * 7919) % 11 - 5) * 0.9
            parts.append(
                f'<circle cx="{x_of(value):.1f}" cy="{y + jitter:.1f}" r="1.8" fill="{colour}" fill-opacity="0.8"/>'
            )
        if label in requested:
            x = x_of(requested[label])
            parts.append(
                f'<line class="requested" x1="{x:.1f}" y1="{y - 11:.1f}" x2="{x:.1f}" y2="{y + 11:.1f}" '
                f'stroke="#d7301f" stroke-dasharray="3,2" stroke-width="2"><title>requested '
                f"{_e(fmt.format(requested[label]))} {_e(unit)}</title></line>"
            )
        text = stats + (f", asked {fmt.format(requested[label])}" if label in requested else "") + f" {unit}"
        parts.append(f'<text x="{plot_x + plot_w + 8}" y="{y + 4:.1f}" {FONT}>{_e(text)}</text></g>')
    return (
        f'<svg class="distribution" width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
        f'role="img">{"".join(parts)}</svg>'
    )


def _layers(labels: Sequence[str], edges: Sequence[tuple[str, str]]) -> dict[str, int]:
    """Each label's layer: the length of the longest chain of producers above it."""
    parents: dict[str, set[str]] = {label: set() for label in labels}
    for a, b in edges:
        if a != b:
            parents.setdefault(b, set()).add(a)
            parents.setdefault(a, set())
    layer: dict[str, int] = {}
    visiting: set[str] = set()

    def depth(label: str) -> int:
        if label in layer:
            return layer[label]
        if label in visiting:  # a cycle cannot come from a graph, but never loop on one
            return 0
        visiting.add(label)
        layer[label] = 1 + max((depth(p) for p in parents[label]), default=-1)
        visiting.discard(label)
        return layer[label]

    for label in parents:
        depth(label)
    return layer


def pipeline_picture(
    labels: Sequence[str],
    edges: Sequence[tuple[str, str]],
    colours: dict[str, str],
    counts: dict[str, dict[str, int]],
    bad_states: Iterable[str] = (),
    unit: str = "job",
    units: str = "jobs",
) -> str:
    """The pipeline's labels as boxes in dependency layers (top to bottom), arrows from producer to consumer.

    A label with jobs in a bad state gets a red outline; each box says how many jobs it had.
    """
    layer = _layers(labels, edges)
    if not layer:
        return '<p class="empty">No labels.</p>'
    by_layer: dict[int, list[str]] = {}
    for label in [*labels, *(x for x in layer if x not in labels)]:
        if label in layer and label not in by_layer.get(layer[label], []):
            by_layer.setdefault(layer[label], []).append(label)
    box_w, box_h, gap_x, gap_y = 170, 40, 30, 46
    widest = max(len(v) for v in by_layer.values())
    width = max(widest * (box_w + gap_x) + gap_x, 300)
    height = len(by_layer) * (box_h + gap_y) - gap_y + 20
    pos: dict[str, tuple[float, float]] = {}
    for d, row in sorted(by_layer.items()):
        row_w = len(row) * box_w + (len(row) - 1) * gap_x
        x0 = (width - row_w) / 2
        for i, label in enumerate(row):
            pos[label] = (x0 + i * (box_w + gap_x), 10 + d * (box_h + gap_y))
    bad = set(bad_states)
    parts = [
        '<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" markerHeight="7" '
        'orient="auto-start-reverse"><path d="M 0 0 L 10 5 L 0 10 z" fill="#666"/></marker></defs>'
    ]
    for a, b in sorted(set(edges)):
        if a == b or a not in pos or b not in pos:
            continue
        (xa, ya), (xb, yb) = pos[a], pos[b]
        x1, y1, x2, y2 = xa + box_w / 2, ya + box_h, xb + box_w / 2, yb
        mid = (y1 + y2) / 2
        parts.append(
            f'<path class="edge" d="M {x1:.1f} {y1:.1f} C {x1:.1f} {mid:.1f}, {x2:.1f} {mid:.1f}, '
            f'{x2:.1f} {y2 - 1:.1f}" fill="none" stroke="#666" marker-end="url(#arrow)">'
            f"<title>{_e(a)} → {_e(b)}</title></path>"
        )
    for label, (x, y) in pos.items():
        c = counts.get(label, {})
        total = sum(c.values())
        failed = sum(n for s, n in c.items() if s in bad)
        stroke = "#d7301f" if failed else "#333"
        note = f"{total} {unit if total == 1 else units}" + (f", {failed} not ok" if failed else "")
        parts.append(
            f'<g class="node" data-label="{_e(label)}"><title>{_e(label)}: {_e(note)}</title>'
            f'<rect x="{x:.1f}" y="{y:.1f}" width="{box_w}" height="{box_h}" rx="6" '
            f'fill="{colours.get(label, "#ccc")}" fill-opacity="0.25" stroke="{stroke}" '
            f'stroke-width="{2 if failed else 1}"/>'
            f'<text x="{x + box_w / 2:.1f}" y="{y + 17:.1f}" text-anchor="middle" {FONT} '
            f'font-weight="bold">{_e(label)}</text>'
            f'<text x="{x + box_w / 2:.1f}" y="{y + 32:.1f}" text-anchor="middle" {FONT}>{_e(note)}</text></g>'
        )
    return (
        f'<svg class="pipeline" width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
        f'role="img">{"".join(parts)}</svg>'
    )
