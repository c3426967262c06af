"""The tasks of the tutorial in docs/writing-supertasks.md (also used by the tests).

Three SuperTasks of a toy single-frame pipeline:

- ``IsrTask``: per (instrument, visit, detector): ``raw`` -> ``postISRCCD`` (subtract a bias level);
- ``CalibrateTask``: per (instrument, visit, detector): ``postISRCCD`` -> ``calexp`` and ``src``,
  delegating source detection to a retargetable subtask;
- ``VisitSummaryTask``: per (instrument, visit): gathers ``src`` of every detector ->
  ``visitSummary``.

Images are lists of pixel rows so that the example needs nothing but the standard library.
"""

from __future__ import annotations

from supertask.config import Config, ConfigurableField, DatasetField, Field, ListField
from supertask.supertask import SuperTask
from supertask.task import Struct, Task

DETECTOR_UNITS = ("instrument", "visit", "detector")


class IsrConfig(Config):
    raw = DatasetField(doc="Raw detector image.", units=DETECTOR_UNITS, storageClass="Image", name="raw")
    postISRCCD = DatasetField(
        doc="Bias-subtracted image.",
        units=DETECTOR_UNITS,
        storageClass="Image",
        name="postISRCCD",
        role="output",
    )
    biasLevel = Field(
        dtype=float, default=100.0, doc="Bias level subtracted from every pixel (ADU).", min=0.0
    )


class IsrTask(SuperTask):
    """Subtract a constant bias from a raw image."""

    ConfigClass = IsrConfig
    _DefaultName = "isr"
    quantumUnits = DETECTOR_UNITS

    def run(self, raw: list[list[float]]) -> Struct:
        bias = self.config.biasLevel
        return Struct(postISRCCD=[[pixel - bias for pixel in row] for row in raw])


class DetectionConfig(Config):
    threshold = Field(dtype=float, default=5.0, doc="Detection threshold (ADU above zero).", min=0.0)


class ThresholdDetectionTask(Task):
    """Find pixels above a threshold."""

    ConfigClass = DetectionConfig
    _DefaultName = "detection"

    def run(self, image: list[list[float]]) -> Struct:
        peaks = [
            (y, x) for y, row in enumerate(image) for x, v in enumerate(row) if v > self.config.threshold
        ]
        self.metadata["nPeaks"] = len(peaks)
        return Struct(sources=peaks)


class BrightestPixelDetectionTask(ThresholdDetectionTask):
    """Report only the brightest pixel (a drop-in replacement: same run signature)."""

    def run(self, image: list[list[float]]) -> Struct:
        best = max(((v, (y, x)) for y, row in enumerate(image) for x, v in enumerate(row)), default=None)
        return Struct(sources=[best[1]] if best and best[0] > self.config.threshold else [])


class CalibrateConfig(Config):
    postISRCCD = DatasetField(
        doc="Bias-subtracted image.", units=DETECTOR_UNITS, storageClass="Image", name="postISRCCD"
    )
    calexp = DatasetField(
        doc="Calibrated image.", units=DETECTOR_UNITS, storageClass="Image", name="calexp", role="output"
    )
    src = DatasetField(
        doc="Detected sources.", units=DETECTOR_UNITS, storageClass="SourceList", name="src", role="output"
    )
    detection = ConfigurableField(doc="Source detection.", target=ThresholdDetectionTask)
    photoCalib = Field(
        dtype=float, default=1.0, doc="Flux scale applied to the image.", min=0.0, inclusiveMin=False
    )


class CalibrateTask(SuperTask):
    """Scale an image and detect sources on it."""

    ConfigClass = CalibrateConfig
    _DefaultName = "calibrate"
    quantumUnits = DETECTOR_UNITS

    def __init__(self, butler=None, **kwargs):
        super().__init__(butler=butler, **kwargs)
        self.makeSubtask("detection")

    def run(self, postISRCCD: list[list[float]]) -> Struct:
        calexp = [[pixel * self.config.photoCalib for pixel in row] for row in postISRCCD]
        sources = self.detection.run(calexp).sources
        self.log.debug("found %d sources", len(sources))
        return Struct(calexp=calexp, src=sources)


class VisitSummaryConfig(Config):
    src = DatasetField(
        doc="Sources of each detector.", units=DETECTOR_UNITS, storageClass="SourceList", name="src"
    )
    visitSummary = DatasetField(
        doc="Number of sources per detector.",
        units=("instrument", "visit"),
        storageClass="StructuredDataDict",
        name="visitSummary",
        role="output",
    )
    skipDetectors = ListField(dtype=int, default=[], doc="Detectors left out of the summary.")


class VisitSummaryTask(SuperTask):
    """Gather the source counts of every detector of a visit."""

    ConfigClass = VisitSummaryConfig
    _DefaultName = "visitSummary"
    quantumUnits = ("instrument", "visit")

    def run(self, src: dict) -> Struct:
        # src is a dict {DataId: sources}: its units are finer than the quantum's
        counts = {
            int(dataId["detector"]): len(sources)
            for dataId, sources in src.items()
            if dataId["detector"] not in self.config.skipDetectors
        }
        return Struct(visitSummary={"nSources": counts})
