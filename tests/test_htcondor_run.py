"""Execute emitted DAGs with the DAGMan test runner: outputs, failures, retries, memory, report, restart."""

from __future__ import annotations

import json
import time
from pathlib import Path

import htcondor2
import pytest
from support.dagman_runner import run_dag
from support.htcondor_workflows import diamond, output_checksums, pool_site

from bps.wms.base import WmsError, read_run_record, write_run_record
from bps.wms.htcondor.eventlog import read_event_log
from bps.wms.htcondor.layout import find_dag
from bps.wms.htcondor.service import HTCondorService
from bps.workflow import GenericWorkflow, RetryPolicy

SERVICE = HTCondorService()


def _run(wf: GenericWorkflow, **options):
    dag = SERVICE.prepare(wf)
    return run_dag(dag, **options), Path(wf.submit_dir)


def test_both_staging_modes_produce_the_same_datasets(tmp_path):
    results = {}
    for staging in ("shared", "transfer"):
        wf = diamond(tmp_path / staging, staging)
        result, submit = _run(wf)
        assert result.exit_code == 0
        assert result.order[-1] == "bps_final"
        results[staging] = output_checksums(wf)
        finalized = (submit / "finalized.txt").read_text().split()
        assert sorted(finalized) == sorted(results[staging])
    assert len(results["shared"]) == 4
    assert results["shared"] == results["transfer"]


def test_transfer_mode_leaves_nothing_in_staged_after_finalize(tmp_path):
    wf = diamond(tmp_path, "transfer", extra={"calibrate_2": ["--no-work"], "coadd_0": ["--allow-missing"]})
    _, submit = _run(wf)
    # Neither outputs nor the tombstone of the quantum with no work stay behind.
    assert list((submit / "staged").iterdir()) == []


def test_a_failed_job_stops_its_descendants_and_the_final_job_still_runs(tmp_path):
    wf = diamond(tmp_path, extra={"calibrate_2": ["--exit", "1"]}, retry=RetryPolicy(retries=1))
    result, submit = _run(wf)
    assert result.exit_code == 1
    assert result.status("calibrate_2") == "STATUS_ERROR"
    assert result.status("coadd_0") == result.status("detect_0") == "STATUS_FUTILE"
    assert "coadd_0" not in result.order and "bps_final" in result.order
    assert result.status("calibrate_1") == "STATUS_DONE"
    rescue = find_dag(submit).rescue_files()
    assert [p.name for p in rescue] == ["diamond.dag.rescue001"]
    assert [line for line in rescue[0].read_text().splitlines() if line.startswith("DONE")] == [
        "DONE calibrate_1"
    ]


def test_a_failed_dag_exits_non_zero_because_finalize_is_told_its_status(tmp_path):
    # Real DAGMan ends with the FINAL node's status: finalize gets $(DAG_STATUS) and
    # $(FAILED_COUNT) and fails, so the DAG's exit status is the truth.
    wf = diamond(tmp_path, extra={"calibrate_2": ["--exit", "1"]}, retry=RetryPolicy(retries=0))
    result, submit = _run(wf)
    assert (result.exit_code, result.dag_status) == (1, 2)
    assert result.status("bps_final") == "STATUS_ERROR"
    metrics = json.loads((submit / "diamond.dag.metrics").read_text())
    assert (metrics["exitcode"], metrics["DagStatus"]) == (1, 2)


def test_a_removed_dag_exits_non_zero_with_a_rescue_dag(tmp_path):
    wf = diamond(tmp_path)
    result, submit = _run(wf, cancel_after=2)
    assert (result.exit_code, result.dag_status) == (1, 4)
    assert result.order == ["calibrate_1", "calibrate_2", "bps_final"]
    assert find_dag(submit).rescue_files()
    assert 'DagStatus = 6; /* "STATUS_ERROR (removed)" */' in (submit / "diamond.node_status").read_text()


def test_a_successful_dag_exits_zero_and_finalize_saw_status_zero(tmp_path):
    wf = diamond(tmp_path)
    result, submit = _run(wf)
    assert (result.exit_code, result.dag_status) == (0, 0)
    final_sub = (submit / "bps_final.sub").read_text()
    assert "--dag-status $(DAG_STATUS) --failed-count $(FAILED_COUNT)" in final_sub


