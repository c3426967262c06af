"""Compare a pipeline's source catalogue with the reference catalogue the simulator injected.

This is how the demo shows its science works: after a run, match the coadd (or
calexp) sources to the reference stars on the sky and summarise the astrometric
and photometric residuals. The tests use it; so does the tutorial.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from scipy.spatial import cKDTree

from .refcat import magnitudes


@dataclass(frozen=True)
class MatchSummary:
    """Residuals of a catalogue against the reference catalogue."""

    n_sources: int
    n_matched: int
    n_bright: int
    median_dmag: float
    robust_rms_dmag: float
    median_sep_arcsec: float

    def __str__(self) -> str:
        return (
            f"{self.n_matched}/{self.n_sources} sources match a reference star; the {self.n_bright} bright ones "
            f"have median Δmag {self.median_dmag:+.4f} (robust rms {self.robust_rms_dmag:.4f}) and median "
            f'separation {self.median_sep_arcsec:.3f}"'
        )


def match_to_reference(
    catalog: NDArray[np.void], refcat: NDArray[np.void], radius_arcsec: float = 1.0
) -> tuple[NDArray[np.bool_], NDArray[np.int64], NDArray[np.float64]]:
    """``(matched, ref_index, separation_arcsec)`` of each source's nearest reference star."""
    if len(catalog) == 0 or len(refcat) == 0:
        return np.zeros(len(catalog), bool), np.zeros(len(catalog), np.int64), np.full(len(catalog), np.inf)

    def unit_vectors(ra: NDArray[np.float64], dec: NDArray[np.float64]) -> NDArray[np.float64]:
        ra_r, dec_r = np.deg2rad(ra), np.deg2rad(dec)
        return np.column_stack([np.cos(dec_r) * np.cos(ra_r), np.cos(dec_r) * np.sin(ra_r), np.sin(dec_r)])

    chord, idx = cKDTree(unit_vectors(refcat["ra"], refcat["dec"])).query(
        unit_vectors(catalog["ra"], catalog["dec"])
    )
    sep = np.rad2deg(2 * np.arcsin(np.clip(chord / 2, 0, 1))) * 3600
    return np.asarray(sep < radius_arcsec), np.asarray(idx, dtype=np.int64), np.asarray(sep, dtype=np.float64)


def summarize(
    catalog: NDArray[np.void], refcat: NDArray[np.void], band: str, min_snr: float = 50.0
) -> MatchSummary:
    """Match ``catalog`` to ``refcat`` and summarise residuals of sources with S/N above ``min_snr``."""
    matched, idx, sep = match_to_reference(catalog, refcat)
    bright = matched & (catalog["snr"] > min_snr) if len(catalog) else matched
    dmag = (
        catalog["mag"][bright] - magnitudes(refcat, band)[idx[bright]] if bright.any() else np.array([np.nan])
    )
    med = float(np.median(dmag))
    return MatchSummary(
        n_sources=len(catalog),
        n_matched=int(matched.sum()),
        n_bright=int(bright.sum()),
        median_dmag=med,
        robust_rms_dmag=float(1.4826 * np.median(np.abs(dmag - med))),
        median_sep_arcsec=float(np.median(sep[bright])) if bright.any() else float("nan"),
    )
