"""The whole demo tile through the real Parsl (``parsl_local``) against ``supertask run``: same datasets, same checksums.

What ``make demo`` plans (``demo_drp.main_job``: 6 exposures, ``tract = 0``) and submits
to its local batch run, with the same clustering, goes through Parsl's
HighThroughputExecutor with the site's two workers. The direct run is planned by
``supertask qgraph``, the Parsl run by ``bps submit`` itself. The tile has visits whose
warps find no work in some patches, so tombstones travel through Parsl too. Every
quantum's own peak memory and wall time come back in the manifests and the run's usage
log (`bps.usage`), the figures ``bps prepare --resources-from`` sizes requests from.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from demo_drp.main_job import INPUTS, PIPELINE, WHERE
from support.toy_pipeline import registered_checksums

from bps.usage import read_usage
from bps.wms.base import read_run_record
from bps.wms.parsl.state import driver_alive, read_state
from bps.workflow_io import load_workflow

pytest.importorskip("parsl", reason="parsl is not installed (pip install 'supertask[parsl]')")

pytestmark = [pytest.mark.parsl, pytest.mark.slow]

BIN = Path(sys.executable).parent
#: the demo's clustering (demo_drp.main_job): one job per exposure, per visit, per patch
CLUSTERS = [
    {"name": "isr", "labels": ["isr"], "units": ["instrument", "exposure"]},
    {"name": "visit", "labels": ["calibrate", "makeWarp"], "units": ["instrument", "visit"]},
    {
        "name": "coadd",
        "labels": ["assembleCoadd", "detectCoadd"],
        "units": ["skymap", "tract", "patch"],
        "max_size": 20,
    },
]


def run(*args: str) -> str:
    done = subprocess.run([str(BIN / args[0]), *args[1:]], capture_output=True, text=True)
    assert done.returncode == 0, f"{' '.join(args)}\n{done.stdout}\n{done.stderr}"
    return done.stdout


def test_demo_tile_through_parsl_registers_what_supertask_run_registers(tmp_path):
    repo = tmp_path / "repo"
    run("supertask", "demo-data", str(repo), "--exposures", "6")
    plan = ("supertask", "qgraph", str(repo), "-p", str(PIPELINE), "-i", INPUTS, "--where", WHERE)
    direct_graph, parsl_graph = tmp_path / "direct.qgraph", tmp_path / "parsl.qgraph"
    run(*plan, "-o", "demo/direct", "--save", str(direct_graph))
    run(*plan, "-o", "demo/parsl", "--save", str(parsl_graph))
    run("supertask", "run", str(repo), "--qgraph", str(direct_graph), "-j", "2")
    config = tmp_path / "bps.yaml"
    submit_dir = tmp_path / "submit"
    config.write_text(
        yaml.safe_dump(
            {
                "repo": str(repo),
                "qgraph": str(parsl_graph),
                "output_run": "demo/parsl",
                "site": "parsl_local",
                "submit_dir": str(submit_dir),
                "clustering": {"clusters": CLUSTERS},
            }
        )
    )
    out = run("bps", "submit", str(config))
    assert "with parsl" in out
    deadline = time.monotonic() + 1800
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
    # every quantum measured its own peak and wall time, and the run keeps each record
    usage = read_usage(submit_dir)
    quanta = {
        (j.name, q) for j in load_workflow(submit_dir / "workflow.json").jobs.values() for q in j.quantum_ids
    }
    assert {(u.job, u.quantum) for u in usage} == quanta
    assert all(u.peak_memory_mb > 1 and u.wall_s >= 0 for u in usage)
