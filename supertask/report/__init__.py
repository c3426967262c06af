"""The HTML run report, shared by ``supertask run --html`` and ``bps report --html``.

`RunSummary` (``model``) is what a report shows; ``html.write_html`` draws it as one
self-contained file. Building a `RunSummary` is the runner's business:
``supertask.report.execution`` does it for `supertask.execution` results, and ``bps``
does it from a submit directory (``bps.html_report``). Names are re-exported lazily
(PEP 562) so that a workflow service importing the model loads nothing else.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "FailureRecord": "model",
    "JobRecord": "model",
    "RunSummary": "model",
    "render_html": "html",
    "write_html": "html",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
