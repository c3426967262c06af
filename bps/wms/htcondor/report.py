"""``bps report`` for HTCondor runs: per-label counts and each failure, from the submit directory alone.

Sources, each the authority on something:

- the node job event log (``<dag>.nodes.log``): live state of every node that has a
  job (idle / running / held / exited / removed), exit codes, hold reasons and codes,
  attempts, memory. It is written as things happen, so a report during a run is current;
- the node status file: which nodes are done, failed or futile, but DAGMan rewrites it
  only every 60 s (and at the end), so it is used for what the event log cannot tell
  (futile nodes, nodes without a job yet) and is ignored when older than the submission;
- what DAGMan says about its own run (`bps.wms.htcondor.dagman`): whether it has
  ended, refused the DAG, died, and the DAG status. A DAG's exit is its FINAL node's,
  so DAGMan exiting 0 is not success: ``DagStatus`` 2 (a node failed) or 4 (removed),
  a node not done, or a cancel make the run ``failed`` / ``cancelled``;
- the rescue DAG: what a restart will rerun.

The schedd is never asked, so a report works after its history rolled over; the
result is merged into the run record (``run_record.json``), never turning a
``cancelled`` run into another state.
"""

from __future__ import annotations

import json
import re
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

from supertask.report.model import JobRecord
from supertask.states import JobState, RunState

from ... import exit_codes
from ...finalize import SUMMARY_FILE
from ...workflow import GenericWorkflow, Job
from ...workflow_io import load_workflow
from ..base import JobFailure, RunReport, read_run_record, write_run_record
from . import dagman as dm
from . import nodestatus as ns
from .eventlog import NodeHistory, read_event_log
from .layout import DagLayout, find_dag
from .translator import FINAL_NODE, NO_RETRY_SENTINEL, node_names

TAIL_LINES = 20
_POLICY = re.compile(r"The job attribute (\w+) expression '.*' evaluated to TRUE", re.DOTALL)
#: The reason HTCondor gives the node jobs it removes because their DAGMan job was removed.
DAG_REMOVED = "DAG Removed"
#: The reason `bps cancel` gives the node jobs it removes (the DAGMan job stays, halted).
BPS_CANCEL = "bps cancel"


def last_submission(record: dict[str, Any]) -> float | None:
    """When the run was last submitted (from the run record), or None."""
    submissions = record.get("submissions") or []
    return float(submissions[-1]["time"]) if submissions else None


def current_run(layout: DagLayout, record: dict[str, Any]) -> dm.DagmanRun:
    """What became of the DAGMan job of the run record's last submission."""
    cluster = record.get("cluster_id")
    return dm.dagman_run(layout, int(cluster) if cluster is not None else None, last_submission(record))


def cancelled(record: dict[str, Any]) -> bool:
    """``bps cancel`` was the last thing done to the run (after its last submission)."""
    if record.get("state") == RunState.CANCELLED:
        return True
    at, since = record.get("cancelled_at"), last_submission(record)
    return at is not None and (since is None or float(at) >= since)


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
    workflow = load_workflow(layout.workflow_json)
    record = read_run_record(layout.submit_dir)
    since = last_submission(record)
    run = current_run(layout, record)
    status = ns.read_node_status(layout.node_status)
    if since is not None and _written_at(status, layout.node_status) < since:
        status = ns.DagStatus({})  # a previous DAGMan's file
    history = read_event_log(layout.nodes_log)
    report = RunReport(submit_dir=str(layout.submit_dir), wms="htcondor", run_id=_run_id(record))

    names = node_names(workflow.jobs)
    nodes = [(names[name], job.label, job) for name, job in workflow.jobs.items()]
    if workflow.final is not None:
        nodes.append((FINAL_NODE, workflow.final.label, workflow.final))
    # DAGMan truncates the node log when it starts a run: nodes a rescue DAG marks DONE
    # may have no events left. They never run again, so they are done.
    rescues = layout.rescue_files()
    done_before = dm.rescue_done(rescues[-1]) if rescues else set()
    run_cancelled = cancelled(record) or run.dag_status == dm.DAG_STATUS_RM
    states: dict[str, str] = {}
    known: dict[str, int] = {}

    def retries(node: str) -> int:
        if not known:
            known.update(dag_retries(layout.dag) or {"": 0})
        return known.get(node, 0)

    for node, label, job in nodes:
        hist = history.get(node)
        if hist is not None and _before_submission(hist, run, since):
            hist = _before_restart(hist)
        state = _node_state(node, status.nodes.get(node), hist, job, run.ended, retries)
        if state == JobState.PENDING and hist is None and node in done_before:
            state = JobState.SUCCEEDED
        elif run_cancelled and (state == JobState.SKIPPED or (hist is not None and _removed_with_dag(hist))):
            # DAGMan marks the jobs a cancel removed failed and their descendants futile:
            # they did not fail, they were stopped, and a restart runs them.
            state = JobState.PENDING
        if (
            run_cancelled
            and node == FINAL_NODE
            and state == JobState.FAILED
            and hist is not None
            and _final_failed_for_cancel(hist)
        ):
            # Finalize registered what was made and exited non-zero because the cancel left
            # outputs missing: not a failure of the pipeline, and a restart runs it again.
            state = JobState.PENDING
            report.messages.append(_cancelled_final_message(layout, hist))
        states[node] = state
        report.add(label, state)
        report.jobs.append(_job_record(node, label, state, job, hist))
        if state in (JobState.FAILED, JobState.HELD):
            report.failures.append(_failure(layout, node, job, hist, run.ended))
    if not status.nodes and not run_cancelled:
        _mark_skipped_from_history(workflow, names, states, report)

    # Prepared (or re-prepared by a restart) and not submitted since.
    waiting = record.get("state") == RunState.PREPARED and not dm.fresh(
        layout.dagman_out, record.get("prepared_at")
    )
    report.state = RunState.PREPARED if waiting else _run_state(record, run, report)
    report.messages.extend(_dagman_messages(layout, run, report.state))
    _restart_hint(layout, report, states)
    if since is None:
        # Prepare-time warnings (file ownership); `bps submit` refuses while they hold, so
        # after a submission they are resolved.
        report.messages.extend(f"warning: {w}" for w in record.get("warnings", []))
    if report.state == RunState.PREPARED:
        report.messages.append(f"not submitted yet: `bps submit {layout.submit_dir}`")
    fields: dict[str, Any] = {"counts": report.totals()}
    if not (cancelled(record) and record.get("state") == RunState.CANCELLED):
        fields["state"] = report.state
    write_run_record(layout.submit_dir, **fields)
    return report


