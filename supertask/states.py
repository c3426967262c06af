"""The states of quanta, batch jobs and whole runs, as `str`-valued enums.

Each member *is* its text (`enum.StrEnum`): it compares equal to the string, formats as
it, and `json` writes it as it. So the state files, run records, manifests and reports
on disk keep the exact text they had when the states were bare strings, and a file
written before (or by another tool) reads back into the same members with
``JobState(text)``. What the enums add is one list of the valid values per kind, which
the type checker and `parse_state` hold the code to.
"""

from __future__ import annotations

from enum import StrEnum
from typing import TypeVar

__all__ = ["JobState", "QuantumState", "RunState", "parse_state"]


class QuantumState(StrEnum):
    """What became of one quantum in `supertask run` (its executor, result and report).

    The order is the report's: outcomes first, then what did not run.
    """

    SUCCEEDED = "succeeded"
    NO_WORK = "no_work"
    FAILED = "failed"
    TIMED_OUT = "timed_out"
    SKIPPED_UPSTREAM = "skipped_upstream"
    SKIPPED_EXISTING = "skipped_existing"
    NOT_RUN = "not_run"
    #: in a worker now (only while the run goes on: a stopped run reports it ``not_run``)
    RUNNING = "running"


class JobState(StrEnum):
    """State of one batch job as ``bps report`` counts it, on every workflow system.

    The order is the report's display order.
    """

    SUCCEEDED = "succeeded"
    FAILED = "failed"
    RUNNING = "running"
    #: queued in the workflow system, waiting for a slot
    IDLE = "idle"
    HELD = "held"
    #: not yet released to the workflow system (its parents have not all succeeded)
    PENDING = "pending"
    #: will not run: an ancestor failed
    SKIPPED = "skipped"


class RunState(StrEnum):
    """State of a whole submitted run (the run record's ``state`` and the report's)."""

    #: submit directory written, nothing submitted yet (or a restart prepared)
    PREPARED = "prepared"
    #: the workflow process is starting (Parsl)
    STARTING = "starting"
    #: handed to the workflow system, no job has started yet
    SUBMITTED = "submitted"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    #: the workflow system could not tell
    UNKNOWN = "unknown"


_S = TypeVar("_S", QuantumState, JobState, RunState)


def parse_state(kind: type[_S], text: object, where: str = "") -> _S:
    """The member of ``kind`` whose text is ``text`` (as read from a file).

    Raises
    ------
    ValueError
        One line naming the value, where it was read and the valid values.
    """
    if isinstance(text, str):
        try:
            return kind(text)
        except ValueError:
            pass
    valid = ", ".join(member.value for member in kind)
    at = f" in {where}" if where else ""
    raise ValueError(f"unknown {kind.__name__} {text!r}{at}; expected one of: {valid}")
