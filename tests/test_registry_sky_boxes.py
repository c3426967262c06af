"""Sky boxes that wrap through RA 0/360, and boxes the registry refuses, on both backends.

Convention (docs/repository.md, "Sky boxes"): RA in [0, 360], Dec in [-90, 90],
``dec_min <= dec_max``; a box with ``ra_min > ra_max`` wraps through RA 0 and covers
``[ra_min, 360]`` and ``[0, ra_max]``. The overlap relation computed in SQL is compared
with `reference_overlaps`, a second implementation in plain Python that cuts each box into
ordinary intervals and intersects those.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import pytest
import sqlalchemy as sa
from conftest_repo import db_url, module_db_url, postgres_schema_url  # noqa: F401
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from supertask.repo.registry import Registry

Box = tuple[float, float, float, float]
"""``(ra_min, ra_max, dec_min, dec_max)``."""

OVERLAP = "visit_detector_patch_overlap"
N_DETECTORS = 4


# ---------------------------------------------------------------------- the reference


def ra_pieces(ra_min: float, ra_max: float) -> list[tuple[float, float]]:
    """The ordinary closed intervals a box's RA range covers (two when it wraps)."""
    if ra_min <= ra_max:
        return [(ra_min, ra_max)]
    return [(ra_min, 360.0), (0.0, ra_max)]


def boxes_overlap(a: Box, b: Box) -> bool:
    """Reference rule: closed intervals intersect when the larger start is <= the smaller end."""
    if max(a[2], b[2]) > min(a[3], b[3]):
        return False
    return any(
        max(lo1, lo2) <= min(hi1, hi2)
        for lo1, hi1 in ra_pieces(a[0], a[1])
        for lo2, hi2 in ra_pieces(b[0], b[1])
    )


def reference_overlaps(regions: dict[tuple[int, int], Box], patches: dict[int, Box]) -> set[tuple]:
    """``(visit, detector, patch)`` for every intersecting pair, by brute force."""
    return {
        (visit, detector, patch)
        for (visit, detector), rbox in regions.items()
        for patch, pbox in patches.items()
        if boxes_overlap(rbox, pbox)
    }


def test_reference_rule_itself():
    """The second implementation agrees with hand-worked cases before it judges the SQL."""
    assert boxes_overlap((359.8, 0.2, 0, 1), (359.0, 359.9, 0, 1))
    assert boxes_overlap((359.8, 0.2, 0, 1), (0.1, 1.0, 0, 1))
    assert boxes_overlap((359.8, 0.2, 0, 1), (0.2, 1.0, 0, 1))  # touching edge
    assert not boxes_overlap((359.8, 0.2, 0, 1), (0.3, 359.7, 0, 1))
    assert boxes_overlap((300.0, 10.0, 0, 1), (20.0, 5.0, 0, 1))  # both contain RA 0
    assert not boxes_overlap((300.0, 10.0, 0, 1), (20.0, 5.0, 2, 3))  # but not in Dec


# ---------------------------------------------------------------------- helpers


def make_registry(url: str, n_visits: int = 1) -> Registry:
    """A registry with one instrument (``N_DETECTORS`` detectors), visits, a skymap and tract 0."""
    reg = Registry.create(url)
    reg.insertUnits("instrument", [{"instrument": "Cam", "detector_max": N_DETECTORS}])
    reg.insertUnits("band", [{"band": "r"}])
    reg.insertUnits("physical_filter", [{"instrument": "Cam", "physical_filter": "R", "band": "r"}])
    reg.insertUnits("detector", [{"instrument": "Cam", "detector": d} for d in range(N_DETECTORS)])
    reg.insertUnits(
        "visit", [{"instrument": "Cam", "visit": v, "physical_filter": "R"} for v in range(n_visits)]
    )
    reg.insertUnits("skymap", [{"skymap": "sky"}])
    reg.insertUnits("tract", [{"skymap": "sky", "tract": 0}])  # a tract without a box is fine
    return reg


def box_fields(box: Box) -> dict[str, float]:
    return dict(zip(("ra_min", "ra_max", "dec_min", "dec_max"), box, strict=True))


def region_rows(regions: dict[tuple[int, int], Box]) -> list[dict]:
    return [
        {"instrument": "Cam", "visit": v, "detector": d, **box_fields(box)} for (v, d), box in regions.items()
    ]


def patch_rows(patches: dict[int, Box]) -> list[dict]:
    return [{"skymap": "sky", "tract": 0, "patch": p, **box_fields(box)} for p, box in patches.items()]


