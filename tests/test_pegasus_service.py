"""PegasusService: prepare, submit (with and without Pegasus), report from jobstate.log, restart, cancel."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from bps.wms.base import WmsError, WmsUnavailableError, get_service, read_run_record
from bps.wms.pegasus import schema
from bps.wms.pegasus.service import PegasusService
from bps.workflow import Resources
from bps.workflow_io import load_workflow

try:
    from tests.support.pegasus_runner import build_sample, run_workflow
except ImportError:  # tests/ is not a package: pytest put tests/ itself on sys.path
    from support.pegasus_runner import build_sample, run_workflow

FAKE_TOOL = """#!{python}
import json, os, sys
from pathlib import Path
log = Path(os.environ["FAKE_PEGASUS_LOG"])
with log.open("a") as stream:
    stream.write(json.dumps({{"tool": "{tool}", "argv": sys.argv[1:], "cwd": os.getcwd()}}) + "\\n")
if "{tool}" == "pegasus-plan":
    args = sys.argv[1:]
    run_dir = Path(args[args.index("--dir") + 1]) / args[args.index("--relative-dir") + 1]
    run_dir.mkdir(parents=True)
    (run_dir / "braindump.yml").write_text(
        "wf_uuid: 1234-abcd\\nroot_wf_uuid: 1234-abcd\\npegasus_wf_name: sample_run\\nsubmit_dir: " + str(run_dir) + "\\n"
    )
