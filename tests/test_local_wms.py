"""End to end through the real graph file, pipeline, datastore and registry: ``bps submit --wms local``.

Toy SuperTasks (written to a module on PYTHONPATH, as a user's package would be):
``make`` per detector turns ``seed`` into ``made``; ``total`` gathers every ``made``.
"""

from __future__ import annotations

import json
import os
import shutil
import textwrap
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from bps.cli import main as bps_main
from bps.staging import checksum_file
from bps.wms.local import LocalService
from bps.workflow import GenericWorkflow
from supertask.graph.quantum_graph import QuantumGraph
from supertask.quantum import Quantum
from supertask.repo.butler import Butler
from supertask.repo.dataid import DataId
from supertask.repo.dataset import Dataset, DatasetType

RUN = "u/test/bps"
DETECTORS = (1, 2, 3, 4)
TASKS = """
import os, time
from supertask.config import Config, DatasetField, Field
from supertask.supertask import SuperTask
from supertask.task import Struct

class MakeConfig(Config):
    seed = DatasetField(doc="in", units=("instrument", "detector"), storageClass="StructuredDataDict", name="seed")
    made = DatasetField(doc="out", units=("instrument", "detector"), storageClass="StructuredDataDict",
                        name="made", role="output")
    failDetector = Field(dtype=int, default=-1, doc="raise on this detector")

class MakeTask(SuperTask):
    ConfigClass = MakeConfig
    _DefaultName = "make"
    quantumUnits = ("instrument", "detector")

    def run(self, seed):
        if seed["detector"] == self.config.failDetector:
            raise RuntimeError("make fails on purpose")
        delay = float(os.environ.get("TOY_DELAY", "0"))
        if delay:
            time.sleep(delay)
        return Struct(made={"detector": seed["detector"], "value": seed["value"] * 2})

class TotalConfig(Config):
    made = DatasetField(doc="in", units=("instrument", "detector"), storageClass="StructuredDataDict", name="made")
    total = DatasetField(doc="out", units=("instrument",), storageClass="StructuredDataDict", name="total",
                         role="output")

class TotalTask(SuperTask):
    ConfigClass = TotalConfig
    _DefaultName = "total"
    quantumUnits = ("instrument",)

    def run(self, made):
        return Struct(total={"sum": sum(m["value"] for m in made.values())})
"""

SEED = DatasetType("seed", ("instrument", "detector"), "StructuredDataDict")
MADE = DatasetType("made", ("instrument", "detector"), "StructuredDataDict")
TOTAL = DatasetType("total", ("instrument",), "StructuredDataDict")


def pipeline_yaml(fail_detector: int = -1) -> str:
    return yaml.safe_dump(
        {
            "inputs": ["seed"],
            "tasks": {
                "make": {"class": "toy_tasks.MakeTask", "config": {"failDetector": fail_detector}},
                "total": {"class": "toy_tasks.TotalTask"},
            },
        }
    )


def make_repo(root: Path) -> list[Dataset]:
    """A repository holding one seed per detector in run ``seeds``."""
    Butler.create(root).close()
    butler = Butler(root, run="seeds")
    try:
        return [
            butler.put({"detector": d, "value": d * 10}, SEED, {"instrument": "Cam", "detector": d})
            for d in DETECTORS
        ]
    finally:
        butler.close()