def insert(reg: Registry, regions: dict, patches: dict, order: str) -> None:
    """Insert both sides, ``"regions_first"`` or ``"patches_first"``."""
    steps = [("visit_detector_region", region_rows(regions)), ("patch", patch_rows(patches))]
    if order == "patches_first":
        steps.reverse()
    for name, rows in steps:
        reg.insertUnits(name, rows)


def stored_overlaps(reg: Registry) -> set[tuple[int, int, int]]:
    table = reg.schema.elements[OVERLAP]
    with reg.engine.connect() as conn:
        return {tuple(r) for r in conn.execute(sa.select(table.c.visit, table.c.detector, table.c.patch))}


ORDERS = ["regions_first", "patches_first"]


@pytest.fixture
def registry(db_url):  # noqa: F811
    reg = make_registry(db_url, n_visits=3)
    yield reg
    reg.close()


# ---------------------------------------------------------------------- wrapping boxes


@pytest.mark.parametrize("order", ORDERS)
def test_wrapping_detector_overlaps_patches_on_both_sides_of_ra_zero(registry, order):
    regions = {(0, 0): (359.8, 0.2, -0.1, 0.1)}
    patches = {
        1: (359.0, 359.9, -1.0, 1.0),  # west of RA 0
        2: (0.1, 1.0, -1.0, 1.0),  # east of RA 0
        3: (0.2, 1.0, 0.1, 1.0),  # touches at the corner (ra_max, dec_max)
        4: (359.0, 359.8, -1.0, -0.1),  # touches at the other corner
        5: (0.3, 1.0, -1.0, 1.0),  # east, beyond
        6: (359.0, 359.7, -1.0, 1.0),  # west, beyond
        7: (180.0, 181.0, -1.0, 1.0),  # inside [0.2, 359.8]: what a non-wrapping reading would cover
        8: (0.0, 360.0, 0.2, 1.0),  # whole RA circle, Dec beyond
    }
    insert(registry, regions, patches, order)
    assert stored_overlaps(registry) == {(0, 0, 1), (0, 0, 2), (0, 0, 3), (0, 0, 4)}
    # ... and the planner's query sees them through the relation.
    rows = registry.queryDataIds(["visit", "detector", "patch"])
    assert sorted(d["patch"] for d in rows) == [1, 2, 3, 4]


@pytest.mark.parametrize("order", ORDERS)
def test_wrapping_patch_gathers_detectors_from_both_sides(registry, order):
    patches = {0: (359.5, 0.5, -1.0, 1.0)}
    regions = {
        (0, 0): (359.6, 359.7, 0.0, 0.1),  # inside, west
        (0, 1): (0.1, 0.2, 0.0, 0.1),  # inside, east
        (0, 2): (0.5, 0.6, 0.0, 0.1),  # touches the east edge
        (0, 3): (359.4, 359.5, 0.0, 0.1),  # touches the west edge
        (1, 0): (0.6, 0.7, 0.0, 0.1),  # east, beyond
        (1, 1): (359.0, 359.4, 0.0, 0.1),  # west, beyond
        (1, 2): (100.0, 101.0, 0.0, 0.1),  # far away
        (1, 3): (0.0, 360.0, 0.0, 0.1),  # a strip all around the sky
    }
    insert(registry, regions, patches, order)
    assert stored_overlaps(registry) == {(0, 0, 0), (0, 1, 0), (0, 2, 0), (0, 3, 0), (1, 3, 0)}


@pytest.mark.parametrize("order", ORDERS)
def test_boxes_that_both_wrap_overlap_at_ra_zero(registry, order):
    regions = {
        (0, 0): (359.9, 0.1, 0.0, 1.0),
        (0, 1): (300.0, 10.0, 0.0, 1.0),  # neither end of one lies inside the other ...
        (0, 2): (359.9, 0.1, 5.0, 6.0),  # wraps too, but another Dec
    }
    patches = {
        0: (358.0, 2.0, 0.0, 1.0),
        1: (20.0, 5.0, 0.5, 2.0),  # ... yet both contain RA 0
    }
    insert(registry, regions, patches, order)
    assert stored_overlaps(registry) == {(0, 0, 0), (0, 0, 1), (0, 1, 0), (0, 1, 1)}


