"""One self-contained HTML file from a `RunSummary`: open it anywhere, no server, nothing fetched.

Sections: the counts per label (with each state's colour), the pipeline as a picture,
a timeline of jobs, wall time and peak memory per label, the failures with their log
tails, the run's provenance. Styles, pictures (SVG) and the small script are inline;
the script only adds highlighting (hover a label) and table sorting, so the page
reads the same with scripts off.
"""

from __future__ import annotations

import os
import time
from html import escape
from pathlib import Path

from . import charts, memory
from .model import BAD_STATES, STATE_COLOURS, RunSummary

#: Failures shown with their log tails (the rest are counted).
MAX_FAILURES_SHOWN = 50
#: Jobs drawn on the timeline; a bigger run shows the first ones by start time and says so.
MAX_TIMELINE_JOBS = 20_000
#: Provenance values longer than this are folded (``<details>``).
FOLD_AT = 120

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5em 2em; color: #222; }
h1 { font-size: 1.5em; margin-bottom: 0.2em; }
h2 { font-size: 1.15em; margin-top: 1.6em; border-bottom: 1px solid #ddd; padding-bottom: 0.2em; }
.meta { color: #555; }
.badge { display: inline-block; padding: 0.1em 0.6em; border-radius: 0.8em; color: white; font-weight: bold; }
table { border-collapse: collapse; }
th, td { padding: 0.25em 0.6em; border-bottom: 1px solid #eee; text-align: right; }
th { cursor: pointer; background: #f6f6f6; }
td.label, th.label { text-align: left; }
tr.total td { font-weight: bold; }
.swatch { display: inline-block; width: 0.8em; height: 0.8em; border-radius: 0.2em; margin-right: 0.3em; }
.legend span { margin-right: 1em; cursor: default; white-space: nowrap; }
pre { background: #f7f7f7; padding: 0.6em; overflow-x: auto; max-height: 24em; font-size: 0.85em; }
.failure { margin-bottom: 0.8em; }
.failure .reason { color: #b2182b; }
.dim { opacity: 0.15; }
.empty { color: #777; font-style: italic; }
td.key { text-align: left; font-weight: bold; vertical-align: top; white-space: nowrap; }
td.value { text-align: left; font-family: ui-monospace, monospace; font-size: 0.9em; }
"""

# Highlight a label everywhere while the pointer is on its legend entry, row or box;
# sort the counts table by a column when its header is clicked.
_SCRIPT = """
(function () {
  "use strict";
  function marks() { return document.querySelectorAll("[data-label]"); }
  function highlight(label) {
    marks().forEach(function (m) {
      if (m.closest(".legend") || m.tagName === "TR") { return; }
      m.classList.toggle("dim", label !== null && m.getAttribute("data-label") !== label);
    });
  }
  document.querySelectorAll(".legend [data-label], tr[data-label], g.node").forEach(function (el) {
    el.addEventListener("mouseenter", function () { highlight(el.getAttribute("data-label")); });
    el.addEventListener("mouseleave", function () { highlight(null); });
  });
  document.querySelectorAll("table.counts th").forEach(function (th, column) {
    th.addEventListener("click", function () {
      var body = th.closest("table").querySelector("tbody");
      var rows = Array.prototype.slice.call(body.querySelectorAll("tr[data-label]"));
      var numeric = column > 0;
      var descending = th.getAttribute("data-sorted") !== "desc";
      rows.sort(function (a, b) {
        var x = a.children[column].textContent, y = b.children[column].textContent;
        var d = numeric ? (parseFloat(x) || 0) - (parseFloat(y) || 0) : x.localeCompare(y);
        return descending ? -d : d;
      });
      var total = body.querySelector("tr.total");
      rows.forEach(function (r) { body.insertBefore(r, total); });
      th.setAttribute("data-sorted", descending ? "desc" : "asc");
    });
  });
  document.body.setAttribute("data-ready", "1");
})();
"""


def _e(text: object) -> str:
    return escape(str(text), quote=True)


def _swatch(colour: str) -> str:
    return f'<span class="swatch" style="background:{colour}"></span>'


def _counts_section(summary: RunSummary, colours: dict[str, str]) -> str:
    states = [s for s in summary.states if any(c.get(s) for c in summary.counts.values())] or list(
        summary.states[:1]
    )
    head = "".join(
        f"<th>{_swatch(STATE_COLOURS.get(s, '#999'))}{_e(s.replace('_', ' '))}</th>" for s in states
    )
    rows = []
    for label, counts in summary.counts.items():
        cells = "".join(f"<td>{counts.get(s, 0)}</td>" for s in states)
        rows.append(
            f'<tr data-label="{_e(label)}"><td class="label">{_swatch(colours.get(label, "#888"))}'
            f"{_e(label)}</td>{cells}<td>{sum(counts.values())}</td>"
            f"<td>{charts.state_bar(counts, summary.states)}</td></tr>"
        )
    totals = summary.totals()
    rows.append(
        '<tr class="total"><td class="label">total</td>'
        + "".join(f"<td>{totals.get(s, 0)}</td>" for s in states)
        + f"<td>{sum(totals.values())}</td><td></td></tr>"
    )
    return (
        f'<h2 id="counts">{_e(summary.units.capitalize())} per label</h2>'
        f'<table class="counts"><thead><tr><th class="label">label</th>{head}<th>total</th>'
        f"<th>states</th></tr></thead><tbody>{''.join(rows)}</tbody></table>"
    )


def _legend(labels: list[str], colours: dict[str, str]) -> str:
    items = "".join(f'<span data-label="{_e(x)}">{_swatch(colours[x])}{_e(x)}</span>' for x in labels)
    return f'<p class="legend">{items}</p>'


def _timeline_section(summary: RunSummary, colours: dict[str, str], labels: list[str]) -> str:
    timed = sorted((j for j in summary.jobs if j.start is not None), key=lambda j: j.start or 0.0)
    untimed = len(summary.jobs) - len(timed)
    notes = []
    if len(timed) > MAX_TIMELINE_JOBS:
        notes.append(f"the first {MAX_TIMELINE_JOBS} of {len(timed)} {summary.units} by start time are drawn")
        timed = timed[:MAX_TIMELINE_JOBS]
    if untimed:
        notes.append(f"{untimed} {summary.units} have no recorded start (never started, or not recorded)")
    span = ""
    if timed:
        t0 = min(j.start for j in timed if j.start is not None)
        t1 = max((j.end or j.start or t0) for j in timed)
        span = (
            f'<p class="meta">from {_e(_when(t0))} to {_e(_when(t1))} '
            f"({_e(charts.format_seconds(t1 - t0))}); one bar per {summary.unit}, "
            "red outline: failed; hover a bar for its name</p>"
        )
    note = "".join(f'<p class="meta">{_e(n)}</p>' for n in notes)
    return (
        f'<h2 id="timeline">Timeline</h2>{span}{_legend(labels, colours)}'
        f"{charts.timeline(timed, colours)}{note}"
    )


def _distributions_section(summary: RunSummary, colours: dict[str, str], labels: list[str]) -> str:
    wall: dict[str, list[float]] = {label: [] for label in labels}
    memory: dict[str, list[float]] = {label: [] for label in labels}
    requested: dict[str, float] = {}
    for job in summary.jobs:
        seconds = job.wall_seconds
        if seconds is not None:
            wall[job.label].append(seconds)
        if job.peak_memory_mb is not None:
            memory[job.label].append(job.peak_memory_mb)
        if job.request_memory_mb is not None:
            requested[job.label] = max(requested.get(job.label, 0.0), job.request_memory_mb)
    return (
        f'<h2 id="wall">Wall time per {summary.unit} (s)</h2>'
        + charts.distribution(wall, colours, "s", "{:.2f}")
        + f'<h2 id="memory">Peak memory per {summary.unit} (MB)</h2>'
        + (
            '<p class="meta">dashed red line: the memory requested of the slot</p>'
            if any(memory.get(x) for x in requested)
            else ""
        )
        + charts.distribution(memory, colours, "MB", "{:.0f}", requested)
        + _label_memory_table(summary, colours)
    )


def _label_memory_table(summary: RunSummary, colours: dict[str, str]) -> str:
    """Per task label: memory requested beside what its quanta used (each quantum's own peak)."""
    if not summary.label_memory:
        return ""
    head = "".join(
        f"<th{' class=label' if i == 0 else ''}>{_e(c)}</th>" for i, c in enumerate(memory.COLUMNS)
    )
    rows = []
    for row in summary.label_memory:
        label, *rest = memory.cells(row)
        rows.append(
            f'<tr><td class="label">{_swatch(colours.get(label, "#888"))}{_e(label)}</td>'
            + "".join(f"<td>{_e(c)}</td>" for c in rest)
            + "</tr>"
        )
    return (
        '<h3 id="requested-vs-used">Memory requested and used per task label</h3>'
        '<p class="meta">used: each quantum\'s own peak resident memory; unused: the share of the '
        "request its largest quantum left unused</p>"
        f'<table class="memory"><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table>'
    )


def _failures_section(summary: RunSummary) -> str:
    if not summary.failures:
        return '<h2 id="failures">Failures</h2><p class="empty">None.</p>'
    shown = summary.failures[:MAX_FAILURES_SHOWN]
    items = []
    for f in shown:
        log = f'<div class="meta">log: {_e(f.log_file)}</div>' if f.log_file else ""
        tail = f"<pre>{_e(f.log_tail)}</pre>" if f.log_tail else ""
        items.append(
            f'<div class="failure" data-failure="{_e(f.name)}"><b>{_e(f.name)}</b> ({_e(f.label)}): '
            f'<span class="reason">{_e(f.reason)}</span>{log}{tail}</div>'
        )
    more = len(summary.failures) - len(shown)
    rest = f'<p class="meta">... and {more} more</p>' if more > 0 else ""
    return f'<h2 id="failures">Failures ({len(summary.failures)})</h2>{"".join(items)}{rest}'


def _provenance_section(summary: RunSummary) -> str:
    if not summary.provenance:
        return '<h2 id="provenance">Provenance</h2><p class="empty">Nothing recorded.</p>'
    rows = []
    for key, value in summary.provenance.items():
        text = str(value)
        if len(text) > FOLD_AT or "\n" in text:
            first = text.splitlines()[0] if text.strip() else ""
            shown = (
                f"<details><summary>{_e(first[:FOLD_AT])} … ({len(text.splitlines())} lines)</summary>"
                f"<pre>{_e(text)}</pre></details>"
            )
        else:
            shown = _e(text)
        rows.append(f'<tr><td class="key">{_e(key)}</td><td class="value">{shown}</td></tr>')
    return f'<h2 id="provenance">Provenance</h2><table class="provenance">{"".join(rows)}</table>'


def _when(epoch: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(epoch))


def render_html(summary: RunSummary) -> str:
    """The whole report as one HTML document (UTF-8 text)."""
    labels = summary.labels()
    colours = charts.label_colours(labels)
    totals = summary.totals()
    bad = sum(n for s, n in totals.items() if s in BAD_STATES)
    state_colour = STATE_COLOURS.get(summary.state, "#777" if summary.state != "cancelled" else "#f08c00")
    messages = "".join(f"<li>{_e(m)}</li>" for m in summary.messages)
    body = [
        f"<h1>{_e(summary.title)}</h1>",
        f'<p class="meta"><span class="badge" style="background:{state_colour}">{_e(summary.state)}</span> '
        f"{_e(summary.runner)}: {sum(totals.values())} {_e(summary.units)} in {len(summary.counts)} labels"
        f"{f', {bad} not ok' if bad else ''}; report written {_e(_when(time.time()))}</p>",
        f"<ul>{messages}</ul>" if messages else "",
        _counts_section(summary, colours),
        '<h2 id="pipeline">Pipeline</h2>',
        charts.pipeline_picture(
            labels, summary.label_edges, colours, summary.counts, BAD_STATES, summary.unit, summary.units
        ),
        _timeline_section(summary, colours, labels),
        _distributions_section(summary, colours, labels),
        _failures_section(summary),
        _provenance_section(summary),
    ]
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{_e(summary.title)}: run report</title><style>{_STYLE}</style></head>"
        f"<body>{''.join(body)}<script>{_SCRIPT}</script></body></html>\n"
    )


def check_writable(path: str | os.PathLike[str]) -> str | None:
    """Why a report could not be written at ``path`` (one line), or None if it can.

    Checked before a run starts, so that a mistyped path costs nothing.
    """
    path = Path(path)
    if path.is_dir():
        return f"{path} is a directory: give a file name, e.g. {path / 'report.html'}"
    parent = path.parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        return f"cannot write {path}: {parent} is a file, not a directory"
    if not os.access(parent, os.W_OK):
        return f"cannot write {path}: {parent} is not writable"
    return None


def write_html(summary: RunSummary, path: str | os.PathLike[str]) -> Path:
    """Write the report to ``path`` atomically (a reader never sees half a file); return the path."""
    from ..atomic_write import atomic_write_text

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # not synced: a report is cheap to write again
    atomic_write_text(path, render_html(summary), fsync=False)
    return path
