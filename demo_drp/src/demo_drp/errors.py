"""Exceptions the demo tasks raise when a quantum cannot produce science.

`NoWorkFound` is the framework's (``supertask.task.NoWorkFound``): executors count
such a quantum as "no work" rather than as a failure, and ``bps`` maps it to the exit
code ``TASK_NO_WORK``, which workflow systems do not retry (running the same quantum
on the same pixels would give the same answer). The planner's spatial overlaps are
deliberately generous (DMTN-055 accepts "a small number of do-nothing jobs"), so a
warp whose detectors only graze a patch is expected, and must not read as an error.
"""

from __future__ import annotations

from supertask.task import NoWorkFound

__all__ = ["NoWorkFound"]