@pytest.mark.parametrize("order", ORDERS)
def test_boxes_near_ra_zero_that_do_not_meet_stay_apart(registry, order):
    regions = {
        (0, 0): (359.8, 0.2, 0.0, 1.0),  # wraps
        (0, 1): (0.0, 0.1, 0.0, 1.0),  # starts at 0
        (0, 2): (359.9, 360.0, 0.0, 1.0),  # ends at 360
        (0, 3): (359.8, 0.2, 1.5, 2.0),  # wraps, Dec apart from everything
    }
    patches = {
        0: (0.21, 1.0, 0.0, 1.0),
        1: (359.0, 359.79, 0.0, 1.0),
        2: (0.15, 359.85, 0.0, 1.0),  # the wide non-wrapping complement of a box around 0
    }
    insert(registry, regions, patches, order)
    # (0, 0) meets patch 2 on [359.8, 359.85] and [0.15, 0.2]; nothing else meets.
    assert stored_overlaps(registry) == {(0, 0, 2)}
    assert stored_overlaps(registry) == reference_overlaps(regions, patches)


def test_regions_inserted_in_two_batches_around_the_patches(registry):
    regions_a = {(0, d): ((359.0 + 0.4 * d) % 360, (359.3 + 0.4 * d) % 360, 0.0, 1.0) for d in range(4)}
    regions_b = {(1, d): ((359.9 + 0.1 * d) % 360, (0.05 + 0.1 * d) % 360, 0.0, 1.0) for d in range(4)}
    patches = {0: (359.5, 0.0, 0.0, 1.0), 1: (0.0, 0.5, 0.0, 1.0), 2: (0.5, 359.0, 0.0, 1.0)}
    registry.insertUnits("visit_detector_region", region_rows(regions_a))
    registry.insertUnits("patch", patch_rows(patches))
    registry.insertUnits("visit_detector_region", region_rows(regions_b))
    assert stored_overlaps(registry) == reference_overlaps({**regions_a, **regions_b}, patches)


