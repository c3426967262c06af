"""The demo data-release production as SuperTasks: isr → calibrate → makeWarp → assembleCoadd → detectCoadd.

Each task's ``run`` works on in-memory objects only (DMTN-055 section 4): images
arrive as ``ArrayDict`` dicts (what the butler returns for that storage class),
are turned into `Exposure` objects, handed to the algorithm modules of this
package, and go back as ``ArrayDict`` dicts. ``runQuantum`` is the base class's
except for ``makeWarp``, which needs the patch named by its quantum's data ID.

Units
-----
``isr`` runs per (instrument, exposure, detector) because raws are per exposure.
``calibrate`` runs per (instrument, visit, detector) and *gathers* the
``postISRCCD`` of the visit's exposures through the universe's ``visit_definition``
relation; DemoCam visits have one exposure each (same id), and snaps, if a visit
had several, are summed. ``makeWarp`` gathers the ``calexp`` of every detector of
its visit that overlaps the patch (``visit_detector_patch_overlap``);
``assembleCoadd`` gathers the warps of every visit in its band that overlap the patch.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from supertask.config import Config, ConfigField, DatasetField, Field
from supertask.schemas import DatasetSchema
from supertask.supertask import SuperTask
from supertask.task import Struct

from .calibrate import SRC_DTYPE, CalibrateParams, calibrate
from .coadd import COADD_SRC_DTYPE, assemble_coadd, detect_coadd
from .errors import NoWorkFound
from .exposure import Exposure
from .isr import run_isr
from .skymap import SkyMap
from .warp import make_warp

EXPOSURE_DETECTOR = ("instrument", "exposure", "detector")
VISIT_DETECTOR = ("instrument", "visit", "detector")
CALIB_UNITS = ("instrument", "detector")
WARP_UNITS = ("instrument", "visit", "skymap", "tract", "patch")
COADD_UNITS = ("skymap", "tract", "patch", "band")


def _exposure(data: Any) -> Exposure:
    return data if isinstance(data, Exposure) else Exposure.from_array_dict(data)


class IsrConfig(Config):
    raw = DatasetField(
        doc="Raw detector image (ADU) with the telescope's WCS.",
        units=EXPOSURE_DETECTOR,
        storageClass="ArrayDict",
        name="raw",
    )
    bias = DatasetField(
        doc="Master bias of the detector.", units=CALIB_UNITS, storageClass="ArrayDict", name="bias"
    )
    flat = DatasetField(
        doc="Master flat of the detector.", units=CALIB_UNITS, storageClass="ArrayDict", name="flat"
    )
    postISRCCD = DatasetField(
        doc="Bias- and flat-corrected image in electrons, with variance.",
        units=EXPOSURE_DETECTOR,
        storageClass="ArrayDict",
        name="postISRCCD",
        role="output",
    )


class IsrTask(SuperTask):
    """Instrument signature removal: subtract the bias, divide by the flat, compute the variance."""

    ConfigClass = IsrConfig
    _DefaultName = "isr"
    quantumUnits = EXPOSURE_DETECTOR

    def run(self, raw: Any, bias: Any, flat: Any) -> Struct:
        post = run_isr(_exposure(raw), _exposure(bias), _exposure(flat))
        return Struct(postISRCCD=post.to_array_dict())


class DetectionConfig(Config):
    """Detection and measurement settings shared by single-frame calibration and coadd detection."""

    threshold = Field(
        dtype=float, default=5.0, doc="Detection threshold, sigma of the PSF-filtered image.", min=1.0
    )
    psfSigma = Field(
        dtype=float, default=1.2, doc="Detection filter width and centroid weight (pixels).", min=0.3
    )
    apertureRadius = Field(dtype=float, default=6.0, doc="Photometry aperture radius (pixels).", min=1.0)


class CalibrateConfig(Config):
    postISRCCD = DatasetField(
        doc="Post-ISR images of the visit's exposures (snaps).",
        units=EXPOSURE_DETECTOR,
        storageClass="ArrayDict",
        name="postISRCCD",
    )
    refCat = DatasetField(
        doc="Reference catalogue of stars (global: no units).", units=(), storageClass="Table", name="ref_cat"
    )
    calexp = DatasetField(
        doc="Sky-subtracted image with fitted WCS and zero point.",
        units=VISIT_DETECTOR,
        storageClass="ArrayDict",
        name="calexp",
        role="output",
    )
    src = DatasetField(
        doc="Sources detected on the calexp, matched to the reference catalogue.",
        units=VISIT_DETECTOR,
        storageClass="Table",
        name="src",
        role="output",
    )
    detection = ConfigField(dtype=DetectionConfig, doc="Source detection and aperture photometry.")
    searchRadius = Field(
        dtype=float, default=15.0, doc="Largest pointing error the matcher looks for (pixels).", min=1.0
    )
    matchRadius = Field(
        dtype=float, default=1.5, doc="Match radius after the offset is found (pixels).", min=0.1
    )
    minMatches = Field(dtype=int, default=5, doc="Fewest matched stars for a usable calibration.", min=1)


class CalibrateTask(SuperTask):
    """Detect stars, match them to the reference catalogue, fit zero point and WCS offset, subtract sky."""

    ConfigClass = CalibrateConfig
    _DefaultName = "calibrate"
    quantumUnits = VISIT_DETECTOR

    def run(self, postISRCCD: dict[Any, Any] | Any, refCat: np.ndarray) -> Struct:
        """Calibrate one detector of one visit.

        Parameters
        ----------
        postISRCCD : `dict` [`DataId`, ArrayDict] or ArrayDict
            The post-ISR images of the visit's exposures (summed if more than one).
        refCat : `numpy.ndarray`
            The reference catalogue.
        """
        snaps = (
            [_exposure(v) for _, v in sorted(postISRCCD.items(), key=lambda kv: kv[0].sort_key())]
            if isinstance(postISRCCD, dict) and "image" not in postISRCCD
            else [_exposure(postISRCCD)]
        )
        if not snaps:
            raise NoWorkFound("calibrate got no post-ISR image for this visit and detector")
        exposure = snaps[0]
        if len(snaps) > 1:
            exposure = Exposure(
                image=np.sum([s.image for s in snaps], axis=0),
                wcs=snaps[0].wcs,
                variance=None
                if any(s.variance is None for s in snaps)
                else np.sum([s.variance for s in snaps if s.variance is not None], axis=0),
                metadata=dict(snaps[0].metadata, n_snaps=len(snaps)),
            )
        c = self.config
        params = CalibrateParams(
            threshold=c.detection.threshold,
            psf_sigma=c.detection.psfSigma,
            aperture_radius=c.detection.apertureRadius,
            search_radius=c.searchRadius,
            match_radius=c.matchRadius,
            min_matches=c.minMatches,
        )
        result = calibrate(exposure, refCat, params)
        self.metadata["zero_point"] = result.zero_point
        self.metadata["n_matches"] = result.n_matches
        self.log.info(
            "zero point %.3f ± %.3f from %d stars; WCS offset (%.2f, %.2f) px",
            result.zero_point,
            result.zero_point_err,
            result.n_matches,
            *result.offset,
        )
        return Struct(calexp=result.calexp.to_array_dict(), src=result.src)

    def getDatasetSchemas(self) -> dict[str, DatasetSchema]:
        """The source catalogue's columns (recorded once per RUN as ``src_schema``)."""
        return {self.config.src.name: DatasetSchema.from_dtype(SRC_DTYPE)}


