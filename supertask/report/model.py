"""What a run report shows, independent of who ran the jobs.

`supertask run` (one node, quanta in long-lived workers) and ``bps`` (batch jobs on
a workflow system) fill the same `RunSummary`, and `supertask.report.html` draws it.
The core never imports ``bps``: ``bps`` builds a `RunSummary` from its submit
directory and hands it to the renderer here.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .memory import LabelMemory

#: Colour of each job or quantum state, for every state either runner reports.
STATE_COLOURS: dict[str, str] = {
    "succeeded": "#2e9e4f",
    "no_work": "#5bb5b0",
    "skipped_existing": "#9fd3a8",
    "failed": "#d7301f",
    "timed_out": "#8c1a10",
    "held": "#f08c00",
    "running": "#2f6fd6",
    "idle": "#9db7e0",
    "pending": "#bdbdbd",
    "not_run": "#bdbdbd",
    "skipped": "#e6a9a1",
    "skipped_upstream": "#e6a9a1",
}

#: States that mean something went wrong (the run is not a success while any is counted).
BAD_STATES: frozenset[str] = frozenset({"failed", "timed_out", "held", "skipped", "skipped_upstream"})


@dataclass(slots=True)
class JobRecord:
    """One job (batch) or quantum (``supertask run``) as the timeline and distributions show it.

    Times are epoch seconds; ``None`` where the runner recorded nothing (a job that
    never started, or a workflow system that keeps no times).
    """

    name: str
    label: str
    state: str
    start: float | None = None
    end: float | None = None
    peak_memory_mb: float | None = None
    request_memory_mb: float | None = None
    attempts: int = 1

    @property
    def wall_seconds(self) -> float | None:
        """Elapsed time from start to end, or None when either is unknown."""
        if self.start is None or self.end is None:
            return None
        return max(0.0, self.end - self.start)


@dataclass(slots=True)
class FailureRecord:
    """One failure with what an operator needs to act on it."""

    name: str
    label: str
    reason: str
    log_file: str | None = None
    log_tail: str = ""


@dataclass
class RunSummary:
    """Everything one HTML run report shows.

    Parameters
    ----------
    title : `str`
        What was run (the output run, or the submit directory).
    runner : `str`
        Who ran it: ``supertask run``, ``bps local``, ``bps htcondor`` ...
    state : `str`
        The run's overall state (``succeeded``, ``failed``, ``running`` ...).
    states : `tuple` [`str`]
        The per-label count columns, in display order.
    counts : `dict` [`str`, `dict` [`str`, `int`]]
        Label -> state -> number of jobs (or quanta).
    jobs : `list` [`JobRecord`]
        What the timeline and the distributions are drawn from.
    failures : `list` [`FailureRecord`]
        Failures shown with their log tails.
    label_edges : `list` [`tuple` [`str`, `str`]]
        (producer label, consumer label): the pipeline picture.
    provenance : `dict` [`str`, `str`]
        What was run, by whom, with which software: shown as a table (long values folded).
    messages : `list` [`str`]
        Anything else the runner wants an operator to read.
    label_memory : `list` [`supertask.report.memory.LabelMemory`]
        Per task label, the memory requested beside what its quanta used (batch runs).
    """

    title: str
    runner: str
    state: str
    states: tuple[str, ...]
    counts: dict[str, dict[str, int]] = field(default_factory=dict)
    jobs: list[JobRecord] = field(default_factory=list)
    failures: list[FailureRecord] = field(default_factory=list)
    label_edges: list[tuple[str, str]] = field(default_factory=list)
    provenance: dict[str, str] = field(default_factory=dict)
    messages: list[str] = field(default_factory=list)
    unit: str = "job"
    label_memory: list[LabelMemory] = field(default_factory=list)

    @property
    def units(self) -> str:
        """The plural of ``unit``: ``jobs``, ``quanta``."""
        return "quanta" if self.unit == "quantum" else f"{self.unit}s"

    def labels(self) -> list[str]:
        """Every label, in the order of the counts, then of the pipeline edges and jobs."""
        seen: dict[str, None] = dict.fromkeys(self.counts)
        for a, b in self.label_edges:
            seen.setdefault(a)
            seen.setdefault(b)
        for job in self.jobs:
            seen.setdefault(job.label)
        return list(seen)

    def totals(self) -> dict[str, int]:
        """Counts summed over labels, per state."""
        total = dict.fromkeys(self.states, 0)
        for per_label in self.counts.values():
            for state, n in per_label.items():
                total[state] = total.get(state, 0) + n
        return total
