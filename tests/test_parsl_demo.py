"""The demo pipeline through the real Parsl (``parsl_local``) against ``supertask run``: same datasets, same checksums.

One patch of tile 0 (as ``test_local_wms_demo``), planned by ``supertask qgraph`` for the
direct run and by ``bps submit`` itself for the Parsl run; the patch has a visit whose warp
finds no work, so tombstones travel through Parsl too.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from support.toy_pipeline import registered_checksums

from bps.wms.base import read_run_record
from bps.wms.parsl.state import driver_alive, read_state

pytest.importorskip("parsl", reason="parsl is not installed (pip install 'supertask[parsl]')")

pytestmark = [pytest.mark.parsl, pytest.mark.slow]

PIPELINE = Path(__file__).resolve().parents[1] / "examples" / "demo_pipeline.yaml"
BIN = Path(sys.executable).parent
WHERE = "tract = 0 AND patch = 12"


def run(*args: str) -> str:
    done = subprocess.run([str(BIN / args[0]), *args[1:]], capture_output=True, text=True)
    assert done.returncode == 0, f"{' '.join(args)}\n{done.stdout}\n{done.stderr}"
    return done.stdout


def test_demo_patch_through_parsl_registers_what_supertask_run_registers(tmp_path):
    repo = tmp_path / "repo"
    run("supertask", "demo-data", str(repo), "--exposures", "2")
    graph = tmp_path / "direct.qgraph"
    run(
        "supertask", "qgraph", str(repo), "-p", str(PIPELINE), "-i", "DemoCam/defaults",
        "-o", "demo/direct", "--where", WHERE, "--save", str(graph),
    )  # fmt: skip
    run("supertask", "run", str(repo), "--qgraph", str(graph), "-j", "2")
    config = tmp_path / "bps.yaml"
    submit_dir = tmp_path / "submit"
    config.write_text(
        yaml.safe_dump(
            {
                "pipeline": str(PIPELINE),
                "repo": str(repo),
                "input_collections": ["DemoCam/defaults"],
                "where": WHERE,
                "output_run": "demo/parsl",
                "site": "parsl_local",
                "submit_dir": str(submit_dir),
            }
        )
    )
    out = run("bps", "submit", str(config))
    assert "with parsl" in out
    deadline = time.monotonic() + 900
    while driver_alive(read_state(submit_dir)) and time.monotonic() < deadline:
        time.sleep(1)
    record = read_run_record(submit_dir)
    assert record["state"] == "succeeded", run("bps", "report", str(submit_dir))
    direct = registered_checksums(repo, "demo/direct")
    through_parsl = registered_checksums(repo, "demo/parsl")
    assert through_parsl and through_parsl == direct
    summary = yaml.safe_load((submit_dir / "finalize_summary.json").read_text())
    # the jobs' outputs; the RUN's schema datasets are recorded by finalize apart from them
    schemas = [key for key in through_parsl if key[0].endswith("_schema")]
    assert len(schemas) == 2, schemas
    assert summary["registered"] == len(through_parsl) - len(schemas) and not summary["rejected"]
