"""assembleCoadd and detectCoadd: combine the warps of one patch and band, then catalogue the result.

Each warp gets one weight, the inverse of its typical (median) variance, rather
than per-pixel inverse variances: per-pixel weights would give less weight to
pixels on stars (their Poisson variance is larger) and bias coadd fluxes low.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
from numpy.typing import NDArray

from .exposure import Exposure
from .measure import detect_sources, estimate_background
from .warp import COADD_ZERO_POINT


def assemble_coadd(warps: Iterable[Exposure], metadata: dict[str, Any] | None = None) -> Exposure:
    """Inverse-variance weighted mean of the warps of one patch in one band.

    Returns
    -------
    coadd : `Exposure`
        ``image`` and ``variance`` (NaN where no warp covers a pixel) and an
        ``n_inputs`` plane counting the warps that contributed to each pixel.

    Raises
    ------
    ValueError
        If there are no warps, or they are on different grids or in different bands.
    """
    warps = [w for w in warps]
    if not warps:
        raise ValueError("assemble_coadd got no warps: nothing overlaps this patch in this band")
    shape = warps[0].image.shape
    bands = {w.metadata.get("band") for w in warps}
    if len(bands) > 1:
        raise ValueError(f"cannot coadd warps of different bands {sorted(map(str, bands))}")
    for w in warps:
        if w.image.shape != shape or w.wcs != warps[0].wcs:
            raise ValueError(
                f"warp of visit {w.metadata.get('visit')} is on a different pixel grid than "
                f"visit {warps[0].metadata.get('visit')}: warps of one patch must share the patch WCS"
            )
    total_weight = np.zeros(shape)
    weighted_sum = np.zeros(shape)
    weighted_var = np.zeros(shape)
    n_inputs = np.zeros(shape, dtype=np.int32)
    used = []
    for w in warps:
        covered = (np.asarray(w.planes.get("coverage", np.isfinite(w.image))) > 0) & np.isfinite(w.image)
        covered &= np.isfinite(w.variance) if w.variance is not None else covered
        if not covered.any():
            continue
        typical_var = float(np.median(w.variance[covered])) if w.variance is not None else 1.0
        weight = 1.0 / typical_var
        img = np.where(covered, w.image, 0.0)
        var = np.where(covered, w.variance if w.variance is not None else typical_var, 0.0)
        total_weight += weight * covered
        weighted_sum += weight * img
        weighted_var += weight**2 * var
        n_inputs += covered
        used.append(w.metadata.get("visit"))
    with np.errstate(divide="ignore", invalid="ignore"):
        image = np.where(total_weight > 0, weighted_sum / total_weight, np.nan)
        variance = np.where(total_weight > 0, weighted_var / total_weight**2, np.nan)
    meta = dict(metadata or {})
    meta.update(
        band=next(iter(bands)), zero_point=COADD_ZERO_POINT, visits=sorted(v for v in used if v is not None)
    )
    return Exposure(
        image=image.astype(np.float32),
        wcs=warps[0].wcs,
        variance=variance.astype(np.float32),
        planes={"n_inputs": n_inputs},
        metadata=meta,
    )


COADD_SRC_DTYPE = np.dtype(
    [
        ("id", "i8"),
        ("x", "f8"),
        ("y", "f8"),
        ("ra", "f8"),
        ("dec", "f8"),
        ("flux", "f8"),
        ("flux_err", "f8"),
        ("mag", "f8"),
        ("mag_err", "f8"),
        ("snr", "f8"),
        ("n_inputs", "i4"),
    ]
)


def detect_coadd(
    coadd: Exposure, *, threshold: float = 5.0, psf_sigma: float = 1.2, aperture_radius: float = 6.0
) -> NDArray[np.void]:
    """Catalogue of the sources on a coadd, with sky positions and magnitudes.

    Only sources whose whole aperture lies on pixels with data are kept.
    """
    if coadd.wcs is None or coadd.variance is None:
        raise ValueError("detect_coadd needs a coadd with a WCS and a variance plane")
    n_inputs = coadd.planes.get("n_inputs")
    covered = np.isfinite(coadd.image) & (n_inputs > 0 if n_inputs is not None else True)
    if not covered.any():
        return np.zeros(0, dtype=COADD_SRC_DTYPE)
    background = estimate_background(coadd.image, covered)
    image = np.where(covered, coadd.image - background, 0.0)
    sources = detect_sources(
        image,
        np.where(covered, coadd.variance, np.inf),
        threshold=threshold,
        psf_sigma=psf_sigma,
        aperture_radius=aperture_radius,
        coverage=covered,
    )
    out = np.zeros(len(sources), dtype=COADD_SRC_DTYPE)
    for name in ("id", "x", "y", "flux", "flux_err", "snr"):
        out[name] = sources[name]
    out["ra"], out["dec"] = coadd.wcs.pixel_to_sky(sources["x"], sources["y"])
    zp = float(coadd.metadata.get("zero_point", COADD_ZERO_POINT))
    with np.errstate(divide="ignore", invalid="ignore"):
        out["mag"] = np.where(sources["flux"] > 0, zp - 2.5 * np.log10(sources["flux"]), np.nan)
        out["mag_err"] = 2.5 / np.log(10) / sources["snr"]
    if n_inputs is not None and len(sources):
        ix = np.clip(np.round(sources["x"]).astype(int), 0, coadd.width - 1)
        iy = np.clip(np.round(sources["y"]).astype(int), 0, coadd.height - 1)
        out["n_inputs"] = n_inputs[iy, ix]
    return out
