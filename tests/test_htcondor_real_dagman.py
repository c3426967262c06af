"""Our DAGs and our DAGMan runner checked against what real HTCondor 25.14 wrote.

The files under ``tests/data/real-htcondor/`` were written by a real DAGMan and schedd
(see its README). The runner must reach real DAGMan's outcome on the same DAG (which nodes
ran, how often, the rescue DAG, DagStatus, the exit status), our translator must never
again write a line real DAGMan refused, and our memory policies must recognise the hold
codes real pool policies gave.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import classad2
import htcondor2
import pytest
from support.dagman_runner import parse_dag, run_dag

from bps.wms.htcondor import memory
from bps.wms.htcondor.translator import write_dag
from bps.workflow_io import load_workflow

REAL = Path(__file__).parent / "data" / "real-htcondor"

#: A node job standing in for run_quantum: fails (exit 1) when its node is named in $(bps_fail).
STAND_IN = """universe = vanilla
executable = /bin/sh
arguments = "-c 'case $(JOB) in {fail}) exit 1 ;; esac; exit 0'"
output = {out}/$(JOB).$(Cluster).out
error = {out}/$(JOB).$(Cluster).out
queue
"""


def _real_dag_with_stand_ins(tmp_path: Path, scenario: str, dag_name: str, fail: str = "__none__") -> Path:
    """The real DAG file of ``scenario`` in ``tmp_path``, its submit files replaced by stand-ins.

    The DAG is used as real DAGMan read it (relative CONFIG, submit files and POST script,
    resolved against ``tmp_path``, the directory it was submitted from)."""
    dag = tmp_path / dag_name
    dag.write_text((REAL / scenario / dag_name).read_text())
    subs = {
        t[2]
        for t in (line.split() for line in dag.read_text().splitlines())
        if t and t[0] in ("JOB", "FINAL")
    }
    for sub in subs:
        (tmp_path / sub).write_text(STAND_IN.format(fail=fail, out=tmp_path))
    (tmp_path / "dagman.config").write_text("\n")
    post = tmp_path / "bps_post.sh"  # the POST script those runs had: exit with the job's code
    post.write_text('#!/bin/sh\ncase "$1" in -*) exit 1 ;; esac\nexit "$1"\n')
    post.chmod(0o755)
    return dag


def _real_submitted_nodes(scenario: str, log_name: str) -> list[str]:
    events = htcondor2.JobEventLog(str(REAL / scenario / log_name)).events(0)
    notes = (e["LogNotes"] for e in events if e.type == htcondor2.JobEventType.SUBMIT)
    return [re.search(r'DAGNodeName = "([^"]+)"', n).group(1) for n in notes]


def _done(rescue: Path) -> set[str]:
    return {line.split()[1] for line in rescue.read_text().splitlines() if line.startswith("DONE ")}


def test_runner_agrees_with_real_dagman_on_the_failure_scenario(tmp_path):
    failing = "isrLike_0_1_DummyCam"
    dag = _real_dag_with_stand_ins(tmp_path, "failure", "u_stpeer_fail1.dag", fail=failing)
    result = run_dag(dag, cwd=tmp_path)
    real_metrics = json.loads((REAL / "failure" / "u_stpeer_fail1.dag.metrics").read_text())
    assert (result.exit_code, result.dag_status) == (real_metrics["exitcode"], real_metrics["DagStatus"])
    real_nodes = _real_submitted_nodes("failure", "u_stpeer_fail1.dag.nodes.log")
    assert sorted(set(result.order)) == sorted(set(real_nodes))
    # RETRY 3: four clusters of the failing node, as real DAGMan submitted.
    assert len(result.dag.nodes[failing].clusters) == real_nodes.count(failing) == 4
    assert (
        result.status("calibLike_0_1_DummyCam") == result.status("gatherLike_1_DummyCam") == "STATUS_FUTILE"
    )
    assert _done(tmp_path / "u_stpeer_fail1.dag.rescue001") == _done(
        REAL / "failure" / "u_stpeer_fail1.dag.rescue001"
    )


def test_runner_agrees_with_real_dagman_on_the_cancel_scenario(tmp_path):
    # Real: condor_rm between layers, after the 100 isrLike and calibLike nodes; FINAL ran.
    dag = _real_dag_with_stand_ins(tmp_path, "cancel", "u_stpeer_s5_cancelE.dag")
    result = run_dag(dag, cwd=tmp_path, cancel_after=100)
    real_metrics = json.loads((REAL / "cancel" / "u_stpeer_s5_cancelE.dag.metrics").read_text())
    assert (
        (result.exit_code, result.dag_status)
        == (real_metrics["exitcode"], real_metrics["DagStatus"])
        == (0, 4)
    )
    assert result.order[-1] == "bps_final"
    real_done = _done(REAL / "cancel" / "u_stpeer_s5_cancelE.dag.rescue001")
    assert len(real_done) == 100
    assert _done(tmp_path / "u_stpeer_s5_cancelE.dag.rescue001") == real_done


def test_the_real_dag_with_its_final_retry_is_refused_like_real_dagman_did(tmp_path):
    # What `bps prepare` wrote before the hand edit: restart/'s DAGMan 767 refused it.
    dag = _real_dag_with_stand_ins(tmp_path, "failure", "u_stpeer_fail1.dag")
    dag.write_text(dag.read_text() + "RETRY bps_final 2 UNLESS-EXIT 113\n")
    result = run_dag(dag, cwd=tmp_path)
    real_out = (REAL / "restart" / "u_stpeer_fail1.dag.dagman.out").read_text()
    refused = re.search(r"ERROR: (RETRY node bps_final can not have a retry specification)", real_out).group(
        1
    )
    assert result.exit_code == 1 and result.order == [] and result.error.startswith(refused)


@pytest.mark.parametrize("scenario", ["failure", "cancel"])
def test_our_dag_for_the_real_workflow_has_no_line_real_dagman_refused(tmp_path, scenario):
    wf = load_workflow(REAL / scenario / "workflow.json")
    layout = write_dag(wf, tmp_path / "submit")
    text = layout.dag.read_text()
    assert not re.search(r"^(RETRY|PRIORITY|CATEGORY|ABORT-DAG-ON) bps_final\b", text, re.M)
    assert not re.search(r"^SCRIPT ", text, re.M)  # POST scripts crashed DAGMan on condor_rm
    dag = parse_dag(layout.dag)  # DAGMan's parse rules
    assert dag.final is not None and len(dag.nodes) == len(wf.jobs)
    assert Path(dag.config).is_absolute() and Path(dag.node_status_file).is_absolute()
    assert all(Path(n.submit).is_absolute() for n in [*dag.nodes.values(), dag.final])


@pytest.mark.parametrize(
    ("scenario", "log", "policy", "code"),
    [
        ("memory-hold-startd-policy", "u_memtest_hold1.dag.nodes.log", "startd", (21, 102)),
        ("memory-hold-system-periodic", "u_memtest_hold2.dag.nodes.log", "system_periodic_hold", (26, 34)),
        ("memory-escalation-job-policy", "u_memtest_hold3.dag.nodes.log", "job", (3, 34)),
    ],
)
def test_real_memory_holds_are_released_with_more_memory_under_their_pool_policy(scenario, log, policy, code):
    (held,) = [
        e
        for e in htcondor2.JobEventLog(str(REAL / scenario / log)).events(0)
        if e.type == htcondor2.JobEventType.JOB_HELD
    ][:1]
    assert (held["HoldReasonCode"], held["HoldReasonSubCode"]) == code
    ad = classad2.ClassAd(
        {
            "JobStatus": 5,
            "HoldReasonCode": held["HoldReasonCode"],
            "HoldReasonSubCode": held["HoldReasonSubCode"],
            "NumJobStarts": 1,
            "MemoryUsage": 3174,
        }
    )
    for name, expected in ((policy, True), ("any", True), ("cgroup", False)):
        p = memory.MemoryPolicy(2048, 2.0, 16384, 4, held_timeout_s=86400, pool_policy=name)
        ad["RequestMemory"] = classad2.ExprTree(memory.request_memory(p, base="2048"))
        released = classad2.ExprTree(memory.periodic_release(p)).eval(ad) is True
        assert released is expected, (name, code)
        # Not released: the job would sit held until held_timeout_s removes it (a day).
        removed = classad2.ExprTree(memory.periodic_remove(p)).eval(ad) is True
        assert removed is False
    # Once released, the next match asks for more than the usage that got it held.
    p = memory.MemoryPolicy(2048, 2.0, 16384, 4, pool_policy=policy)
    ad.update({"JobStatus": 1, "LastHoldReasonCode": code[0], "LastHoldReasonSubCode": code[1]})
    ad["RequestMemory"] = classad2.ExprTree(memory.request_memory(p, base="2048"))
    assert ad.eval("RequestMemory") == 6348


def test_the_job_policy_adds_the_periodic_hold_the_real_run_used():
    # memory-escalation-job-policy/: the pool had no policy; the job held itself (3/34).
    policy = memory.MemoryPolicy(2048, 2.0, 16384, 4, pool_policy="job")
    commands = memory.submit_commands(policy)
    assert commands["periodic_hold_subcode"] == "34"
    ad = classad2.ClassAd({"JobStatus": 2, "MemoryUsage": 3174, "RequestMemory": 2048})
    assert classad2.ExprTree(commands["periodic_hold"]).eval(ad) is True
    assert "periodic_hold" not in memory.submit_commands(memory.MemoryPolicy(2048, 2.0, 16384, 4))
