"""The demo's HTCondor workflow, unedited, run by a real DAGMan on a real pool; and the same
tile with file transfer (each job shipped its graph slice, `bps.slices`).

Runs only where HTCondor is installed and its schedd answers (``condor_submit_dag`` on
``PATH``, ``CONDOR_CONFIG`` pointing at the pool); CI has neither and skips with the reason.
The demo is written by ``make demo``'s own main job, submitted with ``bps submit`` from the
checkout (not from inside the submit directory), and must end as DAGMan exit 0 with every
output registered, file for file identical to what ``supertask run`` made for the same tile.

The work directory is ``SUPERTASK_TEST_POOL_DIR`` or ``.pool-tests/`` in the checkout: not
under ``/tmp``, where DAGMan refuses node logs, and made writable by everyone because the
pool's jobs (and the FINAL node's ``bps finalize``) may run as another user than the tests.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import yaml

from supertask.repo.datastore import checksum_file

ROOT = Path(__file__).resolve().parents[1]
#: DAGMan's own limit for the demo on a 4-slot pool is about a minute; leave room for a busy pool.
TIMEOUT_S = 900


def _pool_or_skip() -> None:
    if shutil.which("condor_submit_dag") is None:
        pytest.skip("needs a real HTCondor pool: condor_submit_dag is not on PATH")
    try:
        import htcondor2

        htcondor2.Schedd().query(projection=["ClusterId"], limit=1)
    except Exception as err:  # any failure to reach the schedd means: no pool here
        pytest.skip(f"needs a real HTCondor pool: the schedd does not answer ({err})")


def _open_to_all(path: Path) -> None:
    for p in [path, *path.rglob("*")]:
        if not p.is_symlink():
            p.chmod(p.stat().st_mode | (0o777 if p.is_dir() else 0o666))


def _wait_for_metrics(submit_dir: Path) -> dict:
    deadline = time.monotonic() + TIMEOUT_S
    while time.monotonic() < deadline:
        found = list(submit_dir.glob("*.dag.metrics"))
        if found:
            time.sleep(1)  # DAGMan writes the metrics file last, just before it exits
            return json.loads(found[0].read_text())
        time.sleep(2)
    out = "\n".join(p.read_text()[-3000:] for p in submit_dir.glob("*.dag.dagman.out"))
    pytest.fail(f"DAGMan did not finish within {TIMEOUT_S} s; .dagman.out ends with:\n{out}")


STAGINGS = {
    # the demo's own workflow, unedited (shared filesystem)
    "shared": ("htcondor", None),
    # the same tile with HTCondor file transfer: each job is shipped its graph slice and inputs
    "transfer": ("htcondor-transfer", "htcondor_transfer"),
}


@pytest.mark.parametrize("staging", sorted(STAGINGS))
def test_the_demo_dag_runs_on_a_real_pool_and_registers_what_supertask_run_made(staging):
    _pool_or_skip()
    base = Path(os.environ.get("SUPERTASK_TEST_POOL_DIR", ROOT / ".pool-tests"))
    base.mkdir(parents=True, exist_ok=True)
    base.chmod(0o777)
    work = Path(tempfile.mkdtemp(prefix="demo-", dir=base))
    demo = work / "demo_run"
    bin_dir = Path(sys.executable).parent
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
    subprocess.run([sys.executable, "-m", "demo_drp.main_job", str(demo)], check=True, env=env)
    name, site = STAGINGS[staging]
    run = "demo/tile0-" + name
    submit_dir = demo / "submit" / name
    if site is not None:
        # The demo's HTCondor submit file with another site, RUN and submit directory.
        config = yaml.safe_load((demo / "bps_htcondor.yaml").read_text())
        config.update(compute_site=site, output_run=run, submit_dir=str(submit_dir))
        # 221 quanta in 28 jobs: several slices, so nodes are shipped different files
        config.setdefault("site", {})["slice_quanta"] = 40
        target = demo / f"bps_{name}.yaml"
        target.write_text(yaml.safe_dump(config))
        prepared = subprocess.run(
            [str(bin_dir / "bps"), "prepare", str(target)], cwd=ROOT, env=env, capture_output=True, text=True
        )
        assert prepared.returncode == 0, prepared.stdout + prepared.stderr
    _open_to_all(work)  # the pool's jobs and DAGMan may run as another user
    submitted = subprocess.run(
        [str(bin_dir / "bps"), "submit", str(submit_dir)], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert submitted.returncode == 0, submitted.stdout + submitted.stderr
    if site is not None:
        _assert_jobs_are_shipped_slices_not_the_graph(submit_dir)

    metrics = _wait_for_metrics(submit_dir)
    assert metrics["exitcode"] == 0 and metrics["DagStatus"] == 0, metrics
    summary = json.loads((submit_dir / "finalize_summary.json").read_text())
    assert summary["missing"] == 0 and not summary["rejected"], summary

    repo = demo / "repo"
    local = {
        p.relative_to(repo / "demo" / "tile0"): checksum_file(p)
        for p in (repo / "demo" / "tile0").rglob("*.*")
        if p.is_file() and "logs" not in p.relative_to(repo / "demo" / "tile0").parts
    }
    pool = {p.relative_to(repo / run): checksum_file(p) for p in (repo / run).rglob("*.*") if p.is_file()}
    assert pool and pool == local
    # the schema datasets (src_schema, deepCoadd_src_schema) are written once by the final job
    schemas = [p for p in pool if p.parts[0].endswith("_schema")]
    assert len(schemas) == 2, schemas
    assert summary["registered"] + summary["already_registered"] == len(pool) - len(schemas)
    report = subprocess.run(
        [str(bin_dir / "bps"), "report", str(submit_dir)], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert report.returncode == 0 and "succeeded" in report.stdout, report.stdout + report.stderr
    _check_quantum_usage(submit_dir)
    shutil.rmtree(work, ignore_errors=True)


def _assert_jobs_are_shipped_slices_not_the_graph(submit_dir: Path) -> None:
    """Every node transfers one graph slice of the submit directory, never the .qgraph."""
    dag = next(submit_dir.glob("*.dag")).read_text()
    shipped = re.findall(r'bps_graph="([^"]*)"', dag)
    assert shipped and all(Path(s).parent == submit_dir / "slices" for s in shipped), shipped[:3]
    assert len(set(shipped)) == len(list((submit_dir / "slices").iterdir()))
    for sub in submit_dir.glob("*.sub"):
        text = sub.read_text()
        if "transfer_input_files" in text:
            assert "transfer_input_files = $(bps_graph)$(bps_inputs)" in text
            assert ".qgraph" not in text.split("transfer_input_files", 1)[1].splitlines()[0]


def _check_quantum_usage(submit_dir: Path) -> None:
    """The pool's jobs (running as its user) recorded every quantum's own peak, consistent with HTCondor's samples."""
    from bps.usage import read_usage
    from bps.wms.htcondor.report import build_report
    from bps.workflow_io import load_workflow

    workflow = load_workflow(submit_dir / "workflow.json")
    usage = read_usage(submit_dir)
    assert {(u.job, u.quantum) for u in usage} == {
        (job.name, q) for job in workflow.jobs.values() for q in job.quantum_ids
    }
    largest: dict[str, float] = {}
    for u in usage:
        largest[u.job] = max(largest.get(u.job, 0.0), u.peak_memory_mb)
    # HTCondor samples the job's resident memory every few seconds and often misses a short
    # job's peak (6 MB for a job whose quanta peaked at 65 MB); a peak bounds every sample,
    # give or take the rest of the job's process family (its shell wrapper)
    jobs = [j for j in build_report(submit_dir).jobs if j.peak_memory_mb and j.name in largest]
    assert jobs
    for job in jobs:
        assert largest[job.name] + 10 >= job.peak_memory_mb, (job.name, largest[job.name], job.peak_memory_mb)
    for label in {j.label for j in jobs}:
        ours = max(largest[j.name] for j in jobs if j.label == label)
        theirs = max(j.peak_memory_mb for j in jobs if j.label == label)
        assert ours <= 2 * theirs + 16, (label, ours, theirs)  # the same process, seen at its largest
