"""The Parsl back end without running a workflow: commands, executors, site checks, Slurm script, state file.

Runs through the real Parsl are in ``test_parsl_run.py`` and ``test_parsl_demo.py``.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shlex
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from support.toy_pipeline import ToyPipeline, prepare

from bps import exit_codes
from bps.cli import main as bps_main
from bps.wms.base import WmsError, read_run_record, write_run_record
from bps.wms.htcondor.translator import node_names, write_dag
from bps.wms.parsl.commands import argv, command_line, resource_classes
from bps.wms.parsl.service import ParslService
from bps.wms.parsl.settings import ParslSettings
from bps.wms.parsl.state import write_state
from bps.workflow import GenericWorkflow, Job, Resources, SiteConfig
from bps.workflow_io import load_workflow

ROOT = Path(__file__).resolve().parents[1]
SITE_CONFIGS = ROOT / "bps" / "site_configs"
RUN = "u/test/parsl-unit"
TOY = ToyPipeline(run=RUN, detectors=(1, 2), seed_scale=10, multiplier=2)


def site_of(name: str) -> SiteConfig:
    return SiteConfig(**yaml.safe_load((SITE_CONFIGS / f"{name}.yaml").read_text())["site"])


def workflow(site: SiteConfig, tmp_path: Path) -> GenericWorkflow:
    """Jobs of three sizes: small ``isr`` x2, big ``coadd``, throttled ``measure``, and the final job."""
    wf = GenericWorkflow(
        "wf", str(tmp_path / "submit"), str(tmp_path / "g.qgraph"), str(tmp_path / "repo"), "run"
    )
    wf.site = site
    small = Resources(memory_mb=2048, cpus=1)
    for i in (1, 2):
        wf.add_job(
            Job(
                f"isr_{i}",
                "isr",
                [i],
                ["--graph", wf.graph_file, "--quantum", str(i), "--job", f"isr_{i}"],
                small,
            )
        )
    big = Resources(memory_mb=8192, cpus=2, walltime_s=5 * 3600)
    wf.add_job(
        Job("coadd_1", "coadd", [3], ["--graph", wf.graph_file, "--quantum", "3"], big), ["isr_1", "isr_2"]
    )
    wf.add_job(
        Job(
            "measure_1",
            "measure",
            [4],
            ["--graph", wf.graph_file, "--quantum", "4"],
            small,
            throttle="measure",
        ),
        ["coadd_1"],
    )
    wf.throttles = {"measure": 1}
    wf.final = Job("finalize", "finalize", [], ["finalize", wf.submit_dir], small, executable="bps")
    return wf


def test_one_executor_per_resource_class_sized_by_the_site(tmp_path):
    site = site_of("parsl_slurm")
    wf = workflow(site, tmp_path)
    classes, job_class = resource_classes(wf, ParslSettings.of(site))
    assert list(classes) == ["c1_m2048", "c2_m8192", "c1_m2048_measure"]
    assert job_class == {
        "isr_1": "c1_m2048",
        "isr_2": "c1_m2048",
        "coadd_1": "c2_m8192",
        "measure_1": "c1_m2048_measure",
        "finalize": "c1_m2048",  # the final job shares the class of its size
    }
    assert classes["c1_m2048"].workers == 16  # workers_per_block of parsl_slurm.yaml
    assert classes["c2_m8192"].walltime_s == 5 * 3600
    # a throttled class: its workers are the throttle, in one block
    assert classes["c1_m2048_measure"].workers == 1 and classes["c1_m2048_measure"].max_blocks == 1
    # the local site: never more workers than its largest slot holds of that size
    local = site_of("parsl_local")
    local_classes, _ = resource_classes(workflow(local, tmp_path), ParslSettings.of(local))
    assert local_classes["c2_m8192"].workers == 1 and local_classes["c1_m2048"].workers == 2


def test_job_command_is_the_htcondor_command_line_with_shared_staging(tmp_path):
    """The Parsl task runs exactly what the HTCondor node runs: executable and arguments, as written in the DAG."""
    site = SiteConfig(name="s", wms="htcondor", staging="shared", environment={"DRP_MODE": "a b"})
    wf = workflow(site, tmp_path)
    layout = write_dag(wf, tmp_path / "dag")
    node = node_names(wf.jobs)["isr_2"]
    sub = dict(
        line.split(" = ", 1)
        for line in (layout.submit_dir / "isr.sub").read_text().splitlines()
        if " = " in line
    )
    vars_line = next(line for line in layout.dag.read_text().splitlines() if line.startswith(f"VARS {node} "))
    bps_args = shlex.split(vars_line.split("bps_args=", 1)[1])[0]
    condor_argv = [
        sub["executable"],
        *shlex.split(sub["arguments"].strip('"').replace("$(bps_args)", bps_args)),
    ]
    assert argv(wf, wf.jobs["isr_2"]) == condor_argv
    # the bash line runs that command in the submit directory, with the site's environment
    line = command_line(wf, wf.jobs["isr_2"], ParslSettings.of(site))
    assert line.endswith("exec " + " ".join(shlex.quote(a) for a in condor_argv))
    assert f"cd {wf.submit_dir} && " in line and "DRP_MODE='a b'" in line and "timeout" not in line


def test_walltime_stops_the_job_itself_and_the_final_job_gets_the_run_status(tmp_path):
    site = site_of("parsl_local")
    wf = workflow(site, tmp_path)
    settings = ParslSettings.of(site)
    coadd = command_line(wf, wf.jobs["coadd_1"], settings)
    assert "exec timeout --foreground --kill-after=30s 18000s " in coadd
    final = command_line(wf, wf.final, settings, ["--dag-status", "2", "--failed-count", "1"])
    assert shlex.split(final.split("exec ", 1)[1])[1:] == [
        "finalize",
        wf.submit_dir,
        "--dag-status",
        "2",
        "--failed-count",
        "1",
    ]
    # a bash that runs the line really exits with the job's status
    fake = dataclasses.replace(wf.jobs["isr_1"], executable="/bin/sh", arguments=["-c", "exit 66"])
    done = subprocess.run(
        ["bash", "-c", command_line(wf, fake, settings).replace(f"cd {wf.submit_dir}", "cd /")]
    )
    assert done.returncode == 66


@pytest.mark.parametrize(
    ("parsl", "message"),
    [
        ({"workers_per_blok": 2}, "did you mean 'workers_per_block'?"),
        ({"provider": "pbs"}, "choose one of ['local', 'slurm']"),
        ({"provider_options": {"cores_per_node": 8}}, "bps sets the sizes of blocks and workers itself"),
        ({"walltime": "4h"}, "write it as HH:MM:SS"),
        ({"init_blocks": 3, "max_blocks": 1}, "must not exceed max_blocks"),
    ],
)
def test_a_wrong_parsl_setting_is_one_line_naming_the_key_and_the_fix(parsl, message):
    site = SiteConfig(name="mine", wms="parsl", parsl={"provider": "local", **parsl})
    with pytest.raises(WmsError) as err:
        ParslService().precheck(site, Path("/nonexistent"))
    assert message in str(err.value) and "site 'mine'" in str(err.value) and "\n" not in str(err.value)


def test_file_transfer_staging_is_refused_with_the_fix():
    site = SiteConfig(name="mine", wms="parsl", staging="transfer")
    with pytest.raises(WmsError, match="set site.staging: shared"):
        ParslService().precheck(site, Path("/nonexistent"))


def test_slurm_batch_script_asks_for_what_the_class_needs(tmp_path, monkeypatch):
    """The real SlurmProvider writes its batch script; a stand-in ``sbatch`` only takes it."""
    pytest.importorskip("parsl", reason="parsl is not installed")
    from bps.wms.parsl.config import executor_for, provider_for

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    sbatch = bin_dir / "sbatch"
    sbatch.write_text('#!/bin/sh\ncp "$1" "$(dirname "$1")/taken.sh"\necho "Submitted batch job 4242"\n')
    sbatch.chmod(sbatch.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    site = site_of("parsl_slurm")
    settings = ParslSettings.of(site)
    classes, _ = resource_classes(workflow(site, tmp_path), settings)
    rc = classes["c2_m8192"]
    provider = provider_for(rc, settings)
    provider.script_dir = str(tmp_path / "scripts")
    os.makedirs(provider.script_dir)
    assert provider.submit("LAUNCH_WORKERS", 1, f"parsl.{rc.label}") == "4242"
    script = (tmp_path / "scripts" / "taken.sh").read_text()
    lines = script.splitlines()
    assert lines[0] == "#!/bin/bash"
    assert "#SBATCH --partition=normal" in lines
    assert "#SBATCH --nodes=1" in lines
    assert f"#SBATCH --cpus-per-task={2 * rc.workers}" in lines  # 2 cores x 16 workers
    assert f"#SBATCH --mem={8 * rc.workers}g" in lines  # 8 GB x 16 workers
    assert "#SBATCH --time=305" in lines  # minutes: the class's 5 h job walltime + 5 min, over the site's 4 h
    assert "#SBATCH --exclusive" not in lines and "#SBATCH --account" not in script
    assert "source /project/software/venv/bin/activate" in lines
    assert any("LAUNCH_WORKERS" in line for line in lines)
    executor = executor_for(rc, site, settings)
    assert executor.launch_cmd.startswith("/project/software/venv/bin/process_worker_pool.py ")
    assert executor.max_workers_per_node == rc.workers and executor.cores_per_worker == 2.0


@pytest.fixture
def prepared(tmp_path, monkeypatch):
    """A toy submit directory prepared for ``parsl_local`` (nothing run)."""
    toy = TOY.set_up(tmp_path, monkeypatch, compute_site="parsl_local")
    return prepare(toy.submit_yaml("prep", retry={"retries": 2}))


def test_retry_handler_retries_each_job_its_own_times_never_a_no_retry_exit_code(prepared):
    pytest.importorskip("parsl", reason="parsl is not installed")
    from parsl.app.errors import BashExitFailure

    from bps.wms.parsl.driver import Driver

    driver = Driver(prepared)
    make = next(j for j in driver.wf.jobs.values() if j.label == "make")
    final = driver.wf.final
    assert driver.budget == 2

    def cost(job: Job, code: int, fail_count: int) -> float:
        return driver.retry_cost(
            BashExitFailure("job_command", code), {"kwargs": {"job_name": job.name}, "fail_count": fail_count}
        )

    assert cost(make, 1, 1) == 1 and cost(make, 1, 2) == 1  # two retries
    assert cost(make, 1, 3) > driver.budget  # the third failure ends it
    assert cost(make, exit_codes.DATA_ERROR, 1) > driver.budget  # never retried
    assert cost(make, -9, 1) == 1  # a signal death is retried
    # the final job: a transient failure is retried, an outcome is not
    assert cost(final, exit_codes.TEMPORARY, 1) == 1
    assert cost(final, exit_codes.OUTPUTS_MISSING, 1) > driver.budget


def test_restart_overrides_change_the_jobs_the_workflow_process_runs(prepared):
    from bps.wms.parsl.driver import Driver

    write_run_record(prepared, jobs={"make_1_Cam": {"state": "failed"}})
    service = ParslService()
    with pytest.raises(WmsError, match="do not apply to Parsl runs"):
        service.restart(prepared, {"memory_multiplier": 3.0})
    with pytest.raises(WmsError, match="no job has label 'nope'"):
        service.restart(prepared, {"labels": {"nope": {"memory_mb": 4096}}})
    from bps.wms.parsl.service import _merge_overrides

    merged = _merge_overrides(
        {},
        {"retries": 5, "labels": {"make": {"memory_mb": 4096}}},
        load_workflow(prepared / "workflow.json"),
    )
    write_run_record(prepared, overrides=merged)
    driver = Driver(prepared, restart=True)
    make = next(j for j in driver.wf.jobs.values() if j.label == "make")
    total = next(j for j in driver.wf.jobs.values() if j.label == "total")
    assert make.resources.memory_mb == 4096 and make.retry.retries == 5
    assert total.resources.memory_mb == 2048 and total.retry.retries == 5
    assert "c1_m4096" in driver.classes


def test_cancel_and_restart_say_where_the_workflow_process_is(prepared):
    service = ParslService()
    with pytest.raises(WmsError, match="no Parsl run is in progress"):
        service.cancel(prepared)
    with pytest.raises(WmsError, match="was never submitted with Parsl"):
        service.restart(prepared)
    # a workflow process on another host: cancel says where to run it, restart refuses
    write_state(prepared, host="login7.example", pid=4242, start_ticks=1, state="running")
    write_run_record(prepared, state="running", jobs={"make_1_Cam": {"state": "running"}})
    with pytest.raises(WmsError, match=r"runs on host login7.example \(pid 4242\): run `bps cancel"):
        service.cancel(prepared)
    with pytest.raises(WmsError, match="may still run on host login7.example"):
        service.restart(prepared)
    result = CliRunner().invoke(bps_main, ["cancel", str(prepared)])
    assert result.exit_code == 1 and "login7.example" in result.output and "Traceback" not in result.output


def test_report_of_a_run_whose_workflow_process_died_says_failed_and_how_to_go_on(prepared):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    from bps.wms.parsl.state import this_process

    write_state(prepared, **{**this_process(), "pid": dead.pid}, state="running")
    log = prepared / "logs" / "make" / "make_1_Cam.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_text("--> executable follows <--\nrunning...\n")
    write_run_record(
        prepared,
        wms="parsl",
        state="running",
        jobs={"make_1_Cam": {"state": "running", "attempts": 1, "log": str(log)}},
    )
    report = ParslService().report(prepared)
    assert report.state == "failed"
    assert report.counts["make"]["failed"] == 1 and report.counts["make"]["pending"] == 1
    (failure,) = report.failures
    assert failure.reason == "the workflow process ended while it ran" and "running..." in failure.log_tail
    assert any("bps restart" in m for m in report.messages)


def test_nothing_but_the_workflow_process_imports_parsl(prepared):
    """``run_quantum``, the ``bps`` command and the Parsl service (report, cancel) never import parsl."""
    write_run_record(prepared, wms="parsl", state="succeeded", jobs={})
    code = f"""
