"""What the DAGs of this branch did on a real HTCondor 25.14.0 pool (``tests/data/real-htcondor-25.14.0``).

The runs (see that directory's README): ``make demo``'s HTCondor workflow submitted unedited
from the checkout; a failure with retries; a no-retry exit code; a cancel while jobs ran.
These tests check that real DAGMan and the schedd did what the translator intends, and that
the DAGMan test runner reaches the same outcome on the same DAG.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import htcondor2
from support.dagman_runner import parse_dag, run_dag

REAL = Path(__file__).parent / "data" / "real-htcondor-25.14.0"


def _one(directory: Path, pattern: str) -> Path:
    (path,) = directory.glob(pattern)
    return path


def _metrics(scenario: str) -> dict:
    return json.loads(_one(REAL / scenario, "*.dag.metrics").read_text())


def _events(scenario: str) -> list:
    return list(htcondor2.JobEventLog(str(_one(REAL / scenario, "*.dag.nodes.log"))).events(0))


def _node_clusters(events: list) -> dict[str, list[int]]:
    nodes: dict[str, list[int]] = {}
    for e in events:
        if e.type == htcondor2.JobEventType.SUBMIT:
            name = re.search(r'DAGNodeName = "([^"]+)"', e["LogNotes"]).group(1)
            nodes.setdefault(name, []).append(e.cluster)
    return nodes


def test_the_demo_dag_ran_unedited_from_the_checkout_and_dagman_exited_0():
    metrics = _metrics("demo-success")
    assert (metrics["exitcode"], metrics["DagStatus"], metrics["nodes_failed"]) == (0, 0, 0)
    assert metrics["jobs_submitted"] == metrics["total_nodes"] == 29  # one cluster per node
    out = _one(REAL / "demo-success", "*.dag.dagman.out").read_text()
    assert not re.search(r"^\S+ \S+ ERROR", out, re.M) and "EXITING WITH STATUS 0" in out
    dag = parse_dag(_one(REAL / "demo-success", "*.dag"))
    assert dag.config.startswith("{submit_dir}/")  # absolute when written (placeholder here)
    summary = json.loads((REAL / "demo-success" / "finalize_summary.json").read_text())
    assert (summary["registered"], summary["missing"], summary["no_work"]) == (254, 0, 3)
    assert summary["workflow_status"] == 0 and summary["failed_jobs"] == 0


def test_a_failed_dag_exits_1_and_its_retries_stayed_in_one_cluster():
    metrics = _metrics("failure")
    assert (metrics["exitcode"], metrics["DagStatus"]) == (1, 2)
    events = _events("failure")
    nodes = _node_clusters(events)
    assert all(len(c) == 1 for c in nodes.values())  # no DAGMan retry: one cluster per node
    failing = sorted(n for n in nodes if n.startswith("make_0_"))
    assert failing == ["make_0_Cam0", "make_0_Cam1"]
    for node in failing:
        (cluster,) = nodes[node]
        mine = [e for e in events if e.cluster == cluster]
        requeued = [e["ReturnValue"] for e in mine if e.type == htcondor2.JobEventType.JOB_EVICTED]
        ended = [e["ReturnValue"] for e in mine if e.type == htcondor2.JobEventType.JOB_TERMINATED]
        assert (requeued, ended) == ([1, 1, 1], [1])  # max_retries 3: four attempts
    summary = json.loads((REAL / "failure" / "finalize_summary.json").read_text())
    assert (summary["workflow_status"], summary["failed_jobs"]) == (2, 2)
    assert summary["missing"] > 0 and summary["registered"] > 0


def test_a_no_retry_exit_code_ends_the_node_after_one_attempt():
    events = _events("no-retry-exit-78")
    nodes = _node_clusters(events)
    (cluster,) = nodes["make_0_Cam0"]
    mine = [e for e in events if e.cluster == cluster]
    assert [e.type for e in mine].count(htcondor2.JobEventType.EXECUTE) == 1
    (ended,) = [e for e in mine if e.type == htcondor2.JobEventType.JOB_TERMINATED]
    assert ended["ReturnValue"] == 78
    assert (_metrics("no-retry-exit-78")["exitcode"], _metrics("no-retry-exit-78")["DagStatus"]) == (1, 2)


def test_cancel_while_jobs_ran_still_hit_dagmans_final_node_assertion():
    # Without POST scripts DAGMan 25.14.0 still dies when a node job that finished in the
    # same moment as condor_rm is processed after FINAL started (its child is started):
    # no metrics, lock left behind. A DAGMan bug (dag.cpp StartNode); see docs/htcondor.md.
    directory = REAL / "cancel-jobs-running"
    out = _one(directory, "*.dag.dagman.out").read_text()
    assert 'ERROR "Assertion ERROR on (! _finalNodeRun)"' in out
    assert "Received SIGUSR1" in out and "Starting final node" in out
    assert not list(directory.glob("*.dag.metrics"))
    assert "SCRIPT" not in _one(directory, "*.dag").read_text()


def test_the_runner_agrees_with_real_dagman_on_the_new_failure_dag(tmp_path):
    source = _one(REAL / "failure", "*.dag")
    text = source.read_text().replace("{submit_dir}", str(tmp_path))
    dag = tmp_path / source.name
    dag.write_text(text)
    for sub in {t[2] for t in (line.split() for line in text.splitlines()) if t and t[0] in ("JOB", "FINAL")}:
        # stand-ins: make of detector 0 fails with 1; FINAL fails (finalize: outputs missing)
        Path(sub).write_text(
            "universe = vanilla\nexecutable = /bin/sh\n"
            "arguments = \"-c 'case $(JOB) in make_0_*) exit 1 ;; bps_final) exit 69 ;; esac'\"\n"
            "max_retries = 3\nretry_until = ExitCode =?= 78\n"
            f"output = {tmp_path}/$(JOB).$(Cluster).out\nerror = {tmp_path}/$(JOB).$(Cluster).out\nqueue\n"
        )
    (tmp_path / "dagman.config").write_text("\n")
    result = run_dag(dag, cwd=tmp_path)
    metrics = _metrics("failure")
    assert (result.exit_code, result.dag_status) == (metrics["exitcode"], metrics["DagStatus"])
    real_nodes = _node_clusters(_events("failure"))
    assert sorted(result.order) == sorted(real_nodes)
    assert all(result.dag.nodes[n].starts == 4 for n in ("make_0_Cam0", "make_0_Cam1"))


def _hold_story(scenario: str) -> list[tuple]:
    """(event, code/subcode or slot memory) of the memory-hog node, in order."""
    events = _events(scenario)
    (cluster,) = _node_clusters(events)["make_0_Cam0"]
    story = []
    for e in events:
        if e.cluster != cluster:
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
    return story


def test_a_startd_memory_hold_21_102_is_released_and_rematched_with_more_memory():
    story = _hold_story("memory-startd")
    assert story[:3] == [("run", 2048), ("held", 21, 102), ("released",)]
    assert story[3][0] == "run" and story[3][1] > 2048 and story[-1] == ("exit", 0)
    assert _metrics("memory-startd")["exitcode"] == 0


def test_a_system_periodic_hold_26_34_is_released_until_the_job_fits():
    story = _hold_story("memory-system")
    assert ("held", 26, 34) in story and story[-1] == ("exit", 0)
    runs = [s[1] for s in story if s[0] == "run"]
    assert runs == sorted(runs) and runs[-1] > runs[0]  # never back below a request that failed
    assert _metrics("memory-system")["exitcode"] == 0


def test_a_job_held_at_the_memory_cap_is_removed_and_its_node_fails_without_another_attempt():
    # memory_max_mb 3000: 2048 held, 3000 (slot 3072) held, removed; no new cluster.
    story = _hold_story("memory-cap")
    assert story == [
        ("run", 2048),
        ("held", 26, 34),
        ("released",),
        ("run", 3072),
        ("held", 26, 34),
        ("removed",),
    ]
    nodes = _node_clusters(_events("memory-cap"))
    assert len(nodes["make_0_Cam0"]) == 1
    metrics = _metrics("memory-cap")
    assert (metrics["exitcode"], metrics["DagStatus"]) == (1, 2)


def test_with_the_matched_slot_as_the_running_request_the_job_is_held_once_and_fits():
    # The same run as memory-system/ with `job_machine_attrs = Memory`: no early second hold.
    story = _hold_story("memory-system-matched-slot")
    assert story[:3] == [("run", 2048), ("held", 26, 34), ("released",)]
    assert story[3:] == [("run", story[3][1]), ("exit", 0)] and story[3][1] > 4096
    assert "job_machine_attrs = Memory" in (REAL / "memory-system-matched-slot" / "make.sub").read_text()


def test_the_runner_halts_like_real_dagman_on_the_cancel_halted_dag(tmp_path):
    # Real: `bps cancel` created the halt file after make_0..3_Cam0 were done; DAGMan
    # submitted nothing more, wrote rescue001 with those 4 DONE, ran FINAL with DAG_STATUS 6
    # (finalize exit 69) and exited 1, metrics DagStatus 6.
    source = _one(REAL / "cancel-halted", "*.dag")
    text = source.read_text().replace("{submit_dir}", str(tmp_path))
    dag = tmp_path / source.name
    dag.write_text(text)
    for sub in {t[2] for t in (line.split() for line in text.splitlines()) if t and t[0] in ("JOB", "FINAL")}:
        # stand-ins: every node succeeds; FINAL fails unless DAG_STATUS is 0 (finalize's rule)
        Path(sub).write_text(
            "universe = vanilla\nexecutable = /bin/sh\n"
            "arguments = \"-c 'case $(JOB)/$(DAG_STATUS) in bps_final/0) exit 0 ;; bps_final/*) exit 69 ;; esac'\"\n"
            f"output = {tmp_path}/$(JOB).$(Cluster).out\nerror = {tmp_path}/$(JOB).$(Cluster).out\nqueue\n"
        )
    (tmp_path / "dagman.config").write_text("\n")
    result = run_dag(dag, cwd=tmp_path, halt_after=4)
    metrics = _metrics("cancel-halted")
    assert (result.exit_code, result.dag_status) == (metrics["exitcode"], metrics["DagStatus"]) == (1, 6)
    done = lambda p: {x.split()[1] for x in p.read_text().splitlines() if x.startswith("DONE ")}  # noqa: E731
    assert done(_one(tmp_path, "*.rescue001")) == done(_one(REAL / "cancel-halted", "*.rescue001"))
    assert len(done(_one(tmp_path, "*.rescue001"))) == 4
    real_out = _one(REAL / "cancel-halted", "*.dag.dagman.out").read_text()
    halted = "Exiting because DAG is halted and no jobs or scripts are running"
    assert halted in real_out and halted in _one(tmp_path, "*.dag.dagman.out").read_text()


def test_bps_cancel_returned_before_dagman_ended_and_the_report_says_cancelled_not_failed(tmp_path):
    # Real (cancel-prompt/): `bps cancel` 10 s into the 105-job DAG took 6 s and returned
    # while DAGMan still ran FINAL (its report then: finalize running); DAGMan ended 8 s later.
    from support.real_htcondor import DATA_25140, scenario

    from bps.wms.htcondor.report import build_report

    directory = REAL / "cancel-prompt"
    record = json.loads((directory / "run_record.json").read_text())
    assert record["state"] == "cancelled"
    ended = [e for e in htcondor2.JobEventLog(str(_one(directory, "*.dag.dagman.log"))).events(0)]
    assert ended[-1].type == htcondor2.JobEventType.JOB_TERMINATED and ended[-1]["ReturnValue"] == 1
    right_after = (directory / "bps_report.after_cancel.txt").read_text()
    assert "cancelled" in right_after and "finalize │         0 │      0 │       1" in right_after
    out = _one(directory, "*.dag.dagman.out").read_text()
    assert out.index("DAG status: 6 (DAG_STATUS_HALTED)") < out.index("EXITING WITH STATUS 1")
    assert "Assertion" not in out and (_metrics("cancel-prompt")["DagStatus"]) == 6
    report = build_report(scenario("cancel-prompt", tmp_path, data=DATA_25140))
    assert report.state == "cancelled" and report.failures == []
    assert report.counts["finalize"]["pending"] == 1
    (why,) = [m for m in report.messages if m.startswith("the run was cancelled: the final job")]
    assert "exited 69" in why and "not a failure of the pipeline" in why
    assert "the run was cancelled: the final job" in (directory / "bps_report.txt").read_text()
