"""A synthetic repository sized for the preflight and executor benchmarks.

Why synthetic: the speed targets are stated in quanta (10^5, 10^6), and the demo
camera cannot be made that large cheaply. This module bulk-inserts units with the
shape of a survey (one instrument, a 10 x 10 detector camera, visits in three bands
scattered along a strip of sky, a skymap whose tracts hold 10 x 2 patches of
1 x 1 degree) and registers one ``raw`` per (visit, detector).

The (visit, detector) ↔ patch overlaps are computed here in Python from the same
boxes and inserted directly into the ``visit_detector_patch_overlap`` relation:
the registry can compute them in SQL from ``visit_detector_region`` rows, but at
10^6 regions that nested box join is the slowest part of setting up, and it is
not what the preflight benchmark measures. ``overlaps="sql"`` inserts the regions
instead and lets the registry compute them (used at small scale to check that both
give the same relation).

Sizes: with ``detectors`` detectors, a pipeline of calibrate / makeWarp /
assembleCoadd has about ``visits * (detectors + 3) + 3 * patches`` quanta;
`visits_for_quanta` inverts that.
"""

from __future__ import annotations

import math
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import numpy as np

from supertask.repo.butler import Butler
from supertask.repo.dataset import DatasetType

INSTRUMENT = "BenchCam"
SKYMAP = "benchSky"
BANDS = ("g", "r", "i")
#: detectors per side of the square focal plane; each detector is DETECTOR_SIZE degrees
GRID = 10
DETECTOR_SIZE = 0.1
#: patches are 1 x 1 degree; a tract is PATCHES_RA x PATCHES_DEC patches; the strip is 2 degrees tall
PATCHES_RA = 10
PATCHES_DEC = 2
DEC_MIN = -1.0
#: how many visits cover one patch on average (sets the strip's length for a number of visits)
VISITS_PER_PATCH = 40
RAW = DatasetType("raw", ("instrument", "visit", "detector"), "NumpyArray")
INPUT_RUN = "bench/raw"
TINY_RAW = np.zeros(1, dtype=np.float64)


