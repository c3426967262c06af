"""The registry's managers on their own, on both backends (SQLite file, PostgreSQL schema).

Each test makes the managers over a fresh `RegistryDatabase` of a populated registry
(`RegistryManagers.make`), without the `Registry` facade: a manager must work with only
the managers it is given. The facade's own behaviour is tested in ``test_registry.py``.
"""

from __future__ import annotations

import ast
import inspect
import textwrap
from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from conftest_repo import db_url, populate, postgres_schema_url  # noqa: F401

from supertask.repo.dataid import DataId
from supertask.repo.dataset import Dataset, DatasetType
from supertask.repo.registry import (
    ConflictingDatasetError,
    MissingCollectionError,
    Registry,
    RegistryError,
    RowLimitError,
    RunConflictError,
)
from supertask.repo.registry.collection_manager import check_collection_name
from supertask.repo.registry.database import RegistryDatabase
from supertask.repo.registry.managers import RegistryManagers

RAW = DatasetType("raw", ("instrument", "visit", "detector"), "NumpyArray")
CALEXP = DatasetType("calexp", ("instrument", "visit", "detector"), "NumpyArray")
REFCAT = DatasetType("refcat", (), "Table")
OVERLAP = "visit_detector_patch_overlap"


@pytest.fixture
def db(db_url) -> Iterator[RegistryDatabase]:  # noqa: F811
    """The database of a populated registry (6 visits x 4 detectors, 4 patches)."""
    registry = Registry.create(db_url)
    populate(registry)
    registry.close()
    database = RegistryDatabase(db_url)
    yield database
    database.engine.dispose()


@pytest.fixture
def m(db) -> RegistryManagers:
    return RegistryManagers.make(db)


def vd(visit: int, detector: int) -> DataId:
    return DataId(instrument="Cam", visit=visit, detector=detector)


def records(dataIds, checksum="c0"):
    return [{"dataId": d, "path": f"f/{i}", "size": 1, "checksum": checksum} for i, d in enumerate(dataIds)]


def overlap_rows(db: RegistryDatabase) -> set[tuple[int, int, int]]:
    table = db.schema.elements[OVERLAP]
    with db.connect() as conn:
        return set(conn.execute(sa.select(table.c.visit, table.c.detector, table.c.patch)).all())


# ---------------------------------------------------------------------- database


def test_database_reads_the_stored_universe_and_knows_its_backend(db, db_url):  # noqa: F811
    assert db.universe.digest == Registry(db_url).universe.digest
    assert db.isSqlite == db_url.startswith("sqlite")
    assert set(db.schema.elements) >= {"visit", "patch", OVERLAP}


def test_database_create_refuses_a_database_that_holds_a_registry(db):
    with pytest.raises(RegistryError, match="already holds a registry"):
        RegistryDatabase.create(db.url, db.universe)


def test_database_transaction_rolls_back_on_error(db):
    band = db.schema.elements["band"]
    with pytest.raises(RuntimeError, match="abort"), db.transaction() as conn:
        conn.execute(sa.insert(band), [{"band": "z"}])
        raise RuntimeError("abort")
    with db.connect() as conn:
        assert "z" not in conn.execute(sa.select(band.c.band)).scalars().all()


# ---------------------------------------------------------------------- sky boxes


def test_sky_boxes_know_which_elements_have_boxes_and_overlaps(m):
    assert m.skyBoxes.hasBoxes("patch") and m.skyBoxes.hasBoxes("visit_detector_region")
    assert not m.skyBoxes.hasBoxes("visit")
    assert [o.relation for o in m.skyBoxes.overlapsOf("patch")] == [OVERLAP]
    assert m.skyBoxes.overlapsOf("detector") == []


def test_sky_box_check_names_the_first_bad_row_and_counts_the_others(m):
    good = {"skymap": "sky", "tract": 1, "ra_min": 1.0, "ra_max": 2.0, "dec_min": 0.0, "dec_max": 1.0}
    rows = [good, {**good, "tract": 2, "dec_min": 5.0}, {**good, "tract": 3, "ra_max": None}]
    with pytest.raises(ValueError, match=r"tract row \{'skymap': 'sky', 'tract': 2\}.*1 more of the 3 rows"):
        m.skyBoxes.check("tract", ("skymap", "tract"), rows)
    no_box = {**good, "tract": 4, "ra_min": None, "ra_max": None, "dec_min": None, "dec_max": None}
    m.skyBoxes.check("tract", ("skymap", "tract"), [good, no_box])  # a row without a box is fine


