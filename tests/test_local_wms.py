"""End to end through the real graph file, pipeline, datastore and registry: ``bps submit --wms local``.

The toy SuperTasks of ``support.toy_pipeline`` (imported by path, as a user's package would be):
``make`` per detector turns ``seed`` into ``made``; ``total`` gathers every ``made``.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from support.toy_pipeline import (
    TASKS_PYTHONPATH,
    ToyPipeline,
    output_checksums,
    prepare,
    query_datasets,
    registered_checksums,
    registered_in,
    run_jobs_with_file_transfer,
    submit_dir_of,
)

from bps import exit_codes
from bps.cli import main as bps_main
from bps.wms.local import LocalService
from bps.workflow_io import load_workflow
from supertask.graph.quantum_graph import QuantumGraph

RUN = "u/test/bps"
TOY = ToyPipeline(run=RUN, detectors=(1, 2, 3, 4), seed_scale=10, multiplier=2)
DETECTORS = TOY.detectors


@pytest.fixture
def toy(tmp_path, monkeypatch):
    """A repository with seeds, and a function writing a graph and a submit YAML for the local WMS."""
    toy = TOY.set_up(tmp_path, monkeypatch, compute_site="local")
    return toy.repo, toy.submit_yaml


def registered(repo: Path, name: str) -> dict:
    """Detector -> object of every ``name`` registered in ``RUN`` (``test_bps_cli`` imports it too)."""
    return registered_in(repo, RUN, name)


def submit(config: Path, *args: str):
    result = CliRunner().invoke(bps_main, ["submit", str(config), "-j", "2", *args])
    return result


@pytest.mark.parametrize("fork", ["1", "0"], ids=["forked-jobs", "fresh-interpreters"])
def test_local_submit_runs_every_job_and_registers_every_output(toy, fork, monkeypatch):
    monkeypatch.setenv("BPS_LOCAL_FORK", fork)
    repo, config = toy
    result = submit(config("plain"))
    assert result.exit_code == 0, result.output
    assert registered(repo, "made") == {d: {"detector": d, "value": d * 20} for d in DETECTORS}
    assert registered(repo, "total") == {None: {"sum": sum(d * 20 for d in DETECTORS)}}
    assert "submit directory:" in result.output
    report = LocalService().report(Path(config("x").parent / "submit" / "plain"))
    assert report.counts["make"]["succeeded"] == 4 and report.counts["finalize"]["succeeded"] == 1


def test_clustering_changes_job_count_not_outputs(toy):
    repo, config = toy
    plain = submit(config("plain"))
    clustered_cfg = config(
        "clustered",
        clustering={"clusters": [{"name": "all", "labels": ["make", "total"], "units": ["instrument"]}]},
    )
    # a second run into the same output run would collide: register under another run name
    text = yaml.safe_load(clustered_cfg.read_text())
    assert plain.exit_code == 0
    files_plain = output_checksums(repo, RUN, "*.json")
    shutil.rmtree(repo / RUN)
    result = submit(clustered_cfg)
    assert result.exit_code == 0, result.output
    files_clustered = output_checksums(repo, RUN, "*.json")
    assert files_plain == files_clustered and len(files_plain) == 5
    assert len(load_workflow(Path(text["submit_dir"]) / "workflow.json").jobs) == 1


def test_permanent_failure_skips_descendants_and_registers_the_rest(toy):
    repo, config = toy
    cfg = config("failing", fail_detector=3, retry={"retries": 1})
    result = submit(cfg)
    assert result.exit_code == 1
    assert sorted(registered(repo, "made")) == [1, 2, 4]
    assert registered(repo, "total") == {}
    submit_dir = submit_dir_of(cfg)
    report = LocalService().report(submit_dir)
    assert report.counts["make"]["failed"] == 1 and report.counts["total"]["skipped"] == 1
    # the science failure, and the final job saying that outputs are missing
    (failure,) = [f for f in report.failures if f.label == "make"]
    (final,) = [f for f in report.failures if f.label != "make"]
    assert final.exit_code == exit_codes.OUTPUTS_MISSING
    assert "make fails on purpose" in failure.log_tail and failure.attempt == 2  # retried once
    # bps report prints the same, with the log tail
    out = CliRunner().invoke(bps_main, ["report", str(submit_dir)]).output
    assert "make fails on purpose" in out and "FAILED" in out


def test_restart_reruns_only_what_did_not_succeed(toy, monkeypatch):
    repo, config = toy
    cfg = config("restart", fail_detector=3, retry={"retries": 0})
    assert submit(cfg).exit_code == 1
    submit_dir = submit_dir_of(cfg)
    # fix the "bug": rewrite the graph's pipeline without the failure, then restart
    data = yaml.safe_load(cfg.read_text())
    fixed = QuantumGraph.load(data["qgraph"])
    fixed.pipelineYaml = TOY.pipeline_yaml(-1)
    fixed.save(data["qgraph"])
    log_of_ok = submit_dir / "logs" / "make" / "make_1_Cam.log"
    attempts_before = log_of_ok.read_text().count("=== attempt")
    result = CliRunner().invoke(bps_main, ["restart", str(submit_dir)])
    assert result.exit_code == 0, result.output
    assert log_of_ok.read_text().count("=== attempt") == attempts_before  # succeeded job not rerun
    assert sorted(registered(repo, "made")) == [1, 2, 3, 4]
    assert registered(repo, "total")[None] == {"sum": sum(d * 20 for d in DETECTORS)}


def test_prepare_writes_a_submit_directory_and_submits_nothing(toy):
    repo, config = toy
    cfg = config("prep")
    result = CliRunner().invoke(bps_main, ["prepare", str(cfg), "--show-config"])
    assert result.exit_code == 0, result.output
    assert f"output_run: {RUN}  # {cfg}" in result.output
    submit_dir = submit_dir_of(cfg)
    assert (submit_dir / "workflow.json").exists() and (submit_dir / "submit_config.yaml").exists()
    assert not list((submit_dir / "manifests").iterdir()) and not (repo / RUN).exists()
    again = CliRunner().invoke(bps_main, ["prepare", str(cfg)])
    assert again.exit_code == 1 and "bps restart" in again.output


def test_job_killed_at_random_points_leaves_nothing_half_written_and_rerun_completes(toy):
    import random
    import signal
    import subprocess
    import sys
    import time

    from bps.finalize import finalize
    from bps.staging import manifest_path, read_manifest

    repo, config = toy
    cfg = config(
        "killed",
        clustering={"clusters": [{"name": "all", "labels": ["make", "total"], "units": ["instrument"]}]},
    )
    submit_dir = prepare(cfg)
    wf = load_workflow(submit_dir / "workflow.json")
    (job,) = wf.jobs.values()
    command = [sys.executable, "-m", "bps.run_quantum", *job.arguments, "--repo", str(repo)]
    env = dict(os.environ, TOY_DELAY="0.15")
    rng = random.Random(6)
    progress_seen = []
    mpath = manifest_path(submit_dir / "manifests", job.name)

    def quanta_done() -> int:
        manifest = read_manifest(mpath)
        return len(manifest.quanta) if manifest else 0

    for _ in range(4):
        # kill at a random moment after the job has finished one more quantum than before
        target = min(quanta_done() + 1, 4)
        process = subprocess.Popen(command, env=env, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while quanta_done() < target and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(rng.uniform(0.0, 0.2))
        process.send_signal(signal.SIGKILL)
        process.wait()
        # every file under its final name is complete; the manifest lists only verified files
        for path in (repo / RUN).rglob("*.json"):
            json.loads(path.read_text())
        manifest = read_manifest(mpath)
        listed = {f.path for f in manifest.files()} if manifest else set()
        progress_seen.append(len(manifest.quanta) if manifest else 0)
        summary = finalize(submit_dir)
        assert not summary.rejected
        assert {(d.dataId.get("detector")) for d in query_datasets(repo, RUN, "made")} == {
            f.data_id["detector"] for f in (manifest.files() if manifest else []) if f.dataset_type == "made"
        }
        assert all((repo / p).exists() for p in listed)
    assert any(0 < n < 5 for n in progress_seen), progress_seen  # some kills landed mid-job
    done = subprocess.run(command, env=env, stderr=subprocess.PIPE, text=True)
    assert done.returncode == 0, done.stderr
    finalize(submit_dir)
    assert sorted(registered(repo, "made")) == list(DETECTORS)
    assert registered(repo, "total")[None] == {"sum": sum(d * 20 for d in DETECTORS)}


@pytest.mark.parametrize("site", ["htcondor_shared", "pegasus_local"])
def test_prepare_for_cluster_systems_hands_the_workflow_to_their_translator(toy, site):
    repo, config = toy
    # test directories live under /tmp and tests may run as root: waive those two pool checks;
    # these jobs do not inherit the submitter's PYTHONPATH: the site gives them the toy tasks
    waive = {
        "condor": {"skip_checks": ["tmp_node_log", "job_user"]},
        "environment": {"PYTHONPATH": TASKS_PYTHONPATH},
    }
    cfg = config(f"prep_{site}", compute_site=site, site=waive)
    result = CliRunner().invoke(bps_main, ["prepare", str(cfg)])
    assert result.exit_code == 0, result.output
    submit_dir = submit_dir_of(cfg)
    wf = load_workflow(submit_dir / "workflow.json")
    assert wf.site.name == site and len(wf.jobs) == 5
    assert "workflow file:" in result.output
    main_file = Path(result.output.split("workflow file:")[1].split()[0])
    assert main_file.exists() and submit_dir in main_file.parents


def test_bps_outputs_are_identical_to_supertask_run(toy, tmp_path):
    """The same graph through `supertask run` and `bps submit --wms local` writes byte-identical files."""
    import subprocess
    import sys

    repo, config = toy
    cfg = config("same")
    graph = yaml.safe_load(cfg.read_text())["qgraph"]
    twin = tmp_path / "twin"
    TOY.make_repo(twin)
    supertask = Path(sys.executable).parent / "supertask"
    done = subprocess.run(
        [str(supertask), "run", str(twin), "--qgraph", graph, "-j", "2"], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert submit(cfg).exit_code == 0
    ours = output_checksums(repo, RUN, "*.json")
    theirs = output_checksums(twin, RUN, "*.json")
    assert ours == theirs and len(ours) == len(DETECTORS) + 1
    # and both registries hold the same datasets with the same checksums
    names = ("made", "total")
    assert registered_checksums(twin, RUN, names) == registered_checksums(repo, RUN, names)


def test_transfer_staging_by_logical_file_name_then_finalize_puts_outputs_in_place(toy, tmp_path):
    """As HTCondor file transfer runs a job: inputs and outputs by lfn in the job's directory."""
    from bps.finalize import STAGED_DIR, finalize

    repo, config = toy
    cfg = config("transfer")
    submit_dir = prepare(cfg)
    run_jobs_with_file_transfer(repo, submit_dir, tmp_path / "nodes")
    staged = submit_dir / STAGED_DIR
    assert not (repo / RUN).exists()  # nothing reached the datastore before the final job
    summary = finalize(submit_dir)
    assert summary.registered == len(DETECTORS) + 1 and not summary.rejected
    assert registered(repo, "total")[None] == {"sum": sum(d * 20 for d in DETECTORS)}
    assert not list(staged.iterdir())  # every staged file moved into the datastore


