"""``bps report`` for HTCondor runs: per-label counts and each failure, from the submit directory alone.

Three sources, each the authority on something: the node status file (which nodes
are done, failed, futile), the job event log (running / idle / held, hold reasons,
exit codes, attempts, memory) and ``<dag>.dagman.out`` (whether DAGMan has exited).
The schedd is never asked, so a report works after its history rolled over; the
result is also merged into the run record (``run_record.json``).
"""

from __future__ import annotations

import re
from collections import deque
from pathlib import Path

from ... import exit_codes
from ...workflow import GenericWorkflow, Job
from ..base import JobFailure, RunReport, read_run_record, write_run_record
from . import nodestatus as ns
from .eventlog import NodeHistory, read_event_log
from .layout import DagLayout, find_dag
from .translator import FINAL_NODE, NO_RETRY_SENTINEL, node_names

_EXITING = re.compile(r"EXITING WITH STATUS (-?\d+)")
#: How a DAGMan start-up shows in .dagman.out (real DAGMan, and the test runner).
_STARTING = ("(CONDOR_DAGMAN) STARTING UP", "DAGMan starting")
TAIL_LINES = 20


def last_submission(record: dict) -> float | None:
    """When the run was last submitted (from the run record), or None."""
    submissions = record.get("submissions") or []
    return float(submissions[-1]["time"]) if submissions else None


def _fresh(path: Path, since: float | None) -> bool:
    """``path`` was written by the current submission (files of an earlier one are stale after a restart)."""
    return path.exists() and (since is None or path.stat().st_mtime >= since)


def dagman_exit_status(dagman_out: Path, since: float | None = None) -> int | None:
    """DAGMan's exit status from the end of ``.dagman.out``, or None while it runs (or never ran).

    Only an exit after the last start-up counts, and only if the file was written since
    the last submission ``since``: after a restart the previous DAGMan's exit is not this one's.
    """
    if not _fresh(dagman_out, since):
        return None
    with dagman_out.open("rb") as f:
        f.seek(max(0, f.seek(0, 2) - 65536))
        tail = f.read().decode(errors="replace")
    start = max(tail.rfind(marker) for marker in _STARTING)
    found = _EXITING.findall(tail[max(start, 0) :])
    return int(found[-1]) if found else None


def log_tail(path: Path, lines: int = TAIL_LINES) -> str:
    if not path.exists():
        return ""
    with path.open("rb") as f:
        f.seek(max(0, f.seek(0, 2) - 16384))
        text = f.read().decode(errors="replace")
    return "\n".join(text.splitlines()[-lines:])


def build_report(submit_dir: str | Path) -> RunReport:
    layout = find_dag(submit_dir)
    if not layout.workflow_json.exists():
        raise FileNotFoundError(f"{layout.workflow_json} is missing: the submit directory is incomplete")
    workflow = GenericWorkflow.load(layout.workflow_json)
    record = read_run_record(layout.submit_dir)
    since = last_submission(record)
    status = (
        ns.read_node_status(layout.node_status) if _fresh(layout.node_status, since) else ns.DagStatus({})
    )
    history = read_event_log(layout.nodes_log)
    report = RunReport(submit_dir=str(layout.submit_dir), wms="htcondor", run_id=_run_id(record))

    names = node_names(workflow.jobs)
    nodes = [(names[name], job.label, job) for name, job in workflow.jobs.items()]
    if workflow.final is not None:
        nodes.append((FINAL_NODE, workflow.final.label, workflow.final))
    states: dict[str, str] = {}
    for node, label, job in nodes:
        hist = history.get(node)
        if hist is not None and since is not None and hist.last_event_time + 1 <= since:
            hist = _before_restart(hist)
        state = _node_state(status.nodes.get(node), hist)
        states[node] = state
        report.add(label, state)
        if state in ("failed", "held"):
            report.failures.append(_failure(layout, node, job, hist))
    if not status.nodes:
        _mark_skipped_from_history(workflow, names, states, report)

    exit_status = dagman_exit_status(layout.dagman_out, since)
    # Prepared (or re-prepared by a restart) and DAGMan has not run since: not submitted yet.
    waiting = record.get("state") == "prepared" and not _fresh(layout.dagman_out, record.get("prepared_at"))
    report.state = "prepared" if waiting else _run_state(record, exit_status, report)
    rescues = layout.rescue_files()
    if rescues and report.state in ("failed", "cancelled"):
        todo = report.totals()
        report.messages.append(
            f"{rescues[-1].name} records what succeeded: `bps restart {layout.submit_dir}` reruns the "
            f"{todo['failed'] + todo['skipped'] + todo['held']} jobs that failed or did not run."
        )
    report.messages.extend(f"warning: {w}" for w in record.get("warnings", []))
    if report.state == "prepared":
        report.messages.append(f"not submitted yet: `bps submit {layout.submit_dir}`")
    write_run_record(layout.submit_dir, state=report.state, counts=report.totals())
    return report


