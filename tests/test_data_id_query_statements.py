"""The shape of the data-ID statements preflight sends, and their rows on both backends."""

from __future__ import annotations

import pytest
from conftest_repo import db_url, module_db_url, populate, postgres_schema_url  # noqa: F401
from sqlalchemy.dialects import sqlite

from supertask.repo.registry import Registry


@pytest.fixture(scope="module")
def shared(module_db_url):  # noqa: F811
    reg = Registry.create(module_db_url)
    populate(reg, n_visits=8)
    yield reg
    reg.close()


def _sql(registry, units, restrict=None, ordered=True, named=()):
    """The statement `queryDataIdValues` sends for ``units`` (the first chunk), as SQLite text.

    ``named`` are units an expression would name (they join the query, not its output).
    """
    queries = registry._managers.queries
    builder = queries.builder
    plan = builder.plan(set(units) | set(restrict or {}), named)
    builder.fromClause(plan)
    plan.outputKeys = registry.universe.expand(units)
    stmt = builder.select(plan, None, restrict=restrict, ordered=ordered)
    return str(stmt.compile(dialect=sqlite.dialect()))


def test_a_relation_is_reduced_to_the_keys_the_query_uses_before_it_is_joined(shared):
    # Every (visit, patch) overlap is held once per detector: the query for visits
    # per patch reads the overlaps' distinct (visit, patch) pairs, with the IN list
    # repeated inside, instead of joining one row per detector to the visit tables.
    sql = _sql(shared, ["visit", "patch", "band"], restrict={"patch": [0, 1]})
    inner = sql.split("AS visit_detector_patch_overlap_keys")[0]
    assert "(SELECT DISTINCT visit_detector_patch_overlap.instrument" in inner
    assert "visit_detector_patch_overlap.detector" not in inner
    assert "visit_detector_patch_overlap.patch IN" in inner
    # A query that outputs every key of the relation joins the table itself.
    assert "_keys" not in _sql(shared, ["visit", "detector", "patch"])


def test_reduced_relations_give_the_rows_of_the_whole_relation(shared):
    everything = shared.queryDataIds(["visit", "detector", "patch", "band"])
    for restrict in (None, {"patch": {0, 1}}, {"patch": {2}, "band": {"r"}}):
        expected = sorted(
            {
                (d["band"], d["patch"], d["visit"])
                for d in everything
                if all(d[k] in v for k, v in (restrict or {}).items())
            }
        )
        keys, rows = shared.queryDataIdValues(["visit", "patch", "band"], restrict=restrict)
        assert len(expected) < len([d for d in everything])  # several detectors per pair
        assert [
            (r[keys.index("band")], r[keys.index("patch")], r[keys.index("visit")]) for r in rows
        ] == expected
        assert shared.countDataIds(["visit", "patch", "band"]) == len(
            shared.queryDataIds(["visit", "patch", "band"])
        )


def test_rows_proven_distinct_are_selected_without_distinct(shared):
    # (visit, detector, patch) holds every key of every table joined, so no two rows
    # can be equal: the database is spared the temporary index of DISTINCT.
    sql = _sql(shared, ["visit", "detector", "patch", "band"])
    assert sql.startswith("SELECT band.band") and "DISTINCT" not in sql
    rows = shared.queryDataIdValues(["visit", "detector", "patch", "band"])[1]
    assert rows and len(rows) == len(set(rows))
    # Visits per patch are distinct too, through the overlaps reduced to their (visit, patch) pairs.
    assert _sql(shared, ["visit", "patch"]).startswith("SELECT instrument.instrument")
    # Filters of the visits an expression names come once per visit: DISTINCT stays.
    assert _sql(shared, ["physical_filter"], named=["visit"]).startswith("SELECT DISTINCT")
    assert len(shared.queryDataIds(["physical_filter"], where="visit > 0")) == 2
    # So does a statement with IN lists (it keeps the join order DISTINCT gives).
    assert _sql(shared, ["visit", "detector", "patch"], restrict={"visit": [1]}).startswith("SELECT DISTINCT")


def test_unordered_queries_send_no_order_by(shared):
    assert "ORDER BY" in _sql(shared, ["visit", "detector"])
    assert "ORDER BY" not in _sql(shared, ["visit", "detector"], ordered=False)
    keys, rows = shared.queryDataIdValues(["visit", "detector"], restrict={"visit": {1, 2}}, ordered=False)
    assert sorted(rows) == shared.queryDataIdValues(["visit", "detector"], restrict={"visit": {1, 2}})[1]


def test_reduced_relations_keep_the_rows_that_have_datasets(db_url):  # noqa: F811
    # PostgreSQL joins the reduced relation in its JOIN chain under the EXISTS tests.
    from supertask.repo.dataset import DatasetType

    registry = Registry.create(db_url)
    populate(registry, n_visits=8)
    summary = DatasetType("visitSummary", ("instrument", "visit"), "Table")
    registry.registerDatasetType(summary)
    registry.registerRun("run")
    registry.insertDatasets(
        summary,
        "run",
        [
            {"dataId": {"instrument": "Cam", "visit": v}, "path": f"f/{v}", "size": 1, "checksum": "c"}
            for v in (2, 3, 6)
        ],
    )
    assert "_keys" in _sql(registry, ["visit", "patch"])
    rows = registry.queryDataIds(["visit", "patch"], datasets=[summary], collections=["run"])
    assert [(d["visit"], d["patch"]) for d in rows] == [(2, 1), (3, 1), (6, 3)]
    assert registry.countDataIds(["visit", "patch"], datasets=[summary], collections="run") == 3
    registry.close()


