"""makeWarp: resample the calibrated detector images of one visit onto one patch's pixel grid.

Every patch pixel is mapped to the sky through the patch WCS and back into each
detector through that detector's calibrated WCS; pixels landing on a detector are
interpolated from it. The warp carries a ``coverage`` plane (1 where some detector
contributed, 0 in chip gaps and off the focal plane) that the coadd uses as its
weight mask. Images are rescaled to a common zero point, `COADD_ZERO_POINT`, so
that warps from visits with different transparency add up consistently.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Literal, cast

import numpy as np

from .exposure import Exposure
from .wcs import TanWcs

# scipy's spline orders (the task's config field allows exactly these, 0 to 5)
_SplineOrder = Literal[0, 1, 2, 3, 4, 5]

COADD_ZERO_POINT = 27.0
"""Warps and coadds are in units where a magnitude-27 star has a flux of 1."""


def make_warp(
    calexps: Iterable[Exposure],
    patch_wcs: TanWcs,
    width: int,
    height: int,
    *,
    order: int = 1,
    metadata: dict[str, Any] | None = None,
) -> Exposure:
    """Warp the detector images of one visit onto a patch grid.

    Parameters
    ----------
    calexps : iterable of `Exposure`
        Calibrated detector images of one visit: sky-subtracted, with calibrated
        WCS, variance and ``zero_point`` in metadata.
    patch_wcs : `TanWcs`
        The patch's WCS; ``width`` x ``height`` its size in pixels.
    order : `int`
        Spline order of the interpolation (1 = bilinear: no ringing around stars).
    metadata : `dict`, optional
        Extra metadata for the warp (e.g. the patch data ID).

    Returns
    -------
    warp : `Exposure`
        ``image`` and ``variance`` on the patch grid (NaN where not covered) and a
        ``coverage`` plane. ``metadata["detectors"]`` lists the detectors that
        contributed at least one pixel.
    """
    from scipy import ndimage  # imported on use: it costs batch jobs that never call this ~0.3 s

    calexps = list(calexps)
    image = np.full((height, width), np.nan, dtype=np.float64)
    variance = np.full((height, width), np.nan, dtype=np.float64)
    coverage = np.zeros((height, width), dtype=np.float32)
    yy, xx = np.mgrid[0:height, 0:width]
    ra, dec = patch_wcs.pixel_to_sky(xx.ravel(), yy.ravel())
    visits, bands, contributors = set(), set(), []
    for calexp in calexps:
        if calexp.wcs is None or calexp.variance is None or "zero_point" not in calexp.metadata:
            raise ValueError(
                f"make_warp needs calibrated exposures (WCS, variance, zero_point); detector "
                f"{calexp.metadata.get('detector')} has metadata keys {sorted(calexp.metadata)}"
            )
        visits.add(calexp.metadata.get("visit"))
        bands.add(calexp.metadata.get("band"))
        dx, dy = calexp.wcs.sky_to_pixel(ra, dec)
        inside = (dx >= 0) & (dx <= calexp.width - 1) & (dy >= 0) & (dy <= calexp.height - 1)
        inside &= np.isnan(image.ravel())  # first detector to cover a pixel owns it
        if not inside.any():
            continue
        contributors.append(calexp.metadata.get("detector"))
        # Flux per pixel scales with pixel area; with the common zero point folded in.
        area_ratio = (patch_wcs.scale / calexp.wcs.scale) ** 2
        scale = area_ratio * 10.0 ** (0.4 * (COADD_ZERO_POINT - float(calexp.metadata["zero_point"])))
        coords = np.vstack([dy[inside], dx[inside]])
        img_vals = ndimage.map_coordinates(
            np.asarray(calexp.image, dtype=np.float64), coords, order=cast(_SplineOrder, order)
        )
        var_vals = ndimage.map_coordinates(np.asarray(calexp.variance, dtype=np.float64), coords, order=1)
        flat_index = np.flatnonzero(inside)
        image.ravel()[flat_index] = img_vals * scale
        variance.ravel()[flat_index] = var_vals * scale**2
        coverage.ravel()[flat_index] = 1.0
    if len(visits) > 1 or len(bands) > 1:
        raise ValueError(f"a warp combines one visit in one band; got visits {visits}, bands {bands}")
    meta = dict(metadata or {})
    meta.update(
        visit=next(iter(visits), None),
        band=next(iter(bands), None),
        zero_point=COADD_ZERO_POINT,
        detectors=sorted(int(d) for d in contributors if d is not None),
        covered_fraction=float(coverage.mean()),
    )
    return Exposure(
        image=image.astype(np.float32),
        wcs=patch_wcs,
        variance=variance.astype(np.float32),
        planes={"coverage": coverage},
        metadata=meta,
    )
