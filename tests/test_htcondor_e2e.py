"""End to end: `bps prepare` with wms htcondor, the emitted DAG run by the DAGMan test runner
with the real ``run_quantum`` and ``bps finalize``, compared with ``supertask run``.

The jobs get only the environment their submit description names (the runner passes
nothing else), so this also proves the site's ``environment`` reaches them.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from support.dagman_runner import run_dag

from bps.cli import main as bps_main
from bps.staging import checksum_file
from bps.wms.htcondor.service import HTCondorService
from supertask.graph.quantum_graph import QuantumGraph
from supertask.quantum import Quantum
from supertask.repo.butler import Butler
from supertask.repo.dataid import DataId
from supertask.repo.dataset import Dataset, DatasetType

pytestmark = pytest.mark.slow

RUN = "u/test/condor"
TASKS = """
from supertask.config import Config, DatasetField, Field
from supertask.supertask import SuperTask
from supertask.task import Struct

class ScaleConfig(Config):
    seed = DatasetField(doc="in", units=("instrument", "detector"), storageClass="StructuredDataDict", name="seed")
    scaled = DatasetField(doc="out", units=("instrument", "detector"), storageClass="StructuredDataDict",
                          name="scaled", role="output")
    failDetector = Field(dtype=int, default=-1, doc="raise on this detector")

class ScaleTask(SuperTask):
    ConfigClass = ScaleConfig
    _DefaultName = "scale"
    quantumUnits = ("instrument", "detector")

    def run(self, seed):
        if seed["detector"] == self.config.failDetector:
            raise RuntimeError("scale fails on purpose")
        return Struct(scaled={"detector": seed["detector"], "value": seed["value"] * 3})

class SumConfig(Config):
    scaled = DatasetField(doc="in", units=("instrument", "detector"), storageClass="StructuredDataDict",
                          name="scaled")
    total = DatasetField(doc="out", units=("instrument",), storageClass="StructuredDataDict", name="total",
                         role="output")

class SumTask(SuperTask):
    ConfigClass = SumConfig
    _DefaultName = "sum"
    quantumUnits = ("instrument",)

    def run(self, scaled):
        return Struct(total={"sum": sum(m["value"] for m in scaled.values())})
"""
SEED = DatasetType("seed", ("instrument", "detector"), "StructuredDataDict")
SCALED = DatasetType("scaled", ("instrument", "detector"), "StructuredDataDict")
TOTAL = DatasetType("total", ("instrument",), "StructuredDataDict")


def _pipeline(fail_detector: int) -> str:
    return yaml.safe_dump(
        {
            "inputs": ["seed"],
            "tasks": {
                "scale": {"class": "condor_toy_tasks.ScaleTask", "config": {"failDetector": fail_detector}},
                "sum": {"class": "condor_toy_tasks.SumTask"},
            },
        }
    )


@pytest.fixture
def toy(tmp_path, monkeypatch):
    """A repository with seeds and a function writing a graph and a submit YAML for HTCondor."""
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "condor_toy_tasks.py").write_text(textwrap.dedent(TASKS))
    monkeypatch.syspath_prepend(str(pkg))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(pkg), os.environ.get("PYTHONPATH", "")]))

    def make_repo(root: Path) -> list[Dataset]:
        Butler.create(root).close()
        butler = Butler(root, run="seeds")
        try:
            seeds = [{"detector": d, "value": d} for d in (1, 2, 3)]
            return [butler.put(s, SEED, {"instrument": "Cam", "detector": s["detector"]}) for s in seeds]
        finally:
            butler.close()

    repo = tmp_path / "repo"
    seeds = make_repo(repo)

    def graph(path: Path, fail_detector: int = -1) -> Path:
        quanta, scaled = [], []
        for s in seeds:
            out = Dataset(SCALED, s.dataId)
            scaled.append(out)
            quanta.append(
                Quantum(
                    "scale",
                    DataId(s.dataId),
                    {"seed": [Dataset(SEED, s.dataId, id=s.id, run=s.run)]},
                    {"scale": [out]} and {"scaled": [out]},
                )
            )
        cam = DataId(instrument="Cam")
        quanta.append(Quantum("sum", cam, {"scaled": list(scaled)}, {"total": [Dataset(TOTAL, cam)]}))
        QuantumGraph(
            quanta,
            pipelineYaml=_pipeline(fail_detector),
            metadata={"output_run": RUN, "input_collections": ["seeds"]},
        ).save(path)
        return path

    def config(name: str, staging: str = "shared", fail_detector: int = -1) -> Path:
        data = {
            "qgraph": str(graph(tmp_path / f"{name}.qgraph", fail_detector)),
            "repo": str(repo),
            "output_run": RUN,
            "wms": "htcondor",
            "compute_site": f"htcondor_{staging}",
            "submit_dir": str(tmp_path / "submit" / name),
            # Jobs inherit nothing: the task package path must be in the site environment.
            "site": {
                "environment": {"PYTHONPATH": str(pkg)},
                "condor": {"skip_checks": ["tmp_node_log", "job_user"]},
            },
        }
        path = tmp_path / f"{name}.yaml"
        path.write_text(yaml.safe_dump(data))
        return path

    return tmp_path, repo, config, make_repo


def _prepare(config: Path) -> Path:
    result = CliRunner().invoke(bps_main, ["prepare", str(config)])
    assert result.exit_code == 0, result.output
    submit_dir = Path(yaml.safe_load(config.read_text())["submit_dir"])
    (dag,) = submit_dir.glob("*.dag")
    return dag


def _output_checksums(repo: Path) -> dict[str, str]:
    """Relative path -> checksum of every dataset file of the output run (``supertask run``'s own
    per-quantum logs excluded: batch jobs keep their logs in the submit directory)."""
    root = repo / RUN
    files = (p for p in sorted(root.rglob("*")) if p.is_file() and "logs" not in p.relative_to(root).parts)
    return {str(p.relative_to(repo)): checksum_file(p) for p in files}


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
    expected = _output_checksums(reference)
    assert expected and _output_checksums(repo) == expected
    butler = Butler(repo, collections=[RUN])
    try:
        (total,) = butler.registry.queryDatasets("total", [RUN])
        assert butler.get(total) == {"sum": 3 * (1 + 2 + 3)}
    finally:
        butler.close()


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
    (failure,) = report.failures
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
