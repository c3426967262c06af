"""Start-up cost of one batch job: ``run_quantum`` on a trivial quantum in a fresh process.

Target (issue 6): under 0.2 s on the 2-core development machine; the reference
middleware's job takes about 2 s (measured on this kind of machine, 1.55 s of it
importing the middleware). The figure includes interpreter
start, imports, reading one quantum from a graph of N quanta, building the task,
staging one input in and one output out, and writing the manifest.

Usage: ``.venv/bin/python benchmarks/bench_run_quantum.py [N_QUANTA] [REPEATS]``
"""

from __future__ import annotations

import os
import platform
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

TASK = """
from supertask.config import Config, DatasetField
from supertask.supertask import SuperTask
from supertask.task import Struct

class TrivialConfig(Config):
    seed = DatasetField(doc="in", units=("instrument", "detector"), storageClass="StructuredDataDict", name="seed")
    made = DatasetField(doc="out", units=("instrument", "detector"), storageClass="StructuredDataDict",
                        name="made", role="output")

class TrivialTask(SuperTask):
    ConfigClass = TrivialConfig
    _DefaultName = "trivial"
    quantumUnits = ("instrument", "detector")

    def run(self, seed):
        return Struct(made={"value": seed["value"] + 1})
"""


def setup(work: Path, n_quanta: int) -> tuple[Path, Path, dict[str, str]]:
    from supertask.graph.quantum_graph import QuantumGraph
    from supertask.quantum import Quantum
    from supertask.repo.butler import Butler
    from supertask.repo.dataid import DataId
    from supertask.repo.dataset import Dataset, DatasetType

    (work / "pkg").mkdir()
    (work / "pkg" / "bench_tasks.py").write_text(textwrap.dedent(TASK))
    seed_t = DatasetType("seed", ("instrument", "detector"), "StructuredDataDict")
    made_t = DatasetType("made", ("instrument", "detector"), "StructuredDataDict")
    repo = work / "repo"
    Butler.create(repo).close()
    butler = Butler(repo, run="seeds")
    quanta = []
    for d in range(n_quanta):
        data_id = DataId(instrument="Cam", detector=d)
        seed = butler.put({"value": d}, seed_t, data_id) if d < 3 else Dataset(seed_t, data_id, run="seeds")
        quanta.append(Quantum("trivial", data_id, {"seed": [seed]}, {"made": [Dataset(made_t, data_id)]}))
    butler.close()
    pipeline = "inputs: [seed]\ntasks:\n  trivial:\n    class: bench_tasks.TrivialTask\n"
    graph = work / "bench.qgraph"
    QuantumGraph(quanta, pipelineYaml=pipeline, metadata={"output_run": "bench/run"}).save(graph)
    env = dict(os.environ, PYTHONPATH=str(work / "pkg"))
    return repo, graph, env


def job_command(graph: Path, repo: Path, i: int, manifests: Path) -> list[str]:
    """The ``run_quantum`` command of job ``j{i}`` (quantum ``i % 3``), as a batch system starts it."""
    return [sys.executable, "-m", "bps.run_quantum", "--graph", str(graph), "--quantum", str(i % 3),
            "--repo", str(repo), "--job", f"j{i}", "--manifest-dir", str(manifests)]  # fmt: skip


def main() -> None:
    n_quanta = int(sys.argv[1]) if len(sys.argv) > 1 else 10_000
    repeats = int(sys.argv[2]) if len(sys.argv) > 2 else 15
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        repo, graph, env = setup(work, n_quanta)
        baseline, job = [], []
        for i in range(repeats):
            start = time.perf_counter()
            subprocess.run([sys.executable, "-c", "pass"], check=True)
            baseline.append(time.perf_counter() - start)
            manifests = work / f"m{i}"
            command = job_command(graph, repo, i, manifests)
            start = time.perf_counter()
            subprocess.run(command, check=True, env=env, stderr=subprocess.DEVNULL)
            job.append(time.perf_counter() - start)
            # the no-op rerun of a finished job
        noop = []
        for i in range(min(repeats, 3)):
            command = job_command(graph, repo, i, work / f"m{i}")
            start = time.perf_counter()
            subprocess.run(command, check=True, env=env, stderr=subprocess.DEVNULL)
            noop.append(time.perf_counter() - start)
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    print(f"graph: {n_quanta} quanta; {repeats} fresh processes each")
    print(f"python -c pass             median {statistics.median(baseline) * 1000:7.1f} ms")
    print(
        f"run_quantum, one quantum   median {statistics.median(job) * 1000:7.1f} ms  "
        f"(min {min(job) * 1000:.1f}, max {max(job) * 1000:.1f}; target < 200 ms)"
    )
    print(f"run_quantum, already done  median {statistics.median(noop) * 1000:7.1f} ms")


if __name__ == "__main__":
    main()
