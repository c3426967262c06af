"""`bps report` and restart read what a real HTCondor 25.14 pool wrote (``tests/data/real-htcondor/``).

Each scenario's README entry says what really happened; each test checks that the
report, built from the real ``.nodes.log`` / ``.dagman.out`` / ``.dagman.log`` /
``.metrics`` / node status / rescue files, says the same. The wrong reports bps gave
on these very files are kept next to them (``bps_report*.txt``).
"""

from __future__ import annotations

import dataclasses
import re
import shutil

import pytest
from support.real_htcondor import DATA, DATA_25140, cut_dagman_out, cut_event_log, scenario, update_record

from bps.wms.base import read_run_record
from bps.wms.htcondor import dagman as dm
from bps.wms.htcondor.eventlog import is_memory_hold, read_event_log
from bps.wms.htcondor.layout import find_dag
from bps.wms.htcondor.report import build_report
from bps.wms.htcondor.service import HTCondorService, grown_memory, usage_from_schedd
from bps.workflow_io import load_workflow


def _failure(report, node):
    (failure,) = [f for f in report.failures if f.name == node]
    return failure


# -- node names and histories from the real event log ---------------------------------------------


def test_node_names_come_from_the_structured_submit_notes_of_htcondor_25(tmp_path):
    submit = scenario("failure", tmp_path)
    history = read_event_log(find_dag(submit).nodes_log)
    assert not [name for name in history if name.startswith("cluster")]
    failed = history["isrLike_0_1_DummyCam"]
    assert failed.clusters == [751, 757, 763, 765]
    assert (failed.state, failed.exit_code, failed.post_result) == ("exited", 1, 1)
    assert history["bps_final"].clusters == [766]


def test_the_older_dag_node_note_is_still_read(tmp_path):
    """The same events with the note HTCondor wrote before 25.x (``DAG Node: NAME``)."""
    real = find_dag(scenario("failure", tmp_path)).nodes_log
    old = tmp_path / "old.dag.nodes.log"
    old.write_text(
        re.sub(r'\[ DAGNodeName = "([^"]+)"; JobBatchName = "[^"]*" \]', r"DAG Node: \1", real.read_text())
    )
    assert "DAGNodeName" not in old.read_text()
    assert read_event_log(old).keys() == read_event_log(real).keys()
    assert read_event_log(old)["isrLike_0_1_DummyCam"].clusters == [751, 757, 763, 765]


def test_the_memory_holds_of_real_pool_policies_are_recognised():
    assert is_memory_hold(21, 102)  # use POLICY : HOLD_IF_MEMORY_EXCEEDED
    assert is_memory_hold(26, 34)  # SYSTEM_PERIODIC_HOLD with subcode 34
    assert is_memory_hold(3, 34)  # the job's own periodic_hold with subcode 34
    assert is_memory_hold(34, 0)
    assert not is_memory_hold(3, 0) and not is_memory_hold(26, 0) and not is_memory_hold(13, 2)


# -- finished runs -------------------------------------------------------------------------------


def test_the_demo_run_is_reported_succeeded_with_every_node(tmp_path):
    report = build_report(scenario("demo-success", tmp_path))
    assert report.state == "succeeded" and report.run_id == "927"
    assert report.totals()["succeeded"] == 29 and sum(report.totals().values()) == 29
    assert report.failures == [] and report.messages == []


def test_a_failed_node_is_reported_with_its_exit_code_attempts_and_log_tail(tmp_path):
    submit = scenario("failure", tmp_path)
    report = build_report(submit)
    assert report.state == "failed"
    assert report.counts["isrLike"]["failed"] == 1 and report.counts["isrLike"]["succeeded"] == 5
    assert report.counts["calibLike"]["skipped"] == 1 and report.counts["gatherLike"]["skipped"] == 1
    failure = _failure(report, "isrLike_0_1_DummyCam")
    # was: "attempt 1: failed before its job ran (PRE script or submission)"
    assert (failure.attempt, failure.exit_code) == (4, 1)
    assert failure.reason.startswith("exit code 1: ")
    assert failure.log_file.endswith("logs/isrLike/exposure-1/isrLike_0_1_DummyCam.765.out")
    assert 'TypeError: can only concatenate str (not "int") to str' in failure.log_tail
    assert any("DAG status 2: a node failed" in m for m in report.messages)
    # rescue001: 11 of the 14 jobs DONE
    assert any(
        "marks 11 of 14 jobs done" in m and "reruns the other 3 and the final job" in m
        for m in report.messages
    )
    assert read_run_record(submit)["state"] == "failed"


