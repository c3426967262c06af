"""On a real HTCondor pool: a task package only on the submitter's PYTHONPATH fails every job with exit 78,
and `bps prepare`'s check of the jobs' imports refuses exactly that graph.

Runs only where HTCondor is installed and its schedd answers (as
``tests/test_htcondor_real_pool_demo.py``, whose helpers it uses); CI skips with the reason.
The files of the run this reproduces are in ``tests/data/real-htcondor-25.14.0/task-import/``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml
from test_htcondor_real_pool_demo import ROOT, _open_to_all, _pool_or_skip, _wait_for_metrics


def test_jobs_without_the_submitters_pythonpath_exit_78_and_prepare_would_have_refused():
    _pool_or_skip()
    base = Path(os.environ.get("SUPERTASK_TEST_POOL_DIR", ROOT / ".pool-tests"))
    base.mkdir(parents=True, exist_ok=True)
    base.chmod(0o777)
    work = Path(tempfile.mkdtemp(prefix="task-import-", dir=base))
    (work / "pkg" / "stpeer_demo").mkdir(parents=True)
    (work / "pkg" / "stpeer_demo" / "__init__.py").write_text(
        "from demo_drp.tasks import IsrTask\n\n\nclass IsrLikeTask(IsrTask):\n    _DefaultName = 'isrLike'\n"
    )
    (work / "pipeline.yaml").write_text(
        "inputs: [raw, bias, flat]\ntasks:\n  isr:\n    class: stpeer_demo.IsrLikeTask\n"
    )
    bin_dir = Path(sys.executable).parent
    env = {
        **os.environ,
        "PYTHONPATH": str(work / "pkg"),
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
    }

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(list(args), cwd=work, env=env, capture_output=True, text=True)

    assert run("supertask", "demo-data", "repo", "--exposures", "1").returncode == 0
    planned = run(
        *(
            "supertask",
            "qgraph",
            "repo",
            "-p",
            "pipeline.yaml",
            "-i",
            "DemoCam/defaults",
            "-o",
            "u/task-import",
        ),
        *("--where", "detector = 0", "--save", "g.qgraph"),
    )
    assert planned.returncode == 0, planned.stdout + planned.stderr

    def config(name: str, skip: list[str]) -> Path:
        path = work / f"{name}.yaml"
        site = {"condor": {"skip_checks": skip}}
        path.write_text(
            yaml.safe_dump(
                {
                    "repo": str(work / "repo"),
                    "qgraph": str(work / "g.qgraph"),
                    "output_run": "u/task-import",
                    "wms": "htcondor",
                    "compute_site": "htcondor_shared",
                    "submit_dir": str(work / name),
                    "site": site,
                }
            )
        )
        return path

    refused = run("bps", "prepare", str(config("checked", ["job_user"])))
    assert refused.returncode != 0
    assert (
        "jobs cannot import task class stpeer_demo.IsrLikeTask (label isr): no such module" in refused.stderr
    )

    unchecked = config("unchecked", ["job_user", "task_imports"])
    prepared = run("bps", "prepare", str(unchecked))
    assert prepared.returncode == 0, prepared.stdout + prepared.stderr
    _open_to_all(work)  # the pool's jobs and DAGMan may run as another user
    submitted = run("bps", "submit", str(work / "unchecked"))
    assert submitted.returncode == 0, submitted.stdout + submitted.stderr
    metrics = _wait_for_metrics(work / "unchecked")
    assert metrics["DagStatus"] != 0, metrics
    dagman = "".join(p.read_text() for p in (work / "unchecked").glob("*.dagman.out"))
    assert "failed with status 78" in dagman
    logs = "".join(p.read_text() for p in (work / "unchecked" / "logs" / "isr").rglob("*.out"))
    assert "cannot import task class 'stpeer_demo.IsrLikeTask': no such module" in logs and "exit 78" in logs
