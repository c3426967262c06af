"""Register DemoCam, the demo skymap and simulated observations in a data repository.

`make_demo_repo` fills a repository with everything the demo pipeline
(``examples/demo_pipeline.yaml``) reads:

========================  ==========================  ===============================
collection                dataset types               units
========================  ==========================  ===============================
``DemoCam/raw/all``       ``raw``                     instrument, exposure, detector
``DemoCam/calib``         ``bias``, ``flat``          instrument, detector
``refcats``               ``ref_cat``                 (none: one global catalogue)
``skymaps``               ``skyMap``                  skymap
``DemoCam/defaults``      a CHAINED collection of the four above, in that order
========================  ==========================  ===============================

and the unit rows the planner joins over: the instrument, its detectors, physical
filters and bands; the skymap with its tracts and patches (with their RA/Dec boxes);
exposures, visits (one exposure each, same id) and each visit-detector's RA/Dec box,
from which the registry computes which detectors of which visits overlap which
patches. The boxes are widened by `REGION_MARGIN_DEG` to cover the pointing error, so
the overlap tables err on the side of including a detector: a warp may come out
empty, but no overlapping pixel is ever left out.

Running it again on the same repository adds what is missing (e.g. more exposures)
and leaves what exists alone, so an interrupted ``demo-data`` can be re-run.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import shutil
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from supertask.repo.butler import Butler, IngestItem
from supertask.repo.dataid import DataId
from supertask.repo.dataset import DatasetType
from supertask.repo.formatters import get_formatter
from supertask.repo.repo_config import CONFIG_NAME

from .camera import DETECTORS, FILTERS, INSTRUMENT
from .simulate import VisitInfo, demo_reference_catalog, make_bias, make_flat, observing_plan, simulate_raw
from .skymap import DEMO_SKYMAP, SkyMap
from .visits import REGION_MARGIN_DEG

log = logging.getLogger("demo_drp.data")

RAW_RUN = f"{INSTRUMENT}/raw/all"
CALIB_RUN = f"{INSTRUMENT}/calib"
REFCAT_RUN = "refcats"
SKYMAP_RUN = "skymaps"
RAW_UNITS_FILE = "raw-units.yaml"
"""Name of the unit-records file written beside the raw files' directory (``demo-data --raw-files``)."""
DEFAULTS = f"{INSTRUMENT}/defaults"
"""The chained collection to give the planner as input: ``--input DemoCam/defaults``."""


RAW = DatasetType("raw", ("instrument", "exposure", "detector"), "ArrayDict")
BIAS = DatasetType("bias", ("instrument", "detector"), "ArrayDict")
FLAT = DatasetType("flat", ("instrument", "detector"), "ArrayDict")
REF_CAT = DatasetType("ref_cat", (), "Table")
SKYMAP_DS = DatasetType("skyMap", ("skymap",), "StructuredDataDict")


def _box(values: tuple[float, float, float, float]) -> dict[str, float]:
    ra_min, ra_max, dec_min, dec_max = values
    return {"ra_min": ra_min, "ra_max": ra_max, "dec_min": dec_min, "dec_max": dec_max}


def instrument_unit_rows() -> dict[str, list[dict[str, Any]]]:
    """The instrument's unit rows by element, in insertion order: instrument, bands, physical filters, detectors.

    One definition for the two ways the demo registers them: `register_instrument` inserts
    them, `write_raw_files` writes them to the units file that ``supertask register-units`` reads.
    """
    return {
        "instrument": [
            {
                "instrument": INSTRUMENT,
                "class_name": "demo_drp.camera",
                "detector_max": len(DETECTORS),
                "visit_max": 10**6,
            }
        ],
        "band": [{"band": f.band} for f in FILTERS],
        "physical_filter": [
            {"instrument": INSTRUMENT, "physical_filter": f.name, "band": f.band} for f in FILTERS
        ],
        "detector": [
            {
                "instrument": INSTRUMENT,
                "detector": d.id,
                "full_name": d.name,
                "raft": "R00",
                "purpose": "SCIENCE",
            }
            for d in DETECTORS
        ],
    }


