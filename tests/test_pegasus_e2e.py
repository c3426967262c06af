"""End to end: `bps prepare` with wms pegasus on a real graph and repository.

- the Pegasus workflow has the same jobs and edges as the generic workflow and as the
  HTCondor DAG written from the same generic workflow;
- every written file validates against Pegasus's schemas;
- `bps submit` without Pegasus stops with a clear message and leaves the directory ready;
- executing the Pegasus jobs in dependency order (the test runner stages inputs by
  logical name, and runs stage-out as a step of its own after each job, as Pegasus does)
  with the real ``run_quantum`` and ``bps finalize`` registers the same datasets as
  ``supertask run``.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from support.toy_pipeline import (
    TASKS_PYTHONPATH,
    ToyPipeline,
    ToyRepo,
    prepare,
    query_datasets,
    registered_in,
)

from bps import exit_codes
from bps.cli import main as bps_main
from bps.wms.pegasus import schema
from bps.workflow import GenericWorkflow
from bps.workflow_io import load_workflow

try:
    from tests.support.pegasus_runner import run_workflow
except ImportError:  # tests/ is not a package: pytest put tests/ itself on sys.path
    from support.pegasus_runner import run_workflow

RUN = "u/test/pegasus"
TOY = ToyPipeline(run=RUN, detectors=(1, 2, 3), seed_scale=1, multiplier=3, make="triple", made="tripled")


@pytest.fixture
def toy(tmp_path, monkeypatch) -> ToyRepo:
    """A repository with three seeds; ``toy.submit_yaml("toy")`` writes the two-task graph over them and a
    submit YAML for Pegasus (and rewrites both, e.g. with a ``fail_detector``)."""
    toy = TOY.set_up(
        tmp_path,
        monkeypatch,
        wms="pegasus",
        compute_site="pegasus_local",
        site={"environment": {"PYTHONPATH": TASKS_PYTHONPATH}},
    )
    return toy


def _pegasus_edges(pegasus_dir: Path) -> tuple[set[str], set[tuple[str, str]], str]:
    """Generic job names and edges of the written compute workflow, and the final job's name.

    The final job is in ``workflow.yml``, the only child of the compute sub-workflow.
    """
    job_map = json.loads((pegasus_dir / "job_map.json").read_text())
    doc = json.loads((pegasus_dir / "compute.yml").read_text())
    names = {job["id"]: job_map[job["id"]]["name"] for job in doc["jobs"]}
    edges = {(names[d["id"]], names[c]) for d in doc["jobDependencies"] for c in d["children"]}
    root = json.loads((pegasus_dir / "workflow.yml").read_text())
    (sub,) = [job for job in root["jobs"] if job["type"] == "pegasusWorkflow"]
    (final,) = [job for job in root["jobs"] if job["type"] == "job"]
    assert sub["file"] == "compute.yml"
    assert root["jobDependencies"] == [{"id": sub["id"], "children": [final["id"]]}]
    return set(names.values()), edges, job_map[final["id"]]["name"]


def _dag_edges(dag: Path, workflow: GenericWorkflow) -> tuple[set[str], set[tuple[str, str]], bool]:
    """Generic job names and edges of an HTCondor DAG file, and whether it has a FINAL node."""
    from bps.wms.htcondor.translator import node_names

    by_node = {node: name for name, node in node_names(workflow.jobs).items()}
    jobs, edges, final = set(), set(), False
    for line in dag.read_text().splitlines():
        words = line.split()
        if words and words[0] == "JOB":
            jobs.add(by_node[words[1]])
        elif words and words[0] == "PARENT":
            split = words.index("CHILD")
            edges |= {(by_node[p], by_node[c]) for p in words[1:split] for c in words[split + 1 :]}
        elif words and words[0] == "FINAL":
            final = True
    return jobs, edges, final


def test_pegasus_workflow_and_htcondor_dag_have_the_same_jobs_and_edges(toy):
    tmp_path, config = toy.root, toy.submit_yaml("toy")
    submit = prepare(config)
    workflow = load_workflow(submit / "workflow.json")
    jobs, edges, final_name = _pegasus_edges(submit / "pegasus")
    compute_edges = edges
    assert jobs == set(workflow.jobs) and final_name == workflow.final.name
    assert compute_edges == set(workflow.edges())
    assert len(workflow.jobs) == 4 and len(compute_edges) == 3

    pytest.importorskip("bps.wms.htcondor.translator")
    from bps.wms.htcondor.translator import write_dag

    layout = write_dag(workflow, tmp_path / "condor")
    dag_jobs, dag_edges, dag_final = _dag_edges(layout.dag, workflow)
    assert dag_jobs == jobs
    assert dag_edges == compute_edges
    assert dag_final  # both run a final registration job after everything else


def test_prepared_pegasus_files_validate_against_the_schemas(toy):
    config = toy.submit_yaml("toy")
    submit = prepare(config)
    assert schema.validate_directory(submit / "pegasus") == {n: [] for n in schema.SCHEMA_OF}


def test_bps_submit_without_pegasus_stops_clearly_and_leaves_the_directory_ready(toy, monkeypatch):
    tmp_path, config = toy.root, toy.submit_yaml("toy")
    empty = tmp_path / "emptybin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    result = CliRunner().invoke(bps_main, ["submit", str(config)])
    assert result.exit_code == 1
    assert "pegasus-plan is not on PATH" in result.output
    submit = Path(yaml.safe_load(config.read_text())["submit_dir"])
    assert (submit / "pegasus" / "plan.sh").exists() and (submit / "pegasus" / "workflow.yml").exists()


def test_pegasus_jobs_run_in_order_register_the_same_datasets_as_supertask_run(toy):
    from bps.staging import checksum_file

    tmp_path, repo, config = toy.root, toy.repo, toy.submit_yaml("toy")
    reference = tmp_path / "reference"
    shutil.copytree(repo, reference)
    graph = yaml.safe_load(config.read_text())["qgraph"]
    supertask = Path(sys.executable).parent / "supertask"
    ref = subprocess.run(
        [str(supertask), "run", str(reference), "--qgraph", graph, "-j", "1"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert ref.returncode == 0, ref.stdout + ref.stderr
    submit = prepare(config)
    run_workflow(submit / "pegasus", tmp_path / "work")

    # the datasets the workflow makes (supertask run also leaves per-quantum logs, batch jobs do not)
    workflow = load_workflow(submit / "workflow.json")
    paths = sorted(f.path for job in workflow.jobs.values() for f in job.outputs)
    assert len(paths) == 4
    expected = {p: checksum_file(reference / p) for p in paths}
    assert {p: checksum_file(repo / p) for p in paths} == expected
    assert not list((submit / "staged").iterdir())  # finalize moved everything into place
    assert registered_in(repo, RUN, "total") == {None: {"sum": 3 * (1 + 2 + 3)}}


def test_a_run_stopped_partway_registers_what_succeeded_and_a_restart_reruns_only_the_rest(toy):
    from bps.wms.pegasus.service import PegasusService

    submit = prepare(toy.submit_yaml("toy", fail_detector=2))
    pegasus_dir = submit / "pegasus"
    job_map = json.loads((pegasus_dir / "job_map.json").read_text())
    by_name = {entry["name"]: pid for pid, entry in job_map.items()}
    first = run_workflow(pegasus_dir, toy.root / "work1", keep_going=True)
    failed = {job_map[pid]["name"] for pid in first.failed}
    assert len(failed) == 1 and "triple fails on purpose" in next(iter(first.failed.values()))
    assert {job_map[pid]["label"] for pid in first.skipped} == {"total", "finalize"}

    # the final job did not run: register by hand what succeeded
    result = CliRunner().invoke(bps_main, ["finalize", str(submit)])
    # what was made is registered, and the exit status says the run is not complete
    assert result.exit_code == exit_codes.OUTPUTS_MISSING, result.output
    assert len(query_datasets(toy.repo, RUN, "tripled")) == 2

    # fix the cause, restart with a change: Pegasus's data reuse prunes the two jobs that succeeded
    toy.submit_yaml("toy", fail_detector=-1)  # rewrites the same graph file without the failure
    PegasusService().prepare_restart(submit, {"retries": 1})
    second = run_workflow(pegasus_dir, toy.root / "work2")
    ran = {job_map[pid]["name"] for pid in second.order}
    assert ran == failed | {
        name for name in by_name if job_map[by_name[name]]["label"] in ("total", "finalize")
    }
    assert {job_map[pid]["label"] for pid in second.pruned} == {"triple"} and len(second.pruned) == 2
    assert len(query_datasets(toy.repo, RUN, "tripled")) == 3
    assert registered_in(toy.repo, RUN, "total") == {None: {"sum": 3 * (1 + 2 + 3)}}
