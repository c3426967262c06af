"""Science checks of the demo algorithms on in-memory images: what they recover is what was injected."""

from dataclasses import replace

import numpy as np
import pytest
from demo_drp.calibrate import CalibrationError, calibrate
from demo_drp.camera import DETECTORS, get_detector
from demo_drp.coadd import assemble_coadd, detect_coadd
from demo_drp.exposure import Exposure
from demo_drp.isr import run_isr
from demo_drp.refcat import magnitudes
from demo_drp.simulate import (
    demo_reference_catalog,
    make_bias,
    make_flat,
    observing_plan,
    render_stars,
    simulate_raw,
    true_star_positions,
)
from demo_drp.skymap import DEMO_SKYMAP
from demo_drp.warp import COADD_ZERO_POINT, make_warp
from demo_drp.wcs import TanWcs
from scipy.spatial import cKDTree


@pytest.fixture(scope="module")
def refcat():
    return demo_reference_catalog(1)


@pytest.fixture(scope="module")
def plan():
    return observing_plan(6, seed=1)


@pytest.fixture(scope="module")
def calibrated(plan, refcat):
    """(visit, detector id) -> CalibrateResult for the whole 6-visit plan."""
    out = {}
    for visit in plan:
        for det in DETECTORS:
            post = run_isr(simulate_raw(visit, det, refcat), make_bias(det), make_flat(det))
            out[visit.id, det.id] = calibrate(post, refcat)
    return out


def _isolated(refcat, radius_arcsec=24.0):
    """Mask of reference stars with no other catalogue star within ``radius_arcsec``."""
    xyz = np.column_stack(
        [
            np.cos(np.deg2rad(refcat["dec"])) * np.cos(np.deg2rad(refcat["ra"])),
            np.cos(np.deg2rad(refcat["dec"])) * np.sin(np.deg2rad(refcat["ra"])),
            np.sin(np.deg2rad(refcat["dec"])),
        ]
    )
    counts = cKDTree(xyz).query_ball_point(xyz, r=np.deg2rad(radius_arcsec / 3600), return_length=True)
    return counts == 1


def test_rendered_star_holds_exactly_its_flux():
    image = render_stars((41, 41), np.array([20.3]), np.array([19.8]), np.array([5000.0]), sigma=1.3)
    assert image.sum() == pytest.approx(5000.0, rel=1e-6)
    ys, xs = np.mgrid[0:41, 0:41]
    assert (image * xs).sum() / image.sum() == pytest.approx(20.3, abs=1e-3)


def test_isr_recovers_sky_level_and_a_variance_plane_that_matches_the_noise(plan, refcat):
    visit = replace(plan[1], psf_sigma=1.0)
    det = get_detector(3)
    no_stars = refcat[:0]
    post = run_isr(simulate_raw(visit, det, no_stars), make_bias(det), make_flat(det))
    assert post.image.mean() == pytest.approx(visit.sky_level, rel=0.002)
    empirical = post.image.var()
    assert empirical == pytest.approx(float(post.variance.mean()), rel=0.03)
    # the bias pattern and the flat are gone: no column structure is left
    column_means = post.image.mean(axis=0)
    assert column_means.std() < 3 * np.sqrt(empirical / det.size)


def test_isr_refuses_calibration_frames_of_another_detector(plan, refcat):
    raw = simulate_raw(plan[0], get_detector(0), refcat)
    with pytest.raises(ValueError, match="bias is for detector 1"):
        run_isr(raw, make_bias(get_detector(1)), make_flat(get_detector(0)))


def test_calibrate_fits_zero_point_and_pointing_offset_to_their_true_values(plan, calibrated):
    for visit in plan:
        for det in DETECTORS:
            result = calibrated[visit.id, det.id]
            assert result.n_matches >= 10
            assert abs(result.zero_point - visit.zero_point) < max(3 * result.zero_point_err, 0.01)
            nominal = det.wcs(visit.boresight_ra, visit.boresight_dec)
            true = det.wcs(visit.true_boresight_ra, visit.true_boresight_dec)
            ra, dec = nominal.pixel_to_sky(det.size / 2, det.size / 2)
            tx, ty = true.sky_to_pixel(ra, dec)
            assert result.offset == pytest.approx((tx - det.size / 2, ty - det.size / 2), abs=0.02)