def _before_restart(hist: NodeHistory) -> NodeHistory | None:
    """A node whose events all predate the current submission: done if it succeeded, else
    waiting to run again (the rescue DAG reruns it)."""
    return hist if hist.state == "exited" and hist.exit_code == 0 else None


def _run_id(record: dict) -> str | None:
    cluster = record.get("cluster_id")
    return str(cluster) if cluster is not None else None


def _node_state(status: ns.NodeStatus | None, hist: NodeHistory | None) -> str:
    if status is not None:
        if status.status == ns.DONE:
            return "succeeded"
        if status.status == ns.ERROR:
            return "failed"
        if status.status == ns.FUTILE:
            return "skipped"
        if status.status in (ns.NOT_READY, ns.READY):
            return "pending"
        if status.status == ns.PRERUN:
            return "pending"
        if status.held or (hist is not None and hist.state == "held"):
            return "held"
        if status.status == ns.POSTRUN:
            return "running"
    if hist is None:
        return "pending"
    if hist.state == "held":
        return "held"
    if hist.state == "running":
        return "running"
    if hist.state == "idle":
        return "idle"
    if hist.state == "removed":
        return "failed"
    return "succeeded" if hist.exit_code == 0 else "failed"


def _mark_skipped_from_history(
    workflow: GenericWorkflow, names: dict[str, str], states: dict[str, str], report: RunReport
) -> None:
    """Without a node status file (DAGMan killed early), descendants of failures are 'skipped', not 'pending'."""
    children = workflow.children()
    queue = deque(n for n, job in workflow.jobs.items() if states.get(names[n]) == "failed")
    seen: set[str] = set()
    while queue:
        for child in children[queue.popleft()]:
            node = names[child]
            if child in seen or states.get(node) != "pending":
                continue
            seen.add(child)
            label = workflow.jobs[child].label
            report.counts[label]["pending"] -= 1
            report.add(label, "skipped")
            queue.append(child)


def _failure(layout: DagLayout, node: str, job: Job, hist: NodeHistory | None) -> JobFailure:
    label = job.label
    if hist is None:
        return JobFailure(
            name=node, label=label, reason="failed before its job ran (PRE script or submission)"
        )
    if node == FINAL_NODE:
        log = layout.final_log_dir(job) / f"final.{hist.clusters[-1]}.out"
    else:
        log = layout.submit_dir / f"{layout.log_stem(job, node)}.{hist.clusters[-1]}.out"
    if hist.state == "held":
        reason = f"held: {hist.hold_reason}"
    elif hist.state == "removed":
        reason = f"removed by periodic_remove after a hold: {hist.last_hold_reason or 'see the job log'}"
    elif hist.exit_code is not None:
        reason = exit_codes.describe(hist.exit_code)
        if hist.exit_code == NO_RETRY_SENTINEL:
            reason = "not retried: its exit code means a retry cannot help"
    else:
        reason = "unknown (no termination event)"
    return JobFailure(
        name=node,
        label=label,
        exit_code=hist.exit_code,
        attempt=hist.attempts,
        reason=reason,
        hold_reason=hist.hold_reason if hist.state == "held" else hist.last_hold_reason,
        log_file=str(log),
        log_tail=log_tail(log),
    )


def _run_state(record: dict, exit_status: int | None, report: RunReport) -> str:
    totals = report.totals()
    if record.get("state") == "cancelled" and exit_status is None:
        return "cancelled"
    if exit_status is not None:
        return (
            "succeeded" if exit_status == 0 and totals["failed"] == 0 and totals["skipped"] == 0 else "failed"
        )
    if record.get("cluster_id") is None and not any(
        totals[s] for s in ("succeeded", "failed", "running", "idle", "held")
    ):
        return "prepared"
    return "running"