def test_report_counts_per_label_and_explains_each_failure(tmp_path):
    wf = diamond(tmp_path, extra={"calibrate_2": ["--exit", "1"]}, retry=RetryPolicy(retries=1))
    _, submit = _run(wf)
    report = SERVICE.report(submit)
    assert report.state == "failed"
    assert report.counts["calibrate"]["succeeded"] == 1 and report.counts["calibrate"]["failed"] == 1
    assert report.counts["coadd"]["skipped"] == 1 and report.counts["detect"]["skipped"] == 1
    # finalize registered what was made and exited OUTPUTS_MISSING: the FINAL node failed too
    assert report.counts["finalize"]["failed"] == 1
    (failure,) = _job_failures(report)
    assert (failure.name, failure.label, failure.exit_code, failure.attempt) == (
        "calibrate_2",
        "calibrate",
        1,
        2,
    )
    assert "failing with exit code 1 on purpose" in failure.log_tail
    assert failure.log_file.startswith(str(submit / "logs" / "calibrate" / "visit-2" / "calibrate_2."))
    assert any("bps restart" in m for m in report.messages)
    assert read_run_record(submit)["counts"]["failed"] == 2  # calibrate_2 and the FINAL node


def test_no_retry_exit_codes_are_not_retried(tmp_path):
    wf = diamond(tmp_path, extra={"calibrate_1": ["--exit", "78"]}, retry=RetryPolicy(retries=3))
    _, submit = _run(wf)
    (failure,) = _job_failures(SERVICE.report(submit))
    assert failure.attempt == 1 and failure.exit_code == 78
    assert "invalid configuration" in failure.reason


def test_exit_3_of_an_older_run_quantum_is_not_retried_and_fails_its_node(tmp_path):
    # Today's run_quantum never exits 3 (no work is exit 0 with tombstones); without a POST
    # script to translate it, the reserved code is one of NO_RETRY: one attempt, node failed.
    wf = diamond(tmp_path, extra={"calibrate_2": ["--exit", "3"]}, retry=RetryPolicy(retries=3))
    result, submit = _run(wf)
    assert result.status("calibrate_2") == "STATUS_ERROR" and result.exit_code == 1
    assert _starts(submit, "calibrate_2") == 1


@pytest.mark.parametrize("staging", ["shared", "transfer"])
def test_a_tombstone_reaches_the_consumer_which_runs_without_it_and_is_never_registered(tmp_path, staging):
    # The fake job leaves tombstones and exits 0, like run_quantum; the consumer fails
    # (--expect-no-work) unless the tombstone arrived in its place.
    wf = diamond(
        tmp_path,
        staging,
        extra={"calibrate_2": ["--no-work"], "coadd_0": ["--allow-missing", "--expect-no-work"]},
    )
    result, submit = _run(wf)
    assert result.exit_code == 0, [(n, result.status(n)) for n in result.order]
    assert result.status("calibrate_2") == result.status("coadd_0") == "STATUS_DONE"
    missing = "calexp.instrument-DemoCam.visit-2"
    assert missing not in (submit / "finalized.txt").read_text().split()
    assert sorted(output_checksums(wf)) == sorted(
        f.lfn for j in wf.jobs.values() for f in j.outputs if f.lfn != missing
    )
    assert SERVICE.report(submit).counts["calibrate"]["succeeded"] == 2


def test_retries_run_in_the_same_cluster_and_the_event_log_keeps_every_exit_code(tmp_path):
    marker = tmp_path / "attempts"
    wf = diamond(
        tmp_path,
        extra={"coadd_0": ["--fail-until-attempt", "3", "--marker", str(marker)]},
        retry=RetryPolicy(retries=3),
    )
    result, submit = _run(wf)
    assert result.exit_code == 0 and marker.read_text() == "3"
    node = result.dag.nodes["coadd_0"]
    assert len(node.clusters) == 1 and node.retry == 0 and node.starts == 3
    events = list(htcondor2.JobEventLog(str(find_dag(submit).nodes_log)).events(0))
    requeued = [e for e in events if e.cluster == node.clusters[0] and e.get("TerminatedAndRequeued")]
    assert [e["ReturnValue"] for e in requeued] == [75, 75]  # the fake job's "retry may help"
    # HTCondor truncates a job's output at each start: the log is the last attempt's.
    (log,) = (submit / "logs" / "coadd" / "tract-0").glob("coadd_0.*.out")
    assert "failing" not in log.read_text()


