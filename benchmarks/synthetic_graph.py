"""Realistic synthetic quantum graphs, built directly as `Quantum` objects (no repository).

Three tasks, shaped like a data-release pipeline:

- ``calibrate``, per (visit, detector): reads a ``raw`` (resolved: registry id and run),
  writes ``calexp`` and ``src``;
- ``makeWarp``, per (visit, tract, patch): gathers the ``calexp`` of the 1-4 detectors
  of the visit that overlap the patch, writes a ``warp``;
- ``assembleCoadd``, per (tract, patch, band): gathers the ``warp`` of every visit in
  the band that covers the patch (tens), writes a ``coadd``.

Geometry: a focal plane of 6 x 6 detectors, each half a patch wide, pointed at random
positions on tracts of 10 x 10 patches; so a visit covers about 16 patches and each
detector overlaps 1-4 of them. Visits are added until the graph reaches ``n`` quanta.
Deterministic for a given ``seed``.

Run as a script to print the quanta per task of a graph: ``python benchmarks/synthetic_graph.py 10000``.
"""

from __future__ import annotations

import random
import sys
from collections import defaultdict

from supertask.quantum import Quantum
from supertask.repo.dataid import DataId
from supertask.repo.dataset import Dataset, DatasetType

INSTRUMENT = "LSSTCam-sim"
SKYMAP = "discrete"
BANDS = ("u", "g", "r", "i", "z", "y")
FOCAL_PLANE = 6  # detectors per side
DETECTOR_SIZE = 0.5  # in patches
PATCHES_PER_TRACT = 10  # per side
N_TRACTS = 4

RAW = DatasetType("raw", ("instrument", "exposure", "detector"), "NumpyArray")
CALEXP = DatasetType("calexp", ("instrument", "visit", "detector"), "NumpyArray")
SRC = DatasetType("src", ("instrument", "visit", "detector"), "Table")
WARP = DatasetType("warp", ("instrument", "visit", "skymap", "tract", "patch"), "NumpyArray")
COADD = DatasetType("coadd", ("skymap", "tract", "patch", "band"), "NumpyArray")


def _did(**values: int | str) -> DataId:
    return DataId(values)


def synthetic_quanta(n: int, seed: int = 1) -> list[Quantum]:
    """Return about ``n`` quanta (at least ``n`` when n > 0, at most one visit's worth more).

    Quanta come in pipeline order (all calibrate, then makeWarp, then assembleCoadd),
    the order a graph builder produces; the datasets are separate objects per quantum,
    as a builder may hand them over, so the graph's sharing is exercised.
    """
    rng = random.Random(seed)
    calibrate: list[Quantum] = []
    warps: list[Quantum] = []
    # (tract, patch, band) -> visits whose warp covers it
    coadd_inputs: dict[tuple[int, int, str], list[int]] = defaultdict(list)
    n_coadds = 0
    visit = 0
    raw_id = 0
    while len(calibrate) + len(warps) + n_coadds < n:
        visit += 1
        band = BANDS[visit % len(BANDS)]
        tract = rng.randrange(N_TRACTS)
        x0 = rng.uniform(0, PATCHES_PER_TRACT - FOCAL_PLANE * DETECTOR_SIZE)
        y0 = rng.uniform(0, PATCHES_PER_TRACT - FOCAL_PLANE * DETECTOR_SIZE)
        by_patch: dict[int, list[int]] = defaultdict(list)
        for detector in range(FOCAL_PLANE * FOCAL_PLANE):
            ix, iy = divmod(detector, FOCAL_PLANE)
            left, bottom = x0 + ix * DETECTOR_SIZE, y0 + iy * DETECTOR_SIZE
            raw_id += 1
            calibrate.append(
                Quantum(
                    "calibrate",
                    _did(instrument=INSTRUMENT, visit=visit, detector=detector),
                    {
                        "raw": [
                            Dataset(
                                RAW,
                                _did(instrument=INSTRUMENT, exposure=visit, detector=detector),
                                id=raw_id,
                                run="LSSTCam-sim/raw/all",
                            )
                        ]
                    },
                    {
                        "calexp": [
                            Dataset(CALEXP, _did(instrument=INSTRUMENT, visit=visit, detector=detector))
                        ],
                        "src": [Dataset(SRC, _did(instrument=INSTRUMENT, visit=visit, detector=detector))],
                    },
                )
            )
            for px in range(int(left), int(left + DETECTOR_SIZE - 1e-9) + 1):
                for py in range(int(bottom), int(bottom + DETECTOR_SIZE - 1e-9) + 1):
                    by_patch[py * PATCHES_PER_TRACT + px].append(detector)
        for patch in sorted(by_patch):
            wid = _did(instrument=INSTRUMENT, visit=visit, skymap=SKYMAP, tract=tract, patch=patch)
            warps.append(
                Quantum(
                    "makeWarp",
                    wid,
                    {
                        "calexp": [
                            Dataset(CALEXP, _did(instrument=INSTRUMENT, visit=visit, detector=d))
                            for d in by_patch[patch]
                        ]
                    },
                    {"warp": [Dataset(WARP, wid)]},
                )
            )
            key = (tract, patch, band)
            if key not in coadd_inputs:
                n_coadds += 1
            coadd_inputs[key].append(visit)
    coadds = []
    for (tract, patch, band), visits in sorted(coadd_inputs.items()):
        cid = _did(skymap=SKYMAP, tract=tract, patch=patch, band=band)
        coadds.append(
            Quantum(
                "assembleCoadd",
                cid,
                {
                    "warp": [
                        Dataset(
                            WARP,
                            _did(instrument=INSTRUMENT, visit=v, skymap=SKYMAP, tract=tract, patch=patch),
                        )
                        for v in visits
                    ]
                },
                {"coadd": [Dataset(COADD, cid)]},
            )
        )
    return calibrate + warps + coadds


PIPELINE_YAML = """\
description: synthetic three-task pipeline
tasks:
  calibrate: {class: demo.Calibrate}
  makeWarp: {class: demo.MakeWarp}
  assembleCoadd: {class: demo.AssembleCoadd}
"""

CONFIGS = {
    "calibrate": "config.threshold = 5.0\n",
    "makeWarp": "config.kernel = 'lanczos3'\n",
    "assembleCoadd": "config.statistic = 'MEANCLIP'\n",
}


if __name__ == "__main__":
    from collections import Counter

    quanta = synthetic_quanta(int(sys.argv[1]) if len(sys.argv) > 1 else 10_000)
    print(len(quanta), dict(Counter(q.taskLabel for q in quanta)))
