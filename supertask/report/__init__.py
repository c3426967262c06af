"""The HTML run report, shared by ``supertask run --html`` and ``bps report --html``.

`RunSummary` (``model``) is what a report shows; ``html.write_html`` draws it as one
self-contained file. Building a `RunSummary` is the runner's business:
``supertask.report.execution`` does it for `supertask.execution` results, and ``bps``
does it from a submit directory (``bps.html_report``). Names are re-exported lazily
(PEP 562) so that a workflow service importing the model loads nothing else.
"""

from __future__ import annotations

from ..lazy_exports import lazy_exports

_EXPORTS = {
    "FailureRecord": "model",
    "JobRecord": "model",
    "RunSummary": "model",
    "render_html": "html",
    "write_html": "html",
}

__all__ = sorted(_EXPORTS)


__getattr__, __dir__ = lazy_exports(__name__, {name: f".{module}" for name, module in _EXPORTS.items()})