def test_memory_hold_releases_the_job_with_more_memory(tmp_path):
    wf = diamond(tmp_path, extra={"detect_0": ["--memory", "3000"]})
    result, submit = _run(wf)
    assert result.exit_code == 0
    hist = read_event_log(find_dag(submit).nodes_log)["detect_0"]
    # max(base * 2 ** starts, usage * 2): the measured 3000 MB wins over 4096
    assert len(hist.clusters) == 1 and hist.request_memory_mb == 6000
    assert "memory limit of 2048" in hist.last_hold_reason


def test_memory_beyond_the_cap_is_removed_reported_and_kept_on_restart(tmp_path):
    retry = RetryPolicy(retries=0, memory_max_mb=8192)
    wf = diamond(tmp_path, extra={"detect_0": ["--memory", "100000"]}, retry=retry)
    result, submit = _run(wf)
    assert result.status("detect_0") == "STATUS_ERROR"
    report = SERVICE.report(submit)
    (failure,) = _job_failures(report)
    assert failure.name == "detect_0" and "periodic_remove" in failure.reason
    assert "memory limit of 8192" in failure.hold_reason
    layout = SERVICE.prepare_restart(submit)
    assert 'bps_memory="8192"' in _vars_line(layout.dag, "detect_0")


def test_restart_reruns_only_what_failed_and_completes_the_outputs(tmp_path):
    broken = tmp_path / "broken"
    broken.write_text("0")
    # The job fails while the marker says fewer than 99 attempts: the fix is "delete the cause".
    wf = diamond(
        tmp_path,
        extra={"coadd_0": ["--fail-until-attempt", "99", "--marker", str(broken)]},
        retry=RetryPolicy(retries=0),
    )
    first, submit = _run(wf)
    assert first.status("coadd_0") == "STATUS_ERROR"
    broken.write_text("98")  # the operator fixes the problem
    layout = SERVICE.prepare_restart(submit, {"labels": {"coadd": {"retries": 2}}})
    second = run_dag(layout.dag)
    assert second.exit_code == 0
    assert [n for n in second.order if n != "bps_final"] == ["coadd_0", "detect_0"]
    assert len(output_checksums(wf)) == 4
    assert "max_retries = $(bps_retries:2)" in (submit / "coadd.sub").read_text()
    report = SERVICE.report(submit)
    assert report.state == "succeeded" and report.totals()["succeeded"] == 5
    assert read_run_record(submit)["restarts"][0]["overrides"] == {"labels": {"coadd": {"retries": 2}}}


def test_after_a_restart_is_submitted_the_previous_dagman_exit_is_not_reported(tmp_path):
    marker = tmp_path / "attempts"
    wf = diamond(
        tmp_path,
        extra={"detect_0": ["--fail-until-attempt", "2", "--marker", str(marker)]},
        retry=RetryPolicy(retries=0),
    )
    _, submit = _run(wf)
    assert SERVICE.report(submit).state == "failed"
    layout = SERVICE.prepare_restart(submit)
    assert SERVICE.report(submit).state == "prepared"
    # What `submit` records (the schedd part needs HTCondor): the new DAGMan has not written yet.
    time.sleep(1.0)  # event logs have one-second resolution
    write_run_record(
        submit, cluster_id=77, state="submitted", submissions=[{"cluster_id": 77, "time": time.time()}]
    )
    during = SERVICE.report(submit)
    assert during.state == "running"
    assert during.counts["detect"]["failed"] == 0
    run_dag(layout.dag)
    after = SERVICE.report(submit)
    assert after.state == "succeeded" and after.counts["detect"]["succeeded"] == 1


def test_restart_refuses_unknown_overrides_and_runs_without_a_rescue(tmp_path):
    wf = diamond(tmp_path, extra={"calibrate_1": ["--exit", "78"]})
    _, submit = _run(wf)
    with pytest.raises(WmsError, match="unknown restart override"):
        SERVICE.prepare_restart(submit, {"memory": 4096})
    with pytest.raises(WmsError, match="not in this run"):
        SERVICE.prepare_restart(submit, {"labels": {"nosuch": {"retries": 1}}})
    ok = diamond(tmp_path / "ok")
    _, ok_submit = _run(ok)
    with pytest.raises(WmsError, match="no rescue DAG"):
        SERVICE.prepare_restart(ok_submit)


