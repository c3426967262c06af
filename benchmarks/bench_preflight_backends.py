"""Preflight on PostgreSQL against SQLite: the same repository content, back to back (issue 17, item 1).

Target: preflight on PostgreSQL within 1.5x of SQLite for the demo tile and for the
10^5 and 10^6 synthetic repositories. Each backend's preflight runs in a fresh process
(`bench_preflight.py --repo DIR --json FILE`), alternating SQLite and PostgreSQL
``--repeat`` times; the table gives each backend's best wall-clock time (the PostgreSQL
server's own CPU is not in the client's CPU seconds, so wall-clock is the figure that
compares the two on an idle machine), the client's CPU seconds, the CPU seconds of the
PostgreSQL server processes that served it (read from ``/proc``: a local server only),
their sum (best of the runs: on a loaded machine the figure to compare with SQLite's CPU,
which is all in the client), peak RSS, and the ratios PostgreSQL / SQLite.
The two graphs must be identical: each run writes a fingerprint of every quantum
(task, data ID, inputs, outputs, in graph order) and the script exits non-zero if they
differ.

Repositories are made once under ``WORKDIR`` (``sqlite/`` and ``postgresql/``; the
PostgreSQL registry in a fresh schema of the server named by ``--db-url`` or
``SUPERTASK_TEST_POSTGRES_URL``) and reused by later runs.

Usage::

    eval "$(bash .ci/start-postgres)"
    .venv/bin/python benchmarks/bench_preflight_backends.py --demo WORKDIR
    .venv/bin/python benchmarks/bench_preflight_backends.py --n 100000 WORKDIR [--repeat 2]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

import synthetic_repo  # noqa: E402

BACKENDS = ("sqlite", "postgresql")
DEMO_PIPELINE = ROOT / "examples" / "demo_pipeline.yaml"
DEMO_INPUT = "DemoCam/defaults"
DEMO_WHERE = "tract = 0"


def make_repos(work: Path, n: int | None, db_url: str | None) -> None:
    """Make the SQLite and PostgreSQL repositories under ``work`` unless they exist."""
    for backend in BACKENDS:
        repo = work / backend
        if (repo / "butler.yaml").exists():
            continue
        url = synthetic_repo.database_url(backend, db_url if backend == "postgresql" else None)
        if n is None:
            command = [
                str(Path(sys.executable).parent / "supertask"),
                "demo-data",
                str(repo),
                "--exposures",
                "6",
            ]
            command += ["--db", url] if url else []
        else:
            command = [sys.executable, str(HERE / "bench_preflight.py"), "--n", str(n), "--keep", str(repo)]
            command += ["--db-url", url] if url else []
        print(f"making {repo} ...", flush=True)
        subprocess.run(command, check=True, cwd=ROOT, stdout=subprocess.DEVNULL)


def run_once(repo: Path, demo: bool) -> dict:
    """One preflight in a fresh process; its figures."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "figures.json"
        command = [sys.executable, str(HERE / "bench_preflight.py"), "--repo", str(repo), "--json", str(out)]
        command.append("--fingerprint")
        if demo:
            command += ["--pipeline", str(DEMO_PIPELINE), "--input", DEMO_INPUT, "--where", DEMO_WHERE]
        subprocess.run(command, check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
        return json.loads(out.read_text())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("workdir", help="where the two repositories are (made on first use)")
    size = parser.add_mutually_exclusive_group(required=True)
    size.add_argument("--demo", action="store_true", help="the demo repository, tile 0 (221 quanta)")
    size.add_argument("--n", type=int, help="a synthetic repository of about this many quanta")
    parser.add_argument("--repeat", type=int, default=2, help="runs per backend, alternating (best is kept)")
    parser.add_argument("--db-url", help="PostgreSQL server URL (default $SUPERTASK_TEST_POSTGRES_URL)")
    args = parser.parse_args(argv)
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    make_repos(work, None if args.demo else args.n, args.db_url)
    print(f"load average before: {', '.join(f'{x:.1f}' for x in os.getloadavg())}")
    runs: dict[str, list[dict]] = {b: [] for b in BACKENDS}
    for _ in range(args.repeat):
        for backend in BACKENDS:
            figures = run_once(work / backend, args.demo)
            runs[backend].append(figures)
            figures["total_cpu"] = figures["cpu"] + (figures.get("server_cpu") or 0.0)
            print(
                f"  {backend:<10} wall {figures['wall']:7.2f} s  CPU {figures['cpu']:7.2f} s  "
                f"+ server {figures.get('server_cpu') or 0.0:6.2f} s  "
                f"RSS {figures['peak_rss_mb']:6.0f} MB  load {figures['load'][0]:.1f}",
                flush=True,
            )
    best = {b: min(runs[b], key=lambda f: f["wall"]) for b in BACKENDS}
    fingerprints = {f["fingerprint"] for b in BACKENDS for f in runs[b]}
    label = "demo tile 0" if args.demo else f"--n {args.n}"
    print(f"\n{label}: {best['sqlite']['quanta']:,} quanta; best of {args.repeat} per backend")
    print(
        "| backend | wall | client CPU | server CPU | client + server CPU | peak RSS | wall / SQLite "
        "| CPU / SQLite |\n|---|---:|---:|---:|---:|---:|---:|---:|"
    )
    low = {b: min(f["total_cpu"] for f in runs[b]) for b in BACKENDS}
    for backend in BACKENDS:
        f = best[backend]
        ratio = f["wall"] / best["sqlite"]["wall"]
        server = "–" if f.get("server_cpu") is None else f"{f['server_cpu']:.2f} s"
        print(
            f"| {backend} | {f['wall']:.2f} s | {f['cpu']:.2f} s | {server} | {low[backend]:.2f} s "
            f"| {f['peak_rss_mb']:,.0f} MB | {ratio:.2f}x | {low[backend] / low['sqlite']:.2f}x |"
        )
    steps = [s for s in best["sqlite"]["timings"] if s in best["postgresql"]["timings"]]
    for step in steps:
        a, b = best["sqlite"]["timings"][step], best["postgresql"]["timings"][step]
        if max(a, b) >= 0.05:
            print(f"  {step:<28} SQLite {a:7.2f} s  PostgreSQL {b:7.2f} s")
    print(f"load average after: {', '.join(f'{x:.1f}' for x in os.getloadavg())}")
    same = len(fingerprints) == 1
    print(f"graphs identical on both backends: {same}")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