def test_a_restart_dagman_refused_is_reported_with_dagmans_error_and_what_a_restart_reruns(tmp_path):
    """The run record after `bps restart` submitted DAGMan 767, which refused the rewritten DAG."""
    submit = scenario("restart", tmp_path)
    until = "2026-12-05 13:58:45"  # DAGMan 767 exited at 13:58:44; 768 started at 13:58:49
    cut_dagman_out(submit / "u_stpeer_fail1.dag.dagman.out", until)
    cut_event_log(submit / "u_stpeer_fail1.dag.dagman.log", until)
    # DAGMan truncates the node log only after parsing the DAG: 767 left 750's log as it was.
    shutil.copy(DATA / "failure" / "u_stpeer_fail1.dag.nodes.log", submit / "u_stpeer_fail1.dag.nodes.log")
    (submit / "u_stpeer_fail1.node_status").unlink()  # 768's; 750's would be older than the submission
    (submit / "u_stpeer_fail1.dag.metrics").unlink()  # 768's; 750's names DAGMan 750
    record = read_run_record(submit)
    update_record(
        submit, cluster_id=767, run_id="767", state="submitted", submissions=record["submissions"][:2]
    )
    report = build_report(submit)
    assert report.state == "failed"
    (refused,) = [m for m in report.messages if "refused the DAG" in m]
    assert "DAGMan job 767 refused the DAG and exited with status 1" in refused
    assert "ERROR: RETRY node bps_final can not have a retry specification" in refused
    # was: "all 15 nodes pending ... reruns the 0 jobs"
    assert report.totals()["succeeded"] == 12 and report.totals()["pending"] == 3
    assert any("marks 11 of 14 jobs done" in m and "reruns the other 3" in m for m in report.messages)


def test_after_the_rescue_run_the_report_says_succeeded(tmp_path):
    submit = scenario("restart", tmp_path)
    # DAGMan 768 truncated the node log: the 11 nodes rescue001 marks DONE have no events.
    assert len(read_event_log(find_dag(submit).nodes_log)) == 4
    report = build_report(submit)
    assert report.state == "succeeded" and report.run_id == "768"
    assert report.totals()["succeeded"] == 15 and report.failures == []


def test_dagmans_sections_of_dagman_out_are_told_apart_by_their_job(tmp_path):
    layout = find_dag(scenario("restart", tmp_path))
    sections = dm.read_sections(layout.dagman_out)
    assert [(s.cluster, s.parsed, s.exit_status) for s in sections] == [
        (750, True, 0),
        (767, False, 1),
        (768, True, 0),
    ]
    refused = dm.dagman_run(layout, 767)
    assert refused.ended and refused.refused and refused.exit_status == 1
    assert refused.errors[0] == "ERROR: RETRY node bps_final can not have a retry specification"
    first = dm.dagman_run(layout, 750)
    assert first.ended and not first.refused and first.metrics is None  # the metrics are 768's
    last = dm.dagman_run(layout, 768)
    assert last.exit_status == 0 and last.dag_status == 0 and not last.died


# -- a run in progress -----------------------------------------------------------------------------