import sys
import bps.run_quantum, bps.cli, bps.wms.parsl, bps.wms.parsl.service, bps.wms.parsl.commands
import bps.wms.parsl.settings, bps.wms.parsl.state
from click.testing import CliRunner
from bps.cli import main
result = CliRunner().invoke(main, ["report", {str(prepared)!r}])
assert result.exit_code == 0, result.output
loaded = sorted(m for m in sys.modules if m == "parsl" or m.startswith("parsl."))
print(loaded)
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "[]"
    # and a job's start-up: run_quantum's own imports
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "bps.run_quantum", "--help"],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    assert " parsl" not in done.stderr and "bps.wms.parsl" not in done.stderr


def test_prepare_for_parsl_writes_the_workflow_and_a_record_nothing_else(prepared):
    record = read_run_record(prepared)
    assert record["wms"] == "parsl" and record["state"] == "prepared"
    assert (prepared / "workflow.json").exists() and not (prepared / "parsl").exists()
    assert json.loads((prepared / "workflow.json").read_text())["site"]["parsl"]["provider"] == "local"


def test_submit_says_why_the_workflow_process_stopped_before_running_any_job(tmp_path, monkeypatch):
    """An executor option Parsl refuses passes bps's check of its name; the process stops, submit says so."""
    pytest.importorskip("parsl", reason="parsl is not installed")
    toy = TOY.set_up(tmp_path, monkeypatch, compute_site="parsl_local")
    cfg = toy.submit_yaml("bad", site={"parsl": {"executor_options": {"heartbeat_period": "often"}}})
    submit_dir = prepare(cfg)
    result = CliRunner().invoke(bps_main, ["submit", str(submit_dir)])
    assert result.exit_code == 1
    assert "the Parsl workflow process stopped before running any job" in result.output
    assert "heartbeat_period" in result.output and "driver.log" in result.output
    assert read_run_record(submit_dir)["state"] == "failed"