def test_many_rows_take_the_bulk_paths_and_agree_with_the_reference(db_url):  # noqa: F811
    """More rows than one IN chunk (500) and than PostgreSQL's COPY threshold (1000)."""
    reg = make_registry(db_url, n_visits=600)
    regions = {}
    for v in range(600):  # 30 groups of 20 visits around the sky; group 0 dithers across RA 0
        start = (v // 20) * 12.0 - 1.0 + (v % 20) * 0.1
        for d in range(N_DETECTORS):
            lo = (start + 0.3 * d) % 360.0
            regions[(v, d)] = (lo, (lo + 0.35) % 360.0, -1.0 + 0.5 * d, -0.4 + 0.5 * d)
    patches = {p: ((p * 4.0 - 1.0) % 360.0, (p * 4.0 + 3.0) % 360.0, -1.0, 1.0) for p in range(90)}
    patches[90] = (350.0, 10.0, -2.0, 2.0)
    half = {k: b for i, (k, b) in enumerate(regions.items()) if i % 2 == 0}
    rest = {k: b for k, b in regions.items() if k not in half}
    reg.insertUnits("visit_detector_region", region_rows(half))
    reg.insertUnits("patch", patch_rows(patches))
    reg.insertUnits("visit_detector_region", region_rows(rest))
    expected = reference_overlaps(regions, patches)
    assert any(regions[v, d][0] > regions[v, d][1] for v, d, _ in expected)
    assert stored_overlaps(reg) == expected
    reg.close()


# ---------------------------------------------------------------------- the SQL rule vs the reference

GRID = st.integers(0, 72).map(lambda i: i * 5.0)  # hits 0, 360, shared edges and wraps often
RA = st.one_of(GRID, st.floats(0.0, 360.0, allow_nan=False))
DEC = st.one_of(st.integers(-18, 18).map(lambda i: i * 5.0), st.floats(-90.0, 90.0, allow_nan=False))


@st.composite
def boxes(draw) -> Box:
    if draw(st.booleans()):
        ra_min, ra_max = draw(RA), draw(RA)  # independent ends: half of these wrap
    else:  # a small box that may cross RA 0
        ra_min = draw(RA)
        width = draw(st.one_of(st.sampled_from([0.0, 1.0, 5.0, 10.0]), st.floats(0.0, 30.0)))
        end = ra_min + width
        ra_max = end if end <= 360.0 else end - 360.0
    dec_a, dec_b = draw(DEC), draw(DEC)
    return (ra_min, ra_max, min(dec_a, dec_b), max(dec_a, dec_b))


@pytest.fixture(scope="module")
def property_registry(module_db_url):  # noqa: F811
    reg = make_registry(module_db_url, n_visits=3)
    yield reg
    reg.close()


def _clear(reg: Registry) -> None:
    with reg.transaction() as conn:
        for name in (OVERLAP, "visit_detector_region", "patch"):
            conn.execute(sa.delete(reg.schema.elements[name]))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    region_boxes=st.lists(boxes(), min_size=1, max_size=12),
    patch_boxes=st.lists(boxes(), min_size=1, max_size=8),
    split=st.integers(0, 12),
    order=st.permutations(["regions_a", "patches", "regions_b"]),
)
def test_sql_overlaps_match_the_python_reference(property_registry, region_boxes, patch_boxes, split, order):
    reg = property_registry
    _clear(reg)
    try:
        regions = {(i // N_DETECTORS, i % N_DETECTORS): box for i, box in enumerate(region_boxes)}
        patches = dict(enumerate(patch_boxes))
        items = list(regions.items())
        batches = {
            "regions_a": ("visit_detector_region", region_rows(dict(items[:split]))),
            "regions_b": ("visit_detector_region", region_rows(dict(items[split:]))),
            "patches": ("patch", patch_rows(patches)),
        }
        for step in order:
            name, rows = batches[step]
            reg.insertUnits(name, rows)
        assert stored_overlaps(reg) == reference_overlaps(regions, patches)
    finally:
        _clear(reg)


# ---------------------------------------------------------------------- validation

GOOD_REGIONS = {(0, 0): (10.0, 11.0, 0.0, 1.0), (0, 1): (359.5, 0.5, 0.0, 1.0)}
GOOD_PATCHES = {0: (0.0, 20.0, -1.0, 2.0)}

BAD_BOXES = [
    pytest.param(
        (-0.2, 0.2, 0.0, 1.0),
        r"ra_min = -0\.2 is outside \[0, 360\]; RA must be in \[0, 360\]: normalise with ra % 360; "
        r"a box crossing RA 0 is written with ra_min > ra_max",
        id="negative-ra",
    ),
    pytest.param(
        (359.8, 360.2, 0.0, 1.0), r"ra_max = 360\.2 is outside \[0, 360\].*ra % 360", id="ra-past-360"
    ),
    pytest.param(
        (1.0, 2.0, -90.5, 1.0), r"dec_min = -90\.5 is outside \[-90, 90\].*clamp", id="dec-below-pole"
    ),
    pytest.param((1.0, 2.0, 0.0, 91.0), r"dec_max = 91\.0 is outside \[-90, 90\]", id="dec-past-pole"),
    pytest.param(
        (1.0, 2.0, 1.0, 0.0),
        r"dec_min = 1\.0 is greater than dec_max = 0\.0: give the smaller Dec as dec_min",
        id="dec-upside-down",
    ),
    pytest.param((math.nan, 2.0, 0.0, 1.0), r"ra_min is NaN", id="nan-ra_min"),
    pytest.param((1.0, math.nan, 0.0, 1.0), r"ra_max is NaN", id="nan-ra_max"),
    pytest.param((1.0, 2.0, math.nan, 1.0), r"dec_min is NaN", id="nan-dec_min"),
    pytest.param((1.0, 2.0, 0.0, math.nan), r"dec_max is NaN", id="nan-dec_max"),
    pytest.param((math.inf, 2.0, 0.0, 1.0), r"ra_min = inf is outside \[0, 360\]", id="infinite-ra"),
    pytest.param((1.0, 2.0, None, 1.0), r"sky box is partial.*\['dec_min'\] missing", id="partial"),
    pytest.param(("1.0", 2.0, 0.0, 1.0), r"ra_min = '1\.0' is not a number", id="string"),
]


def assert_nothing_written(reg: Registry, before: dict[str, int]) -> None:
    assert {name: reg.countUnitRows(name) for name in before} == before


def counts(reg: Registry) -> dict[str, int]:
    return {name: reg.countUnitRows(name) for name in ("visit_detector_region", "patch", "tract", OVERLAP)}


@pytest.mark.parametrize(("box", "message"), BAD_BOXES)
def test_bad_region_box_is_refused_and_nothing_is_written(registry, box, message):
    registry.insertUnits("patch", patch_rows(GOOD_PATCHES))
    before = counts(registry)
    rows = region_rows({**GOOD_REGIONS, (2, 3): box})  # the bad row comes last
    with pytest.raises(ValueError, match=message) as info:
        registry.insertUnits("visit_detector_region", rows)
    text = str(info.value)
    assert text.startswith("visit_detector_region row {'detector': 3, 'instrument': 'Cam', 'visit': 2}: ")
    assert "nothing was inserted" in text
    assert_nothing_written(registry, before)


@pytest.mark.parametrize(("box", "message"), BAD_BOXES)
def test_bad_patch_box_is_refused_and_nothing_is_written(registry, box, message):
    registry.insertUnits("visit_detector_region", region_rows(GOOD_REGIONS))
    before = counts(registry)
    rows = patch_rows({5: box, **GOOD_PATCHES})  # the bad row comes first
    with pytest.raises(ValueError, match=message) as info:
        registry.insertUnits("patch", rows)
    assert str(info.value).startswith("patch row {'skymap': 'sky', 'tract': 0, 'patch': 5}: ")
    assert_nothing_written(registry, before)


@pytest.mark.parametrize(("box", "message"), BAD_BOXES[:5])
def test_bad_tract_box_is_refused(registry, box, message):
    before = counts(registry)
    with pytest.raises(ValueError, match=message) as info:
        registry.insertUnits("tract", [{"skymap": "sky", "tract": 9, **box_fields(box)}])
    assert str(info.value).startswith("tract row {'skymap': 'sky', 'tract': 9}: ")
    assert_nothing_written(registry, before)


def test_the_message_counts_the_other_bad_rows(registry):
    rows = region_rows(GOOD_REGIONS | {(1, d): (-1.0 - d, 1.0, 0.0, 1.0) for d in range(3)})
    with pytest.raises(ValueError, match=r"'visit': 1\}: ra_min = -1\.0 .*2 more of the 5 rows are invalid"):
        registry.insertUnits("visit_detector_region", rows)
    assert registry.countUnitRows("visit_detector_region") == 0


def test_a_generator_of_rows_with_a_bad_one_late_writes_nothing(registry):
    def rows() -> Iterable[dict]:
        for v in range(3):
            for d in range(N_DETECTORS):
                bad = (v, d) == (2, 3)
                yield {
                    "instrument": "Cam",
                    "visit": v,
                    "detector": d,
                    **box_fields((1.0, 2.0, 0.0, 95.0 if bad else 1.0)),
                }

    with pytest.raises(
        ValueError, match=r"'detector': 3, 'instrument': 'Cam', 'visit': 2\}: dec_max = 95\.0"
    ):
        registry.insertUnits("visit_detector_region", rows())
    assert registry.countUnitRows("visit_detector_region") == 0


@pytest.mark.parametrize(
    "box",
    [
        (0.0, 360.0, -90.0, 90.0),  # the whole sky
        (360.0, 0.0, 0.0, 0.0),  # wraps, degenerate
        (0.0, 0.0, -90.0, -90.0),  # a point at the pole
        (359.999, 0.001, 89.0, 90.0),
        (5, 6, -1, 1),  # ints are numbers too
    ],
    ids=["whole-sky", "wrapping-point", "pole-point", "near-pole-wrap", "ints"],
)
def test_boxes_at_the_limits_are_accepted(registry, box):
    registry.insertUnits("visit_detector_region", region_rows({(0, 0): box}))
    registry.insertUnits("patch", patch_rows({0: box}))
    assert registry.countUnitRows("visit_detector_region") == registry.countUnitRows("patch") == 1
    assert stored_overlaps(registry) == {(0, 0, 0)}  # every box overlaps itself


# ---------------------------------------------------------------------- the demo's boxes


def _wrapping(boxes_: Sequence[Box]) -> list[Box]:
    return [b for b in boxes_ if b[0] > b[1]]


def test_demo_wcs_box_of_an_image_straddling_ra_zero_wraps_and_overlaps(registry):
    from demo_drp.wcs import TanWcs

    # a 200-pixel image centred on RA 0.01 (about 0.056 degrees wide) and its widened box
    wcs = TanWcs(0.01, 1.0, 99.5, 99.5, 1.0 / 3600.0)
    box = wcs.sky_box(200, 200, margin=10.0 / 3600.0)
    assert _wrapping([box]) == [box]
    assert 359.9 < box[0] < 360.0 and 0.0 < box[1] < 0.1
    assert wcs.sky_box(200, 200)[2:] == pytest.approx((0.972, 1.028), abs=1e-3)
    east, west, beyond = (
        TanWcs(ra, 1.0, 99.5, 99.5, 1.0 / 3600.0).sky_box(200, 200) for ra in (0.05, 359.96, 0.1)
    )
    assert not _wrapping([east, west, beyond])
    registry.insertUnits("patch", patch_rows({0: east, 1: west, 2: beyond}))
    registry.insertUnits("visit_detector_region", region_rows({(0, 0): box}))
    assert stored_overlaps(registry) == {(0, 0, 0), (0, 0, 1)}
