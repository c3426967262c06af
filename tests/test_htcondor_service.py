"""HTCondorService without an HTCondor pool: clear errors, and a submit directory that stays usable."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from support.dagman_runner import run_dag
from support.htcondor_workflows import diamond
from support.real_htcondor import DATA, scenario

from bps.wms.base import WmsError, WmsUnavailableError, get_service, read_run_record, write_run_record
from bps.wms.htcondor import service as service_mod
from bps.wms.htcondor.layout import find_dag
from bps.wms.htcondor.service import HTCondorService
from bps.workflow import RetryPolicy


def test_the_registry_of_services_finds_htcondor():
    assert isinstance(get_service("htcondor"), HTCondorService)


def test_submit_without_htcondor_says_what_to_do_and_keeps_the_directory(tmp_path):
    wf = diamond(tmp_path)
    service = HTCondorService()
    dag = service.prepare(wf)
    before = dag.read_text()
    with pytest.raises(WmsUnavailableError) as err:
        service.submit(Path(wf.submit_dir))
    assert f"bps submit {Path(wf.submit_dir).absolute()}" in str(err.value)
    assert read_run_record(Path(wf.submit_dir))["state"] == "prepared"
    assert dag.read_text() == before
    # Still usable: the prepared files run.
    assert run_dag(dag).exit_code == 0


def test_submit_refuses_a_run_that_is_still_active(tmp_path):
    wf = diamond(tmp_path)
    service = HTCondorService()
    service.prepare(wf)
    write_run_record(Path(wf.submit_dir), cluster_id=1234, state="submitted")
    with pytest.raises(WmsError, match="has not finished"):
        service.submit(Path(wf.submit_dir))
    with pytest.raises(WmsError, match="still active"):
        service.prepare_restart(Path(wf.submit_dir))


def test_cancel_of_a_run_never_submitted_is_refused(tmp_path):
    wf = diamond(tmp_path)
    service = HTCondorService()
    service.prepare(wf)
    with pytest.raises(WmsError, match="never submitted"):
        service.cancel(Path(wf.submit_dir))


def test_cancel_without_a_schedd_reports_it_unreachable(tmp_path):
    wf = diamond(tmp_path)
    service = HTCondorService()
    service.prepare(wf)
    write_run_record(Path(wf.submit_dir), cluster_id=99, state="submitted")
    with pytest.raises(WmsUnavailableError, match="cannot reach the schedd"):
        service.cancel(Path(wf.submit_dir))
    assert read_run_record(Path(wf.submit_dir))["state"] == "submitted"
    assert not service_mod.halt_path(find_dag(Path(wf.submit_dir))).exists()


def test_report_after_the_schedd_forgot_the_run_uses_the_submit_directory(tmp_path):
    wf = diamond(tmp_path, extra={"detect_0": ["--exit", "65"]})
    service = HTCondorService()
    dag = service.prepare(wf)
    write_run_record(Path(wf.submit_dir), cluster_id=4321, state="submitted")
    run_dag(dag)
    report = service.report(Path(wf.submit_dir))
    assert report.run_id == "4321" and report.state == "failed"
    assert report.counts["detect"]["failed"] == 1 and report.counts["calibrate"]["succeeded"] == 2
    assert read_run_record(Path(wf.submit_dir))["state"] == "failed"


def test_report_of_a_directory_that_is_not_an_htcondor_run_is_a_clear_error(tmp_path):
    with pytest.raises(WmsError, match="not prepared for HTCondor"):
        HTCondorService().report(tmp_path)


# -- submit / restart against a stand-in for the htcondor2 bindings -----------------------------------
#
# What DAGMan writes is taken from the real files (tests/data/real-htcondor/restart: DAGMan 767
# refused a DAG, 768 ran it); the stand-in only replays it for the cluster it hands out.

REAL = DATA / "restart" / "u_stpeer_fail1.dag.dagman.out"


def _section(cluster: int, refused: bool) -> str:
    """The real .dagman.out section of DAGMan 767 (refused) or 768 (read the DAG), as DAGMan ``cluster``."""
    text = REAL.read_text()
    start = text.index("Workflow batch-id: <767.0>" if refused else "Workflow batch-id: <768.0>")
    start = text.rindex("** condor_dagman (CONDOR_DAGMAN) STARTING UP", 0, start)
    end = text.index("Bootstrapping...", start) if not refused else text.index("EXITING WITH STATUS 1", start)
    section = text[start : text.index("\n", end) + 1]
    return "12/05/26 13:58:44 " + section.replace("<767.0>", f"<{cluster}.0>").replace(
        "<768.0>", f"<{cluster}.0>"
    )


class FakeHTCondor:
    """``htcondor2`` as `HTCondorService` uses it: ``Submit.from_dag``, ``Schedd().submit/act/query``."""

    def __init__(self, refuse: bool = False, config_error: bool = False, unreachable: bool = False):
        self.refuse, self.config_error, self.unreachable = refuse, config_error, unreachable
        self.cwd: str | None = None
        self.dag = Path()
        self.next_cluster = 900
        fake = self

        class Submit:
            @staticmethod
            def from_dag(dag: str, options: dict) -> object:
                fake.cwd = os.getcwd()
                if fake.config_error:
                    os.write(
                        2,
                        f"ERROR: Unable to read config file {os.getcwd()}/x.config (2): No such file\n".encode(),
                    )
                    raise RuntimeError("Unable to write condor_dagman submit file")
                fake.dag = Path(dag)
                return object()

        class Result:
            def __init__(self, cluster: int) -> None:
                self._cluster = cluster

            def cluster(self) -> int:
                return self._cluster

        class Schedd:
            def submit(self, submit: object) -> Result:
                if fake.unreachable:
                    raise RuntimeError("Failed to connect to schedd")
                fake.next_cluster += 1
                out = Path(str(fake.dag) + ".dagman.out")
                with out.open("a") as f:
                    f.write(_section(fake.next_cluster, fake.refuse))
                return Result(fake.next_cluster)

            def query(self, constraint: str, projection: list[str]) -> list:
                if "DAGManJobId" in constraint and fake.node_jobs:
                    return [{"ClusterId": c} for c in fake.node_jobs.pop(0)]
                return []

            def act(self, action: str, constraint: str, reason: object) -> None:
                fake.acts.append((action, constraint, reason, fake.halt_existed()))
                if "DAGManJobId" in constraint and fake.dagman_sees_halt and not fake.dagman_exits:
                    with Path(str(fake.dag) + ".dagman.out").open("a") as f:
                        f.write("12/05/26 13:59:44 DAG status: 6 (DAG_STATUS_HALTED)\n")
                if "DAGManJobId" in constraint and fake.dagman_exits:
                    # The halted DAGMan, with no node job left, runs FINAL and exits.
                    with Path(str(fake.dag) + ".dagman.out").open("a") as f:
                        f.write("12/05/26 13:59:44 DAG status: 6 (DAG_STATUS_HALTED)\n")
                        f.write(
                            "12/05/26 13:59:44 **** condor_dagman (condor_DAGMAN) pid 1 EXITING WITH STATUS 1\n"
                        )

        class JobAction:
            Remove = "Remove"

        self.Submit, self.Schedd, self.JobAction = Submit, Schedd, JobAction
        #: cluster ids the schedd lists for each query of node jobs, in turn
        self.node_jobs: list[list[int]] = []
        #: (action, constraint, reason, whether the halt file existed) of each `act`
        self.acts: list[tuple[str, str, object, bool]] = []
        self.dagman_exits = True
        #: DAGMan logs ``DAG status: 6`` (it saw the halt file) when its node jobs are removed
        self.dagman_sees_halt = False

    def halt_existed(self) -> bool:
        return Path(str(self.dag) + ".halt").exists()


@pytest.fixture
def fake_condor(monkeypatch):
    def install(**kwargs) -> FakeHTCondor:
        fake = FakeHTCondor(**kwargs)
        monkeypatch.setattr(service_mod, "_import_htcondor", lambda: fake)
        monkeypatch.setattr(service_mod.shutil, "which", lambda name: f"/usr/bin/{name}")
        return fake

    return install


def _prepared(tmp_path: Path) -> Path:
    wf = diamond(tmp_path)
    HTCondorService().prepare(wf)
    return Path(wf.submit_dir)


def test_submit_from_another_directory_runs_dagman_from_the_submit_directory(
    tmp_path, fake_condor, monkeypatch
):
    submit = _prepared(tmp_path)
    fake = fake_condor()
    monkeypatch.chdir(tmp_path)
    assert HTCondorService().submit(submit) == "901"
    assert fake.cwd == str(submit.absolute()) and os.getcwd() == str(tmp_path)
    record = read_run_record(submit)
    assert (record["state"], record["cluster_id"]) == ("submitted", 901)


def test_a_dag_htcondor_cannot_read_is_its_error_not_an_unreachable_pool(tmp_path, fake_condor):
    submit = _prepared(tmp_path)
    fake_condor(config_error=True)
    with pytest.raises(WmsError) as err:
        HTCondorService().submit(submit)
    assert not isinstance(err.value, WmsUnavailableError)
    assert "Unable to read config file" in str(err.value) and "not reachable" not in str(err.value)
    assert read_run_record(submit)["state"] == "prepared"


def test_an_unreachable_schedd_is_reported_unreachable_and_the_directory_stays_prepared(
    tmp_path, fake_condor
):
    submit = _prepared(tmp_path)
    fake_condor(unreachable=True)
    with pytest.raises(WmsUnavailableError, match="cannot reach the schedd"):
        HTCondorService().submit(submit)
    assert read_run_record(submit)["state"] == "prepared"


def test_a_dag_dagman_refuses_is_an_error_in_dagmans_words_and_the_record_says_failed(tmp_path, fake_condor):
    submit = _prepared(tmp_path)
    fake_condor(refuse=True)
    with pytest.raises(WmsError, match="DAGMan job 901 refused") as err:
        HTCondorService().submit(submit)
    assert "ERROR: RETRY node bps_final can not have a retry specification" in str(err.value)
    record = read_run_record(submit)
    assert record["state"] == "failed" and record["cluster_id"] == 901
    assert HTCondorService().report(submit).state == "failed"
    # DAGMan exited: submitting again is not refused as "has not finished"
    fake_condor(refuse=False)
    assert HTCondorService().submit(submit) == "901"


def _failed_run(tmp_path: Path) -> Path:
    wf = diamond(tmp_path, extra={"coadd_0": ["--exit", "1"]}, retry=RetryPolicy(retries=0))
    dag = HTCondorService().prepare(wf)
    run_dag(dag)
    submit = Path(wf.submit_dir)
    assert find_dag(submit).rescue_files()
    HTCondorService().report(submit)
    return submit


def test_a_restart_whose_submission_fails_leaves_the_dag_and_the_record_as_they_were(tmp_path, fake_condor):
    submit = _failed_run(tmp_path)
    layout = find_dag(submit)
    before = {p: p.read_bytes() for p in (layout.dag, layout.workflow_json, submit / "run_record.json")}
    fake_condor(config_error=True)
    with pytest.raises(WmsError, match="Unable to read config file"):
        HTCondorService().restart(submit, {"retries": 4})
    assert {p: p.read_bytes() for p in before} == before


def test_a_restart_dagman_refuses_is_an_error_not_restarted(tmp_path, fake_condor):
    submit = _failed_run(tmp_path)
    fake_condor(refuse=True)
    with pytest.raises(WmsError, match="refused the restarted"):
        HTCondorService().restart(submit)
    record = read_run_record(submit)
    assert record["state"] == "failed" and len(record["restarts"]) == 1


def test_a_restart_dagman_accepts_is_recorded_as_submitted(tmp_path, fake_condor):
    submit = _failed_run(tmp_path)
    fake_condor()
    assert HTCondorService().restart(submit) == "901"
    record = read_run_record(submit)
    assert record["state"] == "submitted" and record["submissions"][-1]["cluster_id"] == 901


def test_cancel_of_a_run_whose_dagman_has_ended_is_refused_and_the_record_kept(tmp_path):
    submit = scenario("failure", tmp_path)
    with pytest.raises(WmsError, match="DAGMan job 750 .* has already ended"):
        HTCondorService().cancel(submit)
    assert read_run_record(submit)["state"] == "failed"


def test_a_restart_where_htcondor_is_unreachable_changes_nothing_and_says_to_restart_there(
    tmp_path, fake_condor
):
    submit = _failed_run(tmp_path)
    layout = find_dag(submit)
    before = {p: p.read_bytes() for p in (layout.dag, layout.workflow_json, submit / "run_record.json")}
    fake_condor(unreachable=True)
    with pytest.raises(WmsUnavailableError) as err:
        HTCondorService().restart(submit, {"retries": 4})
    assert f"bps restart {submit}" in str(err.value) and "bps submit" not in str(err.value)
    assert {p: p.read_bytes() for p in before} == before


def test_bps_restart_of_a_dag_dagman_refuses_exits_1_and_never_says_restarted(tmp_path, fake_condor):
    from click.testing import CliRunner

    from bps.cli import main as bps_main

    submit = _failed_run(tmp_path)
    fake_condor(refuse=True)
    result = CliRunner().invoke(bps_main, ["restart", str(submit)])
    assert result.exit_code == 1
    assert f"restarted {submit} as" not in result.output
    assert "refused the restarted" in result.output and "can not have a retry specification" in result.output
    # wide enough that the run's line (its tmp_path varies in length) is never wrapped
    report = CliRunner().invoke(bps_main, ["report", str(submit)], env={"COLUMNS": "400"})
    assert "htcondor, failed" in " ".join(report.output.split())


# -- cancel: halt DAGMan, remove its node jobs, let it run FINAL and exit ---------------------------


def _running(tmp_path: Path, fake_condor, **kwargs) -> tuple[Path, FakeHTCondor]:
    """A run whose DAGMan (cluster 901) has read the DAG and not ended."""
    submit = _prepared(tmp_path)
    fake = fake_condor(**kwargs)
    assert HTCondorService().submit(submit) == "901"
    return submit, fake


def test_cancel_halts_dagman_then_removes_only_its_node_jobs(tmp_path, fake_condor):
    submit, fake = _running(tmp_path, fake_condor)
    fake.node_jobs = [[902, 903]]
    service = HTCondorService()
    service.poll_s = 0.01
    said = service.cancel(submit)
    assert len(fake.acts) == 1
    assert said.startswith("halted DAGMan job 901") and "DAGMan has ended (exit status 1)" in said
    action, constraint, reason, halted = fake.acts[0]
    assert action == "Remove" and halted, "node jobs are removed only once DAGMan is halted"
    assert (
        "DAGManJobId == 901" in constraint and '"bps_final"' in constraint and "ClusterId" not in constraint
    )
    assert isinstance(reason, tuple) and reason[0].startswith("bps cancel")
    layout = find_dag(submit)
    assert not service_mod.halt_path(layout).exists(), "a restart would halt at once"
    record = read_run_record(submit)
    assert record["state"] == "cancelled" and "cancelled_at" in record
    assert service.report(submit).state == "cancelled"


def test_cancel_removes_node_jobs_dagman_submitted_before_it_saw_the_halt_file(tmp_path, fake_condor):
    submit, fake = _running(tmp_path, fake_condor)
    fake.dagman_exits = False
    fake.node_jobs = [[902], [950]]  # 950: submitted in the same DAGMan cycle as the halt
    service = HTCondorService()
    service.poll_s, service.cancel_wait_s = 0.01, 0.2
    service.cancel(submit)
    node_removals = [a for a in fake.acts if "DAGManJobId == 901" in a[1]]
    assert len(node_removals) == 2


def test_cancel_returns_once_dagman_saw_the_halt_without_waiting_for_it_to_end(
    tmp_path, fake_condor, monkeypatch
):
    submit, fake = _running(tmp_path, fake_condor)
    fake.dagman_exits, fake.dagman_sees_halt = False, True  # FINAL still to run (e.g. waits for a slot)
    fake.node_jobs = [[902, 903]]
    service = HTCondorService()
    service.poll_s, service.cancel_wait_s = 0.01, 3600.0
    sleeps = []
    monkeypatch.setattr(service_mod.time, "sleep", lambda s: sleeps.append(s))
    said = service.cancel(submit)
    assert len(sleeps) <= 1, "cancel waited for DAGMan to end"
    assert [a[1] for a in fake.acts if a[1] == "ClusterId == 901"] == []  # DAGMan itself stays
    assert said.startswith("halted DAGMan job 901") and "removed 2 node jobs" in said
    assert "runs the final job" in said and f"`bps report {submit}`" in said and "`condor_q 901`" in said
    assert read_run_record(submit)["state"] == "cancelled"
    assert service_mod.halt_path(find_dag(submit)).exists()  # DAGMan has not ended: it stays halted
    # the report says the run is cancelled and DAGMan still ending, and how to see it ended
    report = service.report(submit)
    assert report.state == "cancelled"
    assert any(m.startswith("DAGMan job 901 has not ended yet") for m in report.messages)


def test_a_second_cancel_of_a_run_still_ending_removes_dagman_itself(tmp_path, fake_condor):
    submit, fake = _running(tmp_path, fake_condor)
    fake.dagman_exits, fake.dagman_sees_halt = False, True
    service = HTCondorService()
    service.poll_s = 0.01
    service.cancel(submit)
    said = service.cancel(submit)
    assert fake.acts[-1][:2] == ("Remove", "ClusterId == 901")
    assert "was already cancelled and had not ended: removed it" in said
    assert read_run_record(submit)["state"] == "cancelled"
    assert not service_mod.halt_path(find_dag(submit)).exists()


def test_cancel_says_when_dagman_has_not_shown_it_saw_the_halt(tmp_path, fake_condor, caplog):
    submit, fake = _running(tmp_path, fake_condor)
    fake.dagman_exits = False
    service = HTCondorService()
    service.poll_s, service.cancel_wait_s = 0.01, 0.05
    said = service.cancel(submit)
    assert "has not shown that it saw the halt file" in caplog.text
    assert "once it sees the halt file" in said
    assert [a for a in fake.acts if a[1] == "ClusterId == 901"] == []


def test_a_submission_removes_a_halt_file_an_interrupted_cancel_left(tmp_path, fake_condor):
    submit = _prepared(tmp_path)
    halt = service_mod.halt_path(find_dag(submit))
    halt.touch()
    fake_condor()
    HTCondorService().submit(submit)
    assert not halt.exists()


def test_a_restart_removes_a_halt_file_an_interrupted_cancel_left(tmp_path, fake_condor):
    submit = _failed_run(tmp_path)
    halt = service_mod.halt_path(find_dag(submit))
    halt.touch()
    fake_condor()
    HTCondorService().restart(submit)
    assert not halt.exists()
