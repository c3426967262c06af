"""Simulated DemoCam data: an observing plan, raw exposures with real pixels, bias and flat frames.

Each raw detector image is built the way a camera builds it: stars of the
reference catalogue, drawn with a Gaussian PSF integrated over pixels, on a sky
background, scaled by the detector's flat field, with Poisson (Gaussian-approximated)
and read noise, plus the detector's bias pattern. The telescope's recorded pointing
is off by an arcsecond or two and the atmosphere's transparency varies, so
calibration has something real to fit. Everything is a pure function of the seed.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from numpy.typing import NDArray
from scipy.special import erf

from .camera import INSTRUMENT, Detector, filter_for_band
from .exposure import Exposure
from .refcat import BANDS, magnitudes, make_reference_catalog
from .skymap import DEMO_SKYMAP

FIELD_CENTER: tuple[float, float] = DEMO_SKYMAP.tract(0).center
"""The demo field is centred on tract 0, the demo sky tile."""

# Dither pattern, degrees (dRA on the sky, dDec): the +RA steps push the focal plane
# across tract 0's east edge into tract 1, so tile-edge handling gets exercised.
_DITHERS = ((0.0, 0.0), (0.06, 0.03), (-0.04, -0.03), (0.03, -0.04), (-0.03, 0.04), (0.065, -0.02))
_SKY_LEVEL = {"g": 300.0, "r": 500.0, "i": 800.0}  # electrons per pixel
_ZERO_POINT = {"g": 31.0, "r": 31.2, "i": 30.9}  # magnitude giving 1 electron, clear sky
FIRST_VISIT = 100


@dataclass(frozen=True)
class VisitInfo:
    """Everything about one visit (one exposure): pointing, filter and observing conditions.

    ``boresight_*`` are where the telescope reports it pointed (and what goes in the
    raw headers); ``true_boresight_*`` is where it did point. ``zero_point`` is the
    true photometric zero point (electrons for magnitude 0) and ``psf_sigma`` the
    seeing, in pixels: truths that the tests compare the pipeline's fits against.
    """

    id: int
    band: str
    physical_filter: str
    boresight_ra: float
    boresight_dec: float
    true_boresight_ra: float
    true_boresight_dec: float
    zero_point: float
    psf_sigma: float
    sky_level: float
    mjd: float


def observing_plan(n_exposures: int, seed: int = 1) -> list[VisitInfo]:
    """``n_exposures`` visits cycling through g, r, i over a dither pattern around the demo field.

    Visit ids start at `FIRST_VISIT`; each visit is one exposure with the same id.
    """
    if n_exposures < 1:
        raise ValueError(f"need at least one exposure, got {n_exposures}; try --exposures 6")
    rng = np.random.default_rng([seed, 7])
    ra0, dec0 = FIELD_CENTER
    cos_dec = np.cos(np.deg2rad(dec0))
    visits = []
    for i in range(n_exposures):
        band = BANDS[i % len(BANDS)]
        dra, ddec = _DITHERS[i % len(_DITHERS)]
        ra = ra0 + (dra + rng.normal(0, 0.003)) / cos_dec
        dec = dec0 + ddec + rng.normal(0, 0.003)
        err_ra, err_dec = rng.normal(0.0, 2.0 / 3600.0, 2)  # pointing error, ~1 pixel
        visits.append(
            VisitInfo(
                id=FIRST_VISIT + i,
                band=band,
                physical_filter=filter_for_band(band).name,
                boresight_ra=float(ra),
                boresight_dec=float(dec),
                true_boresight_ra=float(ra + err_ra / cos_dec),
                true_boresight_dec=float(dec + err_dec),
                zero_point=float(_ZERO_POINT[band] - rng.uniform(0.0, 0.15)),
                psf_sigma=float(rng.uniform(0.9, 1.4)),
                sky_level=float(_SKY_LEVEL[band] * rng.uniform(0.9, 1.2)),
                mjd=60000.0 + i * 0.01,
            )
        )
    return visits


@lru_cache(maxsize=4)
def demo_reference_catalog(seed: int = 1) -> NDArray[np.void]:
    """The reference catalogue of the demo field (covers every dither, with margin)."""
    ra0, dec0 = FIELD_CENTER
    half_ra = 0.4 / np.cos(np.deg2rad(dec0))
    return make_reference_catalog((ra0 - half_ra, ra0 + half_ra), (dec0 - 0.3, dec0 + 0.3), seed=seed)


def make_bias(detector: Detector) -> Exposure:
    """The master bias: the detector's level plus a fixed column pattern and a slight row slope (ADU)."""
    y, x = np.mgrid[0 : detector.size, 0 : detector.size]
    pattern = 3.0 * np.sin(x / (7.0 + detector.id)) + 0.01 * y
    image = (detector.bias_level + pattern).astype(np.float32)
    return Exposure(image=image, metadata={"instrument": INSTRUMENT, "detector": detector.id, "kind": "bias"})