def test_sky_box_overlaps_are_filled_for_the_given_rows_only_and_once(m, db):
    # Patch p covers RA [2p + 0.001, 2p + 1.999]. A box wrapping through RA 0 to 0.0005 stops
    # short of patch 0; one wrapping to 0.5 reaches into it; RA 7.0..7.5 lies in patch 3.
    region = db.schema.elements["visit_detector_region"]
    rows = [
        {
            "instrument": "Cam",
            "visit": 0,
            "detector": 9,
            "ra_min": 359.9,
            "ra_max": 0.0005,
            "dec_min": 0.0,
            "dec_max": 1.0,
        },
        {
            "instrument": "Cam",
            "visit": 0,
            "detector": 8,
            "ra_min": 359.9,
            "ra_max": 0.5,
            "dec_min": 0.0,
            "dec_max": 1.0,
        },
        {
            "instrument": "Cam",
            "visit": 0,
            "detector": 7,
            "ra_min": 7.0,
            "ra_max": 7.5,
            "dec_min": 0.0,
            "dec_max": 1.0,
        },
    ]
    before = overlap_rows(db)
    (overlap,) = m.skyBoxes.overlapsOf("visit_detector_region")
    with db.transaction() as conn:
        conn.execute(
            sa.insert(db.schema.elements["detector"]),
            [{"instrument": "Cam", "detector": d} for d in (7, 8, 9)],
        )
        conn.execute(sa.insert(region), rows)
        m.skyBoxes.fillOverlaps(conn, overlap, "visit_detector_region", rows)
        m.skyBoxes.fillOverlaps(conn, overlap, "visit_detector_region", rows)  # no duplicates
    assert overlap_rows(db) - before == {(0, 8, 0), (0, 7, 3)}


# ---------------------------------------------------------------------- units


def test_units_insert_accepts_identical_rows_and_refuses_contradicting_ones(m):
    rows = [{"instrument": "Cam", "detector": 10, "full_name": "D10"}]
    assert m.units.insert("detector", rows) == 1
    assert m.units.insert("detector", rows) == 1
    with pytest.raises(ValueError, match="already exists with different values"):
        m.units.insert("detector", [{**rows[0], "full_name": "other"}])
    with pytest.raises(ValueError, match="unknown unit or relation 'detektor'"):
        m.units.insert("detektor", rows)


def test_units_insert_checks_boxes_before_writing_and_fills_overlaps(m, db):
    patch = {"skymap": "sky", "tract": 0, "ra_min": 0.0, "ra_max": 0.2, "dec_min": 0.0, "dec_max": 1.0}
    with pytest.raises(ValueError, match="nothing was inserted"):
        m.units.insert("patch", [{**patch, "patch": 10}, {**patch, "patch": 11, "ra_max": 400.0}])
    assert 10 not in m.units.keyValues("patch")
    m.units.insert("patch", [{**patch, "patch": 10}])
    # visit 0's detectors cover RA [0.1 d, 0.1 d + 0.05]: 0, 1 and (touching at 0.2) 2
    assert {(v, d) for v, d, p in overlap_rows(db) if p == 10} == {(0, 0), (0, 1), (0, 2)}


def test_units_records_key_values_and_row_counts(m):
    found = m.units.records("visit", [vd(3, 0), vd(3, 1), vd(5, 2)])
    assert {d: (r["physical_filter"], r["exposure_time"]) for d, r in found.items()} == {
        DataId(instrument="Cam", visit=3): ("R", 30.0),
        DataId(instrument="Cam", visit=5): ("R", 50.0),
    }
    assert m.units.keyValues("visit") == [0, 1, 2, 3, 4, 5]
    assert m.units.keyValues("visit", limit=2) == [0, 1]
    assert m.units.countRows("visit_detector_region") == 24


# ---------------------------------------------------------------------- dataset types


def test_dataset_types_register_once_and_refuse_another_definition(m):
    assert m.datasetTypes.register(RAW) is True
    assert m.datasetTypes.register(RAW) is False
    with pytest.raises(ValueError, match="is registered as"):
        m.datasetTypes.register(DatasetType("raw", ("instrument", "visit"), "NumpyArray"))
    with pytest.raises(ValueError, match="unknown unit 'vist'"):
        m.datasetTypes.register(DatasetType("bad", ("vist",), "NumpyArray"))


def test_dataset_types_resolve_by_name_or_type_to_one_id(m, db):
    m.datasetTypes.register(RAW)
    m.datasetTypes.register(REFCAT)
    typeId, dt = m.datasetTypes.resolve("raw")
    assert dt == RAW and m.datasetTypes.resolve(RAW) == (typeId, RAW)
    again = RegistryManagers.make(db).datasetTypes  # another process's view
    assert again.entry("raw") == (typeId, RAW)
    assert [t.name for t in m.datasetTypes.all()] == ["raw", "refcat"]
    with pytest.raises(KeyError, match=r"'calexp' is not registered; registered: \['raw', 'refcat'\]"):
        m.datasetTypes.get("calexp")


