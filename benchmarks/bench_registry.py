"""Registry speed: bulk registration of 10^6 datasets, makeRepoGraph over 10^5 (visit, detector) rows.

Targets (issue 3): registering 10^6 datasets in under 60 s on SQLite; ``makeRepoGraph`` over
10^5 (visit, detector) rows with a selective expression in under 5 s.

Usage::

    .venv/bin/python benchmarks/bench_registry.py [--datasets 1000000] [--visits 1000 --detectors 100]
        [--db-url postgresql+psycopg://...]   (schemas bench_register/bench_graph are made and dropped)

Prints the figures and the machine (CPU count, Python, SQLite versions).
"""

from __future__ import annotations

import argparse
import os
import platform
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

import sqlalchemy as sa

from supertask.repo.butler import Butler
from supertask.repo.dataset import DatasetType
from supertask.repo.repograph import makeRepoGraph

RAW = DatasetType("raw", ("instrument", "exposure", "detector"), "NumpyArray")
CALEXP_IN = DatasetType("postISR", ("instrument", "visit", "detector"), "NumpyArray")
CALEXP = DatasetType("calexp", ("instrument", "visit", "detector"), "NumpyArray")
COADD = DatasetType("coadd", ("skymap", "tract", "patch", "band"), "NumpyArray")


