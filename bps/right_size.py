"""Memory requests right-sized from what earlier runs measured (``bps prepare --resources-from DIR``).

A fixed request (2 GB for every job) wastes most of a slot on small quanta and is
too small for large ones. The submit directories of earlier runs already hold what
each quantum used: every job records each quantum's own peak memory in its manifest
and the run's usage log (`bps.usage`), whatever workflow system ran it (local,
HTCondor, Pegasus, Parsl). This module turns them into one request per task label:

    request = round_up(quantile(peaks of that label, q) * margin, 64 MB), at most the site's max_memory_mb

Each successful quantum is one sample of its task label, also inside a clustered job.
A job of an earlier run with no quantum measured (a run made before quanta were
measured) gives instead its whole peak as the workflow system recorded it (the local
system's run record, HTCondor's node event log: `bps.wms.base.RunReport.jobs`) to
each task label it ran: an upper bound for each. Labels with fewer than
``min_samples`` measurements keep their configured request, and so does a label whose
``memory_mb`` the user set explicitly (in the submit YAML or on the command line): the
user's word wins over history.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from supertask.report.memory import quantile

from .config import DEFAULTS_SOURCE, ResolvedConfig, ResourceSpec

#: Requests are whole multiples of this (MB): slots are matched in coarse steps anyway.
STEP_MB = 64
#: The source recorded for a right-sized value (``bps prepare --show-config``, submit_config.yaml).
SOURCE = "right-sized from earlier runs"


class RightSizingError(ValueError):
    """An earlier run named for right-sizing cannot be read; the message names it and the fix."""


@dataclass(frozen=True)
class Choice:
    """What right-sizing decided for one task label, and why."""

    label: str
    samples: int
    quantile_mb: float
    memory_mb: int | None
    note: str = ""

    def text(self, quantile: float, margin: float) -> str:
        if self.memory_mb is None:
            return f"{self.label}: unchanged ({self.note})"
        line = (
            f"{self.label}: memory_mb = {self.memory_mb} "
            f"(p{quantile * 100:g} of {self.samples} peaks = {self.quantile_mb:.0f} MB, x {margin:g})"
        )
        return line + (f"; {self.note}" if self.note else "")


def peaks_by_label(submit_dirs: list[str]) -> dict[str, list[float]]:
    """Task label -> the measured peak memory (MB) of every quantum (or job) that ran it, over ``submit_dirs``."""
    return read_peaks(submit_dirs).peaks


class Peaks(NamedTuple):
    """What `read_peaks` found: samples per task label, and where they came from."""

    peaks: dict[str, list[float]]
    #: quanta measured one by one
    quanta: int
    #: jobs with no quantum measured, whose whole peak stood in
    jobs: int


def read_peaks(submit_dirs: list[str]) -> Peaks:
    """Each task label's peaks in ``submit_dirs``: its quanta's own, else its jobs' (see the module docstring)."""
    from .cli import _wms_of
    from .usage import read_usage
    from .wms.base import get_service
    from .workflow_io import load_workflow

    peaks: dict[str, list[float]] = {}
    quanta = jobs = 0
    for text in submit_dirs:
        submit_dir = Path(text)
        if not (submit_dir / "workflow.json").is_file():
            raise RightSizingError(
                f"right_sizing.runs: {submit_dir} is not a submit directory (no workflow.json): "
                "name the submit directory of an earlier run"
            )
        workflow = load_workflow(submit_dir / "workflow.json")
        measured = set()
        for record in read_usage(submit_dir):
            measured.add(record.job)
            if record.exit_code == 0 and record.peak_memory_mb > 0:
                quanta += 1
                peaks.setdefault(record.label, []).append(record.peak_memory_mb)
        if not set(workflow.jobs) - measured:
            continue
        report = get_service(_wms_of(submit_dir)).report(submit_dir)
        for job in report.jobs:
            spec = workflow.jobs.get(job.name)
            if spec is None or job.name in measured or job.peak_memory_mb is None or job.peak_memory_mb <= 0:
                continue  # the final job (sized by `final`), measured quantum by quantum, or nothing measured
            labels = [x for x in spec.tags.get("task_labels", "").split(",") if x] or [spec.label]
            jobs += 1
            for label in labels:
                peaks.setdefault(label, []).append(float(job.peak_memory_mb))
    return Peaks(peaks, quanta, jobs)


def choose(samples: list[float], q: float, margin: float, max_mb: int) -> tuple[int, float, bool]:
    """(request in MB, the quantile it came from, whether the site's limit capped it)."""
    high = quantile(samples, q)
    wanted = max(STEP_MB, math.ceil(high * margin / STEP_MB) * STEP_MB)
    return min(wanted, max_mb), high, wanted > max_mb


def right_size(resolved: ResolvedConfig) -> list[str]:
    """Set ``resources.labels.<label>.memory_mb`` from ``right_sizing.runs``; the lines saying what was chosen.

    Changes ``resolved`` in place (its sources say ``right-sized from earlier runs``),
    before the submit directory's configuration is written, so what was chosen is
    recorded with the run.
    """
    settings = resolved.config.right_sizing
    if not settings.runs:
        return []
    peaks, quanta, jobs = read_peaks(settings.runs)
    site = resolved.config.site
    # a value from the defaults or the site file is a default; one from the user's file or the command line is theirs
    defaults = (DEFAULTS_SOURCE, resolved.source_of("site.name"))
    choices: list[Choice] = []
    for label in sorted(peaks):
        samples = peaks[label]
        key = f"resources.labels.{label}.memory_mb"
        source = resolved.sources.get(key)
        if source is not None and source not in defaults:
            choices.append(
                Choice(label, len(samples), quantile(samples, settings.quantile), None, f"set in {source}")
            )
            continue
        if len(samples) < settings.min_samples:
            note = f"{len(samples)} peaks, fewer than right_sizing.min_samples = {settings.min_samples}"
            choices.append(Choice(label, len(samples), 0.0, None, note))
            continue
        memory, high, capped = choose(samples, settings.quantile, settings.margin, site.max_memory_mb)
        note = f"capped at site.max_memory_mb = {site.max_memory_mb}" if capped else ""
        spec = resolved.config.resources.labels.get(label, ResourceSpec())
        resolved.config.resources.labels[label] = spec.model_copy(update={"memory_mb": memory})
        resolved.sources[key] = SOURCE
        choices.append(Choice(label, len(samples), high, memory, note))
    runs = len(settings.runs)
    measured = [f"{quanta} quanta"] if quanta or not jobs else []
    measured += [f"{jobs} whole jobs"] if jobs else []
    head = f"memory requests right-sized from the measured peaks of {' and '.join(measured)} of {runs} earlier run(s):"
    return [head, *("  " + c.text(settings.quantile, settings.margin) for c in choices)]