@pytest.mark.parametrize("node_status", ["absent", "written at start"])
def test_a_report_during_the_run_reads_the_event_log_not_the_node_status_file(tmp_path, node_status):
    """The 105-job run 19 s after submission (13:59:58): the node status file is written every 60 s."""
    submit = scenario("cancel", tmp_path)
    until = "2026-12-05 14:00:17"
    for log in ("u_stpeer_s5_cancelE.dag.nodes.log", "u_stpeer_s5_cancelE.dag.dagman.log"):
        cut_event_log(submit / log, until)
    cut_dagman_out(submit / "u_stpeer_s5_cancelE.dag.dagman.out", until)
    for later in ("u_stpeer_s5_cancelE.dag.metrics", "u_stpeer_s5_cancelE.dag.rescue001"):
        (submit / later).unlink()
    status = submit / "u_stpeer_s5_cancelE.node_status"
    if node_status == "absent":
        status.unlink()
    else:  # as DAGMan wrote it at start: every node not ready / ready
        text = re.sub(r"NodeStatus = 5;", "NodeStatus = 0;", status.read_text())
        status.write_text(re.sub(r"Timestamp = \d+;", "Timestamp = 1796479199;", text))
    update_record(submit, drop=("cancelled_at",), state="submitted")
    report = build_report(submit)
    # was: 0 succeeded, 0 running, 106 pending. The event log at 14:00:17: 50 isrLike jobs
    # ended with exit 0; 45 calibLike jobs submitted, 16 started, 12 of them ended with exit 0.
    assert report.state == "running"
    assert report.counts["isrLike"]["succeeded"] == 50
    calib = report.counts["calibLike"]
    assert (calib["succeeded"], calib["running"], calib["idle"], calib["pending"]) == (12, 4, 29, 5)
    assert report.counts["gatherLike"]["pending"] == 5 and report.counts["finalize"]["pending"] == 1


# -- cancelled runs --------------------------------------------------------------------------------


def test_a_cancelled_dag_is_cancelled_not_succeeded_and_says_what_a_restart_reruns(tmp_path):
    submit = scenario("cancel", tmp_path)
    # The record as `bps cancel` left it; the old report then overwrote "cancelled" with "succeeded".
    update_record(submit, state="cancelled")
    for _ in range(2):
        report = build_report(submit)
        assert report.state == "cancelled"
        assert read_run_record(submit)["state"] == "cancelled"
    assert report.counts["gatherLike"]["pending"] == 5 and report.counts["calibLike"]["succeeded"] == 50
    assert any("DAG status 4" in m for m in report.messages)
    assert any(
        "rescue001 marks 100 of 105 jobs done" in m and "reruns the other 5" in m for m in report.messages
    )


def test_a_record_overwritten_after_a_cancel_is_still_read_as_cancelled(tmp_path):
    # The real record: "cancelled_at" after the submission, "state" overwritten to "succeeded".
    submit = scenario("cancel", tmp_path)
    assert read_run_record(submit)["state"] == "succeeded"
    assert build_report(submit).state == "cancelled"


def test_a_dagman_that_died_after_the_cancel_is_reported_honestly(tmp_path):
    submit = scenario("cancel-jobs-running", tmp_path)
    (submit / "u_stpeer_s5_cancelE2.dag.lock").write_text("")  # DAGMan left it (not kept in the data)
    update_record(submit, state="cancelled")
    report = build_report(submit)
    assert report.state == "cancelled"
    (died,) = [m for m in report.messages if "without an exit status" in m]
    assert "DAGMan job 875" in died and "Assertion ERROR on (! _finalNodeRun)" in died
    assert "u_stpeer_s5_cancelE2.dag.lock" in died
    # was: 0 succeeded, 106 pending. 34 node jobs and the final job ended with exit 0.
    assert report.totals()["succeeded"] == 35 and report.totals()["pending"] == 71
    (hint,) = [m for m in report.messages if "rescue001" in m]
    assert "marks 0 of 105 jobs done" in hint and "34 of them succeeded but are not marked done" in hint


