"""Exceptions the demo tasks raise when a quantum cannot produce science.

``bps`` maps an exception whose class is named ``NoWorkFound`` (or derives from
one so named) to the exit code ``TASK_NO_WORK``, which workflow systems do not
retry: running the same quantum on the same pixels again would fail the same way.
"""

from __future__ import annotations


class NoWorkFound(RuntimeError):
    """The quantum's inputs hold nothing this task can work with (e.g. no pixels on the patch)."""