def _sent(registry, call):
    """The SELECT statements ``call()`` sends, as text, and its result."""
    import sqlalchemy as sa

    engine = registry._managers.queries._db.engine
    sent: list[str] = []

    def record(conn, cursor, statement, parameters, context, executemany):
        sent.append(statement)

    sa.event.listen(engine, "before_cursor_execute", record)
    try:
        result = call()
    finally:
        sa.event.remove(engine, "before_cursor_execute", record)
    return [s for s in sent if s.lstrip().upper().startswith("SELECT")], result


def test_unit_tables_a_relation_stands_in_for_are_left_out_of_the_statement(shared):
    # (visit, detector, patch) is all of the overlap relation's keys: the statement reads
    # the relation alone, and the unit tables are asked only for the keys the rows hold.
    sent, (keys, rows) = _sent(shared, lambda: shared.queryDataIdValues(["visit", "detector", "patch"]))
    main = sent[0]
    assert "FROM visit_detector_patch_overlap" in main and "JOIN" not in main
    for unit in ("visit", "detector", "patch", "tract", "instrument", "skymap"):
        assert f" {unit}," not in main.split("FROM")[1] and not main.rstrip().endswith(f"FROM {unit}")
    assert rows and len(rows) == shared.countDataIds(["visit", "detector", "patch"])
    # A unit an expression names keeps its table (the expression reads its fields).
    sent, _ = _sent(
        shared, lambda: shared.queryDataIds(["visit", "detector", "patch"], where="visit.exposure_time > 5")
    )
    assert "visit.exposure_time" in sent[0]
    # A unit that links other tables (visit -> physical_filter -> band) keeps its table too.
    sent, _ = _sent(shared, lambda: shared.queryDataIdValues(["visit", "detector", "patch", "band"]))
    assert "visit.physical_filter" in sent[0]


def test_relation_rows_whose_units_are_missing_are_not_returned(db_url):  # noqa: F811
    # The registry declares no foreign keys: a relation may hold rows of units that are
    # not in their tables (a patch outside its tract). The full join drops them; the
    # statement that leaves the unit tables out must return the same rows.
    registry = Registry.create(db_url)
    populate(registry, n_visits=8)
    units = ["visit", "detector", "patch"]
    before = registry.queryDataIdValues(units)
    orphans = [
        {"instrument": "Cam", "visit": 1, "detector": 0, "skymap": "sky", "tract": 0, "patch": 99},
        {"instrument": "Cam", "visit": 1, "detector": 77, "skymap": "sky", "tract": 0, "patch": 0},
        {"instrument": "Cam", "visit": 42, "detector": 0, "skymap": "sky", "tract": 0, "patch": 0},
        {"instrument": "Cam", "visit": 1, "detector": 0, "skymap": "sky", "tract": 5, "patch": 0},
        {"instrument": "Cam", "visit": 1, "detector": 0, "skymap": "elsewhere", "tract": 0, "patch": 0},
        {"instrument": "Other", "visit": 1, "detector": 0, "skymap": "sky", "tract": 0, "patch": 0},
    ]
    registry.insertUnits("visit_detector_patch_overlap", orphans)
    assert registry.queryDataIdValues(units) == before
    assert len(before[1]) == registry.countDataIds(units)  # COUNT keeps the joins: the same rows
    keys, rows = registry.queryDataIdValues(
        units, restrict={"visit": {1, 42}, "patch": {0, 99}}, ordered=False
    )
    assert sorted(rows) == [
        r for r in before[1] if r[keys.index("visit")] == 1 and r[keys.index("patch")] == 0
    ]
    assert rows
    # The row limit counts the rows returned, not the ones dropped.
    assert registry.queryDataIdValues(units, max_rows=len(before[1])) == before
    # Patch 9 exists in tract 1 only: its rows in tract 1 stay, the one in tract 0 goes.
    registry.insertUnits("tract", [{"skymap": "sky", "tract": 1}])
    registry.insertUnits("patch", [{"skymap": "sky", "tract": 1, "patch": 9}])
    overlap = {"instrument": "Cam", "visit": 1, "detector": 0, "skymap": "sky"}
    registry.insertUnits(
        "visit_detector_patch_overlap",
        [{**overlap, "tract": 1, "patch": 9}, {**overlap, "tract": 0, "patch": 9}],
    )
    keys, rows = registry.queryDataIdValues(units)
    assert len(rows) == len(before[1]) + 1 == registry.countDataIds(units)
    assert [(r[keys.index("tract")], r[keys.index("patch")]) for r in rows if r not in before[1]] == [(1, 9)]
    registry.close()


def test_units_sharing_keys_with_a_reduced_relation_keep_their_tables(shared):
    # Visits per patch read the overlaps as a subquery of their (visit, patch) pairs: the
    # relation's own columns are then not in the statement's FROM, so no IN list or output
    # column may fall back on them. Only the band (held by the filter table) is left out.
    builder = shared._managers.queries.builder
    plan = builder.plan({"visit", "patch", "band"})
    plan.outputKeys = shared.universe.expand(["visit", "patch", "band"])
    assert builder.leaveOutUnits(plan) == ["band"]
    assert {"visit", "patch", "tract", "instrument", "skymap"} <= set(plan.elements)
    keys, rows = shared.queryDataIdValues(["visit", "patch", "band"], restrict={"patch": {0, 1}})
    assert rows == [
        r for r in shared.queryDataIdValues(["visit", "patch", "band"])[1] if r[keys.index("patch")] < 2
    ]