# -- memory ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "codes", "reason"),
    [
        ("memory-hold-startd-policy", "code 21 / subcode 102", "memory usage exceeded request_memory"),
        ("memory-hold-system-periodic", "code 26 / subcode 34", "memory usage 3094 MB exceeded"),
    ],
)
def test_a_job_held_by_a_pool_memory_policy_is_reported_with_its_hold_reason_and_codes(
    tmp_path, name, codes, reason
):
    report = build_report(scenario(name, tmp_path))
    assert report.state == "cancelled"  # held until `bps cancel`
    failure = _failure(report, "memHog_0_1_DummyCam")
    assert (
        codes in failure.reason and reason in failure.reason and "over its memory request" in failure.reason
    )
    assert reason in failure.hold_reason
    assert "DAG Removed" in failure.reason


def test_a_job_removed_at_the_memory_cap_is_reported_with_every_attempt(tmp_path):
    report = build_report(scenario("memory-removed-at-cap", tmp_path))
    assert report.state == "failed"
    failure = _failure(report, "memHog_0_1_DummyCam")
    assert failure.attempt == 4
    assert "code 3 / subcode 34" in failure.reason
    assert "memory usage 3174 MB exceeded request_memory 3000 MB" in failure.reason
    assert "its PeriodicRemove expression evaluated to TRUE" in failure.reason


def test_memory_escalation_that_worked_is_a_success_in_two_starts(tmp_path):
    submit = scenario("memory-escalation-job-policy", tmp_path)
    report = build_report(submit)
    assert report.state == "succeeded" and report.failures == []
    hist = read_event_log(find_dag(submit).nodes_log)["memHog_0_1_DummyCam"]
    assert hist.runs == 2 and hist.request_memory_mb >= 6348


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        # removed at the cap (3000 MB): the restart starts at the cap, not at 2048 again
        ("memory-removed-at-cap", 3000),
        # held by the startd (no numbers in the reason): twice the 2048 MB it was matched with
        ("memory-hold-startd-policy", 4096),
        # held by SYSTEM_PERIODIC_HOLD at 3094 MB used: twice the usage
        ("memory-hold-system-periodic", 6188),
    ],
)
def test_a_restart_keeps_the_memory_a_node_needed(tmp_path, name, expected):
    submit = scenario(name, tmp_path)
    workflow = load_workflow(submit / "workflow.json")
    grown = grown_memory(workflow, read_event_log(find_dag(submit).nodes_log))
    assert grown == {"memHog_0_1_DummyCam": expected}


def test_a_raised_cap_lets_a_restart_ask_for_more_than_the_old_cap(tmp_path):
    submit = scenario("memory-removed-at-cap", tmp_path)
    workflow = load_workflow(submit / "workflow.json")
    job = workflow.jobs["memHog_0_1_DummyCam"]
    workflow.jobs["memHog_0_1_DummyCam"] = dataclasses.replace(
        job, retry=dataclasses.replace(job.retry, memory_max_mb=8000)
    )
    grown = grown_memory(workflow, read_event_log(find_dag(submit).nodes_log))
    assert grown == {"memHog_0_1_DummyCam": 6348}  # 2 x the 3174 MB it used


class _ScheddWithHistory:
    """A schedd whose history holds the real ``condor_history -l`` ad of one job."""

    def __init__(self, ad_file):
        import classad2

        self.ad = classad2.parseOne(ad_file.read_text())

    def query(self, constraint, projection):
        return []

    def history(self, constraint, projection, match=-1):
        return [self.ad] if constraint == f"ClusterId == {self.ad['ClusterId']}" else []


def test_a_restart_reads_the_usage_a_startd_hold_does_not_name_from_the_schedd_history(tmp_path):
    submit = scenario("memory-hold-startd-policy", tmp_path)
    workflow = load_workflow(submit / "workflow.json")
    history = read_event_log(find_dag(submit).nodes_log)
    usage_from_schedd(_ScheddWithHistory(submit / "condor_history_l.736.txt"), history)
    # ResidentSetSize 3250000 KiB: 3174 MB used, so twice that, not twice the 2048 MB request
    assert history["memHog_0_1_DummyCam"].memory_usage_mb == 3174
    assert grown_memory(workflow, history) == {"memHog_0_1_DummyCam": 6348}


