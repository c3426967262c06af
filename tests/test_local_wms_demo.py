"""The demo pipeline through ``bps submit --wms local`` against ``supertask run`` (same data, same graph).

Planned over one patch so that it stays quick (by ``supertask qgraph`` for the direct
run, by ``bps submit`` itself from the pipeline for the batch run); the patch includes a visit whose warp
has no pixels on it (``NoWorkFound``), so the no-work path of batch jobs is exercised
on real science code too.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from supertask.repo.datastore import checksum_file

PIPELINE = Path(__file__).resolve().parents[1] / "examples" / "demo_pipeline.yaml"
BIN = Path(sys.executable).parent


def run(*args: str) -> str:
    done = subprocess.run([str(BIN / args[0]), *args[1:]], capture_output=True, text=True)
    assert done.returncode == 0, f"{' '.join(args)}\n{done.stdout}\n{done.stderr}"
    return done.stdout


def plan(repo: Path, run_name: str, graph: Path) -> None:
    run(
        "supertask",
        "qgraph",
        str(repo),
        "-p",
        str(PIPELINE),
        "-i",
        "DemoCam/defaults",
        "-o",
        run_name,
        "--where",
        "tract = 0 AND patch = 12",
        "--save",
        str(graph),
    )


@pytest.mark.slow
def test_demo_through_bps_local_matches_supertask_run(tmp_path):
    repo = tmp_path / "repo"
    run("supertask", "demo-data", str(repo), "--exposures", "2")
    plan(repo, "demo/direct", tmp_path / "direct.qgraph")
    run("supertask", "run", str(repo), "--qgraph", str(tmp_path / "direct.qgraph"), "-j", "2")
    config = tmp_path / "bps.yaml"
    # bps plans the same request itself, from the pipeline (no saved graph)
    config.write_text(
        yaml.safe_dump(
            {
                "pipeline": str(PIPELINE),
                "repo": str(repo),
                "input_collections": ["DemoCam/defaults"],
                "where": "tract = 0 AND patch = 12",
                "output_run": "demo/bps",
                "wms": "local",
                "site": "local",
                "submit_dir": str(tmp_path / "submit"),
            }
        )
    )
    out = run("bps", "submit", str(config), "-j", "2")
    assert f"submit directory: {tmp_path / 'submit'}" in out
    direct = {
        p.relative_to(repo / "demo" / "direct"): checksum_file(p)
        for p in (repo / "demo" / "direct").rglob("*.*")
        if p.is_file() and "logs" not in p.parts and not p.name.endswith(".log")
    }
    batch = {
        p.relative_to(repo / "demo" / "bps"): checksum_file(p)
        for p in (repo / "demo" / "bps").rglob("*.*")
        if p.is_file()
    }
    assert direct and set(batch) <= set(direct)
    assert {k: direct[k] for k in batch} == batch
    assert len(batch) == len([k for k in direct if k.parts[0] != "logs"])
    # what finalize registered matches the files
    summary = yaml.safe_load((tmp_path / "submit" / "finalize_summary.json").read_text())
    # the jobs' outputs; the RUN's schema datasets (src_schema, deepCoadd_src_schema) are
    # recorded by finalize apart from them
    schemas = [k for k in batch if k.parts[0].endswith("_schema")]
    assert len(schemas) == 2, schemas
    assert summary["registered"] == len(batch) - len(schemas) and not summary["rejected"]
