"""Single-node execution of the demo pipeline on a real repository.

The executor's scheduling rules are tested with a stand-in repository in
``test_executor.py``; here the real stack runs: demo data in a SQLite repository,
preflight, ``supertask run`` in a subprocess, interruption by a real signal, and a
resumed run that finishes the job without redoing what succeeded.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from demo_drp.data import make_demo_repo

from supertask.execution import run_pipeline
from supertask.graph.builder import build_quantum_graph
from supertask.pipeline import Pipeline
from supertask.repo.butler import Butler

PIPELINE = Path(__file__).resolve().parents[1] / "examples" / "demo_pipeline.yaml"
INPUTS = ["DemoCam/defaults"]
SUPERTASK = str(Path(sys.executable).parent / "supertask")


@pytest.fixture(scope="module")
def demo_repo(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("demo") / "repo"
    make_demo_repo(root, n_exposures=3)
    return root


def planned_quanta(root: Path, run: str) -> dict[str, int]:
    """Number of quanta per task label in the tile-0 graph (planned as if ``run`` were empty:
    planning into a RUN that holds the outputs is refused without an option)."""
    butler = Butler(root, collections=INPUTS)
    graph, _ = build_quantum_graph(
        Pipeline.fromFile(PIPELINE),
        butler,
        where="tract = 0",
        input_collections=INPUTS,
        output_run=run,
        clobber_outputs=True,
    )
    return {label: len(quanta) for label, quanta in graph.quantaByLabel().items()}


OUTPUT_TYPES = ("postISRCCD", "calexp", "src", "warp", "deepCoadd", "deepCoadd_src")


def checksums(root: Path, run: str) -> dict[tuple[str, object], str]:
    """(dataset type, data ID) -> checksum of everything registered in ``run``."""
    registry = Butler(root, collections=[run]).registry
    result = {}
    for name in OUTPUT_TYPES:
        for dataset in registry.queryDatasets(name, [run]):
            result[(name, dataset.dataId)] = registry.getDatasetLocation(dataset)[2]
    return result


@pytest.fixture(scope="module")
def reference(demo_repo):
    """An uninterrupted run of tile 0 from Python, and the datasets it registered."""
    run = "test/reference"
    result = run_pipeline(
        PIPELINE, demo_repo, where="tract = 0", input_collections=INPUTS, output_run=run, processes=2
    )
    return run, result, checksums(demo_repo, run)


def test_run_pipeline_from_python_runs_every_planned_quantum(demo_repo, reference):
    run, result, registered = reference
    assert result.ok, [(f.label, f.reason, f.log_tail) for f in result.failures]
    assert result.output_run == run
    planned = planned_quanta(demo_repo, run)
    for label, n in planned.items():
        counts = result.counts[label]
        assert counts["succeeded"] + counts["no_work"] == n, (label, counts)
    # every quantum that succeeded registered its outputs, one per output type
    per_type = {name: sum(1 for key in registered if key[0] == name) for name in OUTPUT_TYPES}
    assert per_type["calexp"] == per_type["src"] == result.counts["calibrate"]["succeeded"]
    assert per_type["warp"] == result.counts["makeWarp"]["succeeded"]
    assert per_type["deepCoadd"] == result.counts["assembleCoadd"]["succeeded"] > 0
    # the registry records the run's provenance
    butler = Butler(demo_repo, collections=[run])
    provenance = butler.registry.getRunProvenance(run)
    assert "assembleCoadd" in provenance["pipeline"] and provenance["versions"]["python"]
    # a coadd can be read back, with its checksum verified
    coadd = butler.get(butler.registry.queryDatasets("deepCoadd", [run])[0], verify=True)
    image = coadd["image"] if isinstance(coadd, dict) else coadd
    assert np.isfinite(np.asarray(image)).any()


def _wait_for_logs(log_dir: Path, n: int, process: subprocess.Popen, limit: float = 60) -> int:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        count = len(list(log_dir.glob("*/*.log"))) if log_dir.exists() else 0
        if count >= n:
            return count
        if process.poll() is not None:
            pytest.fail(f"supertask run ended before it could be interrupted: {process.communicate()}")
        time.sleep(0.05)
    pytest.fail("supertask run made no progress")


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_interrupted_run_leaves_nothing_half_done_and_a_rerun_finishes_it(demo_repo, reference, signum):
    run = f"test/interrupted-{signum}"
    _, _, expected = reference
    args = [
        SUPERTASK,
        "run",
        str(demo_repo),
        "-p",
        str(PIPELINE),
        "-i",
        INPUTS[0],
        "-o",
        run,
        "--where",
        "tract = 0",
        "-j",
        "2",
    ]
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    process = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    _wait_for_logs(demo_repo / run / "logs", 15, process)
    process.send_signal(signum)
    out, err = process.communicate(timeout=60)
    assert process.returncode == 130, out + err
    assert "rerun with --skip-existing" in err

    # Everything registered is complete: the file exists and its checksum matches.
    butler = Butler(demo_repo, collections=[run])
    first = checksums(demo_repo, run)
    assert 0 < len(first) < len(expected)
    for name in OUTPUT_TYPES:
        for dataset in butler.registry.queryDatasets(name, [run]):
            butler.get(dataset, verify=True)
    ids_before = {
        name: {d.dataId: d.id for d in butler.registry.queryDatasets(name, [run])} for name in OUTPUT_TYPES
    }

    rerun = subprocess.run([*args, "--skip-existing"], capture_output=True, text=True, env=env, timeout=120)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    # the resumed run ends with exactly the datasets of an uninterrupted one, byte for byte
    assert checksums(demo_repo, run) == expected
    # and what succeeded the first time was not redone: the same registrations are still there
    for name, before in ids_before.items():
        after = {d.dataId: d.id for d in butler.registry.queryDatasets(name, [run])}
        assert all(after[k] == v for k, v in before.items())
