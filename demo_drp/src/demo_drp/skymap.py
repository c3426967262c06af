"""The demo skymap: a grid of overlapping tracts, each cut into patches with its own pixel grid.

As in survey skymaps, each tract is one tangent-plane projection about its own
centre (so distortion stays small) and is larger than the spacing between tract
centres: neighbouring tracts overlap, and an object near a tract edge is in more
than one tract. Patches tile their tract's pixel grid without overlap; a patch's
WCS is its tract's WCS with the origin moved to the patch corner, so warps and
coadds of different patches of one tract line up pixel for pixel.

Tract ids run row by row from the south-west corner; tract 0 is the demo "sky tile".
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from functools import cached_property
from typing import Any

import numpy as np

from .camera import PIXEL_SCALE_ARCSEC
from .wcs import TanWcs

SKYMAP_NAME = "demo_skymap"


@dataclass(frozen=True)
class PatchInfo:
    """One patch: its index, its pixel box within the tract, and its WCS.

    Parameters
    ----------
    tract : `int`
        The tract id.
    index : `int`
        The patch id within the tract (row-major: ``iy * n_patches_x + ix``).
    x0, y0 : `int`
        Tract pixel position of the patch's pixel (0, 0).
    width, height : `int`
        Size in pixels.
    wcs : `TanWcs`
        Maps the patch's own pixel grid to the sky.
    """

    tract: int
    index: int
    x0: int
    y0: int
    width: int
    height: int
    wcs: TanWcs

    def sky_box(self) -> tuple[float, float, float, float]:
        """``(ra_min, ra_max, dec_min, dec_max)`` of the patch, for the registry's overlap tables."""
        return self.wcs.sky_box(self.width, self.height)


@dataclass(frozen=True)
class TractInfo:
    """One tract: a tangent-plane pixel grid about its centre, cut into patches."""

    id: int
    wcs: TanWcs
    n_patches_x: int
    n_patches_y: int
    patch_size: int

    @property
    def width(self) -> int:
        return self.n_patches_x * self.patch_size

    @property
    def height(self) -> int:
        return self.n_patches_y * self.patch_size

    @property
    def center(self) -> tuple[float, float]:
        """``(ra, dec)`` of the tract centre, degrees."""
        return self.wcs.crval_ra, self.wcs.crval_dec

    @cached_property
    def patches(self) -> tuple[PatchInfo, ...]:
        """All patches, in id order."""
        out = []
        for iy in range(self.n_patches_y):
            for ix in range(self.n_patches_x):
                x0, y0 = ix * self.patch_size, iy * self.patch_size
                out.append(
                    PatchInfo(
                        tract=self.id,
                        index=iy * self.n_patches_x + ix,
                        x0=x0,
                        y0=y0,
                        width=self.patch_size,
                        height=self.patch_size,
                        wcs=self.wcs.shifted_origin(x0, y0),
                    )
                )
        return tuple(out)

    def patch(self, index: int) -> PatchInfo:
        """Patch ``index``; the error gives the valid range."""
        if not 0 <= index < len(self.patches):
            raise ValueError(f"tract {self.id} has patches 0-{len(self.patches) - 1}, not {index!r}")
        return self.patches[index]

    def sky_box(self) -> tuple[float, float, float, float]:
        """``(ra_min, ra_max, dec_min, dec_max)`` of the whole tract."""
        return self.wcs.sky_box(self.width, self.height)


@dataclass(frozen=True)
class SkyMap:
    """A rectangular grid of overlapping tracts starting at ``(ra0, dec0)``.

    Parameters
    ----------
    ra0, dec0 : `float`
        Centre of tract 0, degrees.
    n_tracts_ra, n_tracts_dec : `int`
        The grid of tracts.
    tract_spacing : `float`
        Distance between neighbouring tract centres, degrees; smaller than the
        tract size, so tracts overlap.
    n_patches : `int`
        Patches per tract side.
    patch_size : `int`
        Pixels per patch side.
    pixel_scale_arcsec : `float`
        Pixel scale of every tract.
    name : `str`
        The ``skymap`` unit's key.
    """

    ra0: float = 150.0
    dec0: float = 2.0
    n_tracts_ra: int = 4
    n_tracts_dec: int = 3
    tract_spacing: float = 0.42
    n_patches: int = 4
    patch_size: int = 200
    pixel_scale_arcsec: float = PIXEL_SCALE_ARCSEC
    name: str = SKYMAP_NAME

    def __post_init__(self) -> None:
        tract_size = self.n_patches * self.patch_size * self.pixel_scale_arcsec / 3600.0
        if tract_size < self.tract_spacing:
            raise ValueError(
                f"tracts of {tract_size:.3f}° are smaller than their spacing {self.tract_spacing}°: "
                "the skymap would have holes; use more or larger patches or a smaller spacing"
            )

    @cached_property
    def tracts(self) -> tuple[TractInfo, ...]:
        """All tracts, in id order."""
        out = []
        size = self.n_patches * self.patch_size
        scale = self.pixel_scale_arcsec / 3600.0
        for iy in range(self.n_tracts_dec):
            dec = self.dec0 + iy * self.tract_spacing
            for ix in range(self.n_tracts_ra):
                ra = self.ra0 + ix * self.tract_spacing / np.cos(np.deg2rad(dec))
                wcs = TanWcs(ra, dec, (size - 1) / 2.0, (size - 1) / 2.0, scale)
                out.append(
                    TractInfo(
                        iy * self.n_tracts_ra + ix, wcs, self.n_patches, self.n_patches, self.patch_size
                    )
                )
        return tuple(out)

    def to_dict(self) -> dict[str, Any]:
        """The skymap's defining parameters (JSON-able): the ``skyMap`` dataset's content."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SkyMap:
        """Inverse of `to_dict`; unknown keys are an error that lists the known ones."""
        unknown = set(data) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(
                f"unknown skymap parameters {sorted(unknown)}; known: {sorted(cls.__dataclass_fields__)}"
            )
        return cls(**data)

    def tract(self, tract_id: int) -> TractInfo:
        """Tract ``tract_id``; the error gives the valid range."""
        if not 0 <= tract_id < len(self.tracts):
            raise ValueError(f"skymap {self.name!r} has tracts 0-{len(self.tracts) - 1}, not {tract_id!r}")
        return self.tracts[tract_id]

    def patch(self, tract_id: int, patch_id: int) -> PatchInfo:
        """Patch ``patch_id`` of tract ``tract_id``."""
        return self.tract(tract_id).patch(patch_id)

    def find_patches(self, ra: float, dec: float) -> list[tuple[int, int]]:
        """``(tract, patch)`` pairs whose pixel grids contain the sky position (more than one near edges)."""
        found = []
        for tract in self.tracts:
            x, y = tract.wcs.sky_to_pixel(ra, dec)
            if -0.5 <= x < tract.width - 0.5 and -0.5 <= y < tract.height - 0.5:
                ix = int((x + 0.5) // tract.patch_size)
                iy = int((y + 0.5) // tract.patch_size)
                found.append((tract.id, iy * tract.n_patches_x + ix))
        return found


DEMO_SKYMAP = SkyMap()
"""The skymap the demo repository registers."""
