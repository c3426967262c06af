"""Tests of DemoCam's focal plane, the demo skymap and the observing plan's footprint."""

import numpy as np
import pytest
from demo_drp.camera import DETECTORS, GAP, PIXEL_SCALE_ARCSEC, get_detector
from demo_drp.simulate import observing_plan
from demo_drp.skymap import DEMO_SKYMAP, SkyMap


def test_detectors_do_not_overlap_and_are_separated_by_gaps():
    for a in DETECTORS:
        for b in DETECTORS:
            if a.id >= b.id:
                continue
            x_sep = max(a.x0, b.x0) - min(a.x0 + a.size, b.x0 + b.size)
            y_sep = max(a.y0, b.y0) - min(a.y0 + a.size, b.y0 + b.size)
            assert max(x_sep, y_sep) >= GAP, (a.name, b.name)


def test_detector_wcs_puts_the_boresight_at_the_focal_plane_origin():
    det = get_detector(4)
    wcs = det.wcs(150.0, 2.0)
    x, y = wcs.sky_to_pixel(150.0, 2.0)
    assert (x + det.x0, y + det.y0) == pytest.approx((0.0, 0.0), abs=1e-9)
    assert wcs.scale * 3600 == pytest.approx(PIXEL_SCALE_ARCSEC)


def test_unknown_detector_error_lists_the_valid_ids():
    with pytest.raises(ValueError, match=r"\[0, 1, 2, 3, 4, 5\]"):
        get_detector(9)


def test_patches_tile_their_tract_exactly_once():
    tract = DEMO_SKYMAP.tract(0)
    count = np.zeros((tract.height, tract.width), dtype=int)
    for patch in tract.patches:
        count[patch.y0 : patch.y0 + patch.height, patch.x0 : patch.x0 + patch.width] += 1
    assert np.all(count == 1)


def test_patch_wcs_agrees_with_its_tract_wcs():
    tract = DEMO_SKYMAP.tract(5)
    patch = tract.patch(6)
    np.testing.assert_allclose(
        patch.wcs.pixel_to_sky(10.0, 20.0),
        tract.wcs.pixel_to_sky(patch.x0 + 10.0, patch.y0 + 20.0),
        atol=1e-12,
    )


def test_neighbouring_tracts_overlap_so_edge_positions_are_in_two_tracts():
    t0, t1 = DEMO_SKYMAP.tract(0), DEMO_SKYMAP.tract(1)
    ra0_max = t0.sky_box()[1]
    ra1_min = t1.sky_box()[0]
    assert ra1_min < ra0_max
    found = DEMO_SKYMAP.find_patches((ra0_max + ra1_min) / 2, t0.center[1])
    assert {tract for tract, _ in found} == {0, 1}


def test_skymap_with_holes_is_refused_with_a_fix():
    with pytest.raises(ValueError, match="holes"):
        SkyMap(tract_spacing=1.0)


def test_invalid_patch_error_gives_the_valid_range():
    with pytest.raises(ValueError, match="patches 0-15"):
        DEMO_SKYMAP.patch(0, 16)


def _tracts_touched(visit):
    touched = set()
    partial = False
    t0 = DEMO_SKYMAP.tract(0)
    for det in DETECTORS:
        wcs = det.wcs(visit.boresight_ra, visit.boresight_dec)
        xs, ys = np.meshgrid([0, det.size - 1], [0, det.size - 1])
        ra, dec = wcs.pixel_to_sky(xs.ravel(), ys.ravel())
        for r, d in zip(ra, dec, strict=True):
            touched |= {tract for tract, _ in DEMO_SKYMAP.find_patches(r, d)}
        x, y = t0.wcs.sky_to_pixel(ra, dec)
        inside = (x > -0.5) & (x < t0.width - 0.5) & (y > -0.5) & (y < t0.height - 0.5)
        partial |= bool(inside.any() and not inside.all())
    return touched, partial


def test_observing_plan_covers_tract_zero_and_reaches_into_a_second_tract_for_some_visits():
    results = [_tracts_touched(v) for v in observing_plan(6, seed=1)]
    assert all(0 in touched for touched, _ in results)
    reaching = [touched for touched, _ in results if touched - {0}]
    assert 0 < len(reaching) < len(results)
    assert any(partial for _, partial in results), "no detector straddles tract 0's edge"


def test_observing_plan_is_a_pure_function_of_the_seed_and_cycles_bands():
    a, b = observing_plan(6, seed=3), observing_plan(6, seed=3)
    assert a == b
    assert observing_plan(6, seed=4) != a
    assert [v.band for v in a] == ["g", "r", "i", "g", "r", "i"]
    assert [v.id for v in a] == list(range(100, 106))


def test_observing_plan_refuses_zero_exposures():
    with pytest.raises(ValueError, match="at least one exposure"):
        observing_plan(0)