def test_report_of_a_prepared_run_says_how_to_submit(tmp_path):
    wf = diamond(tmp_path)
    SERVICE.prepare(wf)
    report = SERVICE.report(Path(wf.submit_dir))
    assert report.state == "prepared"
    assert report.totals()["pending"] == 5
    assert any("bps submit" in m for m in report.messages)


def _job_failures(report) -> list:
    """The failures of pipeline jobs (the FINAL node fails as a consequence: outputs missing)."""
    return [f for f in report.failures if f.name != "bps_final"]


def _starts(submit: Path, node: str) -> int:
    events = list(htcondor2.JobEventLog(str(find_dag(submit).nodes_log)).events(0))
    clusters = {
        e.cluster for e in events if e.type == htcondor2.JobEventType.SUBMIT and node in e.get("LogNotes", "")
    }
    return sum(1 for e in events if e.type == htcondor2.JobEventType.EXECUTE and e.cluster in clusters)


def _vars_line(dag: Path, node: str) -> str:
    return next(line for line in dag.read_text().splitlines() if line.startswith(f"VARS {node} "))


@pytest.mark.parametrize("pool", ["startd", "system_periodic_hold", "cgroup"])
def test_a_memory_hold_of_the_pools_policy_is_released_with_more_memory(tmp_path, pool):
    wf = diamond(tmp_path, extra={"detect_0": ["--memory", "3000"]}, site=pool_site(memory_policy=pool))
    result, submit = _run(wf, pool_memory_policy=pool)
    assert result.exit_code == 0 and result.dag.nodes["detect_0"].starts == 2


def test_a_site_that_names_the_wrong_policy_leaves_the_job_held(tmp_path):
    # What happened on the real startd-policy pool: code 21/102 was not released.
    wf = diamond(tmp_path, extra={"detect_0": ["--memory", "3000"]}, site=pool_site(memory_policy="cgroup"))
    result, submit = _run(wf, pool_memory_policy="startd")
    assert result.status("detect_0") == "STATUS_SUBMITTED"  # held, never released
    events = list(htcondor2.JobEventLog(str(find_dag(submit).nodes_log)).events(0))
    held = [e for e in events if e.type == htcondor2.JobEventType.JOB_HELD]
    assert [(e["HoldReasonCode"], e["HoldReasonSubCode"]) for e in held] == [(21, 102)]
    assert not any(e.type == htcondor2.JobEventType.JOB_RELEASED for e in events)


def test_a_job_removed_at_the_memory_cap_fails_its_node_without_another_attempt(tmp_path):
    # Real DAGMan retried such a node 4 times, each new cluster from 2048 MB again.
    retry = RetryPolicy(retries=3, memory_max_mb=3000)
    wf = diamond(tmp_path, extra={"detect_0": ["--memory", "3500"]}, retry=retry)
    result, submit = _run(wf)
    node = result.dag.nodes["detect_0"]
    assert result.status("detect_0") == "STATUS_ERROR" and result.exit_code == 1
    assert len(node.clusters) == 1 and node.starts == 2  # 2048 MB, then the cap 3000 MB
    events = list(htcondor2.JobEventLog(str(find_dag(submit).nodes_log)).events(0))
    execs = [e for e in events if e.cluster == node.clusters[0] and e.type == htcondor2.JobEventType.EXECUTE]
    assert [e["ExecuteProps"]["Memory"] for e in execs] == [2048, 3000]


def test_a_retry_after_memory_grew_never_starts_below_the_grown_request(tmp_path):
    marker = tmp_path / "attempts"
    wf = diamond(
        tmp_path,
        extra={"detect_0": ["--memory", "3000", "--fail-until-attempt", "3", "--marker", str(marker)]},
        retry=RetryPolicy(retries=3),
    )
    result, submit = _run(wf)
    node = result.dag.nodes["detect_0"]
    events = list(htcondor2.JobEventLog(str(find_dag(submit).nodes_log)).events(0))
    memory = [e["ExecuteProps"]["Memory"] for e in events if e.cluster == node.clusters[0] and e.type == 1]
    assert memory[0] == 2048 and all(b >= a for a, b in zip(memory, memory[1:], strict=False))
    assert min(memory[1:]) >= 6000