# ---------------------------------------------------------------------- collections


def test_collections_record_run_provenance_and_refuse_another_pipeline(m):
    m.collections.registerRun("run", {"pipeline": "p1", "command": "a"})
    m.collections.registerRun("run", {"pipeline": "p1", "command": "b"})
    assert m.collections.runProvenance("run") == {
        "pipeline": "p1",
        "command": "a",
        "later_executions": [{"pipeline": "p1", "command": "b"}],
    }
    with pytest.raises(RunConflictError, match="different pipeline"):
        m.collections.registerRun("run", {"pipeline": "p2"})
    with pytest.raises(KeyError, match="no RUN collection named 'nope'"):
        m.collections.runProvenance("nope")


def test_collections_resolve_chains_in_order_without_duplicates(m):
    for run in ("a", "b", "c"):
        m.collections.registerRun(run)
    m.collections.setChain("inner", ["c", "a"])
    m.collections.setChain("outer", ["b", "inner", "a"])
    assert m.collections.chain("outer") == ["b", "inner", "a"]
    assert [name for _, name in m.collections.resolve("outer")] == ["b", "c", "a"]
    assert [name for _, name in m.collections.resolve(["a", "outer"])] == ["a", "b", "c"]
    with pytest.raises(RegistryError, match="chain cycle through"):
        m.collections.setChain("inner", ["outer"])
    assert m.collections.chain("inner") == ["c", "a"]  # the refused redefinition left nothing behind
    with pytest.raises(RegistryError, match="only CHAINED collections have children"):
        m.collections.setChain("a", ["b"])


def test_collections_name_the_closest_missing_collection_and_the_run_to_register(m, db):
    m.collections.registerRun("DemoCam/defaults")
    with pytest.raises(MissingCollectionError, match="did you mean 'DemoCam/defaults'"):
        m.collections.resolve("DemoCam/default")
    with pytest.raises(ValueError, match="no collections to search"):
        m.collections.resolve([])
    with db.connect() as conn:
        assert (
            m.collections.runId(conn, "DemoCam/defaults") == m.collections.resolve("DemoCam/defaults")[0][0]
        )
        with pytest.raises(RegistryError, match=r"call registry.registerRun\('x'\)"):
            m.collections.runId(conn, "x")


@pytest.mark.parametrize("name", ["", " a", "/abs", "a/../b"])
def test_collection_names_that_cannot_be_directories_are_refused(name):
    with pytest.raises(ValueError, match="invalid collection name"):
        check_collection_name(name)


# ---------------------------------------------------------------------- datasets


@pytest.fixture
def with_raws(m) -> RegistryManagers:
    """``raw`` of visits 0-2 in run ``old``, of visits 1-3 in run ``new``; chain ``both`` = new, old."""
    m.datasetTypes.register(RAW)
    m.collections.registerRun("old")
    m.collections.registerRun("new")
    m.collections.setChain("both", ["new", "old"])
    m.datasets.insert(RAW, "old", records([vd(v, 0) for v in (0, 1, 2)], "old"))
    m.datasets.insert(RAW, "new", records([vd(v, 0) for v in (1, 2, 3)], "new"))
    return m


def test_datasets_are_found_first_in_search_order(with_raws):
    m = with_raws
    assert m.datasets.find(RAW, vd(1, 0), "both").run == "new"
    assert m.datasets.find("raw", vd(0, 0), "both").run == "old"
    assert m.datasets.find(RAW, vd(5, 0), "both") is None
    found = m.datasets.query(RAW, "both")
    assert [(d.dataId["visit"], d.run) for d in found] == [(0, "old"), (1, "new"), (2, "new"), (3, "new")]
    assert [d.dataId["visit"] for d in m.datasets.query(RAW, "both", where="visit.exposure_time > 15")] == [
        2,
        3,
    ]
    assert [d.run for d in m.datasets.query(RAW, "both", dataIds=[vd(0, 0), vd(2, 0)])] == ["old", "new"]
    # value tuples in the order of universe.expand(RAW.units): detector, instrument, visit
    values = m.datasets.findValues(RAW, "both", [(0, "Cam", 0), (0, "Cam", 2), (0, "Cam", 9)])
    assert {k: run for k, (_, run) in values.items()} == {(0, "Cam", 0): "old", (0, "Cam", 2): "new"}
    assert m.datasets.count(RAW) == 6 and m.datasets.countIn(RAW, "both") == 4


