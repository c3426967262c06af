"""The toy pipeline through the real Parsl (HighThroughputExecutor + LocalProvider, ``parsl_local``).

Each test starts a real workflow process (``bps submit --wms parsl``), which starts Parsl's
interchange and worker pool on this machine; jobs are ``run_quantum`` processes run by
``bash_app``s. A few seconds of start-up per run on 2 cores.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from support.toy_pipeline import ToyPipeline, registered_in, submit_dir_of

from bps import exit_codes
from bps.cli import main as bps_main
from bps.wms.base import read_run_record
from bps.wms.parsl.service import ParslService
from bps.wms.parsl.state import driver_alive, read_state
from supertask.graph.quantum_graph import QuantumGraph

pytest.importorskip("parsl", reason="parsl is not installed (pip install 'supertask[parsl]')")

pytestmark = [pytest.mark.parsl, pytest.mark.slow]

RUN = "u/test/parsl"
TOY = ToyPipeline(run=RUN, detectors=(1, 2, 3, 4), seed_scale=10, multiplier=2)
DETECTORS = TOY.detectors
EXPECTED_MADE = {d: {"detector": d, "value": d * 20} for d in DETECTORS}
EXPECTED_TOTAL = {None: {"sum": sum(d * 20 for d in DETECTORS)}}
BIN = Path(sys.executable).parent


@pytest.fixture
def toy(tmp_path, monkeypatch):
    toy = TOY.set_up(tmp_path, monkeypatch, compute_site="parsl_local")
    return toy.repo, toy.submit_yaml


def bps(*args: str) -> subprocess.CompletedProcess:
    """``bps`` in its own process: another shell, as an operator would run it."""
    env = dict(os.environ, COLUMNS="500")  # report lines unwrapped, whatever the temporary path
    return subprocess.run([str(BIN / "bps"), *args], capture_output=True, text=True, timeout=600, env=env)


def wait_for_end(submit_dir: Path, timeout: float = 400) -> dict:
    """The run record once the workflow process has ended."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = read_state(submit_dir)
        if state.get("state") == "ended" or (state and not driver_alive(state) and state.get("pid")):
            return read_run_record(submit_dir)
        time.sleep(0.5)
    raise AssertionError(
        f"the Parsl run in {submit_dir} did not end in {timeout} s: {read_state(submit_dir)}"
    )


def attempts_in(log: Path) -> int:
    """Attempts of a job in its log: Parsl writes the command before each one."""
    return log.read_text().count("--> executable follows <--")


def test_submit_runs_every_job_through_parsl_and_registers_every_output(toy):
    repo, config = toy
    # total asks for more memory than make: its own resource class, its own executor
    cfg = config("plain", resources={"labels": {"total": {"memory_mb": 3072}}})
    result = CliRunner().invoke(bps_main, ["submit", str(cfg)])
    assert result.exit_code == 0, result.output
    assert "submitted parsl-" in result.output
    submit_dir = submit_dir_of(cfg)
    record = wait_for_end(submit_dir)
    assert record["state"] == "succeeded", record
    assert registered_in(repo, RUN, "made") == EXPECTED_MADE
    assert registered_in(repo, RUN, "total") == EXPECTED_TOTAL
    # bps report from another process reads the run from the submit directory
    out = bps("report", str(submit_dir))
    assert out.returncode == 0, out.stderr
    assert "parsl, succeeded" in out.stdout
    env = dict(os.environ, COLUMNS="500")
    here = subprocess.run(
        [str(BIN / "bps"), "report", "."], cwd=submit_dir, capture_output=True, text=True, env=env
    )
    assert here.returncode == 0 and "(parsl, succeeded)" in here.stdout, here.stderr
    report = ParslService().report(submit_dir)
    assert report.counts["make"]["succeeded"] == 4 and report.counts["total"]["succeeded"] == 1
    assert report.counts["finalize"]["succeeded"] == 1 and not report.failures
    # one timeline entry per job, each with the launch and return Parsl recorded
    assert sorted(j.name for j in report.jobs) == sorted(
        [*(f"make_{d}_Cam" for d in DETECTORS), "total_Cam", "finalize"]
    )
    assert all(j.start is not None and j.end is not None and j.start <= j.end for j in report.jobs)
    assert {j.request_memory_mb for j in report.jobs if j.label == "total"} == {3072}
    jobs = record["jobs"]
    assert {jobs[f"make_{d}_Cam"]["executor"] for d in DETECTORS} == {"c1_m2048"}
    assert jobs["total_Cam"]["executor"] == "c1_m3072" and jobs["finalize"]["executor"] == "c1_m2048"
    runinfo = submit_dir / "parsl" / "runinfo"
    assert {p.name for p in runinfo.glob("*/c1_m*")} == {"c1_m2048", "c1_m3072"}  # two worker pools
    # each job ran its run_quantum command line once, logged under logs/<label>/
    log = Path(jobs["make_1_Cam"]["log"])
    assert log == submit_dir / "logs" / "make" / "make_1_Cam.log"
    assert attempts_in(log) == 1 and "/run_quantum --graph" in log.read_text()