def make_flat(detector: Detector) -> Exposure:
    """The master flat: vignetting towards the focal-plane edge and 1% pixel-to-pixel variation.

    Normalised to a mean of one so that ISR preserves the electron scale.
    """
    y, x = np.mgrid[0 : detector.size, 0 : detector.size]
    r2 = (x + detector.x0) ** 2 + (y + detector.y0) ** 2
    vignetting = 1.0 - 0.08 * r2 / 400.0**2
    pixels = np.random.default_rng([detector.id, 11]).normal(1.0, 0.01, (detector.size, detector.size))
    flat = vignetting * pixels
    flat /= flat.mean()
    return Exposure(
        image=flat.astype(np.float32),
        metadata={"instrument": INSTRUMENT, "detector": detector.id, "kind": "flat"},
    )


def render_stars(
    shape: tuple[int, int],
    x: NDArray[np.float64],
    y: NDArray[np.float64],
    flux: NDArray[np.float64],
    sigma: float,
) -> NDArray[np.float64]:
    """Stars as pixel-integrated circular Gaussians: each pixel holds the flux falling on it.

    Integrating over the pixel (rather than sampling the profile at its centre)
    makes the injected fluxes exact, which the photometry tests rely on.
    """
    out = np.zeros(shape)
    half = int(np.ceil(6 * sigma))
    norm = 1.0 / (np.sqrt(2.0) * sigma)
    for xc, yc, f in zip(x, y, flux, strict=True):
        ix, iy = int(round(xc)), int(round(yc))
        x_lo, x_hi = max(ix - half, 0), min(ix + half + 1, shape[1])
        y_lo, y_hi = max(iy - half, 0), min(iy + half + 1, shape[0])
        if x_lo >= x_hi or y_lo >= y_hi:
            continue
        xe = np.arange(x_lo, x_hi + 1) - 0.5 - xc
        ye = np.arange(y_lo, y_hi + 1) - 0.5 - yc
        px = 0.5 * np.diff(erf(xe * norm))
        py = 0.5 * np.diff(erf(ye * norm))
        out[y_lo:y_hi, x_lo:x_hi] += f * np.outer(py, px)
    return out


def true_star_positions(
    visit: VisitInfo, detector: Detector, catalog: NDArray[np.void]
) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64], NDArray[np.int64]]:
    """``(x, y, flux_electrons, ref_id)`` of catalogue stars on the detector, as truly observed."""
    true_wcs = detector.wcs(visit.true_boresight_ra, visit.true_boresight_dec)
    x, y = true_wcs.sky_to_pixel(catalog["ra"], catalog["dec"])
    margin = 8
    keep = (x > -margin) & (x < detector.size + margin) & (y > -margin) & (y < detector.size + margin)
    flux = 10.0 ** (-0.4 * (magnitudes(catalog, visit.band)[keep] - visit.zero_point))
    return x[keep], y[keep], flux, np.asarray(catalog["id"][keep])


def simulate_raw(visit: VisitInfo, detector: Detector, catalog: NDArray[np.void], seed: int = 1) -> Exposure:
    """The raw image of one detector in one visit (ADU), with the telescope's nominal WCS in its metadata."""
    x, y, flux, _ = true_star_positions(visit, detector, catalog)
    shape = (detector.size, detector.size)
    electrons = render_stars(shape, x, y, flux, visit.psf_sigma) + visit.sky_level
    flat = make_flat(detector).image.astype(float)
    electrons *= flat
    rng = np.random.default_rng([seed, visit.id, detector.id])
    noisy = electrons + rng.normal(0.0, 1.0, shape) * np.sqrt(electrons + detector.read_noise**2)
    adu = noisy / detector.gain + make_bias(detector).image
    metadata = {
        "instrument": INSTRUMENT,
        "exposure": visit.id,
        "visit": visit.id,
        "detector": detector.id,
        "band": visit.band,
        "physical_filter": visit.physical_filter,
        "boresight_ra": visit.boresight_ra,
        "boresight_dec": visit.boresight_dec,
        "mjd": visit.mjd,
        "gain": detector.gain,
        "read_noise": detector.read_noise,
    }
    return Exposure(
        image=adu.astype(np.float32),
        wcs=detector.wcs(visit.boresight_ra, visit.boresight_dec),
        metadata=metadata,
    )
