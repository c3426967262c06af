"""Preflight speed and memory: build_quantum_graph over a synthetic repository (issue 4).

Targets: 10^5 quanta in under 10 s and 10^6 quanta in under 100 s on one core, peak
memory under 3 GB at 10^6. For scale, the reference middleware needs about 13 s for
10^4 quanta on this kind of machine (measured with 3 trivial tasks).

The repository is built first (not timed in the figures that matter: it is set-up),
then ``build_quantum_graph`` runs once over the whole repository with the three-task
pipeline of `bench_tasks` (calibrate per (visit, detector); makeWarp per
(visit, tract, patch) gathering detectors; assembleCoadd per (tract, patch, band)
gathering warps). The split of the time comes from ``BuildReport.timings``.

Peak memory is the process's maximum RSS (``resource.getrusage``), measured once before
preflight (after set-up) and once after: set-up holds its own large lists, so for a
clean preflight figure use ``--repo`` with a repository made by an earlier run
(``--keep``), which makes this process do nothing but preflight.

Usage::

    .venv/bin/python benchmarks/bench_preflight.py [--n 10000] [--repo DIR] [--keep DIR]
        [--where "..."] [--profile out.prof]
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import os
import platform
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_tasks  # noqa: E402
import synthetic_repo  # noqa: E402

from supertask.graph.builder import build_quantum_graph  # noqa: E402
from supertask.repo.butler import Butler  # noqa: E402


def machine_note() -> str:
    """Where the figures come from (the targets are stated for a 2-core machine)."""
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    return (
        f"machine: {os.cpu_count()} cores, {platform.machine()}, Python {platform.python_version()}, "
        f"{platform.system()} {platform.release()}; load average {load} (above the core count, "
        "wall-clock figures are inflated: compare CPU seconds)"
    )


def cpu_seconds() -> float:
    """User + system CPU time of this process: what one core spent, whatever else the machine runs."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def peak_rss_mb() -> float:
    """Maximum resident set size of this process so far, in MB (ru_maxrss is in KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, default=10_000, help="target number of quanta (default 10^4)")
    parser.add_argument("--detectors", type=int, default=100, help="detectors per visit (max 100)")
    parser.add_argument("--repo", help="use this existing synthetic repository instead of making one")
    parser.add_argument("--keep", help="make the repository here and keep it (for a later --repo run)")
    parser.add_argument("--db-url", help="registry database URL (default: SQLite inside the repository)")
    parser.add_argument("--where", default=None, help="data-ID expression (default: the whole repository)")
    parser.add_argument("--profile", help="write a cProfile of build_quantum_graph to this file")
    args = parser.parse_args(argv)

    print(machine_note())
    if args.repo:
        butler = Butler(args.repo, collections=[synthetic_repo.INPUT_RUN])
    else:
        root = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="bench_preflight_"))
        visits = synthetic_repo.visits_for_quanta(args.n, args.detectors)
        layout = synthetic_repo.layout_for_visits(visits, args.detectors)
        start = time.perf_counter()
        butler = synthetic_repo.make_repo(root, layout, db_url=args.db_url)
        print(
            f"set-up: {layout.visits} visits x {layout.detectors} detectors, {layout.tracts} tracts "
            f"in {time.perf_counter() - start:.1f} s at {root}"
        )
    del args.repo
    gc.collect()
    rss_before = peak_rss_mb()
    pipeline = bench_tasks.make_pipeline()
    profiler = cProfile.Profile() if args.profile else None
    start = time.perf_counter()
    cpu_start = cpu_seconds()
    if profiler:
        profiler.enable()
    graph, report = build_quantum_graph(
        pipeline,
        butler,
        where=args.where,
        input_collections=[synthetic_repo.INPUT_RUN],
        output_run="bench/out",
        max_rows=None,
    )
    if profiler:
        profiler.disable()
        profiler.dump_stats(args.profile)
    elapsed = time.perf_counter() - start
    cpu = cpu_seconds() - cpu_start
    per_label: dict[str, int] = {}
    for quantum in graph:
        per_label[quantum.taskLabel] = per_label.get(quantum.taskLabel, 0) + 1
    print(f"quanta: {len(graph)} {per_label}; planning query rows: {report.rows}")
    print(
        f"build_quantum_graph: {elapsed:.2f} s wall, {cpu:.2f} s CPU ({len(graph) / elapsed:,.0f} quanta/s wall)"
    )
    for step, seconds in report.timings.items():
        print(f"  {step:<28} {seconds:8.2f} s")
    other = elapsed - sum(report.timings.values())
    print(f"  {'other (tasks, metadata)':<28} {other:8.2f} s")
    print(f"peak RSS: {peak_rss_mb():.0f} MB (before preflight: {rss_before:.0f} MB)")
    print(machine_note().replace("machine: ", "after: "))
    return 0


if __name__ == "__main__":
    sys.exit(main())