def test_datasets_insert_is_idempotent_and_refuses_another_checksum(with_raws):
    m = with_raws
    first = m.datasets.insert(RAW, "old", records([vd(0, 0)], "old"))
    assert first[0].id == m.datasets.find(RAW, vd(0, 0), "old").id
    with pytest.raises(ConflictingDatasetError, match="already registered in this run with checksum old"):
        m.datasets.insert(RAW, "old", records([vd(0, 0)], "other"))
    with pytest.raises(RegistryError, match="not a registered RUN"):
        m.datasets.insert(RAW, "both", records([vd(5, 0)]))


def test_dataset_groups_register_whole_or_not_at_all(with_raws):
    m = with_raws
    m.datasetTypes.register(CALEXP)
    group = [(CALEXP, records([vd(4, 0)])[0]), ("raw", records([vd(4, 0)])[0])]

    def fail() -> None:
        raise OSError("rename failed")

    with pytest.raises(OSError, match="rename failed"):
        m.datasets.insertGroups("new", [group], beforeCommit=fail)
    assert m.datasets.count(CALEXP) == 0 and m.datasets.count(RAW) == 6
    called = []
    m.datasets.insertGroups("new", [group], beforeCommit=lambda: called.append(True))
    assert called == [True] and m.datasets.count(CALEXP) == 1 and m.datasets.count(RAW) == 7


def test_dataset_locations_records_and_removal(with_raws):
    m = with_raws
    found = m.datasets.query(RAW, "old")
    assert m.datasets.location(found[1]) == ("f/1", 1, "old")
    unresolved = Dataset(RAW, vd(2, 0), run="old")
    assert m.datasets.location(unresolved) == ("f/2", 1, "old")
    assert m.datasets.locations([found[2], unresolved, found[0]]) == ["f/2", "f/2", "f/0"]
    assert m.datasets.records(found) == {d.id: (f"f/{i}", 1, "old") for i, d in enumerate(found)}
    assert m.datasets.remove(found[:2]) == 2
    with pytest.raises(LookupError, match="not registered"):
        m.datasets.locations(found)
    assert m.datasets.records(found) == {found[2].id: ("f/2", 1, "old")}
    with pytest.raises(LookupError, match="not resolved"):
        m.datasets.location(Dataset(RAW, vd(2, 0)))


# ---------------------------------------------------------------------- data-ID queries


def test_data_id_queries_agree_with_their_count_and_value_form(m):
    ids = m.queries.dataIds(["visit", "detector"], where="band = 'r' AND detector < 2")
    # sorted by the key columns in name order: detector, instrument, visit
    assert [(d["visit"], d["detector"]) for d in ids] == [(1, 0), (3, 0), (5, 0), (1, 1), (3, 1), (5, 1)]
    keys, rows = m.queries.values(["visit", "detector"], where="band = 'r' AND detector < 2")
    assert keys == ("detector", "instrument", "visit") and len(rows) == 6
    assert m.queries.count(["visit", "detector"], where="band = 'r' AND detector < 2") == 6
    assert len(m.queries.dataIds(["visit", "patch"])) == 6  # visit v overlaps patch v // 2 only
    with pytest.raises(RowLimitError, match="more than 5 rows"):
        m.queries.values(["visit", "detector"], max_rows=5)


def test_data_id_queries_keep_rows_with_datasets_in_the_collections(with_raws):
    m = with_raws
    ids = m.queries.dataIds(["visit", "detector"], datasets=[RAW], collections="both")
    assert [d["visit"] for d in ids] == [0, 1, 2, 3]
    assert m.queries.count(["visit"], datasets=["raw"], collections="old") == 3
    with pytest.raises(ValueError, match="need collections"):
        m.queries.dataIds(["visit"], datasets=[RAW])
    m.datasetTypes.register(REFCAT)
    assert m.queries.values([], datasets=[REFCAT], collections="old") == ((), [])
    m.datasets.insert(REFCAT, "old", records([{}]))
    assert m.queries.values([], datasets=[REFCAT], collections="old") == ((), [()])


# ---------------------------------------------------------------------- the facade


def test_registry_public_methods_are_one_statement_delegations():
    # The facade holds no SQL of its own: every public method is a single statement
    # that hands the call to a manager (or the database).
    for name, member in vars(Registry).items():
        if name.startswith("_") or name == "create":
            continue
        function = member.fget if isinstance(member, property) else getattr(member, "__wrapped__", member)
        if not callable(function):
            continue
        tree = ast.parse(textwrap.dedent(inspect.getsource(function)))
        body = [
            s
            for s in tree.body[0].body
            if not (isinstance(s, ast.Expr) and isinstance(s.value, ast.Constant))
        ]
        assert len(body) == 1, f"Registry.{name} does more than delegate"
        assert "_managers" in ast.unparse(body[0]) or "_db" in ast.unparse(body[0]), name