def populate(butler: Butler, n_visits: int, n_detectors: int) -> None:
    """A camera with ``n_detectors`` on a strip of sky: visit v covers RA [v*0.1, v*0.1+0.3]."""
    reg = butler.registry
    reg.insertUnits("instrument", [{"instrument": "Cam"}])
    reg.insertUnits("band", [{"band": b} for b in "gri"])
    reg.insertUnits(
        "physical_filter", [{"instrument": "Cam", "physical_filter": f"{b}-1", "band": b} for b in "gri"]
    )
    reg.insertUnits("detector", [{"instrument": "Cam", "detector": d} for d in range(n_detectors)])
    reg.insertUnits(
        "visit",
        [
            {"instrument": "Cam", "visit": v, "physical_filter": f"{'gri'[v % 3]}-1", "exposure_time": 30.0}
            for v in range(n_visits)
        ],
    )
    n_patches = int(n_visits * 0.1 / 1.0) + 1
    reg.insertUnits("skymap", [{"skymap": "sky"}])
    reg.insertUnits("tract", [{"skymap": "sky", "tract": 0}])
    reg.insertUnits(
        "patch",
        [
            {
                "skymap": "sky",
                "tract": 0,
                "patch": p,
                "ra_min": p,
                "ra_max": p + 1.0,
                "dec_min": -1.0,
                "dec_max": 1.0,
            }
            for p in range(n_patches)
        ],
    )
    regions = []
    for v in range(n_visits):
        for d in range(n_detectors):
            ra0 = v * 0.1 + (d % 10) * 0.03
            dec0 = -0.5 + (d // 10) * 0.1
            regions.append(
                {
                    "instrument": "Cam",
                    "visit": v,
                    "detector": d,
                    "ra_min": ra0,
                    "ra_max": ra0 + 0.03,
                    "dec_min": dec0,
                    "dec_max": dec0 + 0.1,
                }
            )
    reg.insertUnits("visit_detector_region", regions)


def fresh_url(base: str | None, name: str) -> str | None:
    """``None`` (SQLite inside the repository) or a PostgreSQL URL on a new, empty schema."""
    if base is None:
        return None
    engine = sa.create_engine(base)
    with engine.begin() as conn:
        conn.exec_driver_sql(f"DROP SCHEMA IF EXISTS {name} CASCADE")
        conn.exec_driver_sql(f"CREATE SCHEMA {name}")
    engine.dispose()
    return f"{base}{'&' if '?' in base else '?'}options=-csearch_path%3D{name}"


def drop_schema(base: str | None, name: str) -> None:
    if base is not None:
        engine = sa.create_engine(base)
        with engine.begin() as conn:
            conn.exec_driver_sql(f"DROP SCHEMA IF EXISTS {name} CASCADE")
        engine.dispose()


def bench_register(root: Path, db_url: str | None, n: int) -> float:
    Butler.create(root, db_url=db_url)
    butler = Butler(root, run="bulk")
    reg = butler.registry
    reg.insertUnits("instrument", [{"instrument": "Cam"}])
    reg.registerDatasetType(RAW)
    n_detectors = 200
    records = [
        {
            "dataId": {"instrument": "Cam", "exposure": i // n_detectors, "detector": i % n_detectors},
            "path": f"bulk/raw/{i // n_detectors}/{i % n_detectors}.npy",
            "size": 1000,
            "checksum": "0" * 32,
        }
        for i in range(n)
    ]
    start = time.perf_counter()
    step = 100_000
    for i in range(0, n, step):
        reg.insertDatasets(RAW, "bulk", records[i : i + step])
    elapsed = time.perf_counter() - start
    assert reg.countDatasets(RAW) == n
    butler.close()
    return elapsed


def bench_repograph(root: Path, db_url: str | None, n_visits: int, n_detectors: int) -> dict[str, float]:
    Butler.create(root, db_url=db_url)
    butler = Butler(root, run="in")
    t0 = time.perf_counter()
    populate(butler, n_visits, n_detectors)
    t_units = time.perf_counter() - t0
    reg = butler.registry
    reg.registerDatasetType(CALEXP_IN)
    reg.insertDatasets(
        CALEXP_IN,
        "in",
        [
            {
                "dataId": {"instrument": "Cam", "visit": v, "detector": d},
                "path": f"in/{v}/{d}",
                "checksum": "x",
            }
            for v in range(n_visits)
            for d in range(n_detectors)
        ],
    )
    inputs = Butler(root, collections=["in"])
    selective = f"visit >= {n_visits // 2} AND visit < {n_visits // 2 + n_visits // 10} AND band = 'r'"
    out = {"units_and_overlaps_s": t_units}
    for label, where, future in (
        ("graph_selective_vd_s", selective, [CALEXP]),
        ("graph_selective_vd_patch_s", selective, [CALEXP, COADD]),
        ("graph_all_vd_s", None, [CALEXP]),
    ):
        t0 = time.perf_counter()
        graph = makeRepoGraph(inputs, [CALEXP_IN], future, where)
        out[label] = time.perf_counter() - t0
        out[label[:-2] + "_rows"] = len(graph.rows)
    t0 = time.perf_counter()
    out["count_all_vd"] = reg.countDataIds(["visit", "detector"])
    out["count_s"] = time.perf_counter() - t0
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--datasets", type=int, default=1_000_000)
    parser.add_argument("--visits", type=int, default=1000)
    parser.add_argument("--detectors", type=int, default=100)
    parser.add_argument("--db-url", default=None, help="PostgreSQL URL (default: SQLite in a temp directory)")
    args = parser.parse_args(argv)
    if args.visits > 3598:  # visits step 0.1 degree of RA from 0 and sky boxes must stay within RA 360
        parser.error(f"--visits {args.visits} would place sky boxes beyond RA 360: use at most 3598")
    print(
        f"machine: {os.cpu_count()} cores, {platform.machine()}, Python {sys.version.split()[0]}, "
        f"SQLite {sqlite3.sqlite_version}, SQLAlchemy {sa.__version__}, backend "
        f"{'PostgreSQL' if args.db_url else 'SQLite'}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        if args.datasets:
            elapsed = bench_register(
                Path(tmp) / "reg", fresh_url(args.db_url, "bench_register"), args.datasets
            )
            drop_schema(args.db_url, "bench_register")
            print(f"register {args.datasets:,} datasets: {elapsed:.1f} s ({args.datasets / elapsed:,.0f}/s)")
        if args.visits:
            url = fresh_url(args.db_url, "bench_graph")
            figures = bench_repograph(Path(tmp) / "graph", url, args.visits, args.detectors)
            drop_schema(args.db_url, "bench_graph")
            print(
                f"makeRepoGraph, {args.visits * args.detectors:,} (visit, detector) rows in the repository:"
            )
            for key, value in figures.items():
                print(f"  {key}: {value:.2f}" if isinstance(value, float) else f"  {key}: {value:,}")


if __name__ == "__main__":
    main()
