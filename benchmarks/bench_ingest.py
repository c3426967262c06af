"""Bulk ingest of raw files (``supertask ingest``) on SQLite: files per second.

Target (issue 15): at least 1,000 files per second in bulk. The figure covers the whole
`ingest_files` call — reading each file's unit values, validating them, the registry's
already-ingested and unit checks, placing the file in the datastore (with its checksum)
and the bulk registration — for each metadata source (one CSV index, a sidecar per file)
and transfer mode asked for, in wall-clock time and in this process's CPU time (the
latter is what a loaded machine does not change much). Listing the directory (`find_files`) is timed separately.

The raws are small ``.npz`` files (``--size`` bytes of pixels each), so the figure is the
per-file cost of ingest, not the disk's bandwidth: with copy, a large raw costs its copy
and checksum on top.

Usage: ``.venv/bin/python benchmarks/bench_ingest.py [--n 10000] [--size 4096]
[--modes hardlink,copy] [--sources index,sidecar] [--db-url URL]``
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from supertask.repo.butler import Butler
from supertask.repo.dataset import DatasetType
from supertask.repo.ingest import find_files, ingest_files
from supertask.repo.metadata import IndexReader, SidecarReader

RAW = DatasetType("raw", ("instrument", "exposure", "detector"), "ArrayDict")
DETECTORS = 100


def make_raws(directory: Path, n: int, size: int) -> None:
    """``n`` raws (``n / 100`` exposures of 100 detectors) with a sidecar each, and one CSV index."""
    directory.mkdir(parents=True)
    image = np.zeros(max(1, size // 8))
    template = directory / "template.npz"
    np.savez(template, image=image)
    data = template.read_bytes()
    template.unlink()
    index = ["file,instrument,exposure,detector"]
    for i in range(n):
        exposure, detector = i // DETECTORS + 1, i % DETECTORS
        name = f"raw_{exposure:06d}_{detector:03d}.npz"
        (directory / name).write_bytes(data)
        (directory / f"{name}.yaml").write_text(
            f"instrument: Cam\nexposure: {exposure}\ndetector: {detector}\n"
        )
        index.append(f"{name},Cam,{exposure},{detector}")
    (directory / "index.csv").write_text("\n".join(index) + "\n")


def make_repo(root: Path, n: int, db_url: str | None) -> None:
    Butler.create(root, db_url=db_url).close()
    butler = Butler(root)
    reg = butler.registry
    reg.insertUnits("instrument", [{"instrument": "Cam"}])
    reg.insertUnits("band", [{"band": "r"}])
    reg.insertUnits("physical_filter", [{"instrument": "Cam", "physical_filter": "r", "band": "r"}])
    reg.insertUnits("detector", [{"instrument": "Cam", "detector": d} for d in range(DETECTORS)])
    exposures = range(1, n // DETECTORS + 2)
    reg.insertUnits(
        "exposure", [{"instrument": "Cam", "exposure": e, "physical_filter": "r"} for e in exposures]
    )
    butler.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10_000, help="raw files (default 10,000)")
    parser.add_argument("--size", type=int, default=4096, help="bytes of pixels per raw")
    parser.add_argument("--modes", default="hardlink,copy", help="transfer modes, comma-separated")
    parser.add_argument("--sources", default="index,sidecar", help="metadata sources: index, sidecar")
    parser.add_argument("--db-url", default=None, help="PostgreSQL URL (default: SQLite in the repository)")
    args = parser.parse_args()
    print(
        f"python {platform.python_version()} on {platform.machine()}, {os.cpu_count()} cores, load {os.getloadavg()}"
    )
    with tempfile.TemporaryDirectory(prefix="bench-ingest-") as work:
        work_path = Path(work)
        raws = work_path / "raws"
        t = time.perf_counter()
        make_raws(raws, args.n, args.size)
        print(
            f"made {args.n} raws of {(raws / 'raw_000001_000.npz').stat().st_size} bytes in {time.perf_counter() - t:.1f} s"
        )
        t = time.perf_counter()
        files = find_files([raws], pattern="*.npz")
        print(f"find_files: {len(files)} files in {time.perf_counter() - t:.2f} s")
        for source in args.sources.split(","):
            for mode in args.modes.split(","):
                root = work_path / f"repo-{source}-{mode}"
                make_repo(root, args.n, args.db_url)
                butler = Butler(root, writeable=True)
                t, cpu = time.perf_counter(), time.process_time()
                reader = IndexReader(raws / "index.csv") if source == "index" else SidecarReader()
                report = ingest_files(butler, RAW, files, reader, run="Cam/raw", mode=mode)
                seconds, cpu = time.perf_counter() - t, time.process_time() - cpu
                butler.close()
                assert report.ok and report.ingested == args.n, report.lines()
                print(
                    f"{source:8s} {mode:9s}: {args.n} files in {seconds:6.2f} s = {args.n / seconds:8,.0f} files/s "
                    f"(CPU {cpu:6.2f} s = {args.n / cpu:8,.0f} files per CPU-second)"
                )
    sys.stdout.flush()


if __name__ == "__main__":
    main()
