"""The registry's bulk, value-tuple look-ups used by preflight and the executor."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from conftest_repo import db_url, populate, postgres_schema_url  # noqa: F401

from supertask.repo.dataid import DataId
from supertask.repo.dataset import DatasetType
from supertask.repo.registry import Registry, RowLimitError
from supertask.repo.registry.bulk import dropped_keys

RAW = DatasetType("raw", ("instrument", "visit", "detector"), "NumpyArray")
REFCAT = DatasetType("refcat", (), "Table")


@pytest.fixture
def registry(db_url):  # noqa: F811
    reg = Registry.create(db_url)
    populate(reg)
    yield reg
    reg.close()


def vd(visit: int, detector: int) -> DataId:
    return DataId(instrument="Cam", visit=visit, detector=detector)


def records(dataIds, prefix="f"):
    return [{"dataId": d, "path": f"{prefix}/{i}", "size": i, "checksum": "c"} for i, d in enumerate(dataIds)]


def test_query_data_id_values_are_the_data_ids_as_sorted_tuples(registry):
    for kwargs in ({}, {"where": "band = 'r'"}, {"restrict": {"visit": {1, 4}}}):
        keys, rows = registry.queryDataIdValues(["visit", "patch"], **kwargs)
        dataIds = registry.queryDataIds(["visit", "patch"], **kwargs)
        assert rows, kwargs
        assert [DataId(zip(keys, row, strict=True)) for row in rows] == dataIds
        assert rows == sorted(set(rows))
        unordered = registry.queryDataIdValues(["visit", "patch"], ordered=False, **kwargs)
        assert unordered[0] == keys and sorted(unordered[1]) == rows and len(unordered[1]) == len(rows)


def test_query_data_id_values_stops_with_row_limit_error_past_max_rows(registry):
    keys, rows = registry.queryDataIdValues(["visit", "detector"])
    assert registry.queryDataIdValues(["visit", "detector"], max_rows=len(rows))[1] == rows
    with pytest.raises(RowLimitError, match=f"more than {len(rows) - 1} rows") as caught:
        registry.queryDataIdValues(["visit", "detector"], max_rows=len(rows) - 1)
    assert caught.value.limit == len(rows) - 1
    with pytest.raises(RowLimitError):
        registry.queryDataIdValues(["visit", "detector"], restrict={"visit": {1, 2, 3}}, max_rows=1)


def test_find_dataset_values_takes_the_first_run_in_search_order(registry):
    registry.registerDatasetType(RAW)
    registry.registerRun("old")
    registry.registerRun("new")
    registry.insertDatasets(RAW, "old", records([vd(1, 1), vd(1, 2)]))
    (newer,) = registry.insertDatasets(RAW, "new", records([vd(1, 1)], "n"))
    a, b = tuple(vd(1, 1).values()), tuple(vd(1, 2).values())  # keys in sorted order
    found = registry.findDatasetValues(RAW, ["new", "old"], [a, b, tuple(vd(9, 9).values())])
    assert set(found) == {a, b}
    assert found[a] == (newer.id, "new")
    assert found[b][1] == "old"
    assert registry.findDatasetValues(RAW, ["old"], []) == {}


@pytest.mark.parametrize("search", [["new", "old"], ["old", "new"], ["old"], ["new"]])
def test_query_with_datasets_finds_the_first_run_in_search_order_and_drops_rows_without(registry, search):
    registry.registerDatasetType(RAW)
    registry.registerRun("old")
    registry.registerRun("new")
    registry.insertDatasets(RAW, "old", records([vd(v, d) for v in range(6) for d in range(4) if d != 3]))
    registry.insertDatasets(RAW, "new", records([vd(v, 1) for v in range(6)] + [vd(2, 3)], "n"))
    units = ["visit", "detector", "patch", "band"]
    keys, rows, found = registry.queryDataIdValuesWithDatasets(units, datasets=[RAW], collections=search)
    assert (keys, rows) == registry.queryDataIdValues(units, datasets=[RAW], collections=search)
    raws = {tuple(row[keys.index(k)] for k in ("detector", "instrument", "visit")) for row in rows}
    if not finds_in_statement(registry):
        assert found == {}  # tested by EXISTS; the caller asks findDatasetValues
        return
    assert found.keys() == {"raw"}
    assert found["raw"].asDict() == registry.findDatasetValues(RAW, search, raws)
    raw = found["raw"]
    if len(search) == 1:  # its name once, not per dataset
        assert (raw.run, raw.runOf) == (search[0], {})
    else:
        assert raw.run is None and raw.runOf.keys() == set(raw.ids.values())
    assert len(raws) == {2: 19, 1: 18 if search == ["old"] else 7}[len(search)]
    assert {run for _, run in raw.asDict().values()} == set(search)


def test_query_with_datasets_leaves_types_with_other_keys_to_the_caller(registry):
    registry.registerDatasetType(RAW)
    registry.registerRun("run")
    registry.insertDatasets(RAW, "run", records([vd(v, 0) for v in (1, 2, 3)]))
    keys, rows, found = registry.queryDataIdValuesWithDatasets(["visit"], datasets=[RAW], collections="run")
    assert (keys, rows) == registry.queryDataIdValues(["visit"], datasets=[RAW], collections="run")
    assert [row[keys.index("visit")] for row in rows] == [1, 2, 3]
    assert found == {}


def test_query_with_datasets_finds_a_global_type_at_the_empty_tuple(registry):
    registry.registerDatasetType(REFCAT)
    registry.registerRun("refs")
    (ds,) = registry.insertDatasets(REFCAT, "refs", [{"dataId": {}, "path": "r", "size": 1, "checksum": "x"}])
    keys, rows, found = registry.queryDataIdValuesWithDatasets(
        ["visit"], datasets=[REFCAT], collections="refs"
    )
    assert len(rows) == 6
    if not finds_in_statement(registry):
        assert found == {}
        return
    assert found["refcat"].asDict() == {(): (ds.id, "refs")} and found.keys() == {"refcat"}


def finds_in_statement(registry) -> bool:
    """Whether the planning statement selects the datasets it needs (SQLite) or tests them by EXISTS."""
    return registry.url.startswith("sqlite")


def test_query_with_datasets_on_postgresql_tests_existence_instead(registry):
    """PostgreSQL runs a correlated scalar subquery per row: its statement keeps EXISTS."""
    registry.registerDatasetType(RAW)
    registry.registerRun("run")
    registry.insertDatasets(RAW, "run", records([vd(v, 0) for v in (1, 2, 3)]))
    statements = []
    engine = registry._db.engine
    listener = lambda conn, cursor, statement, *rest: statements.append(statement)  # noqa: E731
    sa.event.listen(engine, "before_cursor_execute", listener)
    try:
        _, rows, found = registry.queryDataIdValuesWithDatasets(
            ["visit", "detector"], datasets=[RAW], collections="run"
        )
    finally:
        sa.event.remove(engine, "before_cursor_execute", listener)
    planning = [s for s in statements if "visit" in s and "dataset" in s]
    assert len(rows) == 3 and planning
    if finds_in_statement(registry):
        assert found.keys() == {"raw"} and "EXISTS" not in planning[-1]
    else:
        assert found == {} and "EXISTS" in planning[-1]


def test_find_dataset_values_agrees_with_query_datasets(registry):
    registry.registerDatasetType(RAW)
    registry.registerRun("run")
    registry.insertDatasets(RAW, "run", records([vd(v, d) for v in range(6) for d in range(4)]))
    # A few of the stored datasets (chunked IN lists), then most of them plus absent ones
    # (one read of the whole type, filtered): the same answers either way.
    few = [vd(2, 2), vd(4, 1), vd(5, 3)]
    most = [vd(v, d) for v in range(1, 8) for d in range(4)]
    for wanted in (few, most):
        expected = {
            tuple(d.dataId.values()): (d.id, d.run)
            for d in registry.queryDatasets(RAW, "run", dataIds=wanted)
        }
        assert len(expected) == min(len(wanted), 20)
        assert registry.findDatasetValues(RAW, "run", [tuple(d.values()) for d in wanted]) == expected


def test_find_dataset_values_of_a_global_type_use_the_empty_tuple(registry):
    registry.registerDatasetType(REFCAT)
    registry.registerRun("refs")
    (ds,) = registry.insertDatasets(
        REFCAT, "refs", [{"dataId": {}, "path": "r.npy", "size": 3, "checksum": "x"}]
    )
    assert registry.findDatasetValues(REFCAT, ["refs"], [()]) == {(): (ds.id, "refs")}


def test_dataset_locations_in_bulk_match_one_look_up_each(registry):
    registry.registerDatasetType(RAW)
    registry.registerRun("run")
    inserted = registry.insertDatasets(RAW, "run", records([vd(v, d) for v in range(6) for d in range(4)]))
    picked = [inserted[7], inserted[0], inserted[23], inserted[7]]
    assert registry.getDatasetLocations(picked) == [registry.getDatasetLocation(d)[0] for d in picked]
    unresolved = type(inserted[3])(RAW, inserted[3].dataId, run="run")  # no id: looked up by run
    assert registry.getDatasetLocations([unresolved]) == [registry.getDatasetLocation(inserted[3])[0]]
    assert registry.getDatasetLocations([]) == []


def test_dataset_locations_name_what_is_not_registered(registry):
    registry.registerDatasetType(RAW)
    registry.registerRun("run")
    (ds,) = registry.insertDatasets(RAW, "run", records([vd(1, 1)]))
    ghost = type(ds)(RAW, vd(2, 2), id=10**9, run="run")
    with pytest.raises(LookupError, match="id=1000000000"):
        registry.getDatasetLocations([ds, ghost])


def test_every_unit_of_a_relation_leads_an_index(registry):
    import sqlalchemy as sa

    leading = set()
    inspector = sa.inspect(registry.engine)
    table = "visit_detector_patch_overlap"
    for index in inspector.get_indexes(table):
        leading.add(index["column_names"][0])
    leading.add(inspector.get_pk_constraint(table)["constrained_columns"][0])
    assert {"visit", "detector", "patch"} <= leading


def test_restrict_sets_left_out_of_the_sql_are_still_applied(registry):
    restrict = {"visit": set(range(5000)), "detector": {1} | set(range(1000, 3500))}
    assert dropped_keys(restrict, {"visit", "detector", "instrument"}) == ["detector"]
    keys, rows = registry.queryDataIdValues(["visit", "detector"], restrict=restrict)
    assert rows and {row[keys.index("detector")] for row in rows} == {1}
    assert len(rows) == len(registry.queryDataIds(["visit"]))


def test_raw_rows_are_plain_tuples_in_batches_and_close_the_result(registry):
    import sqlalchemy as sa

    from supertask.repo.registry.bulk import raw_rows

    visit = sa.table("visit", sa.column("visit"))
    stmt = sa.select(visit.c.visit).order_by(visit.c.visit)
    with registry.engine.connect() as conn:
        result = conn.execute(stmt)
        batches = list(raw_rows(result, 4))
        assert result.closed
        whole = list(raw_rows(conn.execute(stmt)))
    assert [len(b) for b in batches] == [4, 2]  # six visits
    assert [row for b in batches for row in b] == whole[0] == [(v,) for v in range(6)]
    assert all(type(row) is tuple for row in whole[0])


def test_query_data_id_values_hold_one_object_per_distinct_value_of_a_column(registry):
    keys, rows = registry.queryDataIdValues(["visit", "detector"])
    instrument = keys.index("instrument")
    assert len(rows) > 1 and all(row[instrument] is rows[0][instrument] for row in rows)
    limited = registry.queryDataIdValues(["visit", "detector"], max_rows=len(rows))[1]
    assert limited == rows and all(row[instrument] is limited[0][instrument] for row in limited)


def test_value_sharing_makes_equal_values_one_object_across_batches():
    from supertask.repo.registry.bulk import ValueSharing

    share = ValueSharing(2)
    first = share([("".join(["a", "b"]), 1000 + 1), ("".join(["a", "b"]), 1000 + 2)])
    second = share([("".join(["a", "b"]), 1000 + 1)])
    assert first == [("ab", 1001), ("ab", 1002)] and second == [("ab", 1001)]
    assert first[0][0] is first[1][0] is second[0][0] and first[0][1] is second[0][1]
    assert ValueSharing(0)([(), ()]) == [(), ()]


def test_found_datasets_are_the_rows_projection_after_rows_are_dropped_too(registry):
    # The graph takes the projection of the rows onto raw's keys from the found datasets
    # when they say so (ofRows). A row dropped after its dataset was recorded (its
    # relation row names a unit missing from its table) takes its dataset along, unless
    # a row that stays has the same raw.
    registry.registerDatasetType(RAW)
    registry.registerRun("run")
    registry.insertDatasets(RAW, "run", records([vd(v, d) for v in range(6) for d in range(4)] + [vd(9, 0)]))
    units = ["visit", "detector", "patch"]
    keys, rows, found = registry.queryDataIdValuesWithDatasets(units, datasets=[RAW], collections="run")
    project = [keys.index(k) for k in ("detector", "instrument", "visit")]
    if not finds_in_statement(registry):
        assert found == {}
        return
    projection = {tuple(row[i] for i in project) for row in rows}
    assert found["raw"].ofRows and set(found["raw"].ids) == projection
    # Visit 9 has a raw and an overlap but no visit row; visit 1, detector 0 also
    # overlaps patch 99, which is not in the patch table. The statement, which leaves
    # those tables out, returns both rows; the existence check drops them after their
    # raws were found. Raw (0, Cam, 1) has other rows that stay.
    overlap = {"instrument": "Cam", "detector": 0, "skymap": "sky", "tract": 0}
    registry.insertUnits(
        "visit_detector_patch_overlap",
        [{**overlap, "visit": 9, "patch": 0}, {**overlap, "visit": 1, "patch": 99}],
    )
    again = registry.queryDataIdValuesWithDatasets(units, datasets=[RAW], collections="run")
    assert again[:2] == (keys, rows)
    raw = again[2]["raw"]
    assert raw.ofRows and set(raw.ids) == projection and (0, "Cam", 1) in projection
    assert raw.asDict() == registry.findDatasetValues(RAW, ["run"], projection)
