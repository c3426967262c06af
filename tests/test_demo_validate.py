"""The catalogue-versus-reference summary that tests and the tutorial use."""

import numpy as np
from demo_drp.coadd import COADD_SRC_DTYPE
from demo_drp.simulate import demo_reference_catalog
from demo_drp.validate import summarize


def _catalog_from(refcat, dmag, shift_arcsec=0.0, n=100):
    cat = np.zeros(n, dtype=COADD_SRC_DTYPE)
    cat["ra"] = refcat["ra"][:n] + shift_arcsec / 3600 / np.cos(np.deg2rad(refcat["dec"][:n]))
    cat["dec"] = refcat["dec"][:n]
    cat["mag"] = refcat["r_mag"][:n] + dmag
    cat["snr"] = 100.0
    return cat


def test_perfect_catalogue_has_zero_residuals():
    refcat = demo_reference_catalog(1)
    summary = summarize(_catalog_from(refcat, 0.0), refcat, "r")
    assert summary.n_matched == summary.n_bright == 100
    assert summary.median_dmag == 0.0 and summary.median_sep_arcsec < 1e-6


def test_offsets_in_magnitude_and_position_are_reported():
    refcat = demo_reference_catalog(1)
    summary = summarize(_catalog_from(refcat, 0.05, shift_arcsec=0.3), refcat, "r")
    assert summary.median_dmag == np.float64(0.05) or abs(summary.median_dmag - 0.05) < 1e-9
    assert abs(summary.median_sep_arcsec - 0.3) < 0.01
    assert "+0.0500" in str(summary)


def test_sources_far_from_any_reference_star_do_not_match():
    refcat = demo_reference_catalog(1)
    summary = summarize(_catalog_from(refcat, 0.0, shift_arcsec=5.0), refcat, "r")
    assert summary.n_matched < 10