def test_waiting_for_a_new_dagman_reads_dagman_out_from_where_it_ended_before(tmp_path):
    layout = find_dag(scenario("restart", tmp_path))
    text = layout.dagman_out.read_bytes()
    starting = text.rindex(b"STARTING UP", 0, text.index(b"Workflow batch-id: <768.0>"))
    before_768 = text.rindex(b"\n", 0, starting) + 1
    assert [s.cluster for s in dm.read_sections(layout.dagman_out, before_768)] == [768]
    assert dm.dagman_run(layout, 768, offset=before_768).exit_status == 0
    # an offset past the end (the file was replaced) reads it all
    assert len(dm.read_sections(layout.dagman_out, len(text) + 10)) == 3


@pytest.mark.parametrize(("overrides", "expected"), [(None, 3000), ({"memory_max_mb": 8000}, 6348)])
def test_bps_restart_writes_the_memory_a_removed_node_needs_into_its_vars(tmp_path, overrides, expected):
    """The real run removed at its 3000 MB cap: the restarted DAG starts the node at the cap
    (not at 2048 MB again), or, with a raised cap, at twice the 3174 MB it used."""
    submit = scenario("memory-removed-at-cap", tmp_path)
    workflow_json = submit / "workflow.json"
    # pytest's directories are under /tmp, which the prepare-time check refuses for node logs
    workflow_json.write_text(
        workflow_json.read_text().replace('"skip_checks":[]', '"skip_checks":["tmp_node_log"]')
    )
    layout = HTCondorService().prepare_restart(submit, overrides)
    (vars_line,) = [
        line for line in layout.dag.read_text().splitlines() if line.startswith("VARS memHog_0_1_DummyCam ")
    ]
    assert f'bps_memory="{expected}"' in vars_line
    assert read_run_record(submit)["restarts"][-1]["memory"] == {"memHog_0_1_DummyCam": expected}


# -- runs of today's DAG (no POST scripts, retries inside the job) on HTCondor 25.14.0 -------------


def test_a_cancel_while_every_job_was_idle_leaves_them_pending_not_failed(tmp_path):
    """`bps cancel` 18 s after submission of the 105-job DAG, every make job still idle: DAGMan
    removed them, marked them failed and their descendants futile, ran FINAL (exit 69:
    outputs missing, so DAGMan exited 1 with DAG status 4)."""
    submit = scenario("cancel-while-idle/after-cancel", tmp_path, data=DATA_25140)
    status = (submit / "real_wide_1796485764.node_status").read_text()
    # 50 make jobs and FINAL failed, 50 double + 5 total futile
    assert status.count('"STATUS_ERROR"') == 51 and status.count('"STATUS_FUTILE"') == 55
    report = build_report(submit)
    assert report.state == "cancelled"
    assert report.counts["make"]["pending"] == 50 and report.counts["double"]["pending"] == 50
    # FINAL (finalize) exited 69 because the cancel left the outputs missing: not a failure
    # of the pipeline, and a restart runs it again.
    assert report.totals()["failed"] == 0 and report.totals()["skipped"] == 0
    assert report.failures == [] and report.counts["finalize"]["pending"] == 1
    (why,) = [m for m in report.messages if m.startswith("the run was cancelled: the final job")]
    assert "exited 69" in why and "not a failure of the pipeline" in why and "bps restart" in why
    assert any("DAGMan job 601 exited with status 1, DAG status 4" in m for m in report.messages)
    assert any("rescue001 marks 0 of 105 jobs done" in m for m in report.messages)


def test_report_of_the_demo_run_unedited_on_25_14_0_is_succeeded(tmp_path):
    submit = scenario("demo-success", tmp_path, data=DATA_25140)
    assert read_run_record(submit)["warnings"]  # prepare's, about file ownership, fixed before submitting
    report = build_report(submit)
    assert report.state == "succeeded" and report.failures == [] and report.messages == []
    assert report.totals()["succeeded"] == 29 == sum(report.totals().values())


