"""Datasets: registration in bulk, look-ups in collection search order, checksums, removal.

All datasets live in one ``dataset`` table with a column per unit and a canonical
``data_id_key`` that carries ``UNIQUE (dataset_type_id, data_id_key, run_id)``.
Registration is idempotent: the same dataset with the same checksum is a no-op, another
checksum is a `ConflictingDatasetError`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import sqlalchemy as sa

from ..dataid import DataId
from ..dataset import Dataset, DatasetType
from ..units import sort_data_ids
from .bulk import (
    CHUNK,
    COPY_THRESHOLD,
    INSERT_CHUNK,
    chunked,
    data_id_key,
    pg_copy_insert,
    raw_rows,
    restrict_chunks,
)
from .collection_manager import CollectionManager
from .data_id_query_manager import DataIdQueryManager
from .database import RegistryDatabase
from .dataset_type_manager import DatasetTypeManager
from .errors import ConflictingDatasetError
from .where import check_query_arguments, parse_where

__all__ = ["DatasetManager"]

_Row = tuple[Any, ...]
"""A dataset row to insert: ``(data_id_key, path, size, checksum, *key values)``."""


class DatasetManager:
    """Registers, finds, counts and removes datasets.

    Parameters
    ----------
    db : `RegistryDatabase`
        The opened registry database.
    datasetTypes : `DatasetTypeManager`
        Resolves dataset types to their table ids.
    collections : `CollectionManager`
        Resolves runs and search paths.
    queries : `DataIdQueryManager`
        Joins unit tables for a ``where`` expression of `query`.
    """

    def __init__(
        self,
        db: RegistryDatabase,
        datasetTypes: DatasetTypeManager,
        collections: CollectionManager,
        queries: DataIdQueryManager,
    ):
        self._db = db
        self._datasetTypes = datasetTypes
        self._collections = collections
        self._queries = queries

    # ------------------------------------------------------------------ registration
    def insert(
        self, datasetType: DatasetType | str, run: str, records: Iterable[Mapping[str, Any]]
    ) -> list[Dataset]:
        """Register datasets in bulk, in one transaction; see `Registry.insertDatasets`."""
        with self._db.transaction() as conn:
            return self.insertIn(conn, datasetType, run, records)

    def insertGroups(
        self,
        run: str,
        groups: Sequence[Sequence[tuple[DatasetType | str, Mapping[str, Any]]]],
        *,
        beforeCommit: Callable[[], None] | None = None,
    ) -> None:
        """Register several groups of datasets in ONE transaction; see `Registry.insertDatasetGroups`."""
        byType: dict[str, tuple[DatasetType | str, list[Mapping[str, Any]]]] = {}
        for group in groups:
            for datasetType, record in group:
                name = datasetType if isinstance(datasetType, str) else datasetType.name
                byType.setdefault(name, (datasetType, []))[1].append(record)
        with self._db.transaction() as conn:
            for datasetType, records in byType.values():
                self.insertIn(conn, datasetType, run, records)
            if beforeCommit is not None:
                beforeCommit()

    def insertIn(
        self,
        conn: sa.Connection,
        datasetType: DatasetType | str,
        run: str,
        records: Iterable[Mapping[str, Any]],
    ) -> list[Dataset]:
        """Register datasets of one type inside the caller's transaction ``conn``."""
        universe = self._db.universe
        typeId, dt = self._datasetTypes.resolve(datasetType)
        keys = universe.expand(dt.units)
        convert = universe.dataIdConverter(dt.units)
        keyFormat = ",".join(f"{k}={{!r}}" for k in keys).format  # == data_id_key, precompiled
        dataIds: list[DataId] = []
        rows: list[_Row] = []
        for rec in records:
            dataId = convert(rec["dataId"])
            dataIds.append(dataId)
            values = tuple(dataId._values.values())
            rows.append((keyFormat(*values), rec["path"], rec.get("size"), rec.get("checksum"), *values))
        if not rows:
            return []
        columns = ["data_id_key", "path", "size", "checksum", *keys]
        ids: dict[str, int] = {}
        runId = self._collections.runId(conn, run)
        for part in chunked(rows, INSERT_CHUNK):
            if self._db.isSqlite:
                inserted = self._insertSqlite(conn, typeId, runId, columns, part, ids)
            else:
                inserted = self._insertReturning(conn, typeId, runId, columns, part, ids)
            if inserted != len(part):
                missing = [r for r in part if r[0] not in ids]
                self._checkExisting(conn, typeId, runId, dt, missing, ids)
        return [
            Dataset(dt, dataId, id=ids[row[0]], run=run) for dataId, row in zip(dataIds, rows, strict=True)
        ]

    def _insertSqlite(
        self,
        conn: sa.Connection,
        typeId: int,
        runId: int,
        columns: list[str],
        part: Sequence[_Row],
        ids: dict[str, int],
    ) -> int:
        """executemany straight to sqlite3 (SQLAlchemy's per-row parameter processing costs
        more than the insert itself at 10^6 rows). When every row was inserted the ids are
        known without a query: the transaction holds SQLite's write lock and ``id`` is the
        rowid, so new rows get ``max(id) + 1, + 2, ...`` in insertion order."""
        ds = self._db.schema.dataset
        maxId = conn.execute(sa.select(sa.func.max(ds.c.id))).scalar() or 0
        names = ", ".join(["dataset_type_id", "run_id", *columns])
        marks = ", ".join("?" * (len(columns) + 2))
        sql = (
            f"INSERT INTO dataset ({names}) VALUES ({marks}) "
            "ON CONFLICT (dataset_type_id, data_id_key, run_id) DO NOTHING"
        )
        result = conn.exec_driver_sql(sql, [(typeId, runId, *row) for row in part])
        inserted: int = result.rowcount
        if inserted == len(part):
            for offset, row in enumerate(part, start=1):
                ids[row[0]] = maxId + offset
        return inserted  # otherwise the caller looks all ids up and compares checksums

    def _insertReturning(
        self,
        conn: sa.Connection,
        typeId: int,
        runId: int,
        columns: list[str],
        part: Sequence[_Row],
        ids: dict[str, int],
    ) -> int:
        """PostgreSQL: COPY into a temporary table, then one INSERT ... SELECT ... ON CONFLICT
        DO NOTHING RETURNING (row-by-row parameter binding is the slow part at 10^6 rows)."""
        allColumns = ["dataset_type_id", "run_id", *columns]
        n = 0
        if len(part) < COPY_THRESHOLD:  # a temporary table costs more than it saves
            ds = self._db.schema.dataset
            stmt = (
                self._db.insert(ds)
                .on_conflict_do_nothing(index_elements=["dataset_type_id", "data_id_key", "run_id"])
                .returning(ds.c.id, ds.c.data_id_key)
            )
            params = [dict(zip(allColumns, (typeId, runId, *row), strict=True)) for row in part]
            for dsId, key in conn.execute(stmt, params):
                ids[key] = dsId
                n += 1
            return n
        for dsId, key in pg_copy_insert(
            conn,
            "dataset",
            allColumns,
            [(typeId, runId, *row) for row in part],
            conflict=("dataset_type_id", "data_id_key", "run_id"),
            returning=("id", "data_id_key"),
        ):
            ids[key] = dsId
            n += 1
        return n

    def _checkExisting(
        self,
        conn: sa.Connection,
        typeId: int,
        runId: int,
        dt: DatasetType,
        rows: Sequence[_Row],
        ids: dict[str, int],
    ) -> None:
        ds = self._db.schema.dataset
        want = {r[0]: r for r in rows}
        for part in chunked(list(want)):
            stmt = sa.select(ds.c.id, ds.c.data_id_key, ds.c.checksum).where(
                ds.c.dataset_type_id == typeId, ds.c.run_id == runId, ds.c.data_id_key.in_(list(part))
            )
            for dsId, key, checksum in conn.execute(stmt):
                new = want[key][3]
                if checksum != new:
                    raise ConflictingDatasetError(
                        f"{dt.name} {key} is already registered in this run with checksum {checksum}, "
                        f"not {new}: a different file was written. Remove the old dataset or write to a new run."
                    )
                ids[key] = dsId

    # ------------------------------------------------------------------ look-ups
    def _searchOrder(self, collections: Sequence[str] | str) -> dict[int, tuple[int, str]]:
        """``{run id: (rank, run name)}`` of the runs the collections search, rank 0 first."""
        runs = self._collections.resolve(collections)
        return {rid: (rank, name) for rank, (rid, name) in enumerate(runs)}

    def _rows(
        self,
        conn: sa.Connection,
        stmt: sa.Select[Any],
        dt: DatasetType,
        runOrder: dict[int, tuple[int, str]],
    ) -> list[Dataset]:
        # Rows are (id, run_id, *key values in sorted key order); work on value tuples and
        # build DataIds once at the end (this loop runs once per dataset of a large graph).
        keys = self._db.universe.expand(dt.units)
        best: dict[tuple[Any, ...], tuple[int, int, str]] = {}
        for row in conn.execute(stmt):
            rank, runName = runOrder[row[1]]
            values = tuple(row[2:])
            prev = best.get(values)
            if prev is None or rank < prev[0]:
                best[values] = (rank, row[0], runName)
        try:
            ordered = sorted(best)
        except TypeError:  # mixed value types in one column: fall back to the generic order
            ordered = sorted(best, key=lambda v: DataId(zip(keys, v, strict=True)).sort_key())
        out = []
        for values in ordered:
            _, dsId, runName = best[values]
            out.append(
                Dataset(dt, DataId._from_sorted(dict(zip(keys, values, strict=True))), id=dsId, run=runName)
            )
        return out

    def find(
        self, typeOrName: DatasetType | str, dataId: Mapping[str, Any], collections: Sequence[str] | str
    ) -> Dataset | None:
        """The first dataset of this type and data ID in the collections' search order, or None."""
        typeId, dt = self._datasetTypes.resolve(typeOrName)
        universe = self._db.universe
        dataId = universe.checkDataId(dt.units, dataId)
        runOrder = self._searchOrder(collections)
        ds = self._db.schema.dataset
        keys = universe.expand(dt.units)
        stmt = sa.select(ds.c.id, ds.c.run_id, *[ds.c[k] for k in keys]).where(
            ds.c.dataset_type_id == typeId,
            ds.c.data_id_key == data_id_key(dataId),
            ds.c.run_id.in_(list(runOrder)),
        )
        with self._db.connect() as conn:
            found = self._rows(conn, stmt, dt, runOrder)
        return found[0] if found else None

    def query(
        self,
        typeOrName: DatasetType | str,
        collections: Sequence[str] | str,
        where: str | None = None,
        bind: Mapping[str, Any] | None = None,
        dataIds: Iterable[Mapping[str, Any]] | None = None,
    ) -> list[Dataset]:
        """Datasets of a type in the collections, first match per data ID; see `Registry.queryDatasets`."""
        typeId, dt = self._datasetTypes.resolve(typeOrName)
        runOrder = self._searchOrder(collections)
        universe = self._db.universe
        ds = self._db.schema.dataset
        keys = universe.expand(dt.units)
        check_query_arguments((), bind)
        parsed = parse_where(where)
        base: list[sa.ColumnElement[bool]] = [ds.c.dataset_type_id == typeId, ds.c.run_id.in_(list(runOrder))]
        cols = [ds.c.id, ds.c.run_id, *[ds.c[k].label(k) for k in keys]]
        if parsed is not None:
            builder = self._queries.builder
            plan = builder.plan(dt.units, self._queries.knownElements(parsed))
            froms, conds = builder.fromClause(plan)
            clause = parsed.compile(builder.resolver(plan), bind)
            base += [*conds, clause, *[ds.c[k] == plan.columns[k] for k in keys]]
            stmt = sa.select(*cols).select_from(ds, *froms).where(*base).distinct()
        else:
            stmt = sa.select(*cols).where(*base)
        convert = universe.dataIdConverter(dt.units)
        wanted = None if dataIds is None else {convert(d) for d in dataIds}
        with self._db.connect() as conn:
            if wanted is None:
                return self._rows(conn, stmt, dt, runOrder)
            if not wanted:
                return []
            found: list[Dataset] = []
            for extra in restrict_chunks({k: {d[k] for d in wanted} for k in keys}, lambda k: ds.c[k]):
                found.extend(
                    d for d in self._rows(conn, stmt.where(*extra), dt, runOrder) if d.dataId in wanted
                )
            unique = {d.dataId: d for d in found}
            return [unique[d] for d in sort_data_ids(unique)]

    def findValues(
        self,
        typeOrName: DatasetType | str,
        collections: Sequence[str] | str,
        wanted: Iterable[tuple[Any, ...]],
    ) -> dict[tuple[Any, ...], tuple[int, str]]:
        """``{values: (id, run)}`` at the given data IDs; see `Registry.findDatasetValues`."""
        typeId, dt = self._datasetTypes.resolve(typeOrName)
        runOrder = self._searchOrder(collections)
        wanted = set(wanted)
        if not wanted:
            return {}
        ds = self._db.schema.dataset
        keys = self._db.universe.expand(dt.units)
        stmt = sa.select(ds.c.id, ds.c.run_id, *[ds.c[k] for k in keys]).where(
            ds.c.dataset_type_id == typeId, ds.c.run_id.in_(list(runOrder))
        )
        best: dict[tuple[Any, ...], tuple[int, int, str]] = {}
        with self._db.connect() as conn:
            stored = conn.execute(sa.select(sa.func.count()).select_from(stmt.subquery())).scalar_one()
            restrict: dict[str, set[Any]]
            if 2 * len(wanted) >= stored:
                # Asking for most of what is stored (a planning query's inputs): one read
                # of the whole type, filtered below, beats dozens of chunked IN lists.
                restrict = {}
            else:
                restrict = {k: {row[i] for row in wanted} for i, k in enumerate(keys)}
            for extra in restrict_chunks(restrict, lambda k: ds.c[k]):
                for part in raw_rows(conn.execute(stmt.where(*extra))):
                    for row in part:
                        values = row[2:]
                        if values not in wanted:
                            continue
                        rank, runName = runOrder[row[1]]
                        prev = best.get(values)
                        if prev is None or rank < prev[0]:
                            best[values] = (rank, row[0], runName)
        return {values: (dsId, runName) for values, (_, dsId, runName) in best.items()}

    def location(self, dataset: Dataset) -> tuple[str, int | None, str | None]:
        """``(path, size, checksum)`` of a registered dataset; see `Registry.getDatasetLocation`."""
        ds = self._db.schema.dataset
        stmt = sa.select(ds.c.path, ds.c.size, ds.c.checksum)
        if dataset.id is not None:
            stmt = stmt.where(ds.c.id == dataset.id)
        elif dataset.run is not None:
            typeId, dt = self._datasetTypes.resolve(dataset.datasetType)
            c = self._db.schema.collection
            stmt = stmt.join(c, c.c.id == ds.c.run_id).where(
                ds.c.dataset_type_id == typeId,
                ds.c.data_id_key == data_id_key(self._db.universe.checkDataId(dt.units, dataset.dataId)),
                c.c.name == dataset.run,
            )
        else:
            raise LookupError(
                f"{dataset} is not resolved (no id or run); find it with registry.findDataset first"
            )
        with self._db.connect() as conn:
            row = conn.execute(stmt).first()
        if row is None:
            raise LookupError(f"{dataset} (id={dataset.id}, run={dataset.run!r}) is not registered")
        return row.path, row.size, row.checksum

    def locations(self, datasets: Sequence[Dataset]) -> list[str]:
        """Paths of many registered datasets, in order; see `Registry.getDatasetLocations`."""
        datasets = list(datasets)
        ds = self._db.schema.dataset
        ids = sorted({d.id for d in datasets if d.id is not None})
        paths: dict[int, str] = {}
        with self._db.connect() as conn:
            for part in chunked(ids):
                for dsId, path in conn.execute(sa.select(ds.c.id, ds.c.path).where(ds.c.id.in_(list(part)))):
                    paths[dsId] = path
        out: list[str] = []
        missing: list[str] = []
        for d in datasets:
            if d.id is None:
                out.append(self.location(d)[0])
                continue
            path = paths.get(d.id)
            if path is None:
                missing.append(f"{d} (id={d.id}, run={d.run!r})")
            else:
                out.append(path)
        if missing:
            more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
            raise LookupError(f"not registered: {', '.join(missing[:5])}{more}")
        return out

    def records(self, datasets: Sequence[Dataset]) -> dict[int, tuple[str, int | None, str | None]]:
        """``{id: (path, size, checksum)}`` by id; see `Registry.getDatasetRecords`."""
        return self.recordsById(d.id for d in datasets if d.id is not None)

    def recordsById(self, wanted: Iterable[int]) -> dict[int, tuple[str, int | None, str | None]]:
        """``{id: (path, size, checksum)}`` of the registered ones among the ids ``wanted``.

        Long dense runs of ids are read as ranges, the rest by IN lists of `CHUNK` ids; both
        statements are rendered once (bound ``lo``/``hi``; `_id_list_statement`): a million ids
        scattered over the table are two thousand executions of one statement, not a
        statement built per id or per chunk. A caller with many ids asks in id order
        so that each call's ids form dense runs.
        """
        ds = self._db.schema.dataset
        ids = sorted(set(wanted))
        found: dict[int, tuple[str, int | None, str | None]] = {}
        columns = (ds.c.id, ds.c.path, ds.c.size, ds.c.checksum)
        ranges, scattered = _id_spans(ids)
        by_range = sa.select(*columns).where(ds.c.id >= sa.bindparam("lo"), ds.c.id <= sa.bindparam("hi"))
        with self._db.connect() as conn:
            for lo, hi in ranges:  # rows of unwanted ids in the range are dropped below
                for part in raw_rows(conn.execute(by_range, {"lo": lo, "hi": hi})):
                    for dsId, path, size, checksum in part:
                        found[dsId] = (path, size, checksum)
            if scattered:
                by_list, bind = _id_list_statement(conn, columns, ds.c.id)
                for chunk in chunked(scattered, CHUNK):
                    values = list(chunk) + [chunk[-1]] * (CHUNK - len(chunk))
                    for part in raw_rows(conn.exec_driver_sql(by_list, bind(values))):
                        for dsId, path, size, checksum in part:
                            found[dsId] = (path, size, checksum)
        if len(found) > len(ids):
            wanted_ids = set(ids)
            found = {i: record for i, record in found.items() if i in wanted_ids}
        return found

    # ------------------------------------------------------------------ removal and counts
    def remove(self, datasets: Iterable[Dataset]) -> int:
        """Unregister resolved datasets; returns the count (files are the datastore's business)."""
        ids = [d.id for d in datasets if d.id is not None]
        ds = self._db.schema.dataset
        n = 0
        with self._db.transaction() as conn:
            for part in chunked(ids):
                n += conn.execute(sa.delete(ds).where(ds.c.id.in_(list(part)))).rowcount
        return n

    def count(self, typeOrName: DatasetType | str | None = None) -> int:
        """How many datasets are registered (of one type, or all)."""
        ds = self._db.schema.dataset
        stmt = sa.select(sa.func.count()).select_from(ds)
        if typeOrName is not None:
            stmt = stmt.where(ds.c.dataset_type_id == self._datasetTypes.resolve(typeOrName)[0])
        with self._db.connect() as conn:
            count: int = conn.execute(stmt).scalar_one()
            return count

    def countIn(self, typeOrName: DatasetType | str, collections: Sequence[str] | str) -> int:
        """How many datasets of a type the collections hold (duplicates across runs counted once)."""
        typeId, _ = self._datasetTypes.resolve(typeOrName)
        runIds = [rid for rid, _ in self._collections.resolve(collections)]
        ds = self._db.schema.dataset
        stmt = sa.select(sa.func.count(sa.distinct(ds.c.data_id_key))).where(
            ds.c.dataset_type_id == typeId, ds.c.run_id.in_(runIds)
        )
        with self._db.connect() as conn:
            count: int = conn.execute(stmt).scalar_one()
            return count


