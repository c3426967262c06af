"""``bps prepare`` plans with the skip-existing options: a tile next to a finished one reuses its visit-level work.

Tile 0 (tract 0) of the demo is run first; tile 1 (tract 1) shares visits with it. Planned
with tile 0's RUN as an input and ``skip_existing_in`` naming it, tile 1's workflow has no
isr or calibrate job: its warps read tile 0's calexps. Without the option the same plan
redoes them. The expected counts come from the registry's overlaps, not from the planner.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from demo_drp.data import make_demo_repo

from bps.cli import main as bps_main
from bps.workflow_io import load_workflow
from supertask.execution import run_graph
from supertask.graph.builder import build_quantum_graph
from supertask.pipeline import Pipeline
from supertask.repo.butler import Butler

PIPELINE = Path(__file__).resolve().parents[1] / "examples" / "demo_pipeline.yaml"
INPUTS = ["DemoCam/defaults"]
TILE0 = "u/me/tile0"


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> Path:
    """A demo repository in which tile 0 has been processed into RUN u/me/tile0."""
    root = tmp_path_factory.mktemp("skip-existing") / "repo"
    make_demo_repo(root, n_exposures=3)
    butler = Butler(root, collections=INPUTS)
    graph, _ = build_quantum_graph(
        Pipeline.fromFile(PIPELINE), butler, where="tract = 0", input_collections=INPUTS, output_run=TILE0
    )
    assert run_graph(butler, graph, TILE0, processes=2).ok
    return root


def tile1_visit_detectors(repo: Path) -> set[tuple[int, int]]:
    """The (visit, detector) pairs tile 1's warps need, from the overlap relation."""
    registry = Butler(repo, collections=INPUTS).registry
    rows = registry.queryDataIds(["visit", "detector", "tract", "patch"], where="tract = 1")
    return {(r["visit"], r["detector"]) for r in rows}


def prepare(repo: Path, tmp_path: Path, *extra: str, **keys) -> tuple[dict[str, int], object]:
    config = tmp_path / "tile1.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "pipeline": str(PIPELINE),
                "repo": str(repo),
                "input_collections": [TILE0, *INPUTS],
                "output_run": "u/me/tile1",
                "where": "tract = 1",
                "submit_dir": str(tmp_path / "submit"),
                **keys,
            }
        )
    )
    result = CliRunner().invoke(bps_main, ["prepare", str(config), *extra])
    assert result.exit_code == 0, result.output
    workflow = load_workflow(tmp_path / "submit" / "workflow.json")
    counts: dict[str, int] = {}
    for job in workflow.jobs.values():
        counts[job.label] = counts.get(job.label, 0) + 1
    return counts, workflow


def test_without_skip_existing_in_tile_1_redoes_the_shared_visit_work(repo, tmp_path):
    counts, _ = prepare(repo, tmp_path)
    shared = tile1_visit_detectors(repo)
    assert shared, "the demo's tract 1 shares visits with tract 0"
    assert counts["isr"] == counts["calibrate"] == len(shared)


@pytest.mark.parametrize("how", ["yaml", "cli"])
def test_skip_existing_in_leaves_the_visit_level_quanta_of_tile_0_out(repo, tmp_path, how):
    if how == "yaml":
        counts, workflow = prepare(repo, tmp_path, skip_existing_in=[TILE0])
    else:
        counts, workflow = prepare(repo, tmp_path, "--skip-existing-in", TILE0)
    assert "isr" not in counts and "calibrate" not in counts
    # gathering tasks still see every input: each warp reads every overlapping calexp, from tile 0's RUN
    registry = Butler(repo, collections=INPUTS).registry
    rows = registry.queryDataIds(["visit", "detector", "tract", "patch"], where="tract = 1")
    warps = {(r["visit"], r["patch"]) for r in rows}
    assert counts["makeWarp"] == len(warps)
    calexps = [f for job in workflow.jobs.values() for f in job.inputs if f.lfn.startswith("calexp")]
    assert len({f.lfn for f in calexps}) == len(tile1_visit_detectors(repo))
    assert all(f.producer is None for f in calexps)  # read as they are, none made here
    provenance = (tmp_path / "submit" / "submit_config.yaml").read_text()
    assert "skip_existing_in: [u/me/tile0]" in provenance


def test_skip_existing_in_with_a_saved_graph_is_refused_with_the_fix(tmp_path):
    graph = tmp_path / "g.qgraph"
    graph.write_bytes(b"")
    config = tmp_path / "c.yaml"
    config.write_text(f"qgraph: {graph}\nrepo: {tmp_path}\nskip_existing_in: [u/me/tile0]\n")
    result = CliRunner().invoke(bps_main, ["prepare", str(config)])
    assert result.exit_code == 1
    assert "skip_existing_in" in result.output and "supertask qgraph --skip-existing-in" in result.output
    assert "Traceback" not in result.output
