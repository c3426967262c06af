"""Each quantum's own peak memory and wall time, kept with the run and read back per label.

A batch job measures every quantum it runs (`supertask.peak_memory`: the quantum's own
peak even when one process runs many quanta, where ``ru_maxrss`` would charge each with
the largest so far) and keeps the figures twice:

- in its manifest (``Manifest.usage``, quantum id -> `QuantumUsage`), beside the outputs
  the quantum staged: with transfer staging the manifest is what comes back;
- in the run's usage log, ``<manifest dir>/usage.jsonl``: one JSON line per attempt of
  every quantum that ran, failures included, appended with ``O_APPEND`` in one
  ``write`` each. Jobs running at once never lose each other's lines (the kernel
  appends each write whole at the end of the file); no line is rewritten, so a job
  killed mid-write costs at most its own last line, which the reader skips (the next
  line, appended after the cut, is still read).

`read_usage` merges both (one record per attempt); `label_memory` sets each task
label's requested memory beside what its quanta used (``bps report``, text and HTML);
``bps prepare --resources-from`` sizes requests from them (`bps.right_size`).

Imported by every job (`bps.job.runner`): standard library only.
"""

# Annotations here are evaluated at import (no ``from __future__ import annotations``): with
# string annotations, ``typing.NamedTuple`` makes a ``ForwardRef`` of each field, whose
# ``compile`` call costs a batch job Python's one-time compiler set-up (about 2.5 ms CPU).

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

if TYPE_CHECKING:
    from supertask.report.memory import LabelMemory

    from .workflow import GenericWorkflow

#: the run's usage log, in the manifest directory (``SUBMIT_DIR/manifests``)
USAGE_LOG = "usage.jsonl"


class QuantumUsage(NamedTuple):
    """What one attempt of one quantum used (a named tuple: jobs import no ``dataclasses``)."""

    job: str
    quantum: int
    label: str
    #: the quantum's own peak resident memory (MB)
    peak_memory_mb: float
    wall_s: float
    #: when it started (epoch seconds); with ``job`` and ``quantum``, names the attempt
    started: float
    #: the quantum's exit code (0 success, `bps.exit_codes`)
    exit_code: int = 0
    #: False where the process's high-water mark had to stand in (an upper bound)
    own_peak: bool = True

    def to_json(self) -> dict[str, Any]:
        return self._asdict()

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "QuantumUsage":
        return cls(
            job=str(data["job"]),
            quantum=int(data["quantum"]),
            label=str(data["label"]),
            peak_memory_mb=float(data["peak_memory_mb"]),
            wall_s=float(data["wall_s"]),
            started=float(data["started"]),
            exit_code=int(data.get("exit_code", 0)),
            own_peak=bool(data.get("own_peak", True)),
        )


def usage_log_path(manifest_dir: str | Path) -> Path:
    """The usage log of the run whose jobs keep their manifests in ``manifest_dir``."""
    return Path(manifest_dir) / USAGE_LOG


def append_usage(path: str | Path, record: QuantumUsage) -> None:
    """Append ``record`` to the usage log at ``path`` as one line, in one ``write``.

    Raises
    ------
    OSError
        If the file cannot be opened or the line was not written whole.
    """
    line = (json.dumps(record.to_json(), separators=(",", ":")) + "\n").encode()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        written = os.write(fd, line)
    finally:
        os.close(fd)
    if written != len(line):
        raise OSError(f"{path}: wrote {written} of {len(line)} bytes of a usage record")


def read_usage_log(path: str | Path) -> list[QuantumUsage]:
    """The records of the usage log at ``path`` ([] if there is none); unreadable lines are skipped."""
    try:
        raw = Path(path).read_bytes()
    except FileNotFoundError:
        return []
    records = []
    for line in raw.splitlines():
        try:
            records.append(QuantumUsage.from_json(json.loads(line)))
        except (ValueError, KeyError, TypeError):
            # a line cut short by a killed job runs into the next job's line: keep that one
            start = line.rfind(b'{"job":')
            try:
                records.append(QuantumUsage.from_json(json.loads(line[start:])))
            except (ValueError, KeyError, TypeError):
                continue
    return records


def read_usage(submit_dir: str | Path, manifest_dir: str = "manifests") -> list[QuantumUsage]:
    """Every attempt of every quantum measured in a run: its usage log, and the manifests of jobs it lacks.

    The manifests add what the log lacks: jobs with transfer staging write the log in
    their own scratch directory, and only their manifest comes back. Only the manifests
    of jobs with no line in the log are read, so that ``bps report`` of a large run with
    shared staging reads one file, not one per job.
    """
    from .staging import read_manifest

    directory = Path(submit_dir) / manifest_dir
    records = read_usage_log(usage_log_path(directory))
    seen = {(r.job, r.quantum, r.started) for r in records}
    logged = {r.job for r in records}
    suffix = ".manifest.json"
    if directory.is_dir():
        for path in sorted(directory.glob("*" + suffix)):
            if path.name[: -len(suffix)] in logged:
                continue
            try:
                manifest = read_manifest(path)
            except ValueError:
                continue  # finalize reports an unreadable manifest
            for record in manifest.usage.values() if manifest is not None else ():
                if (record.job, record.quantum, record.started) not in seen:
                    seen.add((record.job, record.quantum, record.started))
                    records.append(record)
    return records


def requested_by_label(workflow: "GenericWorkflow") -> dict[str, float]:
    """Task label -> the largest memory request (MB) of the jobs that run it."""
    out: dict[str, float] = {}
    for job in workflow.jobs.values():
        for label in [x for x in job.tags.get("task_labels", "").split(",") if x] or [job.label]:
            out[label] = max(out.get(label, 0.0), float(job.resources.memory_mb))
    return out


def label_memory(submit_dir: str | Path) -> "list[LabelMemory]":
    """Per task label of the run in ``submit_dir``: requested beside used ([] if no quantum was measured)."""
    from supertask.report.memory import memory_by_label

    from .workflow_io import load_workflow

    usage = read_usage(submit_dir)
    if not usage:
        return []
    requested = requested_by_label(load_workflow(Path(submit_dir) / "workflow.json"))
    return memory_by_label(((r.label, r.peak_memory_mb) for r in usage), requested)
