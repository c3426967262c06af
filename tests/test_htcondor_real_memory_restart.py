"""Memory escalation under the real pool policies, to the cap and through `bps restart`.

Files a real HTCondor 25.14.0 pool wrote (``tests/data/real-htcondor-25.14.0/memory-*-cap-restart``,
see the README there): a job touching 3 GB with 2048 MB requested and ``retry.memory_max_mb``
3000, under ``use POLICY : HOLD_IF_MEMORY_EXCEEDED`` (startd, 21/102) and under
``SYSTEM_PERIODIC_HOLD`` with subcode 34 (26/34); then ``bps restart --memory-max-mb 8000``.
``first/`` is the submit directory after the first run, ``restarted/`` after the restart.
"""

from __future__ import annotations

import json
from pathlib import Path

import classad2
import htcondor2
import pytest
from support.real_htcondor import DATA_25140, scenario

from bps.wms.htcondor import overrides
from bps.wms.htcondor.eventlog import read_event_log
from bps.wms.htcondor.layout import find_dag
from bps.wms.htcondor.report import build_report
from bps.wms.htcondor.service import grown_memory, usage_from_schedd
from bps.workflow_io import load_workflow

NODE = "make_0_Cam0"
POLICIES = {"startd": (21, 102), "system": (26, 34)}


def _dir(policy: str, stage: str) -> Path:
    return DATA_25140 / f"memory-{policy}-cap-restart" / stage


def _one(directory: Path, pattern: str) -> Path:
    (path,) = directory.glob(pattern)
    return path


def _story(directory: Path) -> tuple[list[tuple], list[int]]:
    """(the node's events in order, its clusters) from the real event log."""
    story, clusters = [], []
    for e in htcondor2.JobEventLog(str(_one(directory, "*.dag.nodes.log"))).events(0):
        if e.type == htcondor2.JobEventType.SUBMIT:
            if f'"{NODE}"' in e["LogNotes"]:
                clusters.append(e.cluster)
            continue
        if e.cluster not in clusters:
            continue
        if e.type == htcondor2.JobEventType.EXECUTE:
            story.append(("run", e["ExecuteProps"]["Memory"]))
        elif e.type == htcondor2.JobEventType.JOB_HELD:
            story.append(("held", e["HoldReasonCode"], e["HoldReasonSubCode"]))
        elif e.type == htcondor2.JobEventType.JOB_RELEASED:
            story.append(("released",))
        elif e.type == htcondor2.JobEventType.JOB_ABORTED:
            story.append(("removed",))
        elif e.type == htcondor2.JobEventType.JOB_TERMINATED:
            story.append(("exit", e["ReturnValue"]))
    return story, clusters


def _metrics(directory: Path) -> dict:
    return json.loads(_one(directory, "*.dag.metrics").read_text())


def _restart_plan(directory: Path, schedd=None) -> dict[str, int]:
    """What `bps restart --memory-max-mb 8000` computes from the first run's files."""
    workflow = load_workflow(directory / "workflow.json")
    overrides.apply(workflow, {"memory_max_mb": 8000})
    history = read_event_log(_one(directory, "*.dag.nodes.log"))
    if schedd is not None:
        usage_from_schedd(schedd, history)
    return grown_memory(workflow, history)


def test_under_the_startd_policy_the_job_is_held_released_larger_then_removed_at_the_cap():
    story, clusters = _story(_dir("startd", "first"))
    # 2048 MB slot: evicted and held 21/102; released; rerun on the cap's 3072 MB slot (3000
    # requested), held again, removed by periodic_remove: one cluster, no DAGMan retry.
    assert story == [
        ("run", 2048),
        ("held", 21, 102),
        ("released",),
        ("run", 3072),
        ("held", 21, 102),
        ("removed",),
    ]
    assert len(clusters) == 1
    assert (
        _metrics(_dir("startd", "first"))["exitcode"],
        _metrics(_dir("startd", "first"))["DagStatus"],
    ) == (1, 2)