def _job_record(node: str, label: str, state: str, job: Job, hist: NodeHistory | None) -> JobRecord:
    """What the report's timeline and distributions show of one node: its event log's times and memory.

    ``MemoryUsage`` of the termination event is HTCondor's measure of the job's peak
    (in MB, rounded up by the startd); 0 or absent means not measured.
    """
    if hist is None:
        return JobRecord(node, label, state, request_memory_mb=job.resources.memory_mb, attempts=0)
    return JobRecord(
        name=node,
        label=label,
        state=state,
        start=hist.started,
        end=hist.ended,
        peak_memory_mb=float(hist.memory_usage_mb) if hist.memory_usage_mb else None,
        request_memory_mb=float(hist.request_memory_mb or job.resources.memory_mb),
        attempts=hist.runs,
    )


def _final_failed_for_cancel(hist: NodeHistory | None) -> bool:
    """The FINAL node's job ran and exited 69 (outputs missing) or 70 (the DAG reported failed)."""
    return (
        hist is not None
        and hist.state == "exited"
        and hist.exit_code in (exit_codes.OUTPUTS_MISSING, exit_codes.WORKFLOW_FAILED)
    )


def _cancelled_final_message(layout: DagLayout, hist: NodeHistory) -> str:
    """Why the FINAL node of a cancelled run "failed", in the words of its summary."""
    summary = _finalize_summary(layout)
    made = (
        f"registered the {summary['registered']} new outputs that were made"
        if summary
        else "registered what was made"
    )
    if hist.exit_code == exit_codes.OUTPUTS_MISSING:
        missing = f"{summary['missing']} expected outputs" if summary else "expected outputs"
        why = f"{missing} are missing because the run was cancelled before their jobs ran or finished"
    else:
        why = "DAGMan reported the run cancelled although every output is there"
    return (
        f"the run was cancelled: the final job then {made} and exited {hist.exit_code}, as it must when "
        f"{why}; this is not a failure of the pipeline (`bps restart {layout.submit_dir}` runs the "
        "rest and the final job again)"
    )