def register_instrument(butler: Butler) -> None:
    """Insert the instrument, bands, physical filters and detectors."""
    reg = butler.registry
    for element, rows in instrument_unit_rows().items():
        reg.insertUnits(element, rows)


def register_skymap(butler: Butler, skymap: SkyMap = DEMO_SKYMAP) -> None:
    """Insert the skymap, its tracts and its patches with their sky boxes."""
    definition = json.dumps(skymap.to_dict(), sort_keys=True)
    reg = butler.registry
    reg.insertUnits(
        "skymap",
        [
            {
                "skymap": skymap.name,
                "hash": hashlib.sha256(definition.encode()).hexdigest()[:16],
                "tract_max": len(skymap.tracts),
                "patch_nx_max": skymap.n_patches,
                "patch_ny_max": skymap.n_patches,
            }
        ],
    )
    reg.insertUnits(
        "tract", [{"skymap": skymap.name, "tract": t.id, **_box(t.sky_box())} for t in skymap.tracts]
    )
    reg.insertUnits(
        "patch",
        [
            {
                "skymap": skymap.name,
                "tract": t.id,
                "patch": p.index,
                "cell_x": p.index % t.n_patches_x,
                "cell_y": p.index // t.n_patches_x,
                **_box(p.sky_box()),
            }
            for t in skymap.tracts
            for p in t.patches
        ],
    )


def _common_rows(visits: list[VisitInfo]) -> list[dict[str, Any]]:
    exposure_time = 30.0
    return [
        {
            "instrument": INSTRUMENT,
            "physical_filter": v.physical_filter,
            "day_obs": 20230225 + int(v.mjd - 60000.0),
            "exposure_time": exposure_time,
            "mjd_begin": v.mjd,
            "mjd_end": v.mjd + exposure_time / 86400.0,
            "target_name": "demo_field",
        }
        for v in visits
    ]


def exposure_rows(visits: Iterable[VisitInfo]) -> list[dict[str, Any]]:
    """The ``exposure`` unit rows of the observations (one exposure per planned visit, same id)."""
    visits = list(visits)
    return [
        {**c, "exposure": v.id, "seq_num": v.id - visits[0].id + 1, "observation_type": "science"}
        for c, v in zip(_common_rows(visits), visits, strict=True)
    ]


def register_visits(butler: Butler, visits: Iterable[VisitInfo]) -> None:
    """Insert exposures, visits, their one-to-one definition and the visit-detector sky boxes."""
    visits = list(visits)
    reg = butler.registry
    reg.insertUnits("exposure", exposure_rows(visits))
    reg.insertUnits(
        "visit",
        [
            {**c, "visit": v.id, "seeing": v.psf_sigma * 2.355 * 2.0}
            for c, v in zip(_common_rows(visits), visits, strict=True)
        ],
    )
    reg.insertUnits(
        "visit_definition", [{"instrument": INSTRUMENT, "exposure": v.id, "visit": v.id} for v in visits]
    )
    reg.insertUnits(
        "visit_detector_region",
        [
            {
                "instrument": INSTRUMENT,
                "visit": v.id,
                "detector": d.id,
                **_box(d.wcs(v.boresight_ra, v.boresight_dec).sky_box(d.size, d.size, REGION_MARGIN_DEG)),
            }
            for v in visits
            for d in DETECTORS
        ],
    )


def _raw_arrays(visit: VisitInfo, detector: Any, refcat: Any, seed: int) -> dict[str, Any]:
    """The arrays of one simulated raw (made only when it is not stored yet)."""
    arrays: dict[str, Any] = simulate_raw(visit, detector, refcat, seed).to_array_dict()
    return arrays


