"""The HTML run report, shared by ``supertask run --html`` and ``bps report --html``.

`RunSummary` (``model``) is what a report shows; ``html.write_html`` draws it as one
self-contained file. Building a `RunSummary` is the runner's business:
``supertask.report.execution`` does it for `supertask.execution` results, and ``bps``
does it from a submit directory (``bps.html_report``).
"""

from .html import render_html, write_html
from .model import FailureRecord, JobRecord, RunSummary

__all__ = ["FailureRecord", "JobRecord", "RunSummary", "render_html", "write_html"]