#: ids closer than this belong to one run
_ID_GAP = 64


def _id_list_statement(
    conn: sa.Connection, columns: Sequence[sa.ColumnElement[Any]], ident: sa.ColumnElement[Any]
) -> tuple[str, Callable[[list[int]], Any]]:
    """The SQL text of ``SELECT columns WHERE ident IN (CHUNK parameters)`` in the connection's
    dialect, and what makes its parameters of `CHUNK` ids.

    Rendered once and run through the driver: SQLAlchemy renders an expanding list's
    placeholders anew at each execution, and binding `CHUNK` named parameters costs it as
    much; either was half the CPU of reading scattered ids.
    """
    names = [f"id{n}" for n in range(CHUNK)]
    compiled = (
        sa.select(*columns)
        .where(ident.in_([sa.bindparam(name) for name in names]))
        .compile(dialect=conn.dialect)
    )
    if compiled.positional:
        order = compiled.positiontup or []
        if order != names:
            raise RuntimeError(f"unexpected parameter order of {compiled}")
        return str(compiled), tuple
    return str(compiled), lambda values: dict(zip(names, values, strict=True))


#: a run of fewer ids than this is read by IN lists: one range statement per few ids, for
#: a million scattered ids, cost more than all the rest of `bps prepare`
_MIN_RANGE = 256


def _id_spans(ids: Sequence[int]) -> tuple[list[tuple[int, int]], list[int]]:
    """``(ranges, scattered)``: ``(lo, hi)`` of the runs of sorted ``ids`` dense and long enough
    to read as one range (at least `_MIN_RANGE` ids, at least half of the range wanted), and
    the other ids (read with IN lists).

    A graph's overall inputs were mostly registered together, so their ids often come in
    long runs: a range scan returns them without binding a parameter per id.
    """
    ranges: list[tuple[int, int]] = []
    scattered: list[int] = []
    start = 0
    n = len(ids)
    for i in range(1, n + 1):
        if i == n or ids[i] - ids[i - 1] > _ID_GAP:
            lo, hi = ids[start], ids[i - 1]
            if i - start >= _MIN_RANGE and hi - lo + 1 <= 2 * (i - start):
                ranges.append((lo, hi))
            else:
                scattered.extend(ids[start:i])
            start = i
    return ranges, scattered
