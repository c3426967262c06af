"""A gnomonic (tangent-plane) world coordinate system, vectorised with numpy.

The demo needs only what a survey pipeline needs from a WCS: map pixel positions to
sky positions and back, describe a small astrometric correction, and travel with an
image as JSON-able metadata. A TAN projection with a scalar pixel scale and no
rotation is enough for fields of a few degrees; pixel ``x`` grows with right
ascension and ``y`` with declination (no east-left flip, which keeps the demo
readable). All angles are in degrees at the interface.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray


@dataclass(frozen=True)
class TanWcs:
    """Tangent-plane projection about ``(crval_ra, crval_dec)``.

    Parameters
    ----------
    crval_ra, crval_dec : `float`
        The sky position of the tangent point, degrees.
    crpix_x, crpix_y : `float`
        The pixel position of the tangent point (0-based; pixel centres are integers).
    scale : `float`
        Pixel scale in degrees per pixel on the tangent plane.
    """

    crval_ra: float
    crval_dec: float
    crpix_x: float
    crpix_y: float
    scale: float

    def __post_init__(self) -> None:
        if not self.scale > 0:
            raise ValueError(f"WCS pixel scale must be positive, got {self.scale!r} deg/pixel")
        if not -90.0 < self.crval_dec < 90.0:
            raise ValueError(f"WCS tangent point declination {self.crval_dec!r} is not strictly within ±90°")

    def pixel_to_sky(self, x: ArrayLike, y: ArrayLike) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        """Sky positions (ra, dec in degrees) of pixel positions ``x``, ``y``."""
        xi = np.deg2rad((np.asarray(x, dtype=float) - self.crpix_x) * self.scale)
        eta = np.deg2rad((np.asarray(y, dtype=float) - self.crpix_y) * self.scale)
        ra0, dec0 = np.deg2rad(self.crval_ra), np.deg2rad(self.crval_dec)
        denom = np.cos(dec0) - eta * np.sin(dec0)
        dra = np.arctan2(xi, denom)
        dec = np.arctan2((np.sin(dec0) + eta * np.cos(dec0)) * np.cos(dra), denom)
        ra = np.mod(np.rad2deg(ra0 + dra), 360.0)
        ra = np.where(ra >= 360.0, ra - 360.0, ra)  # mod of a tiny negative angle rounds to 360.0
        return ra, np.rad2deg(dec)

    def sky_to_pixel(self, ra: ArrayLike, dec: ArrayLike) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        """Pixel positions of sky positions ``ra``, ``dec`` (degrees).

        Positions more than 90° from the tangent point have no projection; they
        come back as NaN rather than as a wrong, mirrored pixel position.
        """
        ra_r, dec_r = np.deg2rad(np.asarray(ra, dtype=float)), np.deg2rad(np.asarray(dec, dtype=float))
        ra0, dec0 = np.deg2rad(self.crval_ra), np.deg2rad(self.crval_dec)
        dra = ra_r - ra0
        cos_c = np.sin(dec0) * np.sin(dec_r) + np.cos(dec0) * np.cos(dec_r) * np.cos(dra)
        with np.errstate(divide="ignore", invalid="ignore"):
            xi = np.where(cos_c > 0, np.cos(dec_r) * np.sin(dra) / cos_c, np.nan)
            eta = np.where(
                cos_c > 0,
                (np.cos(dec0) * np.sin(dec_r) - np.sin(dec0) * np.cos(dec_r) * np.cos(dra)) / cos_c,
                np.nan,
            )
        x = self.crpix_x + np.rad2deg(xi) / self.scale
        y = self.crpix_y + np.rad2deg(eta) / self.scale
        return x, y

    def with_pixel_offset(self, dx: float, dy: float) -> TanWcs:
        """The WCS under which every sky position lands ``(dx, dy)`` pixels further along.

        This is the astrometric correction ``calibrate`` fits: reference stars that
        the nominal WCS predicts at ``p`` are measured at ``p + (dx, dy)``.
        """
        return replace(self, crpix_x=self.crpix_x + dx, crpix_y=self.crpix_y + dy)

    def shifted_origin(self, x0: float, y0: float) -> TanWcs:
        """The same projection for a sub-image whose pixel (0, 0) is this WCS's ``(x0, y0)``."""
        return replace(self, crpix_x=self.crpix_x - x0, crpix_y=self.crpix_y - y0)

    def sky_box(self, width: int, height: int, margin: float = 0.0) -> tuple[float, float, float, float]:
        """``(ra_min, ra_max, dec_min, dec_max)`` enclosing a ``width`` x ``height`` image.

        The box is taken over the image's edges (not only its corners, since
        declination extremes of a tangent-plane image can lie mid-edge), widened by
        ``margin`` degrees. It follows the registry's convention: RA in [0, 360], Dec
        in [-90, 90] (clamped), and an image straddling RA 0 gets ``ra_min > ra_max``
        (a box that wraps through RA 0); one whose widened box spans all RAs gets
        ``(0, 360)``. Images containing a pole are not handled (the demo has none).
        """
        along_x = np.linspace(-0.5, width - 0.5, 16)
        along_y = np.linspace(-0.5, height - 0.5, 16)
        xs = np.concatenate([along_x, along_x, np.full(16, -0.5), np.full(16, width - 0.5)])
        ys = np.concatenate([np.full(16, -0.5), np.full(16, height - 0.5), along_y, along_y])
        ra, dec = self.pixel_to_sky(xs, ys)
        cos_dec = max(np.cos(np.deg2rad(self.crval_dec)), 1e-6)
        if ra.max() - ra.min() > 180.0:  # the edges straddle RA 0: make them continuous
            ra = np.where(ra > 180.0, ra - 360.0, ra)
        lo = float(ra.min() - margin / cos_dec)
        hi = float(ra.max() + margin / cos_dec)
        if hi - lo >= 360.0:
            lo, hi = 0.0, 360.0
        else:
            lo, hi = _normalise_ra(lo), _normalise_ra(hi)
        return (
            lo,
            hi,
            float(max(dec.min() - margin, -90.0)),
            float(min(dec.max() + margin, 90.0)),
        )

    def to_dict(self) -> dict[str, float]:
        """JSON-able form, stored in image metadata."""
        return {k: float(v) for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TanWcs:
        """Inverse of `to_dict`; names the missing key if the metadata is incomplete."""
        try:
            return cls(**{name: float(data[name]) for name in cls.__dataclass_fields__})
        except KeyError as err:
            raise ValueError(f"WCS metadata lacks {err.args[0]!r}; it has {sorted(data)}") from None


def _normalise_ra(ra: float) -> float:
    """``ra`` in degrees, brought into [0, 360)."""
    ra = float(ra) % 360.0
    return 0.0 if ra >= 360.0 else ra  # % of a tiny negative angle rounds to 360.0