@pytest.fixture
def toy(tmp_path, monkeypatch):
    """A repository with seeds, a saved graph, a site config and a submit YAML."""
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "toy_tasks.py").write_text(textwrap.dedent(TASKS))
    monkeypatch.syspath_prepend(str(pkg))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(pkg), os.environ.get("PYTHONPATH", "")]))
    repo = tmp_path / "repo"
    seeds = make_repo(repo)

    def make_graph(path: Path, fail_detector: int = -1) -> Path:
        quanta = []
        made = []
        for s in seeds:
            out = Dataset(MADE, s.dataId)
            made.append(out)
            quanta.append(
                Quantum(
                    "make",
                    DataId(s.dataId),
                    {"seed": [Dataset(SEED, s.dataId, id=s.id, run=s.run)]},
                    {"made": [out]},
                )
            )
        quanta.append(
            Quantum(
                "total",
                DataId(instrument="Cam"),
                {"made": list(made)},
                {"total": [Dataset(TOTAL, DataId(instrument="Cam"))]},
            )
        )
        graph = QuantumGraph(
            quanta,
            pipelineYaml=pipeline_yaml(fail_detector),
            metadata={"output_run": RUN, "input_collections": ["seeds"]},
        )
        graph.save(path)
        return path

    def config(name: str, **extra) -> Path:
        data = {
            "qgraph": str(make_graph(tmp_path / f"{name}.qgraph", extra.pop("fail_detector", -1))),
            "repo": str(repo),
            "output_run": RUN,
            "compute_site": "local",
            "submit_dir": str(tmp_path / "submit" / name),
            **extra,
        }
        path = tmp_path / f"{name}.yaml"
        path.write_text(yaml.safe_dump(data))
        return path

    return repo, config


def registered(repo: Path, name: str) -> dict:
    butler = Butler(repo, collections=[RUN])
    try:
        try:
            found = butler.registry.queryDatasets(name, [RUN])
        except KeyError:  # dataset type never registered: nothing of it was made
            return {}
        return {d.dataId.get("detector"): butler.get(d) for d in found}
    finally:
        butler.close()


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
    files_plain = {p.relative_to(repo): checksum_file(p) for p in (repo / RUN).rglob("*.json")}
    shutil.rmtree(repo / RUN)
    result = submit(clustered_cfg)
    assert result.exit_code == 0, result.output
    files_clustered = {p.relative_to(repo): checksum_file(p) for p in (repo / RUN).rglob("*.json")}
    assert files_plain == files_clustered and len(files_plain) == 5
    assert len(GenericWorkflow.load(Path(text["submit_dir"]) / "workflow.json").jobs) == 1


def test_permanent_failure_skips_descendants_and_registers_the_rest(toy):
    repo, config = toy
    cfg = config("failing", fail_detector=3, retry={"retries": 1})
    result = submit(cfg)
    assert result.exit_code == 1
    assert sorted(registered(repo, "made")) == [1, 2, 4]
    assert registered(repo, "total") == {}
    submit_dir = Path(yaml.safe_load(cfg.read_text())["submit_dir"])
    report = LocalService().report(submit_dir)
    assert report.counts["make"]["failed"] == 1 and report.counts["total"]["skipped"] == 1
    (failure,) = report.failures
    assert "make fails on purpose" in failure.log_tail and failure.attempt == 2  # retried once
    # bps report prints the same, with the log tail
    out = CliRunner().invoke(bps_main, ["report", str(submit_dir)]).output
    assert "make fails on purpose" in out and "FAILED" in out


def test_restart_reruns_only_what_did_not_succeed(toy, monkeypatch):
    repo, config = toy
    cfg = config("restart", fail_detector=3, retry={"retries": 0})
    assert submit(cfg).exit_code == 1
    submit_dir = Path(yaml.safe_load(cfg.read_text())["submit_dir"])
    # fix the "bug": rewrite the graph's pipeline without the failure, then restart
    data = yaml.safe_load(cfg.read_text())
    fixed = QuantumGraph.load(data["qgraph"])
    fixed.pipelineYaml = pipeline_yaml(-1)
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
    submit_dir = Path(yaml.safe_load(cfg.read_text())["submit_dir"])
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
    assert CliRunner().invoke(bps_main, ["prepare", str(cfg)]).exit_code == 0
    submit_dir = Path(yaml.safe_load(cfg.read_text())["submit_dir"])
    wf = GenericWorkflow.load(submit_dir / "workflow.json")
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
        assert {(d.dataId.get("detector")) for d in _resolved(repo, "made")} == {
            f.data_id["detector"] for f in (manifest.files() if manifest else []) if f.dataset_type == "made"
        }
        assert all((repo / p).exists() for p in listed)
    assert any(0 < n < 5 for n in progress_seen), progress_seen  # some kills landed mid-job
    done = subprocess.run(command, env=env, stderr=subprocess.PIPE, text=True)
    assert done.returncode == 0, done.stderr
    finalize(submit_dir)
    assert sorted(registered(repo, "made")) == list(DETECTORS)
    assert registered(repo, "total")[None] == {"sum": sum(d * 20 for d in DETECTORS)}


