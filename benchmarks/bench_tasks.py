"""Trivial SuperTasks for the preflight and executor benchmarks.

Three tasks with the shape of a data-release production (``calibrate`` per
(visit, detector); ``makeWarp`` per (visit, tract, patch) gathering the detectors of
its visit that overlap the patch; ``assembleCoadd`` per (tract, patch, band)
gathering the warps of every visit of the band). Their ``run`` methods do almost
nothing, so a benchmark measures the middleware, not the science: each returns a
tiny array so that the executor benchmark still pays for a real ``butler.put``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from supertask.config import Config, DatasetField
from supertask.pipeline import Pipeline
from supertask.supertask import SuperTask
from supertask.task import Struct

VISIT_DETECTOR = ("instrument", "visit", "detector")
WARP_UNITS = ("instrument", "visit", "skymap", "tract", "patch")
COADD_UNITS = ("skymap", "tract", "patch", "band")

#: What every trivial task writes: 8 bytes of payload, so file I/O is not what is measured.
TINY = np.zeros(1, dtype=np.float64)


class BenchCalibrateConfig(Config):
    raw = DatasetField(
        doc="Input image of one detector of one visit.",
        units=VISIT_DETECTOR,
        storageClass="NumpyArray",
        name="raw",
    )
    calexp = DatasetField(
        doc="Calibrated image.", units=VISIT_DETECTOR, storageClass="NumpyArray", name="calexp", role="output"
    )


class BenchCalibrateTask(SuperTask):
    """Per (visit, detector): one input, one output."""

    ConfigClass = BenchCalibrateConfig
    _DefaultName = "calibrate"
    quantumUnits = VISIT_DETECTOR

    def run(self, raw: Any) -> Struct:
        return Struct(calexp=TINY)


class BenchMakeWarpConfig(Config):
    calexp = DatasetField(
        doc="Calibrated images of the visit's detectors overlapping the patch.",
        units=VISIT_DETECTOR,
        storageClass="NumpyArray",
        name="calexp",
    )
    warp = DatasetField(
        doc="The visit on the patch grid.",
        units=WARP_UNITS,
        storageClass="NumpyArray",
        name="warp",
        role="output",
    )


class BenchMakeWarpTask(SuperTask):
    """Per (visit, tract, patch): gathers the overlapping detectors of the visit."""

    ConfigClass = BenchMakeWarpConfig
    _DefaultName = "makeWarp"
    quantumUnits = WARP_UNITS

    def run(self, calexp: dict[Any, Any]) -> Struct:
        return Struct(warp=TINY)


class BenchCoaddConfig(Config):
    warp = DatasetField(
        doc="Warps of every visit of the band overlapping the patch.",
        units=WARP_UNITS,
        storageClass="NumpyArray",
        name="warp",
    )
    coadd = DatasetField(
        doc="The coadd of one patch in one band.",
        units=COADD_UNITS,
        storageClass="NumpyArray",
        name="coadd",
        role="output",
    )


class BenchCoaddTask(SuperTask):
    """Per (tract, patch, band): gathers many warps."""

    ConfigClass = BenchCoaddConfig
    _DefaultName = "assembleCoadd"
    quantumUnits = COADD_UNITS

    def run(self, warp: dict[Any, Any]) -> Struct:
        return Struct(coadd=TINY)


def make_pipeline(labels: tuple[str, ...] = ("calibrate", "makeWarp", "assembleCoadd")) -> Pipeline:
    """The benchmark pipeline, built in Python; ``labels`` keeps a prefix of it (e.g. only calibrate)."""
    classes = {
        "calibrate": BenchCalibrateTask,
        "makeWarp": BenchMakeWarpTask,
        "assembleCoadd": BenchCoaddTask,
    }
    unknown = set(labels) - set(classes)
    if unknown:
        raise ValueError(f"unknown benchmark task labels {sorted(unknown)}; choose from {list(classes)}")
    pipeline = Pipeline(inputs=["raw"])  # declared, so that its YAML form (toYaml) loads back
    for label in labels:
        pipeline.addTask(classes[label], label)
    return pipeline
