"""Calibrate: detect stars on a post-ISR image, match them to the reference catalogue,
fit the photometric zero point and the astrometric offset, and subtract the sky.

The match has to survive a pointing error of several pixels, larger than a sensible
match radius, so it starts with a vote: every pair of (detection, predicted
reference position) within ``search_radius`` votes for its offset, and the most
popular offset wins. Nearest-neighbour matching within ``match_radius`` around
that offset then gives the matched list, from which the offset is refit.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from .errors import NoWorkFound
from .exposure import Exposure
from .measure import SOURCE_DTYPE, detect_sources, estimate_background
from .refcat import magnitudes

SRC_DTYPE = np.dtype(
    SOURCE_DTYPE.descr + [("ra", "f8"), ("dec", "f8"), ("mag", "f8"), ("mag_err", "f8"), ("ref_id", "i8")]
)


class CalibrationError(NoWorkFound):
    """Calibration cannot succeed on this image (too few stars or matches): retrying will not help."""


@dataclass(frozen=True)
class CalibrateParams:
    """Knobs of `calibrate` (the SuperTask's config fills these in)."""

    threshold: float = 5.0
    psf_sigma: float = 1.2
    aperture_radius: float = 6.0
    search_radius: float = 15.0
    match_radius: float = 1.5
    min_matches: int = 5
    min_snr_for_zp: float = 20.0


@dataclass
class CalibrateResult:
    """The calibrated exposure, its source catalogue and the fit summary."""

    calexp: Exposure
    src: NDArray[np.void]
    zero_point: float
    zero_point_err: float
    offset: tuple[float, float]
    n_matches: int


def _vote_offset(
    det_xy: NDArray[np.float64], ref_xy: NDArray[np.float64], radius: float
) -> tuple[float, float]:
    """The offset (detected - predicted) supported by the most pairs, to within one pixel."""
    all_pairs = det_xy[:, None, :] - ref_xy[None, :, :]  # a detector has tens to hundreds of stars
    d = all_pairs[np.hypot(all_pairs[..., 0], all_pairs[..., 1]) <= radius]
    if len(d) == 0:
        return 0.0, 0.0
    edges = np.arange(-radius, radius + 1.0, 1.0)
    hist, xe, ye = np.histogram2d(d[:, 0], d[:, 1], bins=[edges, edges])
    # Smooth by summing 2x2 neighbours so an offset on a bin boundary still wins.
    summed = hist[:-1, :-1] + hist[1:, :-1] + hist[:-1, 1:] + hist[1:, 1:]
    i, j = np.unravel_index(np.argmax(summed), summed.shape)
    near = (np.abs(d[:, 0] - xe[i + 1]) <= 1.0) & (np.abs(d[:, 1] - ye[j + 1]) <= 1.0)
    return float(np.median(d[near, 0])), float(np.median(d[near, 1]))


def _robust_mean_offset(
    resid: NDArray[np.float64], snr: NDArray[np.float64], psf_sigma: float
) -> tuple[float, float]:
    """Weighted mean of the match residuals with outliers (blends, mismatches) clipped.

    The centroid error of a star is about ``sqrt(2) * psf_sigma / snr`` per axis
    (floored at 0.02 pixel); residuals further than 3 of their own errors from
    the mean are dropped, and the mean is weighted by inverse error squared.
    """
    err = np.maximum(np.sqrt(2.0) * psf_sigma / np.maximum(snr, 1e-3), 0.02)
    weights = 1.0 / err**2
    keep = np.ones(len(resid), dtype=bool)
    offset = np.median(resid, axis=0)
    for _ in range(5):
        offset = np.average(resid[keep], axis=0, weights=weights[keep])
        new_keep = np.hypot(*(resid - offset).T) < 3.0 * np.sqrt(2.0) * err
        if not new_keep.any() or np.array_equal(new_keep, keep):
            break
        keep = new_keep
    return float(offset[0]), float(offset[1])


def match_to_reference(
    sources: NDArray[np.void],
    ref_x: NDArray[np.float64],
    ref_y: NDArray[np.float64],
    params: CalibrateParams,
) -> tuple[NDArray[np.int64], NDArray[np.int64], tuple[float, float]]:
    """Match detections to predicted reference positions.

    Returns
    -------
    src_index, ref_index : `numpy.ndarray`
        Indices of matched pairs.
    offset : `tuple` [`float`, `float`]
        The fitted mean (detected - predicted) pixel offset.
    """
    empty = np.zeros(0, dtype=np.int64)
    if len(sources) == 0 or len(ref_x) == 0:
        return empty, empty, (0.0, 0.0)
    det_xy = np.column_stack([sources["x"], sources["y"]])
    ref_xy = np.column_stack([ref_x, ref_y])
    offset = _vote_offset(det_xy, ref_xy, params.search_radius)
    src_idx, ref_idx = empty, empty
    for _ in range(3):
        shifted = det_xy - np.asarray(offset)
        distances = np.hypot(*(shifted[:, None, :] - ref_xy[None, :, :]).transpose(2, 0, 1))
        nearest = distances.argmin(axis=1)
        dist = distances[np.arange(len(shifted)), nearest]
        ok = dist <= params.match_radius
        src_idx, ref_idx = np.flatnonzero(ok), nearest[ok]
        # One reference star, one detection: keep the closest claimant.
        order = np.argsort(dist[ok], kind="stable")
        _, first = np.unique(ref_idx[order], return_index=True)
        keep = np.sort(order[first])
        src_idx, ref_idx = src_idx[keep], ref_idx[keep]
        if len(src_idx) == 0:
            break
        resid = det_xy[src_idx] - ref_xy[ref_idx]
        offset = _robust_mean_offset(resid, sources["snr"][src_idx], params.psf_sigma)
    return src_idx.astype(np.int64), ref_idx.astype(np.int64), offset


def calibrate(
    exposure: Exposure, refcat: NDArray[np.void], params: CalibrateParams | None = None
) -> CalibrateResult:
    """Calibrate one post-ISR detector image.

    Parameters
    ----------
    exposure : `Exposure`
        Post-ISR image in electrons, with variance, its nominal WCS and ``band`` in metadata.
    refcat : `numpy.ndarray`
        The reference catalogue (`demo_drp.refcat.REFCAT_DTYPE`).
    params : `CalibrateParams`, optional
        Detection and matching parameters.

    Returns
    -------
    result : `CalibrateResult`
        ``calexp`` is sky-subtracted, in electrons, with the corrected WCS and
        ``zero_point`` in its metadata; ``src`` lists every detection with
        calibrated ``ra``, ``dec``, ``mag`` and the matched ``ref_id`` (-1 if none).

    Raises
    ------
    CalibrationError
        With the counts that fell short, if fewer than ``min_matches`` stars match.
    """
    params = params or CalibrateParams()
    if exposure.wcs is None or exposure.variance is None:
        raise ValueError("calibrate needs a post-ISR exposure with a WCS and a variance plane")
    band = exposure.metadata.get("band")
    if band is None:
        raise ValueError(f"exposure metadata has no 'band' (keys: {sorted(exposure.metadata)})")
    where = f"visit {exposure.metadata.get('visit')} detector {exposure.metadata.get('detector')}"
    background = estimate_background(exposure.image)
    image = np.asarray(exposure.image, dtype=float) - background
    sources = detect_sources(
        image,
        exposure.variance,
        threshold=params.threshold,
        psf_sigma=params.psf_sigma,
        aperture_radius=params.aperture_radius,
    )
    ref_x, ref_y = exposure.wcs.sky_to_pixel(refcat["ra"], refcat["dec"])
    pad = params.search_radius
    on_chip = (
        (ref_x > -pad) & (ref_x < exposure.width + pad) & (ref_y > -pad) & (ref_y < exposure.height + pad)
    )
    ref_sub = refcat[on_chip]
    src_idx, ref_idx, offset = match_to_reference(sources, ref_x[on_chip], ref_y[on_chip], params)
    if len(src_idx) < params.min_matches:
        raise CalibrationError(
            f"{where}: only {len(src_idx)} of {len(sources)} detections matched the "
            f"{len(ref_sub)} reference stars on the detector (need {params.min_matches}); "
            "check the reference catalogue covers this field, or lower min_matches / threshold"
        )
    ref_mags = magnitudes(ref_sub, band)[ref_idx]
    flux = sources["flux"][src_idx]
    good = (sources["snr"][src_idx] >= params.min_snr_for_zp) & (flux > 0)
    if good.sum() < params.min_matches:
        good = flux > 0
    zps = ref_mags[good] + 2.5 * np.log10(flux[good])
    # Weighted mean with outliers clipped at 3 sigma of each star's own error (plus a
    # 0.01 mag floor): blends with faint neighbours are bright outliers, and a
    # global standard deviation would be inflated by the very outliers to be removed.
    mag_err = np.hypot(2.5 / np.log(10) / sources["snr"][src_idx][good], 0.01)
    weights = 1.0 / mag_err**2
    zp = float(np.median(zps))
    keep = np.ones(len(zps), dtype=bool)
    for _ in range(5):
        new_keep = np.abs(zps - zp) < 3.0 * mag_err
        if not new_keep.any():
            break
        keep = new_keep
        zp = float(np.average(zps[keep], weights=weights[keep]))
    zp_err = float(1.0 / np.sqrt(weights[keep].sum()))

    wcs = exposure.wcs.with_pixel_offset(*offset)
    src = np.zeros(len(sources), dtype=SRC_DTYPE)
    for name in SOURCE_DTYPE.names or ():
        src[name] = sources[name]
    src["ra"], src["dec"] = wcs.pixel_to_sky(sources["x"], sources["y"])
    with np.errstate(divide="ignore", invalid="ignore"):
        src["mag"] = np.where(sources["flux"] > 0, zp - 2.5 * np.log10(sources["flux"]), np.nan)
        src["mag_err"] = 2.5 / np.log(10) / sources["snr"]
    src["ref_id"] = -1
    src["ref_id"][src_idx] = ref_sub["id"][ref_idx]

    metadata = dict(
        exposure.metadata,
        zero_point=zp,
        zero_point_err=zp_err,
        background=background,
        astrometric_offset=[float(offset[0]), float(offset[1])],
        n_matches=int(len(src_idx)),
    )
    calexp = Exposure(image=image.astype(np.float32), wcs=wcs, variance=exposure.variance, metadata=metadata)
    return CalibrateResult(calexp, src, zp, zp_err, (float(offset[0]), float(offset[1])), int(len(src_idx)))