def test_calibrate_recovers_isolated_star_positions_and_fluxes(plan, refcat, calibrated):
    isolated_ids = set(refcat["id"][_isolated(refcat)])
    dx_all, pulls = [], []
    for visit in plan:
        for det in DETECTORS:
            src = calibrated[visit.id, det.id].src
            x, y, flux, ref_id = true_star_positions(visit, det, refcat)
            by_id = {int(r): i for i, r in enumerate(ref_id)}
            for s in src[(src["ref_id"] > 0) & (src["snr"] > 30)]:
                if int(s["ref_id"]) not in isolated_ids:
                    continue
                i = by_id[int(s["ref_id"])]
                dx_all.append(np.hypot(s["x"] - x[i], s["y"] - y[i]))
                pulls.append((s["flux"] - flux[i]) / np.hypot(s["flux_err"], 0.005 * flux[i]))
    assert len(dx_all) > 200
    # Centroids: rms error well under a tenth of a pixel for S/N > 30.
    assert np.sqrt(np.mean(np.square(dx_all))) < 0.08
    # Fluxes: unbiased, and scattered as their errors say.
    assert abs(np.median(pulls)) < 0.3
    assert 0.7 < np.std(pulls) < 1.4


def test_calibrated_source_catalogue_places_stars_at_their_reference_sky_positions(refcat, calibrated):
    src = calibrated[101, 2].src
    matched = src[src["ref_id"] > 0]
    ref = refcat[np.searchsorted(refcat["id"], matched["ref_id"])]
    sep_arcsec = np.hypot(
        (matched["ra"] - ref["ra"]) * np.cos(np.deg2rad(ref["dec"])), matched["dec"] - ref["dec"]
    )
    assert np.median(sep_arcsec) * 3600 < 0.15  # 0.075 pixel


def test_calibrate_without_reference_stars_fails_with_what_fell_short(plan, refcat):
    det = get_detector(0)
    post = run_isr(simulate_raw(plan[0], det, refcat), make_bias(det), make_flat(det))
    with pytest.raises(CalibrationError, match=r"visit 100 detector 0: only 0 of \d+ detections matched"):
        calibrate(post, refcat[:0])


def _noise_warp(rng, wcs, sigma, shape=(120, 120), visit=0):
    image = rng.normal(0.0, sigma, shape)
    return Exposure(
        image=image,
        wcs=wcs,
        variance=np.full(shape, sigma**2),
        planes={"coverage": np.ones(shape, dtype=np.float32)},
        metadata={"band": "r", "visit": visit},
    )


@pytest.mark.parametrize("n_inputs", [1, 4, 16])
def test_coadd_noise_falls_as_one_over_sqrt_n(n_inputs):
    rng = np.random.default_rng(n_inputs)
    wcs = TanWcs(150.0, 2.0, 60.0, 60.0, 2.0 / 3600)
    coadd = assemble_coadd(_noise_warp(rng, wcs, 10.0, visit=i) for i in range(n_inputs))
    assert coadd.image.std() == pytest.approx(10.0 / np.sqrt(n_inputs), rel=0.03)
    assert float(np.sqrt(coadd.variance.mean())) == pytest.approx(10.0 / np.sqrt(n_inputs), rel=1e-6)
    assert np.all(coadd.planes["n_inputs"] == n_inputs)


def test_coadd_weights_inputs_by_inverse_variance():
    rng = np.random.default_rng(5)
    wcs = TanWcs(150.0, 2.0, 60.0, 60.0, 2.0 / 3600)
    coadd = assemble_coadd([_noise_warp(rng, wcs, 10.0, visit=1), _noise_warp(rng, wcs, 20.0, visit=2)])
    optimal = 1.0 / np.sqrt(
        1 / 10.0**2 + 1 / 20.0**2
    )  # 8.94, better than either input or a plain mean (11.2)
    assert coadd.image.std() == pytest.approx(optimal, rel=0.03)


def test_coadd_refuses_warps_on_different_grids():
    rng = np.random.default_rng(0)
    a = _noise_warp(rng, TanWcs(150.0, 2.0, 60.0, 60.0, 2.0 / 3600), 1.0)
    b = _noise_warp(rng, TanWcs(150.1, 2.0, 60.0, 60.0, 2.0 / 3600), 1.0, visit=7)
    with pytest.raises(ValueError, match="visit 7 is on a different pixel grid"):
        assemble_coadd([a, b])


def _warps_of(plan, calibrated, patch, band):
    warps = []
    for visit in plan:
        if visit.band != band:
            continue
        calexps = [calibrated[visit.id, det.id].calexp for det in DETECTORS]
        warp = make_warp(calexps, patch.wcs, patch.width, patch.height)
        if warp.planes["coverage"].any():
            warps.append(warp)
    return warps