sys.exit(int(os.environ.get("FAKE_PEGASUS_EXIT", "0")))
"""


@pytest.fixture
def fake_pegasus(tmp_path, monkeypatch):
    """Put stand-ins for pegasus-plan/-run/-remove first on PATH; return the call log reader."""
    bin_dir = tmp_path / "fakebin"
    bin_dir.mkdir()
    for tool in ("pegasus-plan", "pegasus-run", "pegasus-remove"):
        script = bin_dir / tool
        script.write_text(FAKE_TOOL.format(python=sys.executable, tool=tool))
        script.chmod(0o755)
    log = tmp_path / "calls.jsonl"
    monkeypatch.setenv("FAKE_PEGASUS_LOG", str(log))
    monkeypatch.setenv("PATH", f"{bin_dir}:{Path(sys.executable).parent}")

    def calls() -> list[dict]:
        return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []

    return calls


@pytest.fixture
def no_pegasus(monkeypatch, tmp_path):
    empty = tmp_path / "emptybin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))


def _prepared(tmp_path):
    sample = build_sample(tmp_path, pegasus={"execution_site": "local"})
    service = PegasusService()
    main = service.prepare(sample.workflow)
    return sample, service, Path(sample.workflow.submit_dir), main


def test_get_service_finds_the_pegasus_service():
    assert isinstance(get_service("pegasus"), PegasusService)


def test_prepare_writes_valid_files_the_generic_workflow_and_a_run_record(tmp_path):
    sample, _, submit, main = _prepared(tmp_path)
    assert main == submit / "pegasus" / "workflow.yml"
    assert schema.validate_directory(main.parent) == {name: [] for name in schema.SCHEMA_OF}
    assert load_workflow(submit / "workflow.json").edges() == sample.workflow.edges()
    record = read_run_record(submit)
    assert record["wms"] == "pegasus" and record["state"] == "prepared" and record["jobs"] == 6
    assert (main.parent / "plan.sh").stat().st_mode & 0o111


def test_prepare_refuses_a_job_bigger_than_the_largest_slot(tmp_path):
    sample = build_sample(tmp_path, pegasus={"execution_site": "local"})
    job = sample.workflow.jobs["coadd.tract-0.patch-1"]
    job.resources = Resources(memory_mb=sample.workflow.site.max_memory_mb + 1)
    with pytest.raises(WmsError, match=r"label 'coadd' asks for memory_mb") as err:
        PegasusService().prepare(sample.workflow)
    assert "max_memory_mb" in str(err.value)
    assert not (Path(sample.workflow.submit_dir) / "pegasus" / "workflow.yml").exists()


def test_submit_without_pegasus_says_so_and_leaves_the_directory_ready_to_plan(tmp_path, no_pegasus):
    _, service, submit, main = _prepared(tmp_path)
    with pytest.raises(WmsUnavailableError, match="pegasus-plan is not on PATH") as err:
        service.submit(submit)
    assert str(main.parent / "plan.sh") in str(err.value)
    assert main.exists()
    assert read_run_record(submit)["state"] == "prepared"


def test_submit_runs_pegasus_plan_with_submit_and_records_the_run(tmp_path, fake_pegasus):
    _, service, submit, main = _prepared(tmp_path)
    run_id = service.submit(submit)
    assert run_id == "1234-abcd"
    (call,) = fake_pegasus()
    assert call["tool"] == "pegasus-plan" and call["cwd"] == str(main.parent)
    argv = call["argv"]
    assert argv[argv.index("--conf") + 1] == "pegasus.properties"
    assert argv[argv.index("--sites") + 1] == "local"
    assert "--submit" in argv and argv[-1] == "workflow.yml"
    record = read_run_record(submit)
    assert record["state"] == "submitted"
    assert record["run_dir"] == str(main.parent / "submit" / "run")


def test_failed_planning_names_the_fix(tmp_path, fake_pegasus, monkeypatch):
    _, service, submit, _ = _prepared(tmp_path)
    monkeypatch.setenv("FAKE_PEGASUS_EXIT", "1")
    with pytest.raises(WmsError, match="pegasus-plan failed"):
        service.submit(submit)
    assert read_run_record(submit)["state"] == "prepared"


def test_report_before_submission_lists_every_job_pending(tmp_path):
    _, service, submit, _ = _prepared(tmp_path)
    report = service.report(submit)
    assert report.state == "prepared"
    assert report.totals()["pending"] == 7  # six jobs and the final job
    assert report.counts["isr"]["pending"] == 3


def _jobstate(lines: list[tuple[str, str]], finished: int | None) -> str:
    text = "1000 INTERNAL *** DAGMAN_STARTED 1 ***\n"
    for t, (node, event) in enumerate(lines):
        text += f"{1001 + t} {node} {event} {t + 10}.0 local - 1\n"
    if finished is not None:
        text += f"2000 INTERNAL *** DAGMAN_FINISHED {finished} ***\n"
    return text


def test_report_counts_per_label_and_explains_failures_from_jobstate_log(tmp_path, fake_pegasus):
    _, service, submit, main = _prepared(tmp_path)
    service.submit(submit)
    run_dir = main.parent / "submit" / "run"
    events = [
        ("create_dir_sample_run_0_local", "POST_SCRIPT_SUCCESS"),
        ("fake_run_quantum_isr_visit-1_detector-1", "SUBMIT"),
        ("fake_run_quantum_isr_visit-1_detector-1", "POST_SCRIPT_SUCCESS"),
        ("fake_run_quantum_isr_visit-1_detector-2", "SUBMIT"),
        ("fake_run_quantum_isr_visit-1_detector-2", "POST_SCRIPT_FAILURE"),
        ("fake_run_quantum_isr_visit-1_detector-2", "SUBMIT"),
        ("fake_run_quantum_isr_visit-1_detector-2", "POST_SCRIPT_FAILURE"),
        ("fake_run_quantum_isr_visit-2", "SUBMIT"),
        ("fake_run_quantum_isr_visit-2", "EXECUTE"),
        ("stage_out_local_local_0_0", "JOB_HELD"),
    ]
    (run_dir / "jobstate.log").write_text(_jobstate(events, finished=None))
    (run_dir / "00").mkdir()
    (run_dir / "00" / "fake_run_quantum_isr_visit-1_detector-2.err.001").write_text(
        "Traceback\nOSError: disk"
    )
    report = service.report(submit)
    assert report.state == "running"
    assert report.counts["isr"] == {**report.counts["isr"], "succeeded": 1, "failed": 1, "running": 1}
    assert report.counts["calib"]["pending"] == 2
    assert report.counts["(pegasus stage_out)"]["held"] == 1
    assert report.counts["(pegasus create_dir)"]["succeeded"] == 1
    failure = next(f for f in report.failures if f.label == "isr")
    assert failure.name == "isr.visit-1.detector-2"
    assert failure.attempt == 2
    assert failure.log_tail.endswith("OSError: disk")
    assert any("bps finalize" in m for m in report.messages)


def test_report_state_follows_the_dagman_exit_status(tmp_path, fake_pegasus):
    _, service, submit, main = _prepared(tmp_path)
    service.submit(submit)
    run_dir = main.parent / "submit" / "run"
    (run_dir / "jobstate.log").write_text(_jobstate([], finished=1))
    assert service.report(submit).state == "failed"
    (run_dir / "jobstate.log").write_text(_jobstate([], finished=0))
    assert service.report(submit).state == "succeeded"


def test_restart_without_overrides_resubmits_the_rescue_dag(tmp_path, fake_pegasus):
    _, service, submit, main = _prepared(tmp_path)
    service.submit(submit)
    run_dir = main.parent / "submit" / "run"
    (run_dir / "jobstate.log").write_text(_jobstate([], finished=1))
    service.restart(submit)
    assert fake_pegasus()[-1] == {"tool": "pegasus-run", "argv": [str(run_dir)], "cwd": str(main.parent)}


def test_restart_refuses_a_running_or_successful_run(tmp_path, fake_pegasus):
    _, service, submit, main = _prepared(tmp_path)
    service.submit(submit)
    run_dir = main.parent / "submit" / "run"
    (run_dir / "jobstate.log").write_text(_jobstate([("fake_run_quantum_calib_visit-1", "EXECUTE")], None))
    with pytest.raises(WmsError, match="still running"):
        service.restart(submit)
    (run_dir / "jobstate.log").write_text(_jobstate([], finished=0))
    with pytest.raises(WmsError, match="nothing to rerun"):
        service.restart(submit)


def test_restart_with_overrides_replans_reusing_the_outputs_already_made(tmp_path, fake_pegasus):
    sample, service, submit, main = _prepared(tmp_path)
    service.submit(submit)
    # the isr jobs ran before the run failed: their outputs and manifests are in place
    result = run_workflow(main.parent, tmp_path / "work", exclude=("finalize",))
    done = {lfn for lfn in result.staged if lfn.startswith(("calexp", "isr"))}
    for lfn in set(result.staged) - done:
        result.staged[lfn].unlink()
    # a finalize had already moved one of them into the datastore
    moved = sample.workflow.jobs["isr.visit-2"].outputs[0]
    (sample.repo / moved.path).parent.mkdir(parents=True, exist_ok=True)
    result.staged[moved.lfn].replace(sample.repo / moved.path)
    (main.parent / "submit" / "run" / "jobstate.log").write_text(_jobstate([], finished=1))

    run_id = service.restart(submit, {"labels": {"calib": {"memory_mb": 3000}}})
    assert run_id == "1234-abcd"
    call = fake_pegasus()[-1]
    assert call["tool"] == "pegasus-plan"
    assert call["argv"][call["argv"].index("--relative-dir") + 1] == "run-2"
    replicas = {
        r["lfn"]: r["pfns"] for r in json.loads((main.parent / "replicas.yml").read_text())["replicas"]
    }
    assert done <= set(replicas)
    assert not set(replicas) & (set(result.staged) - done)
    assert replicas[moved.lfn] == [{"site": "local", "pfn": f"file://{sample.repo / moved.path}"}]
    workflow = json.loads((main.parent / "compute.yml").read_text())
    calib = [j for j in workflow["jobs"] if j["nodeLabel"] == "calib"]
    assert {j["profiles"]["pegasus"]["memory"] for j in calib} == {3000}
    assert load_workflow(submit / "workflow.json").jobs["calib.visit-1"].resources.memory_mb == 3000


def test_restart_with_an_unknown_override_names_it(tmp_path, fake_pegasus):
    _, service, submit, main = _prepared(tmp_path)
    service.submit(submit)
    (main.parent / "submit" / "run" / "jobstate.log").write_text(_jobstate([], finished=1))
    with pytest.raises(WmsError, match="memroy_mb"):
        service.restart(submit, {"memroy_mb": 1})


def test_cancel_removes_the_run_and_refuses_when_never_submitted(tmp_path, fake_pegasus):
    _, service, submit, main = _prepared(tmp_path)
    with pytest.raises(WmsError, match="never submitted"):
        service.cancel(submit)
    service.submit(submit)
    service.cancel(submit)
    assert fake_pegasus()[-1]["tool"] == "pegasus-remove"
    assert read_run_record(submit)["state"] == "cancelled"


def test_a_directory_prepared_for_another_system_is_refused(tmp_path):
    submit = tmp_path / "other"
    submit.mkdir()
    (submit / "run_record.json").write_text(json.dumps({"wms": "htcondor"}))
    with pytest.raises(WmsError, match="not prepared for Pegasus"):
        PegasusService().report(submit)


DAGMAN_OUT = """11/24/26 10:00:00 DAG status: 2 (DAG_STATUS_NODE_FAILED)
11/24/26 10:00:00 Of 8 nodes total:
11/24/26 10:00:00  Done     Pre   Queued    Post   Ready   Un-Ready   Failed
11/24/26 10:00:00   ===     ===      ===     ===     ===        ===      ===
11/24/26 10:00:00     3       0        2       0       0          2        1
"""


def test_report_adds_pegasus_status_progress_from_the_dagman_log(tmp_path, fake_pegasus):
    _, service, submit, main = _prepared(tmp_path)
    service.submit(submit)
    run_dir = main.parent / "submit" / "run"
    (run_dir / "jobstate.log").write_text(_jobstate([], finished=None))
    (run_dir / "sample_run-0.dag.dagman.out").write_text(DAGMAN_OUT)
    messages = service.report(submit).messages
    assert (
        "pegasus-status: Failure, 37.5% of 8 DAG nodes done (3 succeeded, 1 failed, 2 queued, 2 unready)"
        in messages
    )


def test_a_restart_prepared_without_pegasus_leaves_a_plan_script_for_a_new_run_directory(
    tmp_path, fake_pegasus, monkeypatch
):
    _, service, submit, main = _prepared(tmp_path)
    service.submit(submit)
    (main.parent / "submit" / "run" / "jobstate.log").write_text(_jobstate([], finished=1))
    monkeypatch.setenv("PATH", str(tmp_path))  # Pegasus gone
    with pytest.raises(WmsUnavailableError, match="plan.sh"):
        service.restart(submit, {"retries": 5})
    script = (main.parent / "plan.sh").read_text()
    assert "--relative-dir run-2" in script
    assert read_run_record(submit)["state"] == "prepared"


def _planned_compute_run(run_dir: Path, main: Path) -> Path:
    """What pegasus-plan leaves for the compute sub-workflow: its own run directory and braindump."""
    (run_dir / "braindump.yml").write_text(f"wf_uuid: 1234-abcd\ndax: {main}\ncondor_log: sample_run-0.log\n")
    compute = run_dir / "00" / "00" / "sample_run-compute_compute_workflow.000"
    (compute / "00" / "00").mkdir(parents=True)
    (compute / "braindump.yml").write_text(
        f"wf_uuid: 5678-efgh\ndax: {main.parent / 'compute.yml'}\ncondor_log: sample_run-compute-0.log\n"
    )
    return compute


def test_restart_without_overrides_keeps_the_memory_a_job_grew_to_in_its_planned_submit_file(
    tmp_path, fake_pegasus
):
    try:
        from tests.support import memory_classads as ads
        from tests.support.htcondor_events import EventLogWriter
    except ImportError:
        from support import memory_classads as ads
        from support.htcondor_events import EventLogWriter

    sample, service, submit, main = _prepared(tmp_path)
    service.submit(submit)
    run_dir = main.parent / "submit" / "run"
    compute = _planned_compute_run(run_dir, main)
    job_map = json.loads((main.parent / "job_map.json").read_text())
    pid = next(p for p, e in job_map.items() if e["name"] == "coadd.tract-0.patch-1")
    node = f"fake_run_quantum_{pid}"
    job = json.loads((main.parent / "compute.yml").read_text())["jobs"]
    (planned,) = [j for j in job if j["id"] == pid]
    sub = compute / "00" / "00" / f"{node}.sub"
    sub.write_text("universe = local\n" + ads.submit_text(planned["profiles"]["condor"]) + "queue\n")
    assert ads.first_start(ads.expand_submit(sub.read_text())).request_mb == 4096
    # the job was held at 4096 MB, released with 8192 MB, and failed later for another reason
    log = EventLogWriter(compute / "sample_run-compute-0.log")
    log.submit(10, node)
    log.held(10, "Job has gone over memory limit of 4096 megabytes. Peak usage: 5000 megabytes.", 34)
    log.released(10, "memory escalation")
    log.terminated(10, return_value=1, memory_usage=6000, request_memory=8192)
    (run_dir / "jobstate.log").write_text(_jobstate([(node, "POST_SCRIPT_FAILURE")], finished=1))

    service.restart(submit)
    assert fake_pegasus()[-1]["tool"] == "pegasus-run"
    commands = ads.expand_submit(sub.read_text())
    assert ads.first_start(commands).request_mb == 8192  # not the 4096 it was planned with
    assert ads.released(commands, starts=1).request_mb == 16384  # the cap is unchanged
    assert sub.read_text().startswith("universe = local\n") and sub.read_text().endswith("queue\n")
    assert read_run_record(submit)["restarts"][-1]["memory"] == {"coadd.tract-0.patch-1": 8192}


def test_report_of_a_run_started_with_plan_sh_reads_the_sub_workflow_run(tmp_path, fake_pegasus):
    _, service, submit, main = _prepared(tmp_path)
    # plan.sh, not `bps submit`: nothing recorded; pegasus-plan leaves a braindump.yml
    run_dir = main.parent / "submit" / "run"
    run_dir.mkdir(parents=True)
    compute = _planned_compute_run(run_dir, main)
    assert "run_dir" not in read_run_record(submit)
    (run_dir / "jobstate.log").write_text(
        _jobstate(
            [("pegasus-plan_compute_workflow", "POST_SCRIPT_SUCCESS"), ("bps_finalize", "EXECUTE")], None
        )
    )
    (compute / "jobstate.log").write_text(
        _jobstate(
            [("fake_run_quantum_isr_visit-2", "POST_SCRIPT_SUCCESS"), ("clean_up_local_level_3_0", "SUBMIT")],
            finished=0,
        )
    )
    report = service.report(submit)
    assert report.state == "running"
    assert report.counts["isr"]["succeeded"] == 1
    assert report.counts["(pegasus sub-workflow)"]["succeeded"] == 1
    assert report.counts["(pegasus clean_up)"]["idle"] == 1
    assert any("found from its braindump.yml" in m for m in report.messages)
