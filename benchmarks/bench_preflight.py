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

``--db postgresql`` makes the repository's registry a fresh schema on the PostgreSQL
server of ``--db-url`` (default: ``SUPERTASK_TEST_POSTGRES_URL``, which
``eval "$(bash .ci/start-postgres)"`` sets). A ``--repo`` run reads whichever database
the repository was made with. ``--pipeline FILE --input COLLECTION`` plans another
pipeline over an existing repository (the demo tile: ``--repo DIR --pipeline
examples/demo_pipeline.yaml --input DemoCam/defaults --where "tract = 0"``).
``--json FILE`` writes the figures for `bench_preflight_backends` and `bench_scaling`.

Usage::

    .venv/bin/python benchmarks/bench_preflight.py [--n 10000] [--repo DIR] [--keep DIR]
        [--db sqlite|postgresql] [--db-url URL] [--where "..."] [--profile out.prof]
        [--pipeline FILE --input COLLECTION] [--json FILE]
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import hashlib
import json
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
from sqlalchemy import event as sa_event  # noqa: E402
from sqlalchemy import pool as sa_pool  # noqa: E402

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


def fingerprint(graph) -> str:
    """A hash of every quantum: task, data ID, inputs and outputs, in the graph's order."""
    digest = hashlib.sha256()
    for q in graph:
        inputs = [(k, [sorted(d.dataId.items()) for d in v]) for k, v in sorted(q.inputs.items())]
        outputs = [(k, [sorted(d.dataId.items()) for d in v]) for k, v in sorted(q.outputs.items())]
        digest.update(repr((q.taskLabel, sorted(q.dataId.items()), inputs, outputs)).encode())
    return digest.hexdigest()


#: PostgreSQL server processes this process connected to (their CPU is preflight's too).
_SERVER_PIDS: list[int] = []


def _record_server_pid(dbapi_connection, _record) -> None:
    pid = getattr(getattr(dbapi_connection, "info", None), "backend_pid", None)
    if pid is not None:
        _SERVER_PIDS.append(pid)


def server_cpu_seconds() -> float | None:
    """CPU seconds of the PostgreSQL server processes serving this process (a local server only)."""
    total, ticks = 0.0, os.sysconf("SC_CLK_TCK")
    for pid in _SERVER_PIDS:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return None
        total += (int(fields[11]) + int(fields[12])) / ticks
    return total if _SERVER_PIDS else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, default=10_000, help="target number of quanta (default 10^4)")
    parser.add_argument("--detectors", type=int, default=100, help="detectors per visit (max 100)")
    parser.add_argument("--repo", help="use this existing synthetic repository instead of making one")
    parser.add_argument("--keep", help="make the repository here and keep it (for a later --repo run)")
    parser.add_argument(
        "--db",
        default="sqlite",
        choices=("sqlite", "postgresql"),
        help="registry backend of a new repository",
    )
    parser.add_argument(
        "--db-url",
        help="registry database URL (SQLite: default inside the repository; PostgreSQL: the server, "
        "default $SUPERTASK_TEST_POSTGRES_URL, in which a fresh schema is made)",
    )
    parser.add_argument("--pipeline", help="plan this pipeline file instead of the benchmark's three tasks")
    parser.add_argument("--input", default=synthetic_repo.INPUT_RUN, help="input collection")
    parser.add_argument("--json", help="also write the figures to this JSON file")
    parser.add_argument(
        "--fingerprint", action="store_true", help="with --json: a hash of every quantum (after the timing)"
    )
    parser.add_argument("--where", default=None, help="data-ID expression (default: the whole repository)")
    parser.add_argument("--profile", help="write a cProfile of build_quantum_graph to this file")
    args = parser.parse_args(argv)

    print(machine_note())
    sa_event.listen(sa_pool.Pool, "connect", _record_server_pid)
    if args.repo:
        butler = Butler(args.repo, collections=[args.input])
    else:
        root = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="bench_preflight_"))
        visits = synthetic_repo.visits_for_quanta(args.n, args.detectors)
        layout = synthetic_repo.layout_for_visits(visits, args.detectors)
        start = time.perf_counter()
        db_url = synthetic_repo.database_url(args.db, args.db_url)
        butler = synthetic_repo.make_repo(root, layout, db_url=db_url)
        print(
            f"set-up: {layout.visits} visits x {layout.detectors} detectors, {layout.tracts} tracts "
            f"in {time.perf_counter() - start:.1f} s at {root}"
        )
    del args.repo
    gc.collect()
    rss_before = peak_rss_mb()
    server_start = server_cpu_seconds() or 0.0
    if args.pipeline:
        from supertask.cli.request_options import load_pipeline

        pipeline = load_pipeline(args.pipeline, (), None)
    else:
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
        input_collections=[args.input],
        output_run="bench/out",
        max_rows=None,
    )
    if profiler:
        profiler.disable()
        profiler.dump_stats(args.profile)
    elapsed = time.perf_counter() - start
    cpu = cpu_seconds() - cpu_start
    server = server_cpu_seconds()
    server = None if server is None else server - server_start
    per_label: dict[str, int] = {}
    for quantum in graph:
        per_label[quantum.taskLabel] = per_label.get(quantum.taskLabel, 0) + 1
    print(f"quanta: {len(graph)} {per_label}; planning query rows: {report.rows}")
    print(
        f"build_quantum_graph: {elapsed:.2f} s wall, {cpu:.2f} s CPU ({len(graph) / elapsed:,.0f} quanta/s wall)"
        + ("" if server is None else f", PostgreSQL server {server:.2f} s CPU")
    )
    for step, seconds in report.timings.items():
        print(f"  {step:<28} {seconds:8.2f} s")
    other = elapsed - sum(report.timings.values())
    print(f"  {'other (tasks, metadata)':<28} {other:8.2f} s")
    print(f"peak RSS: {peak_rss_mb():.0f} MB (before preflight: {rss_before:.0f} MB)")
    print(machine_note().replace("machine: ", "after: "))
    if args.json:
        figures = {
            "backend": butler.registry.engine.dialect.name,
            "quanta": len(graph),
            "rows": report.rows,
            "wall": elapsed,
            "cpu": cpu,
            "server_cpu": server,
            "peak_rss_mb": peak_rss_mb(),
            "timings": dict(report.timings),
            "load": os.getloadavg(),
        }
        if args.fingerprint:
            figures["fingerprint"] = fingerprint(graph)
        Path(args.json).write_text(json.dumps(figures, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