def test_warp_conserves_star_flux_on_the_common_zero_point(plan, refcat, calibrated):
    patch = DEMO_SKYMAP.patch(0, 9)
    warps = _warps_of(plan, calibrated, patch, "r")
    assert warps and warps[0].metadata["detectors"]
    coadd_of_one = assemble_coadd(warps[:1])
    cat = detect_coadd(coadd_of_one)
    x, y = patch.wcs.sky_to_pixel(refcat["ra"], refcat["dec"])
    dist, idx = cKDTree(np.column_stack([x, y])).query(np.column_stack([cat["x"], cat["y"]]))
    good = (dist < 0.5) & _isolated(refcat)[idx] & (cat["snr"] > 30)
    assert good.sum() >= 8
    dmag = cat["mag"][good] - magnitudes(refcat, "r")[idx[good]]
    assert abs(np.median(dmag)) < 0.01
    assert np.median(dist[good]) < 0.1


def test_coadd_photometry_and_astrometry_match_the_reference_catalogue(plan, refcat, calibrated):
    patch = DEMO_SKYMAP.patch(0, 10)
    warps = _warps_of(plan, calibrated, patch, "r")
    assert len(warps) == 2
    coadd = assemble_coadd(warps)
    assert coadd.metadata["zero_point"] == COADD_ZERO_POINT
    cat = detect_coadd(coadd)
    x, y = patch.wcs.sky_to_pixel(refcat["ra"], refcat["dec"])
    dist, idx = cKDTree(np.column_stack([x, y])).query(np.column_stack([cat["x"], cat["y"]]))
    matched = dist < 1.0
    assert matched.mean() > 0.9, "coadd detections that are not reference stars"
    good = matched & _isolated(refcat)[idx] & (cat["snr"] > 30)
    assert good.sum() >= 10
    pulls = (cat["mag"][good] - magnitudes(refcat, "r")[idx[good]]) / np.hypot(cat["mag_err"][good], 0.01)
    assert abs(np.median(pulls)) < 0.5
    assert np.std(pulls) < 1.5
    assert np.sqrt(np.mean(dist[good] ** 2)) < 0.1


def test_coadd_of_real_warps_is_less_noisy_than_each_warp_as_predicted(plan, calibrated):
    patch = DEMO_SKYMAP.patch(0, 10)
    warps = _warps_of(plan, calibrated, patch, "r")
    coadd = assemble_coadd(warps)
    both = (coadd.planes["n_inputs"] == len(warps)) & np.isfinite(coadd.image)
    # Sky pixels: far from every star in every input (sigma-clip away the sources).
    sky = both & (np.abs(coadd.image) < 4 * np.sqrt(coadd.variance))
    for warp in warps:
        sky &= np.abs(warp.image) < 4 * np.sqrt(warp.variance)
    predicted = np.sqrt(
        np.median(coadd.variance[sky]) / np.median([np.median(w.variance[sky]) for w in warps])
    )
    measured = coadd.image[sky].std() / np.mean([w.image[sky].std() for w in warps])
    assert predicted == pytest.approx(1 / np.sqrt(len(warps)), rel=0.15)
    assert measured == pytest.approx(predicted, rel=0.1)


def test_calibrate_finds_a_pointing_error_much_larger_than_the_match_radius(plan, refcat):
    det = get_detector(1)
    off_by_8px = 16.0 / 3600  # 8 pixels north-east; the match radius is 1.5 pixels
    visit = replace(
        plan[0],
        true_boresight_ra=plan[0].boresight_ra + off_by_8px / np.cos(np.deg2rad(plan[0].boresight_dec)),
        true_boresight_dec=plan[0].boresight_dec + off_by_8px,
    )
    post = run_isr(simulate_raw(visit, det, refcat), make_bias(det), make_flat(det))
    result = calibrate(post, refcat)
    # the sky moved +8 px in RA and Dec relative to the pointing, so stars land 8 px lower in x and y
    assert result.offset == pytest.approx((-8.0, -8.0), abs=0.05)
    assert result.n_matches >= 15


def test_detection_leaves_the_callers_coverage_mask_untouched():
    from demo_drp.measure import detect_sources

    image = np.zeros((40, 40))
    variance = np.ones((40, 40))
    variance[:5] = np.nan
    coverage = np.ones((40, 40), dtype=bool)
    detect_sources(image, variance, coverage=coverage)
    assert coverage.all()
