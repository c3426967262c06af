"""`Registry.queryRelatedDataIdValues`: the related look-up grouped by the database, on each backend.

The grouped statement (`QueryBuilder.grouped`, one JSON array of members per group) must
give what grouping the plain rows of `queryDataIdValues` gives, for every shape of the
key sets, restrictions and missing units; the rows path (`_relatedFromRows`) is the
reference, and it is also what the registry falls back to where JSON cannot carry a key.
"""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from conftest_repo import db_url, populate, postgres_schema_url  # noqa: F401

from supertask.repo.registry import Registry

VISIT_DETECTOR = ("detector", "instrument", "visit")
PATCH = ("patch", "skymap", "tract")
WARP = ("instrument", "patch", "skymap", "tract", "visit")

# (from keys, to keys): one member key, several, none, and from keys in a caller's own order.
SHAPES = [
    (WARP, VISIT_DETECTOR),  # a warp's detectors: one member key
    (PATCH, VISIT_DETECTOR),  # a patch's visits and detectors: three member keys
    (("instrument", "visit"), PATCH),  # a visit's patches
    (VISIT_DETECTOR, ("instrument", "visit")),  # every to key is a from key: no member
    (("visit", "instrument", "tract", "skymap", "patch"), VISIT_DETECTOR),
]


@pytest.fixture
def registry(db_url):  # noqa: F811
    reg = Registry.create(db_url)
    populate(reg, n_visits=8, n_detectors=4, n_patches=4)
    yield reg
    reg.close()


def by_rows(registry, fromKeys, toKeys, restrict=None):
    """The reference: the plain rows, grouped in Python, each list sorted."""
    groups = registry._managers.queries._relatedFromRows(
        tuple(fromKeys), tuple(toKeys), {k: set(v) for k, v in (restrict or {}).items()}
    )
    return {key: sorted(tos) for key, tos in groups.items()}


def grouped(registry, fromKeys, toKeys, restrict=None):
    found = registry.queryRelatedDataIdValues(fromKeys, toKeys, restrict=restrict)
    return {key: sorted(tos) for key, tos in found.items()}


@pytest.mark.parametrize("fromKeys,toKeys", SHAPES)
def test_grouped_look_up_relates_what_the_plain_rows_relate(registry, fromKeys, toKeys):
    expected = by_rows(registry, fromKeys, toKeys)
    assert expected  # the populated registry relates something for every shape
    assert grouped(registry, fromKeys, toKeys) == expected
    assert registry._managers.queries._jsonAggregates  # (the database grouped them, on every backend)


def test_grouped_look_up_holds_each_related_tuple_once_in_the_keys_order(registry):
    found = registry.queryRelatedDataIdValues(WARP, VISIT_DETECTOR)
    # visit v overlaps patch v // 2 with its four detectors (keys: instrument, patch, skymap, tract, visit)
    assert sorted(found[("Cam", 0, "sky", 0, 1)]) == [(d, "Cam", 1) for d in range(4)]
    for tos in found.values():
        assert len(tos) == len(set(tos))


def test_grouped_look_up_keeps_only_the_restricted_from_values(registry):
    restrict = {"visit": {2, 3, 6}}
    found = grouped(registry, WARP, VISIT_DETECTOR, restrict)
    assert {key[4] for key in found} == {2, 3, 6}
    assert found == by_rows(registry, WARP, VISIT_DETECTOR, restrict)


def test_grouped_look_up_checks_large_restrictions_on_the_groups(registry, monkeypatch):
    # Sets over 2000 values other than the largest are left out of the SQL and checked on
    # each group's row: a restriction of 2001 visits (8 of them real) beside a larger one.
    restrict = {"visit": set(range(1, 2002, 2)) | set(range(2002, 3003)), "patch": set(range(5000))}
    found = grouped(registry, WARP, VISIT_DETECTOR, restrict)
    assert {key[4] for key in found} == {1, 3, 5, 7}
    assert found == by_rows(registry, WARP, VISIT_DETECTOR, restrict)


def test_grouped_look_up_rejects_a_restriction_outside_the_from_keys(registry):
    with pytest.raises(KeyError, match="not among the from keys"):
        registry.queryRelatedDataIdValues(WARP, VISIT_DETECTOR, restrict={"detector": {1}})


def test_grouped_look_up_drops_pairs_whose_left_out_unit_is_missing(registry):
    # Overlaps naming a patch and a detector the registry lacks: the joins that would
    # drop them are left out of the SQL (the relation holds their keys), so the rows are
    # filtered afterwards, on the groups as on the plain rows.
    registry.insertUnits(
        "visit_detector_patch_overlap",
        [
            {"instrument": "Cam", "visit": 1, "detector": 0, "skymap": "sky", "tract": 0, "patch": 99},
            {"instrument": "Cam", "visit": 1, "detector": 9, "skymap": "sky", "tract": 0, "patch": 0},
        ],
    )
    for fromKeys, toKeys in SHAPES[:3]:
        found = grouped(registry, fromKeys, toKeys)
        assert found == by_rows(registry, fromKeys, toKeys), (fromKeys, toKeys)
        flat = [
            dict(zip(fromKeys, key, strict=True)) | dict(zip(toKeys, to, strict=True))
            for key, tos in found.items()
            for to in tos
        ]
        assert flat and not [row for row in flat if row.get("patch") == 99 or row.get("detector") == 9]


def test_without_json_aggregates_the_plain_rows_are_grouped_instead(registry, monkeypatch):
    queries = registry._managers.queries
    expected = {shape: grouped(registry, *shape) for shape in SHAPES}
    monkeypatch.setattr(queries, "_jsonAggregates", False)
    calls = []
    rows = queries._relatedFromRows
    monkeypatch.setattr(queries, "_relatedFromRows", lambda *a: calls.append(a) or rows(*a))
    assert {shape: grouped(registry, *shape) for shape in SHAPES} == expected
    assert len(calls) == len(SHAPES)


def test_a_related_look_up_on_sqlite_empties_its_connections_page_cache_after(registry):
    # (the page cache of a pooled connection otherwise keeps the indexes read, for the
    # rest of preflight: about 20 MB of its peak at 10^6 quanta)
    engine = registry._managers.queries._db.engine
    sent: list[str] = []
    listener = lambda conn, cursor, statement, *args: sent.append(statement)  # noqa: E731
    sa.event.listen(engine, "before_cursor_execute", listener)
    try:
        registry.queryRelatedDataIdValues(WARP, VISIT_DETECTOR)
    finally:
        sa.event.remove(engine, "before_cursor_execute", listener)
    assert any("GROUP BY" in s for s in sent)
    assert ("PRAGMA shrink_memory" in sent) == (engine.dialect.name == "sqlite")
    if engine.dialect.name == "sqlite":
        assert sent[-1] == "PRAGMA shrink_memory"