def test_report_of_a_failure_with_retries_inside_the_job_counts_its_four_starts(tmp_path):
    report = build_report(scenario("failure", tmp_path, data=DATA_25140))
    assert report.state == "failed"
    assert report.counts["make"] == {**report.counts["make"], "succeeded": 4, "failed": 2}
    assert report.counts["double"]["skipped"] == 2 and report.counts["total"]["skipped"] == 2
    for node in ("make_0_Cam0", "make_0_Cam1"):
        failure = _failure(report, node)
        # one cluster, three "terminated and requeued" evictions, then the termination
        assert (failure.attempt, failure.exit_code) == (4, 1) and failure.reason.startswith("exit code 1: ")
    final = _failure(report, "bps_final")
    assert final.exit_code == 69  # finalize: outputs missing, so DAGMan exits 1
    assert any("DAGMan job 43 exited with status 1, DAG status 2" in m for m in report.messages)
    assert any("marks 8 of 14 jobs done" in m and "reruns the other 6" in m for m in report.messages)


def test_report_of_a_no_retry_exit_code_says_it_was_not_retried(tmp_path):
    report = build_report(scenario("no-retry-exit-78", tmp_path, data=DATA_25140))
    assert report.state == "failed"
    failure = _failure(report, "make_0_Cam0")
    assert (failure.attempt, failure.exit_code) == (1, 78) and "(not retried)" in failure.reason


def test_report_of_the_cancel_dagman_died_in_says_cancelled_and_why_no_metrics(tmp_path):
    submit = scenario("cancel-jobs-running", tmp_path, data=DATA_25140)
    report = build_report(submit)
    assert report.state == "cancelled" and read_run_record(submit)["state"] == "cancelled"
    (died,) = [m for m in report.messages if "without an exit status or metrics" in m]
    assert "DAGMan job 50" in died and "Assertion ERROR on (! _finalNodeRun)" in died
    assert report.counts["make"]["succeeded"] == 9 and report.totals()["pending"] == 96
    assert [f.name for f in report.failures] == ["bps_final"]  # removed with its DAGMan


def test_a_cancel_by_halting_dagman_ends_with_final_metrics_and_a_rescue_dag_not_an_assertion(tmp_path):
    """`bps cancel` 6 s into the 50 -> 50 -> 5 DAG (4 make done, make and double jobs queued):
    halt file, then the node jobs removed; DAGMan ran FINAL and exited 1 by itself."""
    submit = scenario("cancel-halted", tmp_path, data=DATA_25140)
    out = (submit / "real_wide_1796487694.dag.dagman.out").read_text()
    assert "Assertion" not in out and "Received SIGUSR1" not in out
    assert "Exiting because DAG is halted and no jobs or scripts are running" in out
    metrics = dm.read_metrics(submit / "real_wide_1796487694.dag.metrics")
    assert (metrics["exitcode"], metrics["DagStatus"]) == (1, 6)
    history = read_event_log(submit / "real_wide_1796487694.dag.nodes.log")
    removed = [h for h in history.values() if h.state == "removed"]
    assert len(removed) == 50 and all(h.remove_reason.startswith("bps cancel") for h in removed)
    report = build_report(submit)
    assert report.state == "cancelled" and not [m for m in report.messages if "without an exit" in m]
    assert report.counts["make"]["succeeded"] == 4 and report.totals()["pending"] == 102
    # FINAL ran after the halt, registered the 4 outputs made and exited 69 (101 missing):
    # the report says so once, as the cancel's consequence, never as a failed job.
    assert report.failures == [] and report.totals()["failed"] == 0
    (why,) = [m for m in report.messages if m.startswith("the run was cancelled: the final job")]
    assert "registered the 4 new outputs that were made and exited 69" in why
    assert "101 expected outputs are missing because the run was cancelled" in why
    assert "not a failure of the pipeline" in why
    assert any("DAGMan job 1594 exited with status 1, DAG status 6" in m for m in report.messages)
    assert any("rescue001 marks 4 of 105 jobs done" in m and "bps restart" in m for m in report.messages)
