"""Start-up cost of one batch job: ``run_quantum`` on a trivial quantum in a fresh process.

The figure includes interpreter start, imports, reading one quantum from a graph of
N quanta, building the task, staging one input in and one output out, and writing
the manifest. It is compared with the interpreter floor measured in the same run,
alternately with the jobs: ``python -c pass`` with the same interpreter and
environment as the job (so the floor includes what the environment adds to every
start, e.g. an editable install's import hook; ``python -S -c pass``, without any of it,
is printed beside). Target: a job within 3x the floor,
in wall-clock and in CPU time (user + system of the child processes, less sensitive
to other load on the machine, which is printed before and after).
The reference middleware's job takes about 2 s on this kind of machine (1.55 s of it
importing the middleware).

Usage: ``.venv/bin/python benchmarks/bench_run_quantum.py [N_QUANTA] [REPEATS]``
"""

from __future__ import annotations

import compileall
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from support.trivial_job import make_trivial_job  # noqa: E402


def setup(work: Path, n_quanta: int) -> tuple[Path, Path, dict[str, str]]:
    """The trivial job's repository (3 seeds stored: only quanta 0-2 run) and graph of ``n_quanta``."""
    repo, graph = make_trivial_job(
        work, "trivial_bench_tasks", n_quanta, output_run="bench/run", stored_seeds=3
    )
    # The task module gets its bytecode, as an installed task package has it: otherwise, where
    # the environment forbids writing bytecode (PYTHONDONTWRITEBYTECODE), every job would
    # compile it, and with it set up Python's compiler (about 2.5 ms CPU), which is not a job's cost.
    compileall.compile_dir(str(work / "pkg"), quiet=1)
    env = dict(os.environ, PYTHONPATH=str(work / "pkg"))
    return repo, graph, env


def job_command(graph: Path, repo: Path, i: int, manifests: Path) -> list[str]:
    """The ``run_quantum`` command of job ``j{i}`` (quantum ``i % 3``), as a batch system starts it."""
    return [sys.executable, "-m", "bps.run_quantum", "--graph", str(graph), "--quantum", str(i % 3),
            "--repo", str(repo), "--job", f"j{i}", "--manifest-dir", str(manifests)]  # fmt: skip


def timed(command: list[str], env: dict[str, str] | None = None) -> tuple[float, float]:
    """Wall-clock and CPU seconds (user + system) of one run of ``command`` as a child process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(command, check=True, env=env, stderr=subprocess.DEVNULL)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime


def _line(what: str, runs: list[tuple[float, float]], floor: list[tuple[float, float]] | None = None) -> str:
    wall = statistics.median(w for w, _ in runs)
    cpu = statistics.median(c for _, c in runs)
    text = (
        f"{what:27s} wall median {wall * 1000:6.1f} ms (min {min(w for w, _ in runs) * 1000:6.1f}), "
        f"CPU median {cpu * 1000:6.1f} ms"
    )
    if floor:
        text += (
            f"  -> {wall / statistics.median(w for w, _ in floor):.2f}x wall, "
            f"{cpu / statistics.median(c for _, c in floor):.2f}x CPU"
        )
    return text


def main() -> None:
    n_quanta = int(sys.argv[1]) if len(sys.argv) > 1 else 10_000
    repeats = int(sys.argv[2]) if len(sys.argv) > 2 else 15
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        repo, graph, env = setup(work, n_quanta)
        baseline, bare, job = [], [], []
        for i in range(repeats):  # alternately, so that all see the same load
            baseline.append(timed([sys.executable, "-c", "pass"], env))
            bare.append(timed([sys.executable, "-S", "-c", "pass"], env))
            job.append(timed(job_command(graph, repo, i, work / f"m{i}"), env))
        # the no-op rerun of a finished job
        noop = [timed(job_command(graph, repo, i, work / f"m{i}"), env) for i in range(min(repeats, 3))]
    load_after = os.getloadavg()
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    print(
        f"load average (1, 5, 15 min): before {', '.join(f'{x:.2f}' for x in load_before)}; "
        f"after {', '.join(f'{x:.2f}' for x in load_after)}"
    )
    print(f"graph: {n_quanta} quanta; {repeats} fresh processes each")
    print(_line("python -S -c pass (no site)", bare, baseline) + "  (the interpreter alone: no .pth hooks)")
    print(_line("python -c pass (the floor)", baseline))
    print(_line("run_quantum, one quantum", job, baseline) + "  (target: within 3x)")
    print(_line("run_quantum, already done", noop, baseline))


if __name__ == "__main__":
    main()
