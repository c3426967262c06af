"""What the real Pegasus 5.1.2 planner emits for the demo's Pegasus workflow, for every shipped site config.

``tests/data/real-pegasus-plans/<site>/`` holds the DAGs ``pegasus-plan`` 5.1.2 wrote for the
demo tile prepared with the shipped site config ``<site>.yaml`` (see its README for the commands): the
planned ``workflow.yml`` (the compute sub-workflow's node, then the final job), the DAG its
sub-workflow node's PRE script planned from ``compute.yml``, and the final job's submit file.
The checks: every ``stage_out_*`` job is an ancestor of the final job, the final job brings no
output into its sandbox and has no retries.

The tests marked ``pegasus_planner`` redo this with ``pegasus-plan`` itself when it is on
``PATH`` (it also needs ``condor_submit_dag``), on the demo made afresh.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from bps.config import SHIPPED_SITE_DIR

try:
    from tests.support.pegasus_dag import check_plan, dag_nodes, sub_workflow_plan_arguments
    from tests.support.pegasus_runner import throwaway_key
except ImportError:  # tests/ is not a package: pytest put tests/ itself on sys.path
    from support.pegasus_dag import check_plan, dag_nodes, sub_workflow_plan_arguments
    from support.pegasus_runner import throwaway_key

PLANS = Path(__file__).resolve().parent / "data" / "real-pegasus-plans"
SITES = ["pegasus_local", "pegasus_condorio", "pegasus_sharedfs", "pegasus_nonsharedfs"]
#: the sites with transfer staging, whose jobs are shipped graph slices (bps.slices)
TRANSFER_SITES = ("pegasus_condorio", "pegasus_nonsharedfs")
#: DAG files: the planned workflow.yml, and the compute sub-workflow planned by its node's PRE script
TOP_DAG = "demo_tile0-pegasus-0.dag"
COMPUTE_DAG = "demo_tile0-pegasus-compute-0.dag"
#: The demo tile: 28 compute jobs (clustered), their outputs staged by 4 stage-out jobs.
COMPUTE_JOBS = 28


@pytest.mark.parametrize("site", SITES)
def test_real_plan_orders_every_stage_out_before_finalize_which_transfers_no_outputs(site):
    directory = PLANS / site
    counts = check_plan(
        (directory / TOP_DAG).read_text(),
        (directory / COMPUTE_DAG).read_text(),
        (directory / "bps_finalize.sub").read_text(),
    )
    compute = [n for n in dag_nodes((directory / COMPUTE_DAG).read_text()) if n.startswith("run_quantum_")]
    assert len(compute) == COMPUTE_JOBS
    assert counts["stage_out"] >= 1
    braindump = yaml.safe_load((directory / "braindump.yml").read_text())
    assert braindump["planner_version"] == "5.1.2"


@pytest.mark.parametrize("site", SITES)
def test_real_plan_plans_the_compute_sub_workflow_on_the_site_execution_site(site):
    text = (PLANS / site / TOP_DAG).read_text()
    (node,) = [n for n in dag_nodes(text) if n.startswith("pegasus-plan_")]
    args = shlex.split(sub_workflow_plan_arguments(text, node))
    data = yaml.safe_load((SHIPPED_SITE_DIR / f"{site}.yaml").read_text())
    assert args[args.index("--sites") + 1] == data["site"]["pegasus"]["execution_site"]
    assert args[-1].endswith("/pegasus/compute.yml")
    compute = yaml.safe_load((PLANS / site / "compute-braindump.yml").read_text())
    assert compute["dax"].endswith("/pegasus/compute.yml")


def test_the_sharedfs_plan_copies_no_output_to_the_submit_host():
    # finalize on `local` used to make the planner add stage_inter jobs copying every output
    for site in SITES:
        for dag in (TOP_DAG, COMPUTE_DAG):
            assert not [
                n for n in dag_nodes((PLANS / site / dag).read_text()) if n.startswith("stage_inter_")
            ]


# -- with the real planner -------------------------------------------------------------------

_MISSING = [tool for tool in ("pegasus-plan", "condor_submit_dag") if shutil.which(tool) is None]


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> Path:
    """The demo's directory (repository, graphs, submit YAMLs), made by ``make demo``'s module."""
    root = tmp_path_factory.mktemp("demo") / "demo_run"
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}")
    proc = subprocess.run(
        [sys.executable, "-m", "demo_drp.main_job", str(root)],
        capture_output=True,
        text=True,
        env=env,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return root


@pytest.mark.pegasus_planner
@pytest.mark.slow
@pytest.mark.skipif(bool(_MISSING), reason=f"the real Pegasus planner needs {' and '.join(_MISSING)} on PATH")
@pytest.mark.parametrize("site", SITES)
def test_pegasus_plan_of_the_demo_for_every_shipped_site(demo, tmp_path, site):
    config = yaml.safe_load((demo / "bps_pegasus.yaml").read_text())
    config.update(compute_site=site, submit_dir=str(tmp_path / "submit"))
    path = tmp_path / "bps.yaml"
    path.write_text(yaml.safe_dump(config))
    command = [str(Path(sys.executable).parent / "bps"), "prepare", str(path)]
    if site == "pegasus_nonsharedfs":
        key = throwaway_key()  # the example's key is the operator's: a throw-away one
        command += ["--set", f"site.pegasus.ssh_private_key={key}"]
    proc = subprocess.run(command, capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    pegasus_dir = tmp_path / "submit" / "pegasus"
    if site in TRANSFER_SITES:  # each job stages its graph slice, never the whole graph
        compute_yml = yaml.safe_load((pegasus_dir / "compute.yml").read_text())
        used = {u["lfn"] for job in compute_yml["jobs"] for u in job["uses"] if u["type"] == "input"}
        assert any(lfn.endswith(".qslice") for lfn in used), sorted(used)[:5]
        assert not any(lfn.endswith(".qgraph") for lfn in used), sorted(used)[:5]
    record = yaml.safe_load((tmp_path / "submit" / "run_record.json").read_text())
    plan = [arg for arg in record["plan_command"] if arg != "--submit"]
    proc = subprocess.run(plan, capture_output=True, text=True, cwd=pegasus_dir, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    run_dir = pegasus_dir / "submit" / "run"
    top = next(run_dir.glob("*.dag")).read_text()
    (node,) = [n for n in dag_nodes(top) if n.startswith("pegasus-plan_")]
    # plan the compute sub-workflow exactly as its node's PRE script will
    args = shlex.split(sub_workflow_plan_arguments(top, node))
    proc = subprocess.run(["pegasus-plan", *args], capture_output=True, text=True, cwd=run_dir, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    (compute,) = [p for p in run_dir.glob("00/00/*_compute_workflow/*.dag")]
    check_plan(top, compute.read_text(), (run_dir / "00" / "00" / "bps_finalize.sub").read_text())
