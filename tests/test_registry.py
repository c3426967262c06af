"""Registry behaviour on both backends (SQLite file, PostgreSQL schema)."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from conftest_repo import db_url, module_db_url, populate, postgres_schema_url  # noqa: F401

from supertask.repo.dataid import DataId
from supertask.repo.dataset import DatasetType
from supertask.repo.registry import (
    ConflictingDatasetError,
    IncompatibleSchemaError,
    Registry,
    RegistryError,
    RunConflictError,
)

RAW = DatasetType("raw", ("instrument", "visit", "detector"), "NumpyArray")
REFCAT = DatasetType("refcat", (), "Table")


@pytest.fixture
def registry(db_url):  # noqa: F811
    """A populated registry of its own, for tests that write."""
    reg = Registry.create(db_url)
    populate(reg)
    yield reg
    reg.close()


@pytest.fixture(scope="module")
def shared(module_db_url):  # noqa: F811
    """One populated registry per backend for the tests that only read (or write nothing new)."""
    reg = Registry.create(module_db_url)
    populate(reg)
    yield reg
    reg.close()


def vd(visit: int, detector: int) -> DataId:
    return DataId(instrument="Cam", visit=visit, detector=detector)


def records(dataIds, checksum="c0"):
    return [{"dataId": d, "path": f"f/{i}", "size": 1, "checksum": checksum} for i, d in enumerate(dataIds)]


def test_reopening_keeps_units_and_universe(shared):
    again = Registry(shared.url)
    assert again.universe.digest == shared.universe.digest
    assert len(again.queryDataIds(["visit", "detector"])) == 24
    again.close()


def test_creating_twice_in_one_database_is_refused(shared):
    with pytest.raises(RegistryError, match="already holds a registry"):
        Registry.create(shared.url)


def test_incompatible_schema_version_is_a_clear_error(registry):
    meta = registry.schema.meta
    with registry.transaction() as conn:
        conn.execute(sa.update(meta).where(meta.c.key == "schema_version").values(value="99.0"))
    with pytest.raises(IncompatibleSchemaError, match=r"schema version 99\.0.*reads 1\.x"):
        Registry(registry.url)


def test_database_without_registry_says_how_to_create_one(tmp_path):
    with pytest.raises(RegistryError, match="supertask repo create"):
        Registry(f"sqlite:///{tmp_path / 'empty.sqlite3'}")


def test_insert_units_is_idempotent_for_identical_rows(shared):
    row = {"instrument": "Cam", "visit": 3, "physical_filter": "R", "exposure_time": 30.0}
    shared.insertUnits("visit", [row])
    assert shared.countUnitRows("visit") == 6


def test_insert_units_rejects_contradicting_rows(shared):
    with pytest.raises(ValueError, match="already exists with different values"):
        shared.insertUnits("visit", [{"instrument": "Cam", "visit": 3, "physical_filter": "G"}])


def test_insert_units_names_unknown_columns_and_missing_keys(shared):
    with pytest.raises(ValueError, match="unknown columns.*'colour'"):
        shared.insertUnits("detector", [{"instrument": "Cam", "detector": 9, "colour": "red"}])
    with pytest.raises(ValueError, match=r"lacks \['physical_filter'\]"):
        shared.insertUnits("visit", [{"instrument": "Cam", "visit": 99}])
    with pytest.raises(ValueError, match="unknown unit or relation 'sensor'"):
        shared.insertUnits("sensor", [{"sensor": 1}])


def test_query_data_ids_joins_implied_units_for_the_expression(shared):
    rows = shared.queryDataIds(["visit", "detector"], where="band = 'r' AND detector < 2")
    assert {(d["visit"], d["detector"]) for d in rows} == {(v, det) for v in (1, 3, 5) for det in (0, 1)}
    assert all(set(d) == {"instrument", "visit", "detector"} for d in rows)


def test_query_data_ids_with_band_unit_returns_the_visit_band(shared):
    rows = shared.queryDataIds(["visit", "band"])
    assert {(d["visit"], d["band"]) for d in rows} == {(v, "r" if v % 2 else "g") for v in range(6)}


def test_query_data_ids_uses_unit_fields_and_bind_values(shared):
    rows = shared.queryDataIds(["visit"], where="visit.exposure_time >= :t", bind={"t": 40.0})
    assert [d["visit"] for d in rows] == [4, 5]


def test_count_matches_query(shared):
    where = "visit IN (1, 2, 3)"
    assert (
        shared.countDataIds(["visit", "detector"], where)
        == len(shared.queryDataIds(["visit", "detector"], where))
        == 12
    )


def test_overlaps_are_computed_from_boxes(shared):
    rows = shared.queryDataIds(["visit", "patch"])
    assert {(d["visit"], d["patch"]) for d in rows} == {(v, v // 2) for v in range(6)}


def test_overlaps_are_computed_when_the_patch_side_comes_second(db_url):  # noqa: F811
    reg = Registry.create(db_url)
    populate(reg, n_patches=0)
    assert reg.countUnitRows("visit_detector_patch_overlap") == 0
    reg.insertUnits(
        "patch",
        [{"skymap": "sky", "tract": 0, "patch": 7, "ra_min": 0.5, "ra_max": 1.5, "dec_min": 0, "dec_max": 1}],
    )
    rows = reg.queryDataIds(["visit", "detector", "patch"])
    # visit 0 detectors cover RA [0.0x, 0.0x+0.05] (below 0.5): none; visit 1 all four.
    assert {(d["visit"], d["detector"]) for d in rows} == {(1, det) for det in range(4)}
    reg.close()


def test_restrict_limits_rows_without_an_expression(shared):
    rows = shared.queryDataIds(["visit", "detector"], restrict={"visit": [2, 4], "detector": {3}})
    assert rows == [vd(2, 3), vd(4, 3)]


def test_restrict_with_more_values_than_one_in_list_is_chunked(shared):
    visits = list(range(-2000, 3))  # larger than one IN chunk; only 0..2 exist
    rows = shared.queryDataIds(["visit"], restrict={"visit": visits})
    assert [d["visit"] for d in rows] == [0, 1, 2]


def test_dataset_type_registration_is_idempotent_and_checked(registry):
    assert registry.registerDatasetType(RAW) is True
    assert registry.registerDatasetType(RAW) is False
    with pytest.raises(ValueError, match="registered as"):
        registry.registerDatasetType(DatasetType("raw", ("instrument", "visit"), "NumpyArray"))
    with pytest.raises(KeyError, match="not registered; registered: \\['raw'\\]"):
        registry.getDatasetType("calexp")
    with pytest.raises(ValueError, match="unknown unit 'ccd'"):
        registry.registerDatasetType(DatasetType("x", ("ccd",), "NumpyArray"))


def test_insert_datasets_is_idempotent_with_the_same_checksum(registry):
    registry.registerDatasetType(RAW)
    registry.registerRun("run")
    first = registry.insertDatasets(RAW, "run", records([vd(1, 1), vd(1, 2)]))
    again = registry.insertDatasets(RAW, "run", records([vd(1, 2), vd(1, 1), vd(2, 0)]))
    assert [d.id for d in again[:2]] == [first[1].id, first[0].id]
    assert registry.countDatasets(RAW) == 3
    assert all(d.run == "run" for d in again)


def test_insert_datasets_refuses_another_checksum(registry):
    registry.registerDatasetType(RAW)
    registry.registerRun("run")
    registry.insertDatasets(RAW, "run", records([vd(1, 1)], checksum="aaa"))
    with pytest.raises(ConflictingDatasetError, match="checksum aaa, not bbb"):
        registry.insertDatasets(RAW, "run", records([vd(1, 1)], checksum="bbb"))


def test_insert_datasets_needs_a_registered_run_and_complete_data_ids(registry):
    registry.registerDatasetType(RAW)
    with pytest.raises(RegistryError, match="registerRun"):
        registry.insertDatasets(RAW, "nope", records([vd(1, 1)]))
    registry.registerRun("run")
    with pytest.raises(ValueError, match="lacks 'detector'"):
        registry.insertDatasets(RAW, "run", records([{"instrument": "Cam", "visit": 1}]))


def test_chained_collections_search_children_in_order(registry):
    registry.registerDatasetType(RAW)
    registry.registerRun("old")
    registry.registerRun("new")
    registry.insertDatasets(RAW, "old", records([vd(1, 1), vd(1, 2)]))
    registry.insertDatasets(RAW, "new", records([vd(1, 1)]))
    registry.setChain("all", ["new", "old"])
    assert registry.getChain("all") == ["new", "old"]
    assert registry.findDataset(RAW, vd(1, 1), ["all"]).run == "new"
    assert registry.findDataset(RAW, vd(1, 2), "all").run == "old"
    assert registry.findDataset(RAW, vd(3, 3), ["all"]) is None
    found = registry.queryDatasets("raw", ["old", "new"])
    assert [(d.dataId["detector"], d.run) for d in found] == [(1, "old"), (2, "old")]


def test_chain_cycles_and_unknown_children_are_refused(registry):
    registry.registerRun("r")
    registry.setChain("a", ["r"])
    registry.setChain("b", ["a"])
    with pytest.raises(RegistryError, match="cycle"):
        registry.setChain("a", ["b"])
    with pytest.raises(KeyError, match="'missing' does not exist"):
        registry.setChain("c", ["missing"])
    with pytest.raises(RegistryError, match="RUN"):
        registry.setChain("r", ["a"])


def test_run_provenance_round_trips_and_keeps_restarts(registry):
    prov = {"pipeline": "p.yaml", "command": "supertask run", "packages": {"numpy": "2.0"}}
    registry.registerRun("out", provenance=prov)
    assert registry.getRunProvenance("out") == prov
    registry.registerRun("out", provenance={**prov, "command": "supertask run --restart"})
    stored = registry.getRunProvenance("out")
    assert stored["command"] == "supertask run"
    assert stored["later_executions"][0]["command"] == "supertask run --restart"


def test_run_registered_again_with_another_pipeline_or_config_is_refused(registry):
    prov = {"pipeline": "tasks: [a]", "configs": {"a": "x=1"}, "command_line": "first"}
    registry.registerRun("out", provenance=prov)
    registry.registerRun("out", provenance={**prov, "command_line": "second"})  # same digests: a resume
    with pytest.raises(RunConflictError, match="different task configs.*--clobber-outputs.*-o NEW_RUN"):
        registry.registerRun("out", provenance={**prov, "configs": {"a": "x=2"}})
    with pytest.raises(RunConflictError, match="different pipeline"):
        registry.registerRun("out", provenance={**prov, "pipeline": "tasks: [b]"})
    stored = registry.getRunProvenance("out")
    assert stored["configs"] == {"a": "x=1"}
    assert [e["command_line"] for e in stored["later_executions"]] == ["second"]


def test_dataset_groups_register_in_one_transaction_or_not_at_all(registry):
    registry.registerDatasetType(RAW)
    registry.registerDatasetType(REFCAT)
    registry.registerRun("run")

    def rec(visit, checksum="c"):
        return {
            "dataId": {"instrument": "Cam", "visit": visit, "detector": 1},
            "path": f"p{visit}",
            "checksum": checksum,
        }

    groups = [[(RAW, rec(1)), (REFCAT, {"dataId": {}, "path": "ref", "checksum": "r"})], [(RAW, rec(2))]]

    def fail():
        raise OSError("rename failed")

    with pytest.raises(OSError):  # the hook fails: nothing of any group is registered
        registry.insertDatasetGroups("run", groups, beforeCommit=fail)
    assert registry.countDatasets() == 0
    published = []
    registry.insertDatasetGroups("run", groups, beforeCommit=lambda: published.append(True))
    assert published == [True] and registry.countDatasets() == 3
    # a conflict in a later group rolls back the earlier ones too, and skips the hook
    with pytest.raises(ConflictingDatasetError):
        registry.insertDatasetGroups("run", [[(RAW, rec(3))], [(RAW, rec(2, "other"))]], beforeCommit=fail)
    assert registry.countDatasets() == 3


def test_query_datasets_with_expression_and_data_ids(registry):
    registry.registerDatasetType(RAW)
    registry.registerRun("run")
    registry.insertDatasets(RAW, "run", records([vd(v, d) for v in range(6) for d in range(4)]))
    red = registry.queryDatasets(RAW, ["run"], where="band = 'r' AND detector = 0")
    assert [d.dataId["visit"] for d in red] == [1, 3, 5]
    picked = registry.queryDatasets(RAW, ["run"], dataIds=[vd(2, 2), vd(4, 1), vd(9, 9)])
    assert [d.dataId for d in picked] == sorted([vd(2, 2), vd(4, 1)])  # data ID order


def test_dataset_constraint_drops_rows_without_datasets(registry):
    registry.registerDatasetType(RAW)
    registry.registerRun("run")
    registry.insertDatasets(RAW, "run", records([vd(2, 1), vd(3, 1)]))
    rows = registry.queryDataIds(["visit", "detector"], datasets=[RAW], collections=["run"])
    assert rows == [vd(2, 1), vd(3, 1)]
    assert registry.countDataIds(["visit"], datasets=["raw"], collections="run") == 2


def test_global_datasets_have_empty_data_ids(registry):
    registry.registerDatasetType(REFCAT)
    registry.registerRun("refs")
    (ds,) = registry.insertDatasets(
        REFCAT, "refs", [{"dataId": {}, "path": "refcat.npy", "size": 3, "checksum": "x"}]
    )
    assert ds.dataId == DataId()
    assert registry.findDataset("refcat", {}, ["refs"]).id == ds.id
    assert registry.getDatasetLocation(ds) == ("refcat.npy", 3, "x")
    assert registry.queryDataIds([], datasets=[REFCAT], collections=["refs"]) == [DataId()]


def test_unknown_expression_identifier_lists_valid_ones(shared):
    from supertask.expr import ExpressionError

    with pytest.raises(ExpressionError, match="visit.exposure_time"):
        shared.queryDataIds(["visit"], where="visit.exposure_tme > 3")


def test_returned_ids_match_the_registry_after_removals(registry):
    registry.registerDatasetType(RAW)
    registry.registerRun("run")
    first = registry.insertDatasets(RAW, "run", records([vd(0, d) for d in range(4)]))
    assert registry.removeDatasets(first[2:]) == 2  # frees the highest ids
    later = registry.insertDatasets(RAW, "run", records([vd(1, d) for d in range(3)]))
    mixed = registry.insertDatasets(RAW, "run", records([vd(1, 0), vd(2, 0)]))
    for ds in (*first[:2], *later, *mixed):
        assert registry.findDataset(RAW, ds.dataId, ["run"]).id == ds.id
    assert len({d.id for d in (*first[:2], *later, mixed[1])}) == 6


def test_large_batches_take_the_bulk_path_and_stay_idempotent(registry):
    from supertask.repo.registry.registry import COPY_THRESHOLD

    n = COPY_THRESHOLD + 200
    detectors = [{"instrument": "Cam", "detector": 1000 + d} for d in range(n)]
    registry.insertUnits("detector", detectors)
    registry.insertUnits("detector", detectors)
    with pytest.raises(ValueError, match="different values"):
        registry.insertUnits("detector", [*detectors[1:], {**detectors[0], "full_name": "other"}])
    registry.registerDatasetType(RAW)
    registry.registerRun("run")
    ids = [vd(0, 1000 + d) for d in range(n)]
    first = registry.insertDatasets(RAW, "run", records(ids))
    again = registry.insertDatasets(RAW, "run", records([*ids, vd(1, 0)]))
    assert [d.id for d in again[:n]] == [d.id for d in first]
    assert registry.countDatasets(RAW) == n + 1
    sample = first[n // 2]
    assert registry.findDataset(RAW, sample.dataId, "run").id == sample.id
    with pytest.raises(ConflictingDatasetError):
        registry.insertDatasets(RAW, "run", records(ids, checksum="other"))


def test_restrict_may_name_units_outside_the_output(shared):
    rows = shared.queryDataIds(["visit"], restrict={"patch": [0]})
    assert [d["visit"] for d in rows] == [0, 1]  # the visits overlapping patch 0
    with pytest.raises(KeyError, match="unknown unit"):
        shared.queryDataIds(["visit"], restrict={"ccd": [1]})


def test_exposures_join_visits_through_their_definition(registry):
    registry.insertUnits(
        "exposure",
        # the filter of each exposure is that of its visit (visit e // 2: 0 is G, 1 is R)
        [
            {"instrument": "Cam", "exposure": 100 + e, "physical_filter": "R" if e >= 2 else "G"}
            for e in range(4)
        ],
    )
    registry.insertUnits(
        "visit_definition", [{"instrument": "Cam", "exposure": 100 + e, "visit": e // 2} for e in range(4)]
    )
    rows = registry.queryDataIds(["exposure", "visit"])
    assert {(d["exposure"], d["visit"]) for d in rows} == {(100, 0), (101, 0), (102, 1), (103, 1)}


def test_expression_may_use_relation_fields(shared):
    rows = shared.queryDataIds(["visit", "detector"], where="visit_detector_region.ra_min >= 5.2")
    assert {(d["visit"], d["detector"]) for d in rows} == {(5, 2), (5, 3)}


def test_query_datasets_expression_may_name_other_units(registry):
    registry.registerDatasetType(RAW)
    registry.registerRun("run")
    registry.insertDatasets(RAW, "run", records([vd(v, 0) for v in range(6)]))
    found = registry.queryDatasets(RAW, "run", where="patch = 2")
    assert [d.dataId["visit"] for d in found] == [4, 5]  # the visits overlapping patch 2


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"where": b"visit = 1"}, r"not bytes \(decode it first"),
        ({"where": 42}, "not int"),
        ({"where": "visit = :v", "bind": [("v", 1)]}, "bind must be a mapping"),
    ],
)
def test_wrong_argument_types_are_a_clear_type_error(shared, arguments, message):
    for query in (shared.queryDataIds, shared.countDataIds):
        with pytest.raises(TypeError, match=message):
            query(["visit"], **arguments)
    with pytest.raises(TypeError, match=message):
        shared.queryDataIdValues(["visit"], **arguments)


def test_units_given_as_one_string_are_a_clear_type_error(shared):
    with pytest.raises(TypeError, match=r"write \['visit'\]"):
        shared.queryDataIds("visit")


def test_a_query_for_no_units_is_whether_the_expression_matches(shared):
    # an expression on units that are not output: one empty data ID, or none (was invalid SQL)
    assert shared.queryDataIds([], where="tract = 0") == [DataId()]
    assert shared.queryDataIds([], where="tract = 7") == []
    assert shared.countDataIds([], where="patch IN (1, 2)") == 1
    assert shared.countDataIds([], where="patch = 99") == 0


COADD_INPUT = DatasetType("skyTemplate", ("skymap", "tract", "patch"), "NumpyArray")


def test_many_tables_with_several_dataset_constraints_keep_exactly_the_rows_with_datasets(registry):
    # The preflight shape: units from both sides of the overlap relation, an expression,
    # a chunked restriction and three existence tests (one of a global dataset). The
    # rows are those of the unconstrained query that have every dataset: PostgreSQL
    # runs this as a MATERIALIZED join filtered by EXISTS, SQLite as one flat SELECT.
    for dt in (RAW, REFCAT, COADD_INPUT):
        registry.registerDatasetType(dt)
    registry.registerRun("run")
    raws = {(v, d) for v in range(6) for d in range(4) if (v + d) % 3}
    registry.insertDatasets(RAW, "run", records([vd(v, d) for v, d in sorted(raws)]))
    registry.insertDatasets(REFCAT, "run", [{"dataId": {}, "path": "refcat", "size": 1, "checksum": "c"}])
    templates = {0, 2}
    registry.insertDatasets(
        COADD_INPUT, "run", records([DataId(skymap="sky", tract=0, patch=p) for p in sorted(templates)])
    )
    units = ["visit", "detector", "patch", "band"]
    where, restrict = "band = 'g' OR visit > 3", {"detector": [0, 1, 3]}
    everything = registry.queryDataIds(units, where=where, restrict=restrict)
    expected = [d for d in everything if (d["visit"], d["detector"]) in raws and d["patch"] in templates]
    rows = registry.queryDataIds(
        units, where=where, restrict=restrict, datasets=[RAW, REFCAT, COADD_INPUT], collections=["run"]
    )
    assert rows == expected
    assert 0 < len(expected) < len(everything)
    assert registry.countDataIds(units, where=where, datasets=[RAW, COADD_INPUT], collections="run") == len(
        [
            d
            for d in registry.queryDataIds(units, where=where)
            if (d["visit"], d["detector"]) in raws and d["patch"] in templates
        ]
    )
    assert registry.queryDataIds([], where="visit = 5", datasets=[RAW], collections=["run"]) == [DataId()]
    assert registry.queryDataIds([], where="visit = 9", datasets=[RAW], collections=["run"]) == []


def test_postgresql_joins_tables_in_a_fixed_order_and_tests_datasets_after_the_join(shared):
    # PostgreSQL's exhaustive join search over a flat FROM list of 11 tables with 5
    # EXISTS took seconds to plan (2 ms to run): its statement is a chain of explicit
    # JOINs (searched in sub-problems of at most join_collapse_limit tables) in a
    # MATERIALIZED CTE that the EXISTS tests read. SQLite keeps the flat SELECT.
    from sqlalchemy.dialects import postgresql, sqlite

    from supertask.repo.registry.query import DatasetConstraint, QueryBuilder

    units = {"visit", "detector", "patch", "band", "exposure"}
    constraints = [DatasetConstraint("raw", 1, RAW.units, [1]), DatasetConstraint("refcat", 2, (), [1])]
    for dialect, compiler in (("postgresql", postgresql.dialect()), ("sqlite", sqlite.dialect())):
        builder = QueryBuilder(shared.schema, dialect)
        plan = builder.plan(units)
        assert len(plan.elements) >= 9
        sql = str(builder.select(plan, None, constraints, {"detector": [1]}).compile(dialect=compiler))
        body, _, outer = sql.partition("\n SELECT ")
        if dialect == "postgresql":
            assert body.startswith("WITH planned AS MATERIALIZED")
            joined_from = body.split("\nFROM ", 1)[1].split("\nWHERE", 1)[0]
            assert joined_from.count(" JOIN ") == len(plan.elements) - 1 and ", " not in joined_from
            assert "EXISTS" not in body and outer.count("EXISTS") == 2
            assert outer.split("\nFROM ", 1)[1].startswith("planned \nWHERE")
        else:
            assert not outer and " JOIN " not in sql and sql.count("EXISTS") == 2


@pytest.mark.postgres
def test_postgresql_statistics_of_unit_tables_are_fresh_after_an_insert(postgres_schema_url):  # noqa: F811
    # Autovacuum never analyzes a table of a few rows: without statistics PostgreSQL's
    # planner guessed one row per table and chose nested loops over 10^5 rows.
    reg = Registry.create(postgres_schema_url)
    try:
        populate(reg)
        with reg.engine.connect() as conn:
            counts = dict(
                conn.execute(
                    sa.text(
                        "SELECT relname, reltuples FROM pg_class WHERE relnamespace = current_schema()::regnamespace"
                        " AND relname IN ('band', 'tract', 'visit', 'visit_detector_patch_overlap')"
                    )
                ).all()
            )
        overlaps = len(reg.queryDataIds(["visit", "detector", "patch"]))
        assert counts == {"band": 2, "tract": 1, "visit": 6, "visit_detector_patch_overlap": overlaps}
    finally:
        reg.close()


def test_a_chain_of_runs_resolves_with_one_query_per_chain_in_search_order(registry):
    # Each query is a round trip to a PostgreSQL server, and preflight resolves its
    # input collections once per dataset type: a chain's children come with their ids
    # and types, so runs need no query of their own.
    for run in ("a", "b", "c", "d"):
        registry.registerRun(run)
    registry.setChain("inner", ["c", "a"])
    registry.setChain("outer", ["b", "inner", "d", "a"])
    statements = []

    def record(conn, cursor, statement, *args):
        statements.append(statement)

    sa.event.listen(registry.engine, "before_cursor_execute", record)
    try:
        resolved = registry.resolveCollections(["outer"])
    finally:
        sa.event.remove(registry.engine, "before_cursor_execute", record)
    assert [name for _, name in resolved] == ["b", "c", "a", "d"]
    selects = [s for s in statements if s.lstrip().upper().startswith("SELECT")]
    assert len(selects) == 3  # outer's row, outer's children, inner's children
