"""DemoCam: a small camera whose focal plane is a 3 x 2 mosaic of 200 x 200 pixel detectors.

Small detectors keep the demo fast (a whole visit is 240,000 pixels) while still
having what makes survey processing interesting: several detectors per exposure,
chip gaps, per-detector electronics (bias level, read noise, gain) and a focal
plane that, once dithered, lands on more than one sky patch.
"""

from __future__ import annotations

from dataclasses import dataclass

from .wcs import TanWcs

INSTRUMENT = "DemoCam"
PIXEL_SCALE_ARCSEC = 2.0
"""Pixel scale of the detectors (and of the demo skymap), arcseconds per pixel."""
DETECTOR_SIZE = 200
"""Detectors are square, this many pixels on a side."""
GAP = 10
"""Gap between neighbouring detectors on the focal plane, pixels."""


@dataclass(frozen=True)
class PhysicalFilter:
    """A filter in the camera's filter wheel and the abstract band it measures."""

    name: str
    band: str


FILTERS: tuple[PhysicalFilter, ...] = (
    PhysicalFilter("g_demo", "g"),
    PhysicalFilter("r_demo", "r"),
    PhysicalFilter("i_demo", "i"),
)
"""The physical filters, one per band."""


def filter_for_band(band: str) -> PhysicalFilter:
    """The physical filter of ``band``; the error lists the bands DemoCam has."""
    for f in FILTERS:
        if f.band == band:
            return f
    raise ValueError(f"DemoCam has no filter for band {band!r}; bands are {[f.band for f in FILTERS]}")


@dataclass(frozen=True)
class Detector:
    """One detector: where it sits on the focal plane and how its electronics behave.

    Parameters
    ----------
    id : `int`
        The detector number, the ``detector`` unit's key.
    name : `str`
        A readable name (``"R0C1"``: row, column).
    x0, y0 : `float`
        Focal-plane pixel position of the detector's pixel (0, 0), measured from
        the boresight (the optical axis).
    bias_level : `float`
        Mean bias (ADU) that ISR must subtract.
    read_noise : `float`
        Read noise, electrons.
    gain : `float`
        Electrons per ADU.
    """

    id: int
    name: str
    x0: float
    y0: float
    bias_level: float
    read_noise: float
    gain: float = 1.0
    size: int = DETECTOR_SIZE

    def wcs(self, boresight_ra: float, boresight_dec: float) -> TanWcs:
        """The detector's WCS when the boresight points at ``(boresight_ra, boresight_dec)``.

        The exposure is one tangent-plane projection about the boresight; the
        detector sees it through its own pixel origin.
        """
        return TanWcs(
            crval_ra=boresight_ra,
            crval_dec=boresight_dec,
            crpix_x=-self.x0,
            crpix_y=-self.y0,
            scale=PIXEL_SCALE_ARCSEC / 3600.0,
        )


def _make_detectors() -> tuple[Detector, ...]:
    n_cols, n_rows = 3, 2
    pitch = DETECTOR_SIZE + GAP
    width, height = n_cols * pitch - GAP, n_rows * pitch - GAP
    detectors = []
    for row in range(n_rows):
        for col in range(n_cols):
            det_id = row * n_cols + col
            detectors.append(
                Detector(
                    id=det_id,
                    name=f"R{row}C{col}",
                    x0=col * pitch - width / 2.0,
                    y0=row * pitch - height / 2.0,
                    bias_level=1000.0 + 37.0 * det_id,
                    read_noise=5.0 + 0.5 * det_id,
                )
            )
    return tuple(detectors)


DETECTORS: tuple[Detector, ...] = _make_detectors()
"""The six detectors of DemoCam, ids 0-5 in row-major order from the south-west corner."""


def get_detector(detector_id: int) -> Detector:
    """The detector with id ``detector_id``; the error lists the valid ids."""
    for det in DETECTORS:
        if det.id == detector_id:
            return det
    raise ValueError(f"DemoCam has no detector {detector_id!r}; detectors are {[d.id for d in DETECTORS]}")
