"""End to end: `bps prepare` with wms htcondor, the emitted DAG run by the DAGMan test runner
with the real ``run_quantum`` and ``bps finalize``, compared with ``supertask run``.

The jobs get only the environment their submit description names (the runner passes
nothing else), so this also proves the site's ``environment`` reaches them.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from support.dagman_runner import run_dag
from support.toy_pipeline import TASKS_PYTHONPATH, ToyPipeline, output_checksums, prepare, registered_in

from bps import exit_codes
from bps.wms.htcondor.service import HTCondorService

pytestmark = pytest.mark.slow

RUN = "u/test/condor"
TOY = ToyPipeline(
    run=RUN, detectors=(1, 2, 3), seed_scale=1, multiplier=3, make="scale", total="sum", made="scaled"
)


@pytest.fixture
def toy(tmp_path, monkeypatch):
    """A repository with seeds and a function writing a graph and a submit YAML for HTCondor."""
    toy = TOY.set_up(
        tmp_path,
        monkeypatch,
        wms="htcondor",
        # Jobs inherit nothing: the task package path must be in the site environment.
        site={
            "environment": {"PYTHONPATH": TASKS_PYTHONPATH},
            "condor": {"skip_checks": ["tmp_node_log", "job_user"]},
        },
    )

    def config(name: str, staging: str = "shared", fail_detector: int = -1) -> Path:
        return toy.submit_yaml(name, fail_detector, compute_site=f"htcondor_{staging}")

    return tmp_path, toy.repo, config, TOY.make_repo


def _prepare(config: Path) -> Path:
    (dag,) = prepare(config).glob("*.dag")
    return dag


@pytest.mark.parametrize("staging", ["shared", "transfer"])
def test_htcondor_run_registers_the_same_datasets_as_supertask_run(toy, staging):
    tmp_path, repo, config, make_repo = toy
    reference = tmp_path / "reference"
    make_repo(reference)  # the same inputs, made the same way
    cfg = config("ok", staging)
    graph = yaml.safe_load(cfg.read_text())["qgraph"]
    supertask = Path(sys.executable).parent / "supertask"
    ref = subprocess.run(
        [str(supertask), "run", str(reference), "--qgraph", graph, "-j", "1"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert ref.returncode == 0, ref.stdout + ref.stderr

    result = run_dag(_prepare(cfg))
    assert result.exit_code == 0, [result.status(n) for n in result.order]
    expected = output_checksums(reference, RUN)
    assert expected and output_checksums(repo, RUN) == expected
    assert registered_in(repo, RUN, "total") == {None: {"sum": 3 * (1 + 2 + 3)}}


def test_a_failing_quantum_is_reported_and_a_restart_completes_the_run(toy):
    tmp_path, repo, config, _ = toy
    cfg = config("fail", fail_detector=2)
    dag = _prepare(cfg)
    first = run_dag(dag)
    assert first.exit_code == 1
    service = HTCondorService()
    report = service.report(dag.parent)
    assert report.counts["scale"]["succeeded"] == 2 and report.counts["scale"]["failed"] == 1
    assert report.counts["sum"]["skipped"] == 1
    # the science failure, and the final job saying that outputs are missing
    (failure,) = [f for f in report.failures if f.label == "scale"]
    (final,) = [f for f in report.failures if f.label != "scale"]
    assert final.exit_code == exit_codes.OUTPUTS_MISSING
    assert "scale fails on purpose" in failure.log_tail
    # Fix the cause (the pipeline in the graph), then restart: only the failed job and its descendant run.
    config("fail", fail_detector=-1)  # rewrites the same graph file without the failure
    layout = service.prepare_restart(dag.parent)
    second = run_dag(layout.dag)
    assert second.exit_code == 0
    not_done = [n for n in first.dag.nodes if first.status(n) in ("STATUS_ERROR", "STATUS_FUTILE")]
    assert len(not_done) == 2
    assert second.order == [*not_done, "bps_final"]
    assert service.report(dag.parent).state == "succeeded"