def _finalize_summary(layout: DagLayout) -> dict[str, Any] | None:
    """``finalize_summary.json`` of the last finalize run in the submit directory, if readable."""
    try:
        data = json.loads((layout.submit_dir / SUMMARY_FILE).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and {"registered", "missing"} <= data.keys() else None


def _written_at(status: ns.DagStatus, path: Path) -> float:
    """When DAGMan wrote the node status file: its own timestamp, else the file's mtime."""
    if status.timestamp is not None:
        return status.timestamp
    return path.stat().st_mtime if path.exists() else 0.0


def _before_submission(hist: NodeHistory, run: dm.DagmanRun, since: float | None) -> bool:
    """All of the node's attempts belong to an earlier DAGMan than the current one.

    Cluster ids grow in a schedd, so when the DAGMan job's own log knows the current
    DAGMan cluster, node clusters below it are older. Otherwise (a DAG run by the test
    runner) event times are compared with the submission time.
    """
    if run.cluster is not None and run.job.submitted:
        return bool(hist.clusters) and hist.clusters[-1] < run.cluster
    return since is not None and hist.last_event_time + 1 <= since


def _before_restart(hist: NodeHistory) -> NodeHistory | None:
    """A node whose events all predate the current submission: done if it succeeded, else
    waiting to run again (the rescue DAG reruns it)."""
    return hist if hist.state == "exited" and hist.exit_code == 0 else None


def _run_id(record: dict[str, Any]) -> str | None:
    cluster = record.get("cluster_id")
    return str(cluster) if cluster is not None else None


def _node_state(
    node: str,
    status: ns.NodeStatus | None,
    hist: NodeHistory | None,
    job: Job,
    dag_ended: bool,
    retries: Callable[[str], int] | None = None,
) -> str:
    """One node's state: final verdicts of the node status file, else the (newer) event log."""
    if status is not None:
        if status.status == ns.DONE:
            return JobState.SUCCEEDED
        if status.status == ns.ERROR:
            return JobState.FAILED
        if status.status == ns.FUTILE:
            return JobState.SKIPPED
    if hist is not None:
        if hist.state in ("held", "running", "idle"):
            return hist.state
        if hist.state == "exited" and hist.exit_code == 0 and hist.post_result in (None, 0):
            return JobState.SUCCEEDED
        if hist.state == "removed" and _removed_with_dag(hist):
            return JobState.PENDING
        # The last attempt failed: final once DAGMan has ended or no retry is left.
        if dag_ended or not _will_retry(hist, job, retries(node) if retries else 0):
            return JobState.FAILED
        return JobState.PENDING
    if status is not None and status.status in (ns.SUBMITTED, ns.POSTRUN):
        return JobState.HELD if status.held else JobState.RUNNING
    return JobState.PENDING


def _removed_with_dag(hist: NodeHistory) -> bool:
    """Removed only by a cancel (its DAGMan job removed, or `bps cancel`), never held before."""
    return hist.last_hold_reason is None and (hist.remove_reason or "").startswith((DAG_REMOVED, BPS_CANCEL))


def _will_retry(hist: NodeHistory, job: Job, dag_retries: int) -> bool:
    """Whether DAGMan will submit the node again after its last job left the queue failed.

    Only a DAG with ``RETRY`` lines (written by an older bps; today a job retries inside
    its own cluster, so a job that left the queue has no attempt left) retries a node.
    """
    if hist.post_result == NO_RETRY_SENTINEL or hist.exit_code in job.retry.no_retry_exit_codes:
        return False
    return len(hist.clusters) <= dag_retries


def dag_retries(dag: Path) -> dict[str, int]:
    """Node -> its ``RETRY`` count in the DAG file (none in DAGs bps writes today)."""
    retries: dict[str, int] = {}
    with dag.open(errors="replace") as f:
        for line in f:
            if line.startswith("RETRY "):
                parts = line.split()
                if len(parts) >= 3 and parts[2].isdigit():
                    retries[parts[1]] = int(parts[2])
    return retries


def _mark_skipped_from_history(
    workflow: GenericWorkflow, names: dict[str, str], states: dict[str, str], report: RunReport
) -> None:
    """Without a node status file (DAGMan killed early), descendants of failures are 'skipped', not 'pending'."""
    children = workflow.children()
    queue = deque(n for n, job in workflow.jobs.items() if states.get(names[n]) == JobState.FAILED)
    seen: set[str] = set()
    while queue:
        for child in children[queue.popleft()]:
            node = names[child]
            if child in seen or states.get(node) != JobState.PENDING:
                continue
            seen.add(child)
            label = workflow.jobs[child].label
            report.counts[label][JobState.PENDING] -= 1
            report.add(label, JobState.SKIPPED)
            states[node] = JobState.SKIPPED
            queue.append(child)


def _failure(layout: DagLayout, node: str, job: Job, hist: NodeHistory | None, dag_ended: bool) -> JobFailure:
    label = job.label
    if hist is None:
        return JobFailure(
            name=node,
            label=label,
            reason="failed before its job ran (PRE script or submission)"
            if dag_ended
            else "failed before its job ran (PRE script or submission; see .dagman.out)",
        )
    if node == FINAL_NODE:
        log = layout.final_log_dir(job) / f"final.{hist.clusters[-1]}.out"
    else:
        log = layout.submit_dir / f"{layout.log_stem(job, node)}.{hist.clusters[-1]}.out"
    codes = f" ({hist.hold_codes})" if hist.hold_codes else ""
    memory = f" (over its memory request of {hist.request_memory_mb} MB)" if hist.memory_exceeded else ""
    if hist.state == "held":
        reason = f"held{memory}{codes}: {hist.hold_reason}"
    elif hist.state == "removed":
        why = _short_policy(hist.remove_reason or "no reason recorded")
        if hist.last_hold_reason:
            reason = f"removed while held{memory}{codes}: {hist.last_hold_reason}; removal: {why}"
        else:
            reason = f"removed: {why}"
    elif hist.exit_code is not None:
        reason = f"exit code {hist.exit_code}: {exit_codes.describe(hist.exit_code)}"
        if hist.post_result == NO_RETRY_SENTINEL:
            reason += "; not retried: its exit code means a retry cannot help"
    else:
        reason = "unknown (no termination event)"
    return JobFailure(
        name=node,
        label=label,
        exit_code=hist.exit_code,
        attempt=hist.runs,
        reason=reason,
        hold_reason=hist.hold_reason if hist.state == "held" else hist.last_hold_reason,
        log_file=str(log),
        log_tail=log_tail(log),
    )


def _short_policy(reason: str) -> str:
    """``The job attribute PeriodicRemove expression '<50 lines>' evaluated to TRUE`` without the expression."""
    return _POLICY.sub(r"its \1 expression evaluated to TRUE", reason)


def _run_state(record: dict[str, Any], run: dm.DagmanRun, report: RunReport) -> RunState:
    totals = report.totals()
    if cancelled(record) or run.dag_status == dm.DAG_STATUS_RM:
        return RunState.CANCELLED
    if run.ended:
        done = totals[JobState.SUCCEEDED] == sum(totals.values())
        ok = run.exit_status == 0 and run.dag_status in (None, dm.DAG_STATUS_OK)
        return RunState.SUCCEEDED if done and ok and not run.died else RunState.FAILED
    if record.get("cluster_id") is None and not any(
        totals[s]
        for s in (JobState.SUCCEEDED, JobState.FAILED, JobState.RUNNING, JobState.IDLE, JobState.HELD)
    ):
        return RunState.PREPARED
    return RunState.RUNNING


def _dagman_messages(layout: DagLayout, run: dm.DagmanRun, state: str) -> list[str]:
    """What DAGMan itself said, when it matters: it refused the DAG, died, or says the DAG failed."""
    if run.cluster is None or state == RunState.PREPARED:
        return []
    out = layout.dagman_out.name
    errors = "; ".join(run.errors[:3])
    if run.refused:
        return [
            f"DAGMan job {run.cluster} refused the DAG and exited with status {run.exit_status}: "
            f"{errors or 'see ' + out} (from {out})"
        ]
    messages = []
    if run.died:
        lock = dm.lock_path(layout)
        messages.append(
            f"DAGMan job {run.cluster} ended without an exit status or metrics"
            + (f": {errors}" if errors else "")
            + f" (from {out})"
            + (f"; it left its lock file {lock.name}" if lock.exists() else "")
        )
    elif state == RunState.CANCELLED and not run.ended:
        messages.append(
            f"DAGMan job {run.cluster} has not ended yet: it stopped submitting jobs and runs the final "
            f"job, then exits; `bps report` says `DAGMan job {run.cluster} exited ...` once it has"
        )
    elif run.ended and run.dag_status not in (None, dm.DAG_STATUS_OK):
        messages.append(
            f"DAGMan job {run.cluster} exited with status {run.exit_status}, DAG status "
            f"{run.dag_status}: {dm.describe_status(run.dag_status)}"
        )
    return messages


def _restart_hint(layout: DagLayout, report: RunReport, states: dict[str, str]) -> None:
    """Say what `bps restart` reruns: the nodes the latest rescue DAG does not mark DONE."""
    rescues = layout.rescue_files()
    if not rescues or report.state not in (RunState.FAILED, RunState.CANCELLED):
        return
    done = dm.rescue_done(rescues[-1])
    rerun = [n for n in states if n != FINAL_NODE and n not in done]
    redone = [n for n in rerun if states[n] == JobState.SUCCEEDED]
    text = (
        f"{rescues[-1].name} marks {len(done)} of {len(states) - (FINAL_NODE in states)} jobs done: "
        f"`bps restart {layout.submit_dir}` reruns the other {len(rerun)}"
        + (" and the final job" if FINAL_NODE in states else "")
        + "."
    )
    if redone:
        text += (
            f" {len(redone)} of them succeeded but are not marked done (DAGMan had not finished "
            "with them when it wrote the rescue DAG): they run again."
        )
    report.messages.append(text)