def _calib_arrays(make: Callable[[Any], Any], detector: Any) -> dict[str, Any]:
    """The arrays of one calibration frame ``make(detector)``."""
    arrays: dict[str, Any] = make(detector).to_array_dict()
    return arrays


def write_raw_files(
    directory: Path, units_file: Path, visits: list[VisitInfo], refcat: Any, seed: int
) -> int:
    """Write the raws as files for ``supertask ingest``, and their unit records for ``register-units``.

    Each raw is ``directory/raw_<exposure>_<detector>.npz`` with a sidecar ``.npz.yaml``
    holding its data ID (the ``.npz`` carries none a reader could use); ``units_file``
    holds the instrument, its filters and detectors and the exposures. Visits are not
    written: ``supertask define-visits`` makes them from the ingested exposures.
    Returns the number of raws written.
    """
    import yaml

    directory.mkdir(parents=True, exist_ok=True)
    formatter = get_formatter(RAW.storageClass)
    count = 0
    for v in visits:
        for d in DETECTORS:
            path = directory / f"raw_{v.id}_{d.id}{formatter.extension}"
            formatter.write(simulate_raw(v, d, refcat, seed).to_array_dict(), path)
            data_id = {"instrument": INSTRUMENT, "exposure": v.id, "detector": d.id}
            path.with_name(path.name + ".yaml").write_text(yaml.safe_dump(data_id, sort_keys=False))
            count += 1
    units = {**instrument_unit_rows(), "exposure": exposure_rows(visits)}
    units_file.write_text(yaml.safe_dump(units, sort_keys=False))
    return count


def _put_missing(
    butler: Butler,
    datasetType: DatasetType,
    items: Iterable[tuple[dict[str, Any], Callable[[], Any]]],
    chunk: int = 256,
) -> int:
    """Store each ``(dataId, make_object)`` not yet in ``butler.run``; objects are made only when needed.

    Objects are written to a staging directory inside the repository and ingested
    (moved) ``chunk`` at a time: one registry transaction per chunk rather than one
    per dataset, which is what makes thousands of raws quick to register. An
    interrupted run leaves only unregistered files, and a re-run redoes just those.
    """
    if butler.run is None:
        raise ValueError("storing demo data needs a Butler opened with a run")
    butler.registry.registerDatasetType(datasetType)
    existing = {d.dataId for d in butler.registry.queryDatasets(datasetType, [butler.run])}
    formatter = get_formatter(datasetType.storageClass)
    staging = Path(tempfile.mkdtemp(prefix=".demo-staging-", dir=butler.root))
    count = 0
    try:
        batch: list[IngestItem] = []
        for data_id, make in items:
            if DataId(data_id) in existing:
                continue
            path = staging / f"{datasetType.name}_{count}{formatter.extension}"
            formatter.write(make(), path)
            batch.append(IngestItem(path, datasetType, data_id))
            count += 1
            if len(batch) >= chunk:
                butler.ingest(batch, mode="move")
                batch = []
        if batch:
            butler.ingest(batch, mode="move")
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return count


