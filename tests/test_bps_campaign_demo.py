"""``bps campaign`` on the demo with the local workflow system: three tiles, a failure, the report, a second run.

Tile ``tract1`` comes first and loses one raw file, so one of its isr jobs fails; tiles
``edge`` (patch 11 of tract 0) and ``west`` (patch 5) share visits with it and are blocked
rather than redoing the shared work. With the file back, running the campaign again
restarts only what failed in ``tract1`` (no new plan), then plans ``edge`` without the
detectors ``tract1`` did, then ``west`` without those either did. The counts come from the
registry's overlaps.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from demo_drp.data import make_demo_repo

from bps.campaign import read_state
from bps.cli import main as bps_main
from supertask.repo.butler import Butler

PIPELINE = Path(__file__).resolve().parents[1] / "examples" / "demo_pipeline.yaml"


@pytest.mark.slow
def test_a_failed_tile_blocks_its_neighbours_and_a_second_run_finishes_all_three(tmp_path):
    repo = tmp_path / "repo"
    make_demo_repo(repo, n_exposures=3)
    (tmp_path / "submit.yaml").write_text(
        yaml.safe_dump(
            {
                "pipeline": str(PIPELINE),
                "repo": str(repo),
                "input_collections": ["DemoCam/defaults"],
                "wms": "local",
                "retry": {"retries": 0},
            }
        )
    )
    campaign = tmp_path / "campaign.yaml"
    campaign.write_text(
        "output: u/me/drp\nsubmit: submit.yaml\npoll_interval_s: 0.2\nmax_running: 2\n"
        'tiles:\n  - {name: tract1, where: "tract = 1"}\n  - {name: edge, where: "tract = 0 AND patch = 11"}\n'
        '  - {name: west, where: "tract = 0 AND patch = 5"}\n'
    )
    butler = Butler(repo, collections=["DemoCam/defaults"])
    registry = butler.registry

    def visit_detectors(where: str) -> set[tuple[int, int]]:
        rows = registry.queryDataIds(["visit", "detector", "tract", "patch"], where=where)
        return {(r["visit"], r["detector"]) for r in rows}

    tract1, edge = visit_detectors("tract = 1"), visit_detectors("tract = 0 AND patch = 11")
    west = visit_detectors("tract = 0 AND patch = 5")
    assert tract1 & edge, "the two tiles share detectors of a visit"
    visit, detector = sorted(tract1)[0]
    raw = registry.findDataset(
        "raw", {"instrument": "DemoCam", "exposure": visit, "detector": detector}, ["DemoCam/defaults"]
    )
    path = Path(registry.getDatasetLocation(raw)[0])
    path = path if path.is_absolute() else repo / path
    shutil.move(path, tmp_path / "raw.aside")

    first = CliRunner().invoke(bps_main, ["campaign", str(campaign)])
    assert first.exit_code == 1, first.output
    directory = tmp_path / "campaign" / "u_me_drp"
    state = read_state(directory)
    assert {t.name: t.state for t in state.tiles} == {
        "tract1": "failed",
        "edge": "blocked",
        "west": "blocked",
    }
    assert "waits for tract1" in state.tile("edge").message
    assert not (directory / "tiles" / "edge").exists(), "a blocked tile is not planned"

    report = CliRunner().invoke(bps_main, ["campaign", "report", str(directory)])
    assert report.exit_code == 0, report.output
    assert "FAILED" in report.output and "(isr)" in report.output and "blocked" in report.output
    assert "Traceback" not in report.output

    shutil.move(tmp_path / "raw.aside", path)
    second = CliRunner().invoke(bps_main, ["campaign", str(campaign)])
    assert second.exit_code == 0, second.output
    assert "tile tract1: restarting what failed" in second.output
    assert "tile tract1: planned" not in second.output
    state = read_state(directory)
    assert {t.name: t.state for t in state.tiles} == {n: "succeeded" for n in ("tract1", "edge", "west")}
    assert state.tile("tract1").submissions == 2
    shared = len(tract1 & edge)
    assert state.tile("edge").reused == {"isr": shared, "calibrate": shared}
    assert state.tile("edge").planned["isr"] == len(edge - tract1)
    done = len(west & (tract1 | edge))
    assert state.tile("west").reused == ({"isr": done, "calibrate": done} if done else {})
    assert state.tile("west").planned["isr"] == len(west - tract1 - edge)
    assert registry.getChain("u/me/drp") == [
        "u/me/drp/west",
        "u/me/drp/edge",
        "u/me/drp/tract1",
        "DemoCam/defaults",
    ]
    # edge's warps gathered every overlapping calexp: tract1's where it made them, their own elsewhere
    from supertask.graph.quantum_graph import QuantumGraph

    graph = QuantumGraph.load(directory / "tiles" / "edge" / "u_me_drp_edge.qgraph")
    calexps = [d for q in graph.quantaByLabel()["makeWarp"] for d in q.inputs["calexp"]]
    assert {(d.dataId["visit"], d.dataId["detector"]) for d in calexps} == edge
    assert {(d.dataId["visit"], d.dataId["detector"]) for d in calexps if d.run == "u/me/drp/tract1"} == (
        tract1 & edge
    )
    coadds = registry.queryDatasets("deepCoadd", ["u/me/drp"])
    assert {d.dataId["patch"] for d in coadds if d.dataId["tract"] == 0} == {5, 11}
    # a third run has nothing left to do
    third = CliRunner().invoke(bps_main, ["campaign", str(campaign)])
    assert third.exit_code == 0 and "quanta into RUN" not in third.output and "3 succeeded" in third.output
