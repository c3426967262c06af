"""Tests of the demo's tangent-plane WCS."""

import numpy as np
import pytest
from demo_drp.wcs import TanWcs
from hypothesis import given, settings
from hypothesis import strategies as st

WCS = TanWcs(crval_ra=150.0, crval_dec=2.0, crpix_x=99.5, crpix_y=99.5, scale=2.0 / 3600)


def _separation_deg(ra1, dec1, ra2, dec2):
    ra1, dec1, ra2, dec2 = map(np.deg2rad, (ra1, dec1, ra2, dec2))
    cos = np.sin(dec1) * np.sin(dec2) + np.cos(dec1) * np.cos(dec2) * np.cos(ra1 - ra2)
    return np.rad2deg(np.arccos(np.clip(cos, -1, 1)))


def test_pixel_to_sky_and_back_round_trips_to_a_micro_pixel():
    x, y = np.meshgrid(np.linspace(-500, 700, 13), np.linspace(-300, 900, 11))
    ra, dec = WCS.pixel_to_sky(x, y)
    x2, y2 = WCS.sky_to_pixel(ra, dec)
    assert np.max(np.abs(x2 - x)) < 1e-6
    assert np.max(np.abs(y2 - y)) < 1e-6


def test_tangent_point_maps_to_crval_and_neighbour_pixels_are_one_scale_apart():
    ra, dec = WCS.pixel_to_sky(99.5, 99.5)
    assert ra == pytest.approx(150.0) and dec == pytest.approx(2.0)
    ra1, dec1 = WCS.pixel_to_sky(100.5, 99.5)
    assert _separation_deg(ra, dec, ra1, dec1) == pytest.approx(2.0 / 3600, rel=1e-6)
    # x grows with right ascension, y with declination
    assert ra1 > ra
    assert WCS.pixel_to_sky(99.5, 100.5)[1] > dec


def test_with_pixel_offset_moves_every_sky_position_by_the_offset():
    ra, dec = WCS.pixel_to_sky(np.array([0.0, 150.0]), np.array([10.0, 190.0]))
    x0, y0 = WCS.sky_to_pixel(ra, dec)
    x1, y1 = WCS.with_pixel_offset(1.25, -0.5).sky_to_pixel(ra, dec)
    np.testing.assert_allclose(x1 - x0, 1.25, atol=1e-9)
    np.testing.assert_allclose(y1 - y0, -0.5, atol=1e-9)


def test_shifted_origin_gives_sub_image_pixels_the_parents_sky_positions():
    sub = WCS.shifted_origin(40, 60)
    np.testing.assert_allclose(sub.pixel_to_sky(3.0, 7.0), WCS.pixel_to_sky(43.0, 67.0), atol=1e-12)


def test_sky_box_encloses_all_pixel_centres():
    ra_min, ra_max, dec_min, dec_max = WCS.sky_box(200, 150)
    x, y = np.meshgrid(np.arange(200), np.arange(150))
    ra, dec = WCS.pixel_to_sky(x, y)
    assert ra_min <= ra.min() and ra.max() <= ra_max
    assert dec_min <= dec.min() and dec.max() <= dec_max
    # and is tight: within a pixel of the image
    assert ra_max - ra.max() < 2 * WCS.scale


def test_positions_behind_the_tangent_plane_project_to_nan():
    x, y = WCS.sky_to_pixel(330.0, -2.0)
    assert np.isnan(x) and np.isnan(y)


def test_dict_round_trip_and_missing_key_error_names_the_key():
    assert TanWcs.from_dict(WCS.to_dict()) == WCS
    broken = WCS.to_dict()
    del broken["scale"]
    with pytest.raises(ValueError, match="'scale'"):
        TanWcs.from_dict(broken)


def test_non_positive_scale_is_refused():
    with pytest.raises(ValueError, match="pixel scale must be positive"):
        TanWcs(150.0, 2.0, 0.0, 0.0, 0.0)


@settings(max_examples=60, deadline=None)
@given(
    ra=st.floats(0.0, 359.9),
    dec=st.floats(-85.0, 85.0),
    x=st.floats(-3000.0, 3000.0),
    y=st.floats(-3000.0, 3000.0),
)
def test_round_trip_holds_anywhere_on_the_sky_including_across_ra_zero(ra, dec, x, y):
    wcs = TanWcs(ra, dec, 0.0, 0.0, 2.0 / 3600)
    sky_ra, sky_dec = wcs.pixel_to_sky(x, y)
    assert 0.0 <= sky_ra < 360.0
    x2, y2 = wcs.sky_to_pixel(sky_ra, sky_dec)
    assert abs(x2 - x) < 1e-5 and abs(y2 - y) < 1e-5
