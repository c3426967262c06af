"""Wall time of a bps DAG on a real HTCondor pool against the same DAG of ``/bin/true`` nodes.

::

    python benchmarks/bench_htcondor_dag.py WORKDIR [--exposures 5] [--detectors 10]

Builds the unclustered 50 -> 50 -> 5 graph (per exposure and detector: ``make`` then
``double``; per exposure: ``total`` gathering its detectors; ``tests/support/real_pool.py``)
in a fresh repository under WORKDIR, prepares it with
``bps prepare`` (site ``htcondor_shared``), writes a twin DAG with the same nodes and edges
whose every node (FINAL included) runs ``/bin/true``, submits each with ``condor_submit_dag``
and times submission to DAGMan's exit (the ``.metrics`` file appears). Run it as a user the
pool runs jobs for, with ``condor_submit_dag`` on ``PATH``; WORKDIR must not be under /tmp.
Prints both wall times, DAGMan's own durations and the ratio (the target: bps within 1.5x).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.support import real_pool  # noqa: E402


def build_graph(work: Path, exposures: int, detectors: int) -> tuple[Path, Path]:
    """Repository with one seed per (exposure, detector) and the make -> double -> total graph."""
    return real_pool.build(work, exposures, detectors, run="bench/dag")


def prepare(work: Path, repo: Path, graph: Path) -> Path:
    """``bps prepare`` of the graph for htcondor_shared; returns the .dag."""
    submit = real_pool.prepare(work, repo, graph, "bps", "bench/dag", {})
    (dag,) = submit.glob("*.dag")
    return dag


def true_twin(dag: Path, work: Path) -> Path:
    """The same nodes and edges, every node (FINAL too) running /bin/true."""
    twin_dir = work / "submit" / "true"
    shutil.rmtree(twin_dir, ignore_errors=True)
    twin_dir.mkdir(parents=True)
    sub = twin_dir / "true.sub"
    sub.write_text(
        "universe = vanilla\nexecutable = /bin/true\ngetenv = false\n"
        f"output = {twin_dir}/$(JOB).out\nerror = {twin_dir}/$(JOB).out\n"
        "request_memory = 100\nrequest_cpus = 1\nshould_transfer_files = NO\nqueue\n"
    )
    lines = []
    for line in dag.read_text().splitlines():
        t = line.split()
        if t and t[0] in ("JOB", "FINAL"):
            lines.append(f"{t[0]} {t[1]} {sub}")
        elif t and t[0] == "PARENT":
            lines.append(line)
    twin = twin_dir / "true.dag"
    twin.write_text("\n".join(lines) + "\n")
    return twin


def run(dag: Path) -> dict[str, float]:
    """Submit ``dag`` with condor_submit_dag (from its directory) and wait for DAGMan's metrics."""
    metrics = dag.with_name(dag.name + ".metrics")
    metrics.unlink(missing_ok=True)
    start = time.time()
    subprocess.run(
        ["condor_submit_dag", "-f", dag.name], cwd=dag.parent, check=True, stdout=subprocess.DEVNULL
    )
    while not metrics.exists():
        time.sleep(0.2)
    wall = time.time() - start
    time.sleep(0.5)
    m = json.loads(metrics.read_text())
    return {"wall_s": wall, "dagman_s": m["duration"], "exitcode": m["exitcode"], "DagStatus": m["DagStatus"]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("workdir", type=Path)
    p.add_argument("--exposures", type=int, default=5)
    p.add_argument("--detectors", type=int, default=10)
    args = p.parse_args()
    work = args.workdir.absolute()
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    os.environ.setdefault("PYTHONPATH", str(ROOT))
    repo, graph = build_graph(work, args.exposures, args.detectors)
    dag = prepare(work, repo, graph)
    twin = true_twin(dag, work)
    results = {"true": run(twin), "bps": run(dag)}
    results["ratio"] = results["bps"]["wall_s"] / results["true"]["wall_s"]
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