def test_retries_no_retry_codes_skipped_descendants_then_restart_reruns_only_what_failed(toy):
    repo, config = toy
    cfg = config("failing", fail_detector=3, retry={"retries": 2})
    assert CliRunner().invoke(bps_main, ["submit", str(cfg)]).exit_code == 0
    submit_dir = submit_dir_of(cfg)
    record = wait_for_end(submit_dir)
    assert record["state"] == "failed"
    jobs = record["jobs"]
    assert jobs["make_3_Cam"]["state"] == "failed" and jobs["make_3_Cam"]["exit_code"] == 1
    assert attempts_in(Path(jobs["make_3_Cam"]["log"])) == 3  # retried twice
    assert jobs["total_Cam"]["state"] == "skipped"
    # the final job ran anyway, registered what was made, and said outputs are missing (not retried)
    final = jobs["finalize"]
    assert final["state"] == "failed" and final["exit_code"] == exit_codes.OUTPUTS_MISSING
    assert attempts_in(Path(final["log"])) == 1
    assert sorted(registered_in(repo, RUN, "made")) == [1, 2, 4]
    report = ParslService().report(submit_dir)
    (failure,) = [f for f in report.failures if f.label == "make"]
    assert "make fails on purpose" in failure.log_tail and failure.attempt == 3
    assert report.counts["total"]["skipped"] == 1

    # fix the "bug", restart from another process: only make_3, total and the final job run again
    data = yaml.safe_load(cfg.read_text())
    fixed = QuantumGraph.load(data["qgraph"])
    fixed.pipelineYaml = TOY.pipeline_yaml(-1)
    fixed.save(data["qgraph"])
    ok_log = Path(jobs["make_1_Cam"]["log"])
    restarted = bps("restart", str(submit_dir))
    assert restarted.returncode == 0, restarted.stderr
    record = wait_for_end(submit_dir)
    assert record["state"] == "succeeded", record
    assert attempts_in(ok_log) == 1  # a job that had succeeded is not run again
    assert registered_in(repo, RUN, "made") == EXPECTED_MADE
    assert registered_in(repo, RUN, "total") == EXPECTED_TOTAL


def test_no_retry_exit_code_ends_a_job_at_its_first_attempt_in_a_foreground_run(toy):
    repo, config = toy
    # detach: false, as inside a batch job: bps submit is the run, and fails with it
    cfg = config("corrupt", retry={"retries": 3}, site={"parsl": {"detach": False}})
    from support.toy_pipeline import prepare

    submit_dir = prepare(cfg)
    # a corrupt graph file: every job exits 65 (DATA_ERROR), which no retry can help
    graph = Path(yaml.safe_load(cfg.read_text())["qgraph"])
    graph.write_bytes(b"not a graph")
    result = CliRunner().invoke(bps_main, ["submit", str(submit_dir)])
    assert result.exit_code == 1
    assert f"the Parsl run in {submit_dir} ended failed" in result.output and "bps report" in result.output
    assert not driver_alive(read_state(submit_dir))  # the run is over when submit returns
    record = read_run_record(submit_dir)
    make = record["jobs"]["make_1_Cam"]
    assert make["state"] == "failed" and make["exit_code"] == exit_codes.DATA_ERROR
    assert attempts_in(Path(make["log"])) == 1


