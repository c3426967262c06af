"""A large ordered SQLite query run as two rowid halves on two connections at once (`halved_select`).

The halves must give exactly the rows of the one statement: the same rows, sorted, the
same datasets found, the same row limit, the same snapshot even when another
connection commits while the halves start; and no worker thread or extra pooled
connection is left behind.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from conftest_repo import db_url, populate, postgres_schema_url  # noqa: F401

import supertask.repo.registry.data_id_query_manager as manager_module
from supertask.repo.dataset import DatasetType
from supertask.repo.registry import Registry, RowLimitError
from supertask.repo.registry.halved_select import SPLIT_MIN_ROWS, halve

RAW = DatasetType("raw", ("instrument", "visit", "detector"), "NumpyArray")
UNITS = ["visit", "detector", "patch", "band"]
VISITS, DETECTORS = 24, 4


def _raw(visit: int, detector: int) -> dict[str, object]:
    return {
        "dataId": {"instrument": "Cam", "visit": visit, "detector": detector},
        "path": f"raw/{visit}/{detector}",
        "size": 1,
        "checksum": "c",
    }


def _fill(registry: Registry) -> None:
    """24 visits x 4 detectors over 12 patches; a raw for two (visit, detector) in three."""
    populate(registry, n_visits=VISITS, n_detectors=DETECTORS, n_patches=12)
    registry.registerDatasetType(RAW)
    registry.registerRun("run")
    registry.insertDatasets(
        RAW, "run", [_raw(v, d) for v in range(VISITS) for d in range(DETECTORS) if (v + d) % 3]
    )


@pytest.fixture
def registry(tmp_path) -> Iterator[Registry]:
    reg = Registry.create(f"sqlite:///{tmp_path / 'registry.sqlite3'}")
    _fill(reg)
    yield reg
    reg.close()


@pytest.fixture
def splits(monkeypatch) -> list[bool | None]:
    """What each `halve` call gave: `True` (parallel halves), `False` (sequential), `None` (not split)."""
    seen: list[bool | None] = []

    def spy(*args, **kwargs):
        halves = halve(*args, **kwargs)
        seen.append(None if halves is None else halves.parallel)
        return halves

    monkeypatch.setattr(manager_module, "halve", spy)
    return seen


def _answers(registry: Registry, splitMinRows: int | None):
    registry._managers.queries.splitMinRows = splitMinRows
    keys, rows, found = registry.queryDataIdValuesWithDatasets(UNITS, datasets=["raw"], collections="run")
    return (
        keys,
        rows,
        sorted(found["raw"].ids.items()),
        registry.queryDataIdValues(UNITS),
        registry.queryDataIds(["visit", "detector", "patch"], where="detector > 0"),
    )


def _checked_out(registry: Registry) -> int:
    pool = registry.engine.pool
    return pool.checkedout() if isinstance(pool, sa.pool.QueuePool) else 0


def test_halves_give_the_rows_and_datasets_of_one_statement(registry, splits):
    threads = threading.active_count()
    whole = _answers(registry, None)
    assert splits == []
    halved = _answers(registry, 1)
    assert splits[:2] == [True, True]  # the planning query and the plain one ran as halves
    assert halved == whole
    keys, rows = whole[0], whole[1]
    assert rows == sorted(rows) and len(rows) == len(set(rows))
    assert len(rows) == len(whole[2]) == 2 * VISITS * DETECTORS // 3  # one row per raw
    assert keys == ("band", "detector", "instrument", "patch", "skymap", "tract", "visit")
    assert threading.active_count() == threads
    assert _checked_out(registry) == 0


def test_halves_are_two_sorted_runs_that_cover_every_row_once(registry):
    # Each half is sorted on its own; end to end they are out of order (the lower rowids
    # hold rows of both bands), so the caller's merge is what sorts them.
    queries = registry._managers.queries
    plan = queries.builder.plan(set(UNITS))
    queries.builder.fromClause(plan)
    plan.outputKeys = registry.universe.expand(UNITS)
    stmt = queries.builder.select(plan, None)
    with registry.engine.connect() as conn:
        whole = [tuple(r) for r in conn.execute(stmt)]
    tables = {registry.schema.elements[e].name for e in plan.elements}
    with registry.engine.connect() as conn, registry.engine.connect() as other:
        halves = halve(conn, other, stmt, tables, minRows=1)
        assert halves is not None and halves.parallel
        lower, upper = [tuple(r) for r in halves.lower], [tuple(r) for r in halves.upper]
        halves.close()
    assert lower == sorted(lower) and upper == sorted(upper) and lower and upper
    assert lower + upper != whole
    assert sorted(lower + upper) == whole and len(whole) == len(set(whole))
    with registry.engine.connect() as conn, registry.engine.connect() as other:
        assert halve(conn, other, stmt, tables, minRows=len(whole) * 10) is None  # too few rowids
        assert halve(conn, other, stmt, {"visit"}, minRows=1) is None  # scans a table not offered
        assert not conn.in_transaction()  # left untouched


def test_halves_keep_the_row_limit(registry, splits):
    registry._managers.queries.splitMinRows = 1
    count = registry.countDataIds(UNITS)
    with pytest.raises(RowLimitError, match=f"more than {count - 1} rows"):
        registry.queryDataIdValues(UNITS, max_rows=count - 1)
    assert len(registry.queryDataIdValues(UNITS, max_rows=count)[1]) == count
    assert splits == [True, True]
    assert _checked_out(registry) == 0


def test_a_commit_between_the_halves_starts_makes_both_read_the_first_snapshot(registry, splits, tmp_path):
    before = _answers(registry, None)
    writer = Registry(registry.url)
    committed = []

    def commit_first(conn, cursor, statement, parameters, context, executemany):
        # The worker's connection, about to start its read transaction after the caller's.
        if (
            statement == "PRAGMA data_version"
            and threading.current_thread().name == "supertask-halved-select"
        ):
            if not committed:
                writer.insertDatasets(
                    RAW, "run", [_raw(v, d) for v in range(VISITS) for d in range(DETECTORS)]
                )
                committed.append(True)

    registry._managers.queries.splitMinRows = 1
    sa.event.listen(registry.engine, "before_cursor_execute", commit_first)
    try:
        keys, rows, found = registry.queryDataIdValuesWithDatasets(UNITS, datasets=["raw"], collections="run")
    finally:
        sa.event.remove(registry.engine, "before_cursor_execute", commit_first)
    assert committed and splits == [False]  # the upper half ran on the caller's connection
    assert (keys, rows, sorted(found["raw"].ids.items())) == before[:3]
    after = registry.queryDataIdValuesWithDatasets(UNITS, datasets=["raw"], collections="run")[1]
    assert len(after) == VISITS * DETECTORS  # the next query sees the commit
    writer.close()


def test_small_distinct_or_restricted_queries_run_as_one_statement(registry, splits):
    assert SPLIT_MIN_ROWS > VISITS * DETECTORS
    registry._managers.queries.splitMinRows = SPLIT_MIN_ROWS
    registry.queryDataIdValues(UNITS)
    assert splits == [None]  # too few overlaps
    registry._managers.queries.splitMinRows = 1
    splits.clear()
    # Filters of the visits an expression names: DISTINCT, whose halves could share a row.
    assert len(registry.queryDataIds(["physical_filter"], where="visit > 0")) == 2
    assert splits == [None]
    splits.clear()
    registry.queryDataIdValues(UNITS, restrict={"visit": [1, 2]})  # IN-list chunks
    registry.queryDataIdValues(UNITS, ordered=False)  # no sort to share
    assert splits == []
    assert _checked_out(registry) == 0


def test_postgresql_runs_one_statement(db_url, splits):  # noqa: F811
    reg = Registry.create(db_url)
    try:
        _fill(reg)
        reg._managers.queries.splitMinRows = 1
        rows = reg.queryDataIdValuesWithDatasets(UNITS, datasets=["raw"], collections="run")[1]
        assert len(rows) == 2 * VISITS * DETECTORS // 3
        assert splits == ([] if reg.engine.dialect.name == "postgresql" else [True])
    finally:
        reg.close()