def _resolved(repo: Path, name: str) -> list:
    butler = Butler(repo, collections=[RUN])
    try:
        return butler.registry.queryDatasets(name, [RUN])
    except KeyError:
        return []
    finally:
        butler.close()


@pytest.mark.parametrize("site", ["htcondor_shared", "pegasus_local"])
def test_prepare_for_cluster_systems_hands_the_workflow_to_their_translator(toy, site):
    repo, config = toy
    # test directories live under /tmp and tests may run as root: waive those two pool checks
    waive = {"condor": {"skip_checks": ["tmp_node_log", "job_user"]}}
    cfg = config(f"prep_{site}", compute_site=site, site=waive)
    result = CliRunner().invoke(bps_main, ["prepare", str(cfg)])
    assert result.exit_code == 0, result.output
    submit_dir = Path(yaml.safe_load(cfg.read_text())["submit_dir"])
    wf = GenericWorkflow.load(submit_dir / "workflow.json")
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
    make_repo(twin)
    supertask = Path(sys.executable).parent / "supertask"
    done = subprocess.run(
        [str(supertask), "run", str(twin), "--qgraph", graph, "-j", "2"], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert submit(cfg).exit_code == 0
    ours = {p.relative_to(repo): checksum_file(p) for p in (repo / RUN).rglob("*.json")}
    theirs = {p.relative_to(twin): checksum_file(p) for p in (twin / RUN).rglob("*.json")}
    assert ours == theirs and len(ours) == len(DETECTORS) + 1
    # and both registries hold the same datasets with the same checksums
    for root in (repo, twin):
        butler = Butler(root, collections=[RUN])
        try:
            rows = {
                (d.datasetType.name, d.dataId): butler.registry.getDatasetLocation(d)[2]
                for name in ("made", "total")
                for d in butler.registry.queryDatasets(name, [RUN])
            }
        finally:
            butler.close()
        if root == repo:
            ours_registered = rows
    assert rows == ours_registered


def test_transfer_staging_by_logical_file_name_then_finalize_puts_outputs_in_place(toy, tmp_path):
    """As HTCondor file transfer runs a job: inputs and outputs by lfn in the job's directory."""
    import subprocess
    import sys

    from bps.finalize import STAGED_DIR, finalize

    repo, config = toy
    cfg = config("transfer")
    assert CliRunner().invoke(bps_main, ["prepare", str(cfg)]).exit_code == 0
    submit_dir = Path(yaml.safe_load(cfg.read_text())["submit_dir"])
    wf = GenericWorkflow.load(submit_dir / "workflow.json")
    staged = submit_dir / STAGED_DIR
    staged.mkdir()
    for job in wf.jobs.values():
        workdir = tmp_path / "nodes" / job.name
        workdir.mkdir(parents=True)
        for f in job.inputs:  # what the workflow system transfers in
            source = repo / f.path if f.producer is None else staged / f.lfn
            shutil.copyfile(source, workdir / f.lfn)
        args = [a for a in job.arguments]
        args[args.index("--manifest-dir") + 1] = "."
        done = subprocess.run(
            [sys.executable, "-m", "bps.run_quantum", *args, "--inputs-dir", ".", "--outputs-dir", "."],
            cwd=workdir,
            capture_output=True,
            text=True,
        )
        assert done.returncode == 0, done.stderr
        for f in job.outputs:  # what it transfers back
            shutil.move(workdir / f.lfn, staged / f.lfn)
        (submit_dir / "manifests").mkdir(exist_ok=True)
        for manifest in workdir.glob("*.manifest.json"):
            shutil.move(manifest, submit_dir / "manifests" / manifest.name)
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
    submit_dir = Path(yaml.safe_load(cfg.read_text())["submit_dir"])
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
    submit_dir = Path(yaml.safe_load(cfg.read_text())["submit_dir"])
    assert [p.name for p in (submit_dir / "input_locations").iterdir()] == ["make_2_Cam.json"]
    assert registered(repo, "made")[2] == {"detector": 2, "value": 40}
