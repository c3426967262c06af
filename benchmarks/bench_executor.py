"""Executor overhead with trivial tasks: quanta per second at -j 1 and -j 2 (issue 5).

Target: at least 300 quanta/s with two processes, measured on 10^4 quanta, against a
real repository (`supertask.repo.butler.Butler` on SQLite). The tasks (`bench_tasks`)
read their inputs and write an 8-byte array, so what is measured is the executor:
dispatching quanta to workers, the datastore's atomic writes, per-quantum log
capture, and the main process registering outputs in batches.

Each process count runs the same graph into its own output run, so the figures are
independent; the repository (and the raw files) is shared.

Usage::

    .venv/bin/python benchmarks/bench_executor.py [--n 2000] [--processes 1 2] [--profile out.prof]
"""

from __future__ import annotations

import argparse
import cProfile
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_tasks  # noqa: E402
import synthetic_repo  # noqa: E402
from bench_preflight import machine_note  # noqa: E402

from supertask.execution import run_graph  # noqa: E402
from supertask.graph.builder import build_quantum_graph  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, default=2_000, help="target number of quanta (default 2000)")
    parser.add_argument("--processes", type=int, nargs="+", default=[1, 2], help="process counts to run")
    parser.add_argument("--root", help="make the repository here (default: a temporary directory)")
    parser.add_argument("--profile", help="cProfile the main process of the first run into this file")
    parser.add_argument(
        "--skip-fsync",
        action="store_true",
        help="attribution only: make os.fsync a no-op in this process and its workers, to show what the "
        "datastore's per-file fsync costs (never a way to run real work)",
    )
    args = parser.parse_args(argv)
    if args.skip_fsync:
        os.fsync = lambda fd: None
        print("os.fsync disabled (attribution run)")

    print(machine_note())
    root = Path(args.root) if args.root else Path(tempfile.mkdtemp(prefix="bench_executor_"))
    visits = synthetic_repo.visits_for_quanta(args.n)
    layout = synthetic_repo.layout_for_visits(visits)
    start = time.perf_counter()
    butler = synthetic_repo.make_repo(root, layout, write_files=True)
    print(
        f"set-up: {layout.visits} visits x {layout.detectors} detectors in {time.perf_counter() - start:.1f} s"
    )
    start = time.perf_counter()
    graph, _ = build_quantum_graph(
        bench_tasks.make_pipeline(),
        butler,
        input_collections=[synthetic_repo.INPUT_RUN],
        output_run="bench/unused",
        max_rows=None,
    )
    print(f"preflight: {len(graph)} quanta in {time.perf_counter() - start:.1f} s")
    for i, processes in enumerate(args.processes):
        run = f"bench/j{processes}"
        profiler = cProfile.Profile() if args.profile and i == 0 else None
        start = time.perf_counter()
        if profiler:
            profiler.enable()
        result = run_graph(butler, graph, run, processes=processes)
        if profiler:
            profiler.disable()
            profiler.dump_stats(args.profile)
        elapsed = time.perf_counter() - start
        succeeded = result.total("succeeded")
        registered = sum(butler.registry.countDatasetsIn(t, run) for t in ("calexp", "warp", "coadd"))
        load = os.getloadavg()[0]
        print(
            f"-j {processes}: {succeeded}/{len(graph)} quanta succeeded in {elapsed:.1f} s = "
            f"{succeeded / elapsed:,.0f} quanta/s; {registered} outputs registered (load average {load:.1f})"
        )
        if not result.ok:
            print(f"  failures: {result.failures[:3]}")
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