class MakeWarpConfig(Config):
    calexp = DatasetField(
        doc="Calibrated images of the visit's detectors that overlap the patch.",
        units=VISIT_DETECTOR,
        storageClass="ArrayDict",
        name="calexp",
    )
    skyMap = DatasetField(
        doc="The skymap's definition (tract and patch geometry).",
        units=("skymap",),
        storageClass="StructuredDataDict",
        name="skyMap",
    )
    warp = DatasetField(
        doc="The visit resampled onto the patch grid, with a coverage plane.",
        units=WARP_UNITS,
        storageClass="ArrayDict",
        name="warp",
        role="output",
    )
    interpolationOrder = Field(
        dtype=int, default=1, doc="Spline order of the resampling (1: bilinear, no ringing).", min=0, max=5
    )


class MakeWarpTask(SuperTask):
    """Resample one visit's calibrated detector images onto one patch."""

    ConfigClass = MakeWarpConfig
    _DefaultName = "makeWarp"
    quantumUnits = WARP_UNITS

    def run(self, calexp: dict[Any, Any], skyMap: dict[str, Any], tract: int, patch: int) -> Struct:
        """Warp the detectors in ``calexp`` onto patch ``patch`` of tract ``tract`` of ``skyMap``."""
        patch_info = SkyMap.from_dict(skyMap).patch(int(tract), int(patch))
        warp = make_warp(
            (_exposure(v) for v in calexp.values()),
            patch_info.wcs,
            patch_info.width,
            patch_info.height,
            order=self.config.interpolationOrder,
            metadata={"skymap": skyMap.get("name"), "tract": int(tract), "patch": int(patch)},
        )
        self.metadata["covered_fraction"] = warp.metadata["covered_fraction"]
        if not warp.metadata["detectors"]:
            raise NoWorkFound(
                f"visit {warp.metadata['visit']}: none of the {len(calexp)} detectors the registry lists as "
                f"overlapping tract {tract} patch {patch} has pixels on it (the overlap boxes include a "
                "margin for pointing errors); no warp is written"
            )
        return Struct(warp=warp.to_array_dict())

    def runQuantum(self, quantum: Any, butler: Any) -> Struct:
        """Like the base class, but also hands ``run`` the tract and patch of the quantum."""
        c = self.config
        calexps = {d.dataId: butler.get(d) for d in quantum.inputs.get(c.calexp.name, [])}
        (skymap_ref,) = quantum.inputs[c.skyMap.name]
        result = self.run(calexps, butler.get(skymap_ref), quantum.dataId["tract"], quantum.dataId["patch"])
        (warp_ref,) = quantum.outputs[c.warp.name]
        butler.put(result.warp, warp_ref)
        return result