def test_cancel_from_another_shell_stops_the_run_and_restart_finishes_it(toy, monkeypatch):
    repo, config = toy
    monkeypatch.setenv("TOY_DELAY", "120")
    cfg = config("cancelled")
    assert CliRunner().invoke(bps_main, ["submit", str(cfg)]).exit_code == 0
    submit_dir = submit_dir_of(cfg)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        jobs = read_run_record(submit_dir).get("jobs", {})
        if any(j.get("state") == "running" for j in jobs.values()):
            break
        time.sleep(0.5)
    else:
        raise AssertionError(f"no job started running: {read_run_record(submit_dir)}")
    time.sleep(2)  # let the job's run_quantum start
    # bps report from another shell sees the run going on, and where its process is
    during = bps("report", str(submit_dir))
    assert during.returncode == 0, during.stderr
    assert (
        "parsl, running" in during.stdout
        and f"the workflow process is pid {read_state(submit_dir)['pid']}" in during.stdout
    )
    assert ParslService().report(submit_dir).totals()["running"] >= 1
    cancelled = bps("cancel", str(submit_dir))
    assert cancelled.returncode == 0, cancelled.stderr
    assert not driver_alive(read_state(submit_dir))
    record = read_run_record(submit_dir)
    assert record["state"] == "cancelled"
    assert {j["state"] for name, j in record["jobs"].items()} == {"pending"}
    # no job of the run is left running on this machine
    left = subprocess.run(["pgrep", "-f", f"run_quantum.*{submit_dir}"], capture_output=True, text=True)
    assert left.stdout.strip() == "", left.stdout
    assert bps("cancel", str(submit_dir)).returncode == 1  # nothing left to cancel
    assert ParslService().report(submit_dir).state == "cancelled"
    # restart without the delay: everything runs
    monkeypatch.delenv("TOY_DELAY")
    restarted = bps("restart", str(submit_dir))
    assert restarted.returncode == 0, restarted.stderr
    assert wait_for_end(submit_dir)["state"] == "succeeded"
    assert registered_in(repo, RUN, "made") == EXPECTED_MADE


def test_walltime_stops_a_job_over_it_and_the_report_says_so(toy, monkeypatch):
    repo, config = toy
    monkeypatch.setenv("TOY_DELAY", "60")
    cfg = config("walltime", retry={"retries": 0}, resources={"labels": {"make": {"walltime_s": 3}}})
    assert CliRunner().invoke(bps_main, ["submit", str(cfg)]).exit_code == 0
    submit_dir = submit_dir_of(cfg)
    record = wait_for_end(submit_dir)
    # stopped by its walltime (timeout's 124), not finished after its 60 s delay
    make = record["jobs"]["make_1_Cam"]
    assert make["state"] == "failed" and make["exit_code"] == 124
    report = ParslService().report(submit_dir)
    assert any("walltime (3 s)" in f.reason for f in report.failures if f.label == "make")


def test_a_killed_workflow_process_takes_its_interchange_with_it_and_the_report_says_so(toy, monkeypatch):
    repo, config = toy
    monkeypatch.setenv("TOY_DELAY", "120")
    cfg = config("killed")
    assert CliRunner().invoke(bps_main, ["submit", str(cfg)]).exit_code == 0
    submit_dir = submit_dir_of(cfg)
    pid = read_state(submit_dir)["pid"]
    children = subprocess.run(["pgrep", "-P", str(pid), "-f", "interchange"], capture_output=True, text=True)
    (interchange,) = [int(p) for p in children.stdout.split()]
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 60
    while os.path.exists(f"/proc/{interchange}") and time.monotonic() < deadline:
        time.sleep(0.2)
    stat = Path(f"/proc/{interchange}/stat")
    assert not stat.exists() or stat.read_text().rsplit(")", 1)[1].split()[0] == "Z", (
        "the interchange outlived it"
    )
    report = ParslService().report(submit_dir)
    assert report.state == "failed" and any("ended without finishing" in m for m in report.messages)
    # a worker pool this run started (its log directory is in the submit directory) stops only
    # after its heartbeat threshold: end its process group (the pool and its jobs) now
    pools = subprocess.run(
        ["pgrep", "-f", f"process_worker_pool.py .*{submit_dir}/"], capture_output=True, text=True
    )
    for pool in pools.stdout.split():
        try:
            group = os.getpgid(int(pool))
            if group != os.getpgrp():  # Parsl starts each block in a process group of its own
                os.killpg(group, signal.SIGKILL)
        except ProcessLookupError:
            pass