def test_cancel_stops_a_local_run_and_restart_finishes_it(toy):
    import subprocess
    import sys
    import time

    from bps.wms.base import read_run_record

    repo, config = toy
    cfg = config("cancel")
    submit_dir = submit_dir_of(cfg)
    env = dict(os.environ, TOY_DELAY="30")
    runner = subprocess.Popen(
        [str(Path(sys.executable).parent / "bps"), "submit", str(cfg), "-j", "1"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        jobs = read_run_record(submit_dir).get("jobs", {}) if submit_dir.exists() else {}
        if any(j.get("state") == "running" for j in jobs.values()):
            break
        time.sleep(0.05)
    result = CliRunner().invoke(bps_main, ["cancel", str(submit_dir)])
    assert result.exit_code == 0, result.output
    runner.wait(timeout=60)
    record = read_run_record(submit_dir)
    assert record["state"] == "cancelled"
    assert not any(j["state"] == "running" for j in record["jobs"].values())
    again = CliRunner().invoke(bps_main, ["restart", str(submit_dir), "-j", "2"])
    assert again.exit_code == 0, again.output
    assert sorted(registered(repo, "made")) == list(DETECTORS)


def test_resources_for_a_misspelt_label_are_refused_with_a_suggestion(toy):
    repo, config = toy
    cfg = config("typo", resources={"labels": {"mkae": {"memory_mb": 1000}}})
    result = CliRunner().invoke(bps_main, ["prepare", str(cfg)])
    assert (
        result.exit_code == 1
        and "resources.labels.mkae" in result.output
        and "did you mean 'make'" in result.output
    )


def test_inputs_stored_off_their_template_path_are_found_by_jobs(toy):
    import sqlite3

    repo, config = toy
    old = "seeds/seed/seed_detector-2_instrument-Cam.json"
    assert (repo / old).exists()
    (repo / "elsewhere").mkdir()
    (repo / old).rename(repo / "elsewhere" / "seed2.json")
    with sqlite3.connect(repo / "registry.sqlite3") as db:  # as if ingested in place by another tool
        assert (
            db.execute("UPDATE dataset SET path = ? WHERE path = ?", ("elsewhere/seed2.json", old)).rowcount
            == 1
        )
    cfg = config("offtemplate")
    result = submit(cfg)
    assert result.exit_code == 0, result.output
    submit_dir = submit_dir_of(cfg)
    (locations,) = (submit_dir / "input_locations").iterdir()  # one file, shared by the jobs that need it
    assert json.loads(locations.read_text()) == {"seed.detector-2.instrument-Cam": "elsewhere/seed2.json"}
    assert registered(repo, "made")[2] == {"detector": 2, "value": 40}


def test_prepare_looks_up_what_is_still_registered_when_an_input_was_removed(toy):
    import sqlite3

    from bps.prepare import _locator

    repo, config = toy
    graph = QuantumGraph.load(yaml.safe_load(config("removed").read_text())["qgraph"])
    moved = "seeds/seed/seed_detector-2_instrument-Cam.json"
    with sqlite3.connect(repo / "registry.sqlite3") as db:  # moved by another tool, and one removed
        assert (
            db.execute("UPDATE dataset SET path = ? WHERE path = ?", ("elsewhere/2.json", moved)).rowcount
            == 1
        )
        assert db.execute("DELETE FROM dataset WHERE path LIKE ?", ("%detector-1_%",)).rowcount == 1
    _, off_template = _locator(str(repo), graph)
    assert list(off_template.values()) == ["elsewhere/2.json"]


def test_prepare_records_registered_sizes_and_checksums_and_a_corrupted_input_stops_its_job(toy):
    from bps.staging import checksum_file

    repo, config = toy
    seed = repo / "seeds/seed/seed_detector-2_instrument-Cam.json"
    registered_size, registered_sum = seed.stat().st_size, checksum_file(seed)
    seed.write_bytes(seed.read_bytes()[:-1] + b" ")  # same size, other bytes: after registration
    cfg = config("corrupt")
    result = submit(cfg)
    assert result.exit_code != 0
    submit_dir = submit_dir_of(cfg)
    checks = {}
    for path in (submit_dir / "input_checks").iterdir():
        checks.update(json.loads(path.read_text()))
    assert checks["seed.detector-2.instrument-Cam"] == [registered_size, registered_sum]
    logs = "".join(p.read_text(errors="replace") for p in submit_dir.rglob("*.log") if p.is_file())
    logs += "".join(p.read_text(errors="replace") for p in submit_dir.rglob("*.err") if p.is_file())
    assert "does not match its registration" in logs
    assert 2 not in registered(repo, "made")