@dataclass(frozen=True)
class Layout:
    """The geometry of a synthetic repository: how many of each unit."""

    visits: int
    detectors: int = GRID * GRID
    tracts: int = 1

    def __post_init__(self) -> None:
        if self.visits < 1:
            raise ValueError(f"visits must be at least 1, got {self.visits}")
        if not 1 <= self.detectors <= GRID * GRID:
            raise ValueError(f"detectors must be between 1 and {GRID * GRID}, got {self.detectors}")

    @property
    def ra_span(self) -> float:
        """Degrees of RA covered by visit centres (the strip is whole tracts long)."""
        return self.tracts * PATCHES_RA

    def visit_origin(self, visit: int) -> tuple[float, float]:
        """Lower-left corner (RA, Dec) of a visit's focal plane; deterministic, quasi-random."""
        fov = GRID * DETECTOR_SIZE
        ra = ((visit * 0.6180339887) % 1.0) * (self.ra_span - fov) + 0.013
        dec = DEC_MIN + ((visit * 0.7548776662) % 1.0) * (PATCHES_DEC - fov) + 0.007
        return ra, dec

    def detector_box(self, visit: int, detector: int) -> tuple[float, float, float, float]:
        """(ra_min, ra_max, dec_min, dec_max) of one detector of one visit, a hair inside its cell."""
        ra0, dec0 = self.visit_origin(visit)
        ra = ra0 + (detector % GRID) * DETECTOR_SIZE
        dec = dec0 + (detector // GRID) * DETECTOR_SIZE
        eps = 1e-6
        return ra + eps, ra + DETECTOR_SIZE - eps, dec + eps, dec + DETECTOR_SIZE - eps

    def overlapping_patches(self, visit: int, detector: int) -> Iterator[tuple[int, int]]:
        """(tract, patch) pairs whose 1-degree box intersects the detector's box."""
        ra_min, ra_max, dec_min, dec_max = self.detector_box(visit, detector)
        for col in range(int(math.floor(ra_min)), int(math.floor(ra_max)) + 1):
            for row in range(int(math.floor(dec_min - DEC_MIN)), int(math.floor(dec_max - DEC_MIN)) + 1):
                yield col // PATCHES_RA, row * PATCHES_RA + col % PATCHES_RA

    def patch_box(self, tract: int, patch: int) -> tuple[float, float, float, float]:
        col = tract * PATCHES_RA + patch % PATCHES_RA
        row = patch // PATCHES_RA
        return float(col), float(col + 1), DEC_MIN + row, DEC_MIN + row + 1


def visits_for_quanta(n_quanta: int, detectors: int = GRID * GRID) -> int:
    """Visits giving about ``n_quanta`` quanta of the three-task benchmark pipeline."""
    # Per visit: one calibrate per detector, about 2.8 warps (the 1-degree focal plane
    # straddles 1-4 patches); coadds add about 3 bands * patches, patches = visits * 2.8 / 40.
    per_visit = detectors + 2.8 + 3 * 2.8 / VISITS_PER_PATCH
    return max(1, round(n_quanta / per_visit))


def layout_for_visits(visits: int, detectors: int = GRID * GRID) -> Layout:
    """A layout whose strip is long enough for about VISITS_PER_PATCH visits per patch."""
    patches = max(PATCHES_RA * PATCHES_DEC, visits * 2.8 / VISITS_PER_PATCH)
    tracts = max(1, math.ceil(patches / (PATCHES_RA * PATCHES_DEC)))
    if tracts * PATCHES_RA > 360:
        # The strip runs along RA from 0; the registry refuses sky boxes beyond RA 360.
        raise ValueError(
            f"{visits} visits need a strip of {tracts} tracts ({tracts * PATCHES_RA} degrees of RA), but the "
            f"synthetic layout covers at most 360 degrees ({360 // PATCHES_RA} tracts, about 1.05e6 quanta "
            "at 100 detectors): ask for fewer quanta, or fewer detectors per visit"
        )
    return Layout(visits=visits, detectors=detectors, tracts=tracts)


def _chunks(rows: list[dict[str, Any]], size: int = 200_000) -> Iterator[list[dict[str, Any]]]:
    for i in range(0, len(rows), size):
        yield rows[i : i + size]


def populate(
    butler: Butler, layout: Layout, *, overlaps: str = "direct", write_files: bool = False
) -> dict[str, int]:
    """Insert the units, the overlaps and the ``raw`` datasets (registry entries only) of ``layout``.

    Parameters
    ----------
    butler : `Butler`
        A new, empty repository.
    layout : `Layout`
        How many visits, detectors and tracts.
    overlaps : {"direct", "sql"}
        Insert the overlap relation computed here, or insert detector regions and let
        the registry compute it.
    write_files : `bool`
        Also write each ``raw`` as a tiny ``.npy`` file at its registered path (the
        executor reads them; preflight needs only the registry entries).

    Returns
    -------
    counts : `dict` [`str`, `int`]
        Rows inserted per unit or relation, and ``raw`` datasets registered.
    """
    if overlaps not in ("direct", "sql"):
        raise ValueError(f"overlaps must be 'direct' or 'sql', got {overlaps!r}")
    reg = butler.registry
    counts: dict[str, int] = {}
    reg.insertUnits("instrument", [{"instrument": INSTRUMENT}])
    reg.insertUnits("band", [{"band": b} for b in BANDS])
    reg.insertUnits(
        "physical_filter",
        [{"instrument": INSTRUMENT, "physical_filter": f"{b}-bench", "band": b} for b in BANDS],
    )
    counts["detector"] = reg.insertUnits(
        "detector", [{"instrument": INSTRUMENT, "detector": d} for d in range(layout.detectors)]
    )
    counts["visit"] = reg.insertUnits(
        "visit",
        [
            {
                "instrument": INSTRUMENT,
                "visit": v,
                "physical_filter": f"{BANDS[v % len(BANDS)]}-bench",
                "exposure_time": 30.0,
            }
            for v in range(layout.visits)
        ],
    )
    reg.insertUnits("skymap", [{"skymap": SKYMAP}])
    reg.insertUnits("tract", [{"skymap": SKYMAP, "tract": t} for t in range(layout.tracts)])
    patches = []
    for t in range(layout.tracts):
        for p in range(PATCHES_RA * PATCHES_DEC):
            ra_min, ra_max, dec_min, dec_max = layout.patch_box(t, p)
            patches.append(
                {
                    "skymap": SKYMAP,
                    "tract": t,
                    "patch": p,
                    "ra_min": ra_min,
                    "ra_max": ra_max,
                    "dec_min": dec_min,
                    "dec_max": dec_max,
                }
            )
    counts["patch"] = reg.insertUnits("patch", patches)
    if overlaps == "direct":
        rows = [
            {"instrument": INSTRUMENT, "visit": v, "detector": d, "skymap": SKYMAP, "tract": t, "patch": p}
            for v in range(layout.visits)
            for d in range(layout.detectors)
            for t, p in layout.overlapping_patches(v, d)
        ]
        counts["visit_detector_patch_overlap"] = sum(
            reg.insertUnits("visit_detector_patch_overlap", part) for part in _chunks(rows)
        )
    else:
        regions = []
        for v in range(layout.visits):
            for d in range(layout.detectors):
                ra_min, ra_max, dec_min, dec_max = layout.detector_box(v, d)
                regions.append(
                    {
                        "instrument": INSTRUMENT,
                        "visit": v,
                        "detector": d,
                        "ra_min": ra_min,
                        "ra_max": ra_max,
                        "dec_min": dec_min,
                        "dec_max": dec_max,
                    }
                )
        counts["visit_detector_region"] = sum(
            reg.insertUnits("visit_detector_region", part) for part in _chunks(regions)
        )
    reg.registerDatasetType(RAW)
    reg.registerRun(INPUT_RUN)
    records = [
        {
            "dataId": {"instrument": INSTRUMENT, "visit": v, "detector": d},
            "path": f"{INPUT_RUN}/raw/{v}/{d}.npy",
            "size": 8,
            "checksum": None,
        }
        for v in range(layout.visits)
        for d in range(layout.detectors)
    ]
    if write_files:
        root = Path(butler.datastore.root)
        for record in records:
            path = root / record["path"]
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(path, "wb") as fh:
                np.save(fh, TINY_RAW, allow_pickle=False)
            record["size"] = path.stat().st_size
    counts["raw"] = sum(len(reg.insertDatasets(RAW, INPUT_RUN, part)) for part in _chunks(records))
    return counts


def database_url(db: str, db_url: str | None = None) -> str | None:
    """The registry URL for ``--db``: `None` (SQLite inside the repository) or a fresh PostgreSQL schema.

    ``db_url`` (else ``SUPERTASK_TEST_POSTGRES_URL``, the URL ``.ci/start-postgres``
    prints) names the server and database; each call creates a schema of its own there,
    so repositories of several sizes and runs live side by side. The schema is kept: the
    repository's ``butler.yaml`` refers to it, and a later ``--repo`` run reads it.
    """
    if db == "sqlite":
        return db_url
    if db != "postgresql":
        raise SystemExit(f"--db {db!r}: use sqlite or postgresql")
    base = db_url or os.environ.get("SUPERTASK_TEST_POSTGRES_URL")
    if not base:
        raise SystemExit(
            '--db postgresql needs --db-url URL or SUPERTASK_TEST_POSTGRES_URL (eval "$(bash .ci/start-postgres)")'
        )
    import sqlalchemy as sa

    schema = f"bench_{uuid.uuid4().hex[:10]}"
    engine = sa.create_engine(base)
    with engine.begin() as conn:
        conn.exec_driver_sql(f"CREATE SCHEMA {schema}")
    engine.dispose()
    sep = "&" if "?" in base else "?"
    return f"{base}{sep}options={quote(f'-csearch_path={schema}')}"


def make_repo(
    root: str | Path,
    layout: Layout,
    *,
    db_url: str | None = None,
    overlaps: str = "direct",
    write_files: bool = False,
) -> Butler:
    """Create a repository at ``root`` and populate it; the Butler reads the raw run."""
    Butler.create(root, db_url=db_url)
    butler = Butler(root, collections=[INPUT_RUN])
    populate(butler, layout, overlaps=overlaps, write_files=write_files)
    return butler
