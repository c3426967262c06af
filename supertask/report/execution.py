"""A `RunSummary` of a ``supertask run``: one record per quantum, from the executor's result."""

from __future__ import annotations

import sys
from typing import Any

from ..states import RunState
from .model import FailureRecord, JobRecord, RunSummary


def quantum_name(label: str, data_id: Any) -> str:
    """``calibrate DemoCam/3/12``: a quantum's label and data ID values, short enough for a tooltip."""
    values = "/".join(str(v) for v in dict(data_id).values()) if data_id is not None else ""
    return f"{label} {values}".strip()


def label_edges(graph: Any) -> list[tuple[str, str]]:
    """(producer label, consumer label) of every dependency between quanta of ``graph``."""
    edges: set[tuple[str, str]] = set()
    for q in graph:
        for p in graph.parents(q):
            if p.taskLabel != q.taskLabel:
                edges.add((p.taskLabel, q.taskLabel))
    return sorted(edges)


def summary_from_execution(
    result: Any, graph: Any, *, repo: str = "", processes: int | None = None, command_line: str = ""
) -> RunSummary:
    """What a report shows of `ExecutionResult` ``result`` of running ``graph``.

    The pipeline picture comes from the graph's dependencies, the provenance from
    the graph's metadata (software versions, the command that planned it) and how
    it was run here.
    """
    from ..execution.executor import STATES

    meta = getattr(graph, "metadata", {}) or {}
    jobs = [
        JobRecord(
            name=quantum_name(r.label, r.dataId) + f" (quantum {r.quantum_id})",
            label=r.label,
            state=r.state,
            start=r.start,
            end=r.end,
            peak_memory_mb=r.peak_memory_mb,
        )
        for r in result.quanta
    ]
    failures = [
        FailureRecord(
            name=quantum_name(f.label, f.dataId) + f" (quantum {f.quantum_id})",
            label=f.label,
            reason=f.reason,
            log_file=f.log_file,
            log_tail=f.log_tail,
        )
        for f in result.failures
        if not f.reason.startswith("not run: upstream")
    ]
    if result.interrupted:
        state = RunState.CANCELLED
    else:
        state = RunState.SUCCEEDED if result.ok else RunState.FAILED
    provenance: dict[str, str] = {
        "output run": result.output_run,
        "repository": repo,
        "processes": "" if processes is None else str(processes),
        "run command": command_line,
        "planned with": " ".join(meta["command_line"])
        if isinstance(meta.get("command_line"), list)
        else str(meta.get("command_line", "")),
        "data-ID expression": str(meta.get("where", "")),
        "input collections": ", ".join(meta.get("input_collections", []) or []),
        "quanta": str(len(graph)),
        "elapsed": f"{result.seconds:.1f} s",
        "python": sys.version.split()[0],
    }
    for name, version in sorted((meta.get("versions") or {}).items()):
        provenance[f"version of {name}"] = str(version)
    pipeline_yaml = getattr(graph, "pipelineYaml", "")
    if pipeline_yaml:
        provenance["pipeline"] = pipeline_yaml
    return RunSummary(
        title=f"supertask run {result.output_run}",
        runner="supertask run",
        state=state,
        states=STATES,
        counts={label: dict(c) for label, c in result.counts.items()},
        jobs=jobs,
        failures=failures,
        label_edges=label_edges(graph),
        provenance={k: v for k, v in provenance.items() if v},
        unit="quantum",
    )
