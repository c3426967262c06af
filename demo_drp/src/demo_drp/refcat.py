"""The deterministic reference catalogue: the stars the simulator injects and calibrate matches.

Stars are spread uniformly over the demo field with a realistic rise of number
counts towards faint magnitudes and g-r / r-i colours of main-sequence stars. The
same seed always gives the same catalogue, so tests can compare what the pipeline
recovers with what was injected.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

BANDS = ("g", "r", "i")

REFCAT_DTYPE = np.dtype(
    [("id", "i8"), ("ra", "f8"), ("dec", "f8"), ("g_mag", "f8"), ("r_mag", "f8"), ("i_mag", "f8")]
)


def make_reference_catalog(
    ra_range: tuple[float, float],
    dec_range: tuple[float, float],
    density: float = 3000.0,
    mag_range: tuple[float, float] = (16.0, 22.0),
    seed: int = 1,
) -> NDArray[np.void]:
    """Stars uniformly distributed in a RA/Dec box.

    Parameters
    ----------
    ra_range, dec_range : `tuple` [`float`, `float`]
        The box, degrees.
    density : `float`
        Stars per square degree (on the sky, i.e. with the cos(dec) factor).
    mag_range : `tuple` [`float`, `float`]
        Range of r magnitudes; counts rise as 10^(0.3 m), as for field stars.
    seed : `int`
        Random seed; the catalogue is a pure function of the arguments.

    Returns
    -------
    catalog : `numpy.ndarray`
        Structured array with `REFCAT_DTYPE`, sorted by id.
    """
    (ra_lo, ra_hi), (dec_lo, dec_hi) = ra_range, dec_range
    if not (ra_lo < ra_hi and dec_lo < dec_hi):
        raise ValueError(f"empty reference-catalogue box: ra {ra_range}, dec {dec_range}")
    rng = np.random.default_rng(seed)
    sin_lo, sin_hi = np.sin(np.deg2rad(dec_lo)), np.sin(np.deg2rad(dec_hi))
    area = np.rad2deg(1.0) ** 2 * np.deg2rad(ra_hi - ra_lo) * (sin_hi - sin_lo)
    n = int(rng.poisson(density * area))
    ra = rng.uniform(ra_lo, ra_hi, n)
    dec = np.rad2deg(np.arcsin(rng.uniform(sin_lo, sin_hi, n)))  # uniform on the sphere
    # Inverse-CDF sampling of N(<m) ∝ 10^(0.3 m).
    m_lo, m_hi = mag_range
    u = rng.uniform(0.0, 1.0, n)
    r_mag = np.log10(10 ** (0.3 * m_lo) + u * (10 ** (0.3 * m_hi) - 10 ** (0.3 * m_lo))) / 0.3
    g_r = rng.uniform(0.2, 1.4, n)
    r_i = 0.45 * g_r + rng.normal(0.0, 0.05, n)
    cat = np.zeros(n, dtype=REFCAT_DTYPE)
    cat["id"] = np.arange(1, n + 1)
    cat["ra"], cat["dec"] = ra, dec
    cat["r_mag"] = r_mag
    cat["g_mag"] = r_mag + g_r
    cat["i_mag"] = r_mag - r_i
    return cat


def magnitudes(catalog: NDArray[np.void], band: str) -> NDArray[np.float64]:
    """The column of ``band`` magnitudes; the error lists the bands the catalogue has."""
    column = f"{band}_mag"
    if catalog.dtype.names is None or column not in catalog.dtype.names:
        raise ValueError(
            f"reference catalogue has no {band!r} magnitudes; it has columns {catalog.dtype.names}"
        )
    return np.asarray(catalog[column], dtype=float)