class AssembleCoaddConfig(Config):
    warp = DatasetField(
        doc="Warps of every visit in the band that overlaps the patch.",
        units=WARP_UNITS,
        storageClass="ArrayDict",
        name="warp",
    )
    coadd = DatasetField(
        doc="Inverse-variance weighted coadd with an n_inputs plane.",
        units=COADD_UNITS,
        storageClass="ArrayDict",
        name="deepCoadd",
        role="output",
    )


class AssembleCoaddTask(SuperTask):
    """Combine the warps of one patch and band into a coadd."""

    ConfigClass = AssembleCoaddConfig
    _DefaultName = "assembleCoadd"
    quantumUnits = COADD_UNITS

    def run(self, warp: dict[Any, Any]) -> Struct:
        warps = [_exposure(v) for _, v in sorted(warp.items(), key=lambda kv: kv[0].sort_key())]
        covered = [w for w in warps if np.any(w.planes.get("coverage", 0) > 0)]
        if not covered:
            raise NoWorkFound(
                f"none of the {len(warps)} warps has pixels on this patch (their detectors only "
                "touch it within the registry's overlap margin); there is nothing to coadd"
            )
        where: dict[str, Any] = {
            k: covered[0].metadata[k] for k in ("skymap", "tract", "patch") if k in covered[0].metadata
        }
        coadd = assemble_coadd(covered, metadata=where)
        self.metadata["n_warps"] = len(covered)
        return Struct(coadd=coadd.to_array_dict())


class DetectCoaddConfig(Config):
    coadd = DatasetField(doc="The coadd.", units=COADD_UNITS, storageClass="ArrayDict", name="deepCoadd")
    sources = DatasetField(
        doc="Sources detected on the coadd, with sky positions and magnitudes.",
        units=COADD_UNITS,
        storageClass="Table",
        name="deepCoadd_src",
        role="output",
    )
    detection = ConfigField(dtype=DetectionConfig, doc="Source detection and aperture photometry.")


class DetectCoaddTask(SuperTask):
    """Detect and measure sources on a coadd."""

    ConfigClass = DetectCoaddConfig
    _DefaultName = "detectCoadd"
    quantumUnits = COADD_UNITS

    def run(self, coadd: Any) -> Struct:
        c = self.config
        catalog = detect_coadd(
            _exposure(coadd),
            threshold=c.detection.threshold,
            psf_sigma=c.detection.psfSigma,
            aperture_radius=c.detection.apertureRadius,
        )
        self.metadata["n_sources"] = len(catalog)
        return Struct(sources=catalog)

    def getDatasetSchemas(self) -> dict[str, DatasetSchema]:
        """The coadd catalogue's columns (recorded once per RUN as ``deepCoadd_src_schema``)."""
        return {self.config.sources.name: DatasetSchema.from_dtype(COADD_SRC_DTYPE)}