def make_demo_repo(
    root: str | Path,
    n_exposures: int = 6,
    db_url: str | None = None,
    seed: int = 1,
    progress: Callable[[str], None] | None = None,
    raw_files: str | Path | None = None,
) -> Butler:
    """Create (if needed) and fill a demo repository.

    Parameters
    ----------
    root : `str` or `~pathlib.Path`
        The repository directory; created if it holds no repository yet.
    n_exposures : `int`
        Number of exposures (= visits), cycling through bands g, r, i.
    db_url : `str`, optional
        Registry database URL (PostgreSQL); SQLite inside ``root`` when `None`.
        Ignored when the repository exists.
    seed : `int`
        Seed of the simulation: the reference catalogue, pointings and noise.
    progress : callable, optional
        Called with a short message at each step (the CLI prints them).
    raw_files : `str` or `~pathlib.Path`, optional
        Write the raws into this directory as files (with sidecars) instead of into the
        repository, and their unit records to `RAW_UNITS_FILE` beside it: exposures and
        visits are then not registered, and the raw run is empty until they are ingested
        (``supertask register-units``, ``ingest``, ``define-visits``; `write_raw_files`).

    Returns
    -------
    butler : `Butler`
        Opened on ``root`` with collections ``[DemoCam/defaults]``.

    Raises
    ------
    ValueError
        If the repository already holds demo data made with another seed (the
        visits would contradict the registered ones); use a new repository.
    """
    say = progress or log.info
    root = Path(root)
    if (root / CONFIG_NAME).exists():
        Butler(root).close()  # fails here, with its own message, if it is not a usable repository
        say(f"using existing repository {root}")
    else:
        Butler.create(root, db_url).close()
        say(
            f"created repository {root} ({'SQLite' if db_url is None else 'database ' + db_url.split('@')[-1]})"
        )
    visits = observing_plan(n_exposures, seed)
    butler = Butler(root, run=RAW_RUN)
    register_instrument(butler)
    register_skymap(butler)
    refcat = demo_reference_catalog(seed)
    if raw_files is not None:
        raw_dir, units_file = Path(raw_files), Path(raw_files).parent / RAW_UNITS_FILE
        n = write_raw_files(raw_dir, units_file, visits, refcat, seed)
        say(
            f"registered {INSTRUMENT} ({len(DETECTORS)} detectors), skymap {DEMO_SKYMAP.name!r} "
            f"({len(DEMO_SKYMAP.tracts)} tracts); wrote {n} raw files to {raw_dir} and the unit records of "
            f"their {len(visits)} exposures to {units_file} (register, ingest and define visits next)"
        )
    else:
        try:
            register_visits(butler, visits)
        except ValueError as err:
            raise ValueError(
                f"{root} already holds demo visits that differ from those of seed {seed}: {err}. "
                "Use a new repository directory for another seed."
            ) from None
        say(
            f"registered {INSTRUMENT} ({len(DETECTORS)} detectors), skymap {DEMO_SKYMAP.name!r} "
            f"({len(DEMO_SKYMAP.tracts)} tracts), {len(visits)} visits"
        )
        n = _put_missing(
            butler,
            RAW,
            (
                (
                    {"instrument": INSTRUMENT, "exposure": v.id, "detector": d.id},
                    functools.partial(_raw_arrays, v, d, refcat, seed),
                )
                for v in visits
                for d in DETECTORS
            ),
        )
        say(f"wrote {n} raw images to {RAW_RUN}")
    butler.close()

    butler = Butler(root, run=CALIB_RUN)
    n = _put_missing(
        butler,
        BIAS,
        (
            ({"instrument": INSTRUMENT, "detector": d.id}, functools.partial(_calib_arrays, make_bias, d))
            for d in DETECTORS
        ),
    )
    n += _put_missing(
        butler,
        FLAT,
        (
            ({"instrument": INSTRUMENT, "detector": d.id}, functools.partial(_calib_arrays, make_flat, d))
            for d in DETECTORS
        ),
    )
    say(f"wrote {n} bias and flat frames to {CALIB_RUN}")
    butler.close()

    butler = Butler(root, run=REFCAT_RUN)
    _put_missing(butler, REF_CAT, [({}, lambda: refcat)])
    butler.close()
    butler = Butler(root, run=SKYMAP_RUN)
    _put_missing(butler, SKYMAP_DS, [({"skymap": DEMO_SKYMAP.name}, DEMO_SKYMAP.to_dict)])
    butler.registry.setChain(DEFAULTS, [RAW_RUN, CALIB_RUN, REFCAT_RUN, SKYMAP_RUN])
    butler.close()
    say(
        f"reference catalogue ({len(refcat)} stars) in {REFCAT_RUN}, skymap in {SKYMAP_RUN}; inputs: {DEFAULTS}"
    )
    return Butler(root, collections=[DEFAULTS])
