"""A batch workflow never replaces a registered file, with shared or transfer staging.

End to end through the real graph file, pipeline, datastore and registry. The toy
pipeline's ``twin`` task writes ``made`` (the same on every run) and ``noise`` (different
on every run) per detector, so a registered ``noise`` file that a stale plan replaced
would no longer match its registered checksum. The plan is stale because its outputs
were registered after it was saved: by ``supertask run`` of the same graph into the same
RUN, or by the finalize of an earlier workflow into that RUN.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from support.toy_pipeline import (
    SEED,
    SEEDS_RUN,
    assert_registered_files_intact,
    prepare,
    registered_files,
    run_jobs_with_file_transfer,
    twin_pipeline_yaml,
    twin_quanta,
    use_toy_tasks,
)

from bps import exit_codes
from bps.cli import main as bps_main
from bps.finalize import finalize
from bps.wms.local import LocalService
from bps.workflow_io import load_workflow
from supertask.execution import run_graph
from supertask.graph.quantum_graph import QuantumGraph
from supertask.repo.butler import Butler
from supertask.repo.datastore import checksum_file

RUN = "u/test/batch-twin"
DETECTORS = (1, 2, 3)
OUTPUTS = ("made", "noise", "total")


@pytest.fixture
def twin(tmp_path, monkeypatch) -> tuple[Path, Path]:
    """A repository with one seed per detector, and the saved twin graph over it (into ``RUN``)."""
    use_toy_tasks(monkeypatch)
    repo = tmp_path / "repo"
    Butler.create(repo).close()
    butler = Butler(repo, run=SEEDS_RUN)
    try:
        seeds = [
            butler.put({"detector": d, "value": d * 10}, SEED, {"instrument": "Cam", "detector": d})
            for d in DETECTORS
        ]
    finally:
        butler.close()
    graph = tmp_path / "twin.qgraph"
    QuantumGraph(
        twin_quanta(seeds),
        pipelineYaml=twin_pipeline_yaml(),
        metadata={"output_run": RUN, "input_collections": [SEEDS_RUN]},
    ).save(graph)
    return repo, graph


def submit_yaml(repo: Path, graph: Path, name: str, **extra) -> Path:
    """A local-WMS submit YAML of the saved graph (a plan made before anything was registered)."""
    path = graph.parent / f"{name}.yaml"
    data = {
        "qgraph": str(graph),
        "repo": str(repo),
        "output_run": RUN,
        "submit_dir": str(graph.parent / "submit" / name),
        "compute_site": "local",
        **extra,
    }
    path.write_text(yaml.safe_dump(data))
    return path


def submit(config: Path):
    return CliRunner().invoke(bps_main, ["submit", str(config), "-j", "2"])


def supertask_run(repo: Path, graph: Path) -> None:
    butler = Butler(repo, collections=[SEEDS_RUN])
    try:
        assert run_graph(butler, QuantumGraph.load(graph), RUN).ok
    finally:
        butler.close()


def registered(repo: Path) -> dict[tuple[str, object], tuple[str, str]]:
    """(dataset type, data ID) -> (path, registered checksum) of every output in ``RUN``."""
    return registered_files(repo, RUN, OUTPUTS)


def assert_intact(repo: Path) -> dict[tuple[str, object], tuple[str, str]]:
    """Every registered file matches its registered checksum."""
    return assert_registered_files_intact(repo, RUN, OUTPUTS)


@pytest.mark.parametrize("registered_by", ["supertask-run", "earlier-workflow"])
def test_a_stale_plan_through_the_local_wms_never_replaces_a_registered_file(twin, registered_by):
    repo, graph = twin
    stale = submit_yaml(repo, graph, "stale", retry={"retries": 2})
    prepare(stale)  # planned (saved graph, submit directory) before anything was registered
    if registered_by == "supertask-run":
        supertask_run(repo, graph)
    else:
        assert submit(submit_yaml(repo, graph, "earlier")).exit_code == 0
    before = assert_intact(repo)
    assert len(before) == 2 * len(DETECTORS) + 1
    files_before = {path: checksum_file(repo / path) for path, _ in before.values()}

    result = CliRunner().invoke(bps_main, ["submit", str(graph.parent / "submit" / "stale"), "-j", "2"])
    assert result.exit_code != 0, result.output

    assert assert_intact(repo) == before  # nothing registered changed...
    assert {path: checksum_file(repo / path) for path in files_before} == files_before  # ...nor its bytes
    report = LocalService().report(graph.parent / "submit" / "stale")
    twin_failures = [f for f in report.failures if f.label == "twin"]
    assert len(twin_failures) == len(DETECTORS)
    for failure in twin_failures:  # a stale plan is not retried, and the log says what to do
        assert failure.exit_code == exit_codes.DATA_ERROR and failure.attempt == 1
        assert f"already registered in RUN {RUN!r}" in failure.log_tail
        assert "noise {'detector': " in failure.log_tail and "registered checksum" in failure.log_tail
        assert "--skip-existing-in" in failure.log_tail and "--clobber-outputs" in failure.log_tail
        assert "Traceback" not in failure.log_tail


def test_a_batch_rerun_replaces_unregistered_leftovers_of_killed_jobs_and_registers_matching_files(
    twin, tmp_path
):
    repo, graph = twin
    # jobs of an earlier attempt published their outputs and were killed before recording
    # them (their manifests are elsewhere) and before any finalize: unregistered leftovers
    killed = prepare(submit_yaml(repo, graph, "killed"))
    for job in load_workflow(killed / "workflow.json").jobs.values():
        if job.label != "twin":
            continue
        args = list(job.arguments)
        args[args.index("--manifest-dir") + 1] = str(tmp_path / "lost-manifests")
        done = subprocess.run(
            [sys.executable, "-m", "bps.run_quantum", *args, "--repo", str(repo)],
            capture_output=True,
            text=True,
        )
        assert done.returncode == 0, done.stderr
    leftovers = {p: checksum_file(p) for p in (repo / RUN / "noise").rglob("*") if p.is_file()}
    assert len(leftovers) == len(DETECTORS) and registered(repo) == {}

    result = submit(submit_yaml(repo, graph, "rerun"))
    assert result.exit_code == 0, result.output
    after = assert_intact(repo)
    assert len(after) == 2 * len(DETECTORS) + 1
    assert all(checksum_file(p) != old for p, old in leftovers.items())  # replaced by the rerun's bytes


def test_transfer_staging_of_a_stale_plan_is_rejected_by_finalize_and_changes_nothing(twin, tmp_path):
    repo, graph = twin
    submit_dir = prepare(submit_yaml(repo, graph, "transfer"))
    supertask_run(repo, graph)  # registered after the plan was made
    before = assert_intact(repo)
    files_before = {path: checksum_file(repo / path) for path, _ in before.values()}
    run_jobs_with_file_transfer(repo, submit_dir, tmp_path / "nodes")

    summary = finalize(submit_dir)
    assert summary.exit_code == exit_codes.DATA_ERROR
    reasons = [r["reason"] for r in summary.rejected if "/noise/" in r["path"]]
    assert len(reasons) == len(DETECTORS)
    assert all("already registered" in r and "--skip-existing-in" in r for r in reasons), reasons
    assert assert_intact(repo) == before
    assert {path: checksum_file(repo / path) for path in files_before} == files_before


def test_transfer_staging_finalize_replaces_an_unregistered_leftover_at_a_datastore_path(twin, tmp_path):
    repo, graph = twin
    submit_dir = prepare(submit_yaml(repo, graph, "transfer"))
    run_jobs_with_file_transfer(repo, submit_dir, tmp_path / "nodes")
    # what a killed `supertask run` of the same graph leaves: renamed into place, never registered
    wf = load_workflow(submit_dir / "workflow.json")
    leftovers = [repo / f.path for job in wf.jobs.values() for f in job.outputs if "/noise/" in f.path]
    for path in leftovers:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text('{"detector": 0, "nonce": "of a killed run"}')

    summary = finalize(submit_dir)
    assert summary.exit_code == exit_codes.SUCCESS and not summary.rejected, summary.rejected
    assert len(assert_intact(repo)) == 2 * len(DETECTORS) + 1
    assert all("killed" not in path.read_text() for path in leftovers)
