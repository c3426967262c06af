"""``bps report SUBMIT_DIR --html FILE``: a submit directory's run as a `supertask.report.RunSummary`.

The workflow service's `RunReport` gives the states, failures and what it recorded of
each job (start and end, peak and requested memory); the submit directory gives the
rest: the job dependencies (``workflow.json``: the pipeline picture, by job label),
the resolved submit configuration, the graph's provenance (software versions, the
command that planned it, the pipeline) and what the final job registered.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from supertask.report.model import FailureRecord, RunSummary

from .usage import label_memory
from .wms.base import STATES, RunReport
from .workflow import GenericWorkflow
from .workflow_io import load_workflow

#: Submit-configuration keys shown as provenance, in this order.
CONFIG_KEYS: tuple[str, ...] = (
    "output_run",
    "repo",
    "input_collections",
    "where",
    "pipeline",
    "qgraph",
    "wms",
    "compute_site",
    "site.staging",
    "clustering.clusters",
    "retry.retries",
)


def label_edges(workflow: GenericWorkflow) -> list[tuple[str, str]]:
    """(producer label, consumer label) of every job dependency of the workflow.

    The final job runs after every job; it is drawn below the labels whose jobs end
    the workflow (those without children).
    """
    edges = {
        (workflow.jobs[parent].label, job.label)
        for name, job in workflow.jobs.items()
        for parent in workflow.parents.get(name, ())
        if workflow.jobs[parent].label != job.label
    }
    if workflow.final is not None:
        children = workflow.children()
        edges.update(
            (job.label, workflow.final.label) for name, job in workflow.jobs.items() if not children[name]
        )
    return sorted(edges)


def _flat_config(submit_dir: Path) -> dict[str, Any]:
    """The resolved submit configuration (``submit_config.yaml``: one ``key: value  # source`` a line)."""
    path = submit_dir / "submit_config.yaml"
    if not path.exists():
        return {}
    import yaml

    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError:
        return {}
    return data if isinstance(data, dict) else {}


def _graph_header(workflow: GenericWorkflow) -> dict[str, Any]:
    """The graph file's header (metadata and pipeline), or {} when the file is gone or unreadable."""
    if not workflow.graph_file or not Path(workflow.graph_file).exists():
        return {}
    try:
        from supertask.graph.quantum_graph import QuantumGraph

        return QuantumGraph.readHeader(workflow.graph_file)
    except Exception:  # a report must not fail over provenance
        return {}


def _text(value: Any) -> str:
    if isinstance(value, list):
        return (
            ", ".join(str(v) for v in value)
            if all(not isinstance(v, dict) for v in value)
            else json.dumps(value)
        )
    if isinstance(value, dict):
        return json.dumps(value, sort_keys=True)
    return "" if value is None else str(value)


def provenance(submit_dir: Path, workflow: GenericWorkflow, report: RunReport) -> dict[str, str]:
    """What was run, how and with which software: configuration, graph header, final summary."""
    out: dict[str, str] = {"submit directory": str(submit_dir), "workflow system": report.wms}
    if report.run_id:
        out["run id"] = str(report.run_id)
    config = _flat_config(submit_dir)
    for key in CONFIG_KEYS:
        if key in config and _text(config[key]):
            out[key] = _text(config[key])
    out["jobs"] = f"{len(workflow.jobs)} + final job" if workflow.final else str(len(workflow.jobs))
    header = _graph_header(workflow)
    meta = header.get("metadata", {}) if isinstance(header.get("metadata"), dict) else {}
    command = meta.get("command_line")
    if command:
        out["planned with"] = " ".join(command) if isinstance(command, list) else str(command)
    for name, version in sorted((meta.get("versions") or {}).items()):
        out[f"version of {name}"] = str(version)
    final = submit_dir / "finalize_summary.json"
    if final.exists():
        try:
            out["final job summary"] = json.dumps(json.loads(final.read_text()), indent=1, sort_keys=True)
        except (OSError, json.JSONDecodeError):
            out["final job summary"] = "unreadable"
    pipeline = header.get("pipeline") or header.get("pipelineYaml")
    if isinstance(pipeline, str) and pipeline:
        out["pipeline"] = pipeline
    return out


def summary_from_report(submit_dir: str | Path, report: RunReport) -> RunSummary:
    """The `RunSummary` of a submitted run, from its service's report and its submit directory."""
    submit_dir = Path(submit_dir)
    workflow = load_workflow(submit_dir / "workflow.json")
    return RunSummary(
        title=f"bps run {workflow.name}",
        runner=f"bps {report.wms}",
        state=report.state,
        states=STATES,
        counts={label: dict(c) for label, c in report.counts.items()},
        jobs=list(report.jobs),
        failures=[
            FailureRecord(
                name=f.name,
                label=f.label,
                reason=f.reason + (f" (attempt {f.attempt})" if f.attempt > 1 else ""),
                log_file=f.log_file,
                log_tail=f.log_tail,
            )
            for f in report.failures
        ],
        label_edges=label_edges(workflow),
        provenance=provenance(submit_dir, workflow, report),
        messages=list(report.messages),
        label_memory=label_memory(submit_dir),
    )