def test_under_system_periodic_hold_the_cap_is_never_exceeded_and_the_node_fails_there():
    story, clusters = _story(_dir("system", "first"))
    # Held 26/34 at 2048 MB, released with request 3000 (the cap); the schedd held it again 1 s
    # later, before its execute event, because the MemoryUsage it still had (3174 MB) was over
    # the cap's request: it could not fit. Removed, one cluster, the node failed.
    assert story == [("run", 2048), ("held", 26, 34), ("released",), ("held", 26, 34), ("removed",)]
    assert len(clusters) == 1
    reason = read_event_log(_one(_dir("system", "first"), "*.dag.nodes.log"))[NODE].last_hold_reason
    assert reason == "Job memory usage (3174 MB) exceeded request_memory (3000 MB)"
    assert (
        _metrics(_dir("system", "first"))["exitcode"],
        _metrics(_dir("system", "first"))["DagStatus"],
    ) == (1, 2)


@pytest.mark.parametrize("policy", POLICIES)
def test_the_report_names_the_memory_hold_and_its_real_codes(tmp_path, policy):
    code, subcode = POLICIES[policy]
    report = build_report(scenario(f"memory-{policy}-cap-restart/first", tmp_path, data=DATA_25140))
    assert report.state == "failed"
    (failure,) = [f for f in report.failures if f.name == NODE]
    assert failure.reason.startswith("removed while held (over its memory request of")
    assert f"(code {code} / subcode {subcode})" in failure.reason
    # the `bps report` the run printed says the same
    assert f"(code {code} / subcode {subcode})" in (_dir(policy, "first") / "bps_report.txt").read_text()


def test_the_system_policys_reason_gives_the_restart_the_usage_without_asking_the_schedd():
    # "Job memory usage (3174 MB) exceeded request_memory (3000 MB)": twice the usage, as the
    # real restart wrote (it asked the schedd too); before, the parenthesised numbers were not
    # read and the restart asked 2 x 2048 MB.
    assert _restart_plan(_dir("system", "first")) == {NODE: 6348}


def test_the_startd_policy_names_no_usage_the_restart_takes_it_from_the_schedd_history():
    # The real `condor_history -l` ad of the job: ResidentSetSize 3250000 KiB = 3174 MB.
    ad = classad2.parseOne((_dir("startd", "first") / "condor_history_l.4033.txt").read_text())

    class Schedd:
        def query(self, constraint, projection):
            return []

        def history(self, constraint, projection, match=-1):
            return [ad] if constraint == "ClusterId == 4033" else []

    assert _restart_plan(_dir("startd", "first"), Schedd()) == {NODE: 6348}
    # Without the schedd's history (rolled over): twice the slot that failed, still above it.
    assert _restart_plan(_dir("startd", "first")) == {NODE: 6144}


@pytest.mark.parametrize("policy", POLICIES)
def test_bps_restart_kept_the_grown_memory_and_the_node_succeeded(tmp_path, policy):
    restarted = _dir(policy, "restarted")
    dag = _one(restarted, "*.dag").read_text()
    assert f'VARS {NODE} bps_log="logs/make/{NODE}" bps_args="" bps_memory="6348"' in dag
    record = json.loads((restarted / "run_record.json").read_text())
    assert record["restarts"][-1]["memory"] == {NODE: 6348}
    assert record["restarts"][-1]["overrides"] == {"memory_max_mb": 8000}
    story, clusters = _story(restarted)
    # DAGMan truncated the event log at the restart: only the new cluster, on a 6400 MB slot
    assert story == [("run", 6400), ("exit", 0)] and len(clusters) == 1
    assert (_metrics(restarted)["exitcode"], _metrics(restarted)["DagStatus"]) == (0, 0)
    report = build_report(scenario(f"memory-{policy}-cap-restart/restarted", tmp_path, data=DATA_25140))
    assert report.state == "succeeded" and report.failures == []
    assert find_dag(restarted).rescue_files()  # applied: rescue001 of the first run
