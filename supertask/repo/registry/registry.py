"""The SQL registry: units, dataset types, collections, datasets.

Everything is bulk: units and datasets are inserted with one executemany per chunk
(idempotent through ``ON CONFLICT DO NOTHING`` plus a comparison of the conflicting rows),
look-ups by many data IDs use chunked IN lists, and every data-ID query is one joined
SELECT built by `QueryBuilder`.
"""

from __future__ import annotations

import json
import math
import numbers
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import sqlalchemy as sa
import yaml
from sqlalchemy.dialects import postgresql, sqlite

from ..dataid import DataId
from ..dataset import Dataset, DatasetType
from ..units import BOX_FIELDS, SpatialOverlap, Universe, sort_data_ids, sort_value_tuples
from .bulk import CHUNK, chunked, data_id_key, dropped_keys, pg_copy_insert, restrict_chunks
from .engine import ReadOnlyRegistryError, is_read_only, is_sqlite, make_engine
from .query import DatasetConstraint, QueryBuilder, QueryPlan
from .run_provenance import mismatch_message
from .schema import SCHEMA_VERSION, RegistrySchema
from .where import ParsedWhere, check_query_arguments, parse_where

INSERT_CHUNK = 5000

COPY_THRESHOLD = 1000
"""PostgreSQL batches at least this big go through COPY and a temporary table."""


class RegistryError(RuntimeError):
    """A registry operation cannot be done; the message says why and what to do."""


class IncompatibleSchemaError(RegistryError):
    """The repository was written by a registry with another major schema version."""


class ConflictingDatasetError(RegistryError):
    """A dataset is already registered in the run with different content."""


class ReadOnlyError(RegistryError):
    """A write was attempted on a registry opened read-only (or that the database refused as read-only)."""


class MissingCollectionError(RegistryError, KeyError):
    """A collection named by the caller does not exist (also a `KeyError`, as it always was)."""

    def __str__(self) -> str:  # a KeyError would quote its message
        return str(self.args[0]) if self.args else ""


class RunConflictError(RegistryError):
    """A RUN is being written with another pipeline or config than it was made with."""


class OutputExistsError(RegistryError):
    """Outputs a plan would write are registered already, and no option says what to do."""


class RowLimitError(RegistryError):
    """A query returned more rows than the caller's ``max_rows``; fetching stopped there."""

    def __init__(self, limit: int):
        super().__init__(f"the query returns more than {limit} rows")
        self.limit = limit


class Registry:
    """A registry database (SQLite file or PostgreSQL schema).

    Use `Registry.create` for a new registry and ``Registry(url)`` to open one.

    Parameters
    ----------
    url : `str`
        SQLAlchemy database URL.

    Raises
    ------
    RegistryError
        If the database holds no registry.
    IncompatibleSchemaError
        If its schema version's major number differs from this software's.
    """

    def __init__(self, url: str, *, readOnly: bool | None = None, _engine: sa.Engine | None = None):
        self.url = url
        try:
            self.engine = _engine or make_engine(url, readOnly)
        except ReadOnlyRegistryError as err:
            raise RegistryError(str(err)) from None
        meta = self._readMeta()
        version = meta.get("schema_version", "?")
        if version.split(".")[0] != SCHEMA_VERSION.split(".")[0]:
            raise IncompatibleSchemaError(
                f"registry at {_safe_url(url)} has schema version {version}; this software reads "
                f"{SCHEMA_VERSION.split('.')[0]}.x. Use a supertask release matching the repository, "
                "or create a new repository and re-ingest/transfer its datasets."
            )
        self.universe = Universe(yaml.safe_load(meta["universe"]))
        self.schema = RegistrySchema(self.universe)
        self.queries = QueryBuilder(self.schema, self.engine.dialect.name)
        self._typeCache: dict[str, tuple[int, DatasetType]] = {}
        self._collectionCache: dict[str, tuple[int, str]] = {}

    # ------------------------------------------------------------------ creation
    @classmethod
    def create(cls, url: str, universe: Universe | None = None) -> Registry:
        """Create the tables of a new registry and return it opened.

        Raises
        ------
        RegistryError
            If the database already holds a registry.
        """
        universe = universe or Universe.default()
        engine = make_engine(url)
        schema = RegistrySchema(universe)
        if sa.inspect(engine).has_table("registry_meta"):
            raise RegistryError(
                f"{_safe_url(url)} already holds a registry; open it instead, or use another database/schema"
            )
        text = yaml.safe_dump(universe.toData(), sort_keys=False)
        with _write(engine) as conn:
            schema.metadata.create_all(conn)
            conn.execute(
                sa.insert(schema.meta),
                [
                    {"key": "schema_version", "value": SCHEMA_VERSION},
                    {"key": "universe_version", "value": str(universe.version)},
                    {"key": "universe", "value": text},
                ],
            )
        return cls(url, _engine=engine)

    def _readMeta(self) -> dict[str, str]:
        table = sa.table("registry_meta", sa.column("key"), sa.column("value"))
        try:
            if not sa.inspect(self.engine).has_table("registry_meta"):
                raise RegistryError(
                    f"{_safe_url(self.url)} holds no supertask registry (no registry_meta table); "
                    "create one with `supertask repo create`"
                )
            with self.engine.connect() as conn:
                return {k: v for k, v in conn.execute(sa.select(table.c.key, table.c.value))}
        except sa.exc.OperationalError as err:
            raise RegistryError(f"cannot open registry at {_safe_url(self.url)}: {err.orig}") from None

    @property
    def isSqlite(self) -> bool:
        """True for the embedded SQLite backend."""
        return is_sqlite(self.engine)

    def close(self) -> None:
        """Release the database connections."""
        self.engine.dispose()

    @contextmanager
    def transaction(self) -> Iterator[sa.Connection]:
        """A write transaction (``BEGIN IMMEDIATE`` on SQLite: waits for, never fails on, the lock)."""
        with _write(self.engine) as conn:
            yield conn

    def _insert(self, table: sa.Table) -> Any:
        dialect = postgresql if self.engine.dialect.name == "postgresql" else sqlite
        return dialect.insert(table)

    # ------------------------------------------------------------------ units
    def insertUnits(self, unitName: str, rows: Iterable[Mapping[str, Any]]) -> int:
        """Insert unit (or relation) rows in bulk; identical existing rows are accepted.

        Parameters
        ----------
        unitName : `str`
            A unit (``"visit"``) or relation (``"visit_detector_region"``) name.
        rows : iterable of `dict`
            Column values: the keys (``instrument``, ``visit``), the implied units
            (``physical_filter``) and any fields.

        Returns
        -------
        count : `int`
            The number of rows given.

        Raises
        ------
        ValueError
            If a row lacks a key, has an unknown column, or contradicts an existing row;
            or if a sky box (``ra_min, ra_max, dec_min, dec_max``) is partial, NaN, out of
            range (RA in [0, 360], Dec in [-90, 90]) or has ``dec_min > dec_max``. Rows are
            checked before anything is written: a batch with a bad row inserts nothing.
        """
        u = self.universe
        if unitName not in self.schema.elements:
            raise ValueError(f"unknown unit or relation {unitName!r}; known: {sorted(self.schema.elements)}")
        table = self.schema.elements[unitName]
        keys = u.elementKeys(unitName)
        required = set(keys) | (set(u.units[unitName].implies) if unitName in u.units else set())
        valid = set(table.c.keys())
        clean = []
        for row in rows:
            extra = set(row) - valid
            if extra:
                raise ValueError(
                    f"{unitName} row {dict(row)!r} has unknown columns {sorted(extra)}; valid: {sorted(valid)}"
                )
            missing = required - set(row)
            if missing:
                raise ValueError(f"{unitName} row {dict(row)!r} lacks {sorted(missing)}")
            clean.append({c: row.get(c) for c in table.c.keys()})
        if not clean:
            return 0
        if all(f in valid for f in BOX_FIELDS):
            _check_boxes(unitName, keys, clean)  # before the transaction: a bad batch writes nothing
        with self.transaction() as conn:
            for part in chunked(clean, INSERT_CHUNK):
                if self.isSqlite or len(part) < COPY_THRESHOLD:
                    stmt = self._insert(table).on_conflict_do_nothing(index_elements=list(keys))
                    inserted = conn.execute(stmt, list(part)).rowcount
                else:
                    cols = list(table.c.keys())
                    rows_ = [tuple(r[c] for c in cols) for r in part]
                    inserted = len(
                        pg_copy_insert(conn, table.name, cols, rows_, conflict=keys, returning=keys[:1])
                    )
                if inserted != len(part):
                    self._checkSameRows(conn, table, keys, part)
            overlaps = [o for o in u.spatialOverlaps if unitName in (o.left, o.right)]
            for overlap in overlaps:
                self._computeOverlaps(conn, overlap, unitName, clean)
        if not self.isSqlite:
            self._analyze([table.name, *(o.relation for o in overlaps)])
        return len(clean)

    def _analyze(self, tables: Sequence[str]) -> None:
        """Refresh PostgreSQL's statistics of unit tables after an insert.

        Autovacuum never analyzes a table of a few rows (an instrument, a skymap's
        tracts) and reaches a freshly filled one only after a while; without statistics
        the planner guessed one row where there were 10^5 and chose nested loops that made
        the 10^5-quantum planning query 3x slower. Unit rows change rarely, and ANALYZE
        samples at most 30,000 rows per table, so doing it after each insert is cheap.
        """
        with self.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            for name in tables:
                conn.exec_driver_sql(f'ANALYZE "{name}"')

    def _checkSameRows(
        self, conn: sa.Connection, table: sa.Table, keys: Sequence[str], rows: Sequence[Mapping[str, Any]]
    ) -> None:
        last = keys[-1]
        given = {tuple(r[k] for k in keys): r for r in rows}
        values = sorted({r[last] for r in rows}, key=str)
        for part in chunked(values):
            for existing in conn.execute(sa.select(table).where(table.c[last].in_(list(part)))).mappings():
                key = tuple(existing[k] for k in keys)
                new = given.get(key)
                if new is None:
                    continue
                diff = {c: (existing[c], new[c]) for c in new if new[c] is not None and existing[c] != new[c]}
                if diff:
                    raise ValueError(
                        f"{table.name} {dict(zip(keys, key, strict=True))} already exists with different values "
                        f"(existing, new): {diff}; unit rows are immutable"
                    )

    def _computeOverlaps(
        self, conn: sa.Connection, overlap: SpatialOverlap, inserted: str, rows: list[dict[str, Any]]
    ) -> None:
        """Insert the relation rows for boxes of ``inserted`` rows that intersect the other side.

        One ``INSERT ... SELECT`` per chunk of new keys; the RA test handles boxes that wrap
        through RA 0 (``ra_min > ra_max``, see `_ra_overlap`), touching edges count.
        """
        u = self.universe
        left = self.schema.elements[overlap.left]
        right = self.schema.elements[overlap.right]
        rel = self.schema.elements[overlap.relation]
        relKeys = u.elementKeys(overlap.relation)
        leftKeys = set(u.elementKeys(overlap.left))
        cols = [left.c[k] if k in leftKeys else right.c[k] for k in relKeys]
        box = sa.and_(
            *_ra_overlap(left, right),
            left.c.dec_min <= right.c.dec_max,
            left.c.dec_max >= right.c.dec_min,
        )
        not_there = ~sa.exists(
            sa.select(sa.literal(1)).where(*[rel.c[k] == c for k, c in zip(relKeys, cols, strict=True)])
        )
        side = left if inserted == overlap.left else right
        sideKeys = u.elementKeys(inserted)
        axis = max(sideKeys, key=lambda k: len({r[k] for r in rows}))
        values = sorted({r[axis] for r in rows}, key=str)
        others = [k for k in sideKeys if k != axis and len({r[k] for r in rows}) <= CHUNK]
        extra = [side.c[k].in_(sorted({r[k] for r in rows}, key=str)) for k in others]
        for part in chunked(values):
            sel = sa.select(*cols).where(box, side.c[axis].in_(list(part)), *extra, not_there)
            conn.execute(sa.insert(rel).from_select(list(relKeys), sel))

    def getUnitRecords(self, unitName: str, dataIds: Iterable[DataId]) -> dict[DataId, dict[str, Any]]:
        """Field values of the given units (chunked look-up by the unit's own key)."""
        table = self.schema.elements[unitName]
        keys = self.universe.elementKeys(unitName)
        wanted = {d.subset(keys) for d in dataIds}
        out: dict[DataId, dict[str, Any]] = {}
        values = sorted({d[unitName] for d in wanted}, key=str)
        with self.engine.connect() as conn:
            for part in chunked(values):
                for row in conn.execute(sa.select(table).where(table.c[unitName].in_(list(part)))).mappings():
                    dataId = DataId({k: row[k] for k in keys})
                    if dataId in wanted:
                        out[dataId] = {k: v for k, v in row.items() if k not in keys}
        return out

    # ------------------------------------------------------------------ dataset types
    def registerDatasetType(self, datasetType: DatasetType) -> bool:
        """Register a dataset type; returns True if it was new.

        Raises
        ------
        ValueError
            If a unit is unknown, or the name is registered with other units or storage class.
        """
        for unit in datasetType.units:
            if unit not in self.universe.units:
                raise ValueError(
                    f"dataset type {datasetType.name!r} has unknown unit {unit!r}; known: {sorted(self.universe.units)}"
                )
        t = self.schema.dataset_type
        with self.transaction() as conn:
            result = conn.execute(
                self._insert(t)
                .on_conflict_do_nothing(index_elements=["name"])
                .values(
                    name=datasetType.name,
                    units=",".join(datasetType.units),
                    storage_class=datasetType.storageClass,
                )
                .returning(t.c.id)
            )
            inserted = result.first() is not None
        existing = self.getDatasetType(datasetType.name)
        if existing != datasetType:
            raise ValueError(
                f"dataset type {datasetType.name!r} is registered as {existing}, not {datasetType}; "
                "use another name or make the definitions agree"
            )
        return inserted

    def getDatasetType(self, name: str) -> DatasetType:
        """The registered dataset type of this name.

        Raises
        ------
        KeyError
            If no such type is registered (the message lists the registered names).
        """
        return self._datasetTypeEntry(name)[1]

    def _datasetTypeEntry(self, name: str) -> tuple[int, DatasetType]:
        entry = self._typeCache.get(name)
        if entry is None:
            t = self.schema.dataset_type
            with self.engine.connect() as conn:
                row = conn.execute(sa.select(t).where(t.c.name == name)).mappings().first()
                if row is None:
                    names = conn.execute(sa.select(t.c.name).order_by(t.c.name)).scalars().all()
                    raise KeyError(
                        f"dataset type {name!r} is not registered; registered: {names or 'none'}. "
                        "Register it with registry.registerDatasetType (butler.put does it for you)."
                    )
            units = tuple(row["units"].split(",")) if row["units"] else ()
            entry = (row["id"], DatasetType(row["name"], units, row["storage_class"]))
            self._typeCache[name] = entry
        return entry

    def queryDatasetTypes(self) -> list[DatasetType]:
        """All registered dataset types, by name."""
        t = self.schema.dataset_type
        with self.engine.connect() as conn:
            names = conn.execute(sa.select(t.c.name).order_by(t.c.name)).scalars().all()
        return [self.getDatasetType(n) for n in names]

    def _resolveType(self, typeOrName: DatasetType | str) -> tuple[int, DatasetType]:
        name = typeOrName if isinstance(typeOrName, str) else typeOrName.name
        return self._datasetTypeEntry(name)

    # ------------------------------------------------------------------ collections
    def registerRun(self, name: str, provenance: Mapping[str, Any] | None = None) -> None:
        """Register a RUN collection (idempotent) and record its provenance.

        A second registration with different provenance (a restart with another command
        line) keeps the first and appends the new one under ``"later_executions"``. The
        collection row is read with ``SELECT ... FOR UPDATE`` (PostgreSQL; SQLite's write
        transaction is exclusive anyway), so concurrent registrations of one run each
        append their record instead of overwriting each other's.

        Raises
        ------
        RunConflictError
            If the run's recorded pipeline or task configs differ from ``provenance``'s
            (see `run_provenance`): one RUN holds the outputs of one configuration.
        """
        _check_collection_name(name)
        c = self.schema.collection
        with self.transaction() as conn:
            conn.execute(
                self._insert(c)
                .on_conflict_do_nothing(index_elements=["name"])
                .values(name=name, type="RUN", provenance=json.dumps(provenance) if provenance else None)
            )
            row = conn.execute(sa.select(c).where(c.c.name == name).with_for_update()).mappings().one()
            if row["type"] != "RUN":
                raise RegistryError(f"collection {name!r} exists as a {row['type']} collection, not a RUN")
            if provenance:
                stored = json.loads(row["provenance"]) if row["provenance"] else None
                new = json.loads(json.dumps(provenance))
                refusal = mismatch_message(name, stored, new)
                if refusal:
                    raise RunConflictError(refusal)
                if stored is None:
                    stored = new
                elif stored != new and new not in stored.get("later_executions", []):
                    stored.setdefault("later_executions", []).append(new)
                conn.execute(sa.update(c).where(c.c.id == row["id"]).values(provenance=json.dumps(stored)))

    def getRunProvenance(self, name: str) -> dict[str, Any] | None:
        """The provenance recorded with a RUN (``None`` if none was given)."""
        c = self.schema.collection
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(c.c.provenance, c.c.type).where(c.c.name == name)).first()
        if row is None or row.type != "RUN":
            raise KeyError(f"no RUN collection named {name!r}")
        return json.loads(row.provenance) if row.provenance else None

    def setChain(self, name: str, children: Sequence[str]) -> None:
        """Define (or redefine) a CHAINED collection searching ``children`` in order.

        Raises
        ------
        KeyError
            If a child does not exist.
        RegistryError
            If the chain would contain itself, or ``name`` is a RUN.
        """
        _check_collection_name(name)
        c, ch = self.schema.collection, self.schema.collection_chain
        with self.transaction() as conn:
            conn.execute(
                self._insert(c)
                .on_conflict_do_nothing(index_elements=["name"])
                .values(name=name, type="CHAINED")
            )
            row = conn.execute(sa.select(c.c.id, c.c.type).where(c.c.name == name)).one()
            if row.type != "CHAINED":
                raise RegistryError(
                    f"collection {name!r} is a {row.type}; only CHAINED collections have children"
                )
            childIds = []
            for child in children:
                childRow = conn.execute(sa.select(c.c.id).where(c.c.name == child)).first()
                if childRow is None:
                    raise KeyError(
                        f"chain {name!r}: child collection {child!r} does not exist; register it first"
                    )
                childIds.append(childRow.id)
            conn.execute(sa.delete(ch).where(ch.c.parent_id == row.id))
            if childIds:
                conn.execute(
                    sa.insert(ch),
                    [{"parent_id": row.id, "position": i, "child_id": cid} for i, cid in enumerate(childIds)],
                )
            self._flatten(conn, [name], set())
        self._collectionCache.clear()

    def getChain(self, name: str) -> list[str]:
        """The children of a CHAINED collection, in search order."""
        c, ch = self.schema.collection, self.schema.collection_chain
        child = c.alias("child")
        with self.engine.connect() as conn:
            stmt = (
                sa.select(child.c.name)
                .select_from(ch.join(c, c.c.id == ch.c.parent_id).join(child, child.c.id == ch.c.child_id))
                .where(c.c.name == name)
                .order_by(ch.c.position)
            )
            return list(conn.execute(stmt).scalars())

    def _flatten(
        self,
        conn: sa.Connection,
        names: Sequence[str],
        stack: set[str],
        known: Mapping[str, tuple[int, str]] | None = None,
    ) -> list[tuple[int, str]]:
        """The RUNs of ``names`` in search order; ``known`` holds rows already read with a chain's children.

        A chain's children come with their ids and types in the query that lists them, so
        resolving a chain of N runs takes two queries, not N + 2 (each a round trip to a
        PostgreSQL server; preflight resolves its input collections several times).
        """
        c, ch = self.schema.collection, self.schema.collection_chain
        out: list[tuple[int, str]] = []
        for name in names:
            if name in stack:
                raise RegistryError(f"collection chain cycle through {name!r}; a chain cannot contain itself")
            row = (known or {}).get(name)
            if row is None:
                row = conn.execute(sa.select(c.c.id, c.c.type).where(c.c.name == name)).first()
            if row is None:
                names_ = list(conn.execute(sa.select(c.c.name).order_by(c.c.name)).scalars())
                raise MissingCollectionError(_missing_collection_message(name, names_))
            rowId, rowType = row
            if rowType == "RUN":
                out.append((rowId, name))
            else:
                children = conn.execute(
                    sa.select(c.c.name, c.c.id, c.c.type)
                    .select_from(ch.join(c, c.c.id == ch.c.child_id))
                    .where(ch.c.parent_id == rowId)
                    .order_by(ch.c.position)
                ).all()
                rows = {child: (childId, childType) for child, childId, childType in children}
                out.extend(self._flatten(conn, [child for child, _, _ in children], stack | {name}, rows))
        return out

    def resolveCollections(self, collections: Sequence[str] | str) -> list[tuple[int, str]]:
        """Flatten collections (chains expanded) into the ordered, de-duplicated RUNs to search."""
        if isinstance(collections, str):
            collections = [collections]
        if not collections:
            raise ValueError("no collections to search; pass collections=[...] (RUN or CHAINED names)")
        with self.engine.connect() as conn:
            flat = self._flatten(conn, list(collections), set())
        seen: set[int] = set()
        unique: list[tuple[int, str]] = []
        for i, n in flat:
            if i not in seen:
                seen.add(i)
                unique.append((i, n))
        return unique

    def _runId(self, conn: sa.Connection, run: str) -> int:
        c = self.schema.collection
        row = conn.execute(sa.select(c.c.id, c.c.type).where(c.c.name == run)).first()
        if row is None or row.type != "RUN":
            raise RegistryError(
                f"{run!r} is not a registered RUN collection; call registry.registerRun({run!r})"
            )
        return int(row.id)

    # ------------------------------------------------------------------ datasets
    def insertDatasets(
        self, datasetType: DatasetType | str, run: str, records: Iterable[Mapping[str, Any]]
    ) -> list[Dataset]:
        """Register datasets in bulk.

        Parameters
        ----------
        datasetType : `DatasetType` or `str`
            A registered dataset type.
        run : `str`
            A registered RUN collection.
        records : iterable of `dict`
            ``dataId``, ``path`` (relative to the datastore root), ``size``, ``checksum``.

        Returns
        -------
        datasets : `list` [`Dataset`]
            Resolved handles (``id`` and ``run`` set), in the order of ``records``.

        Raises
        ------
        ConflictingDatasetError
            If a (type, data ID, run) is already registered with another checksum. The same
            checksum is a no-op, which makes re-running a registration job safe.
        """
        with self.transaction() as conn:
            return self._insertDatasetsIn(conn, datasetType, run, records)

    def insertDatasetGroups(
        self,
        run: str,
        groups: Sequence[Sequence[tuple[DatasetType | str, Mapping[str, Any]]]],
        *,
        beforeCommit: Callable[[], None] | None = None,
    ) -> None:
        """Register several groups of datasets (of any types) in ONE transaction.

        The executor registers the outputs of a batch of quanta this way, one group per
        quantum: either all of them are registered or none is, so a kill at any moment
        never leaves a quantum half registered.

        Parameters
        ----------
        run : `str`
            A registered RUN collection.
        groups : sequence of sequences of ``(dataset type, record)``
            Records as for `insertDatasets`.
        beforeCommit : callable, optional
            Called inside the transaction once every row is inserted and checked, before
            the commit (the executor moves the files to their final names there). If it
            raises, nothing is registered.

        Raises
        ------
        ConflictingDatasetError
            If any dataset is registered already with another checksum (nothing is registered).
        """
        byType: dict[str, tuple[DatasetType | str, list[Mapping[str, Any]]]] = {}
        for group in groups:
            for datasetType, record in group:
                name = datasetType if isinstance(datasetType, str) else datasetType.name
                byType.setdefault(name, (datasetType, []))[1].append(record)
        with self.transaction() as conn:
            for datasetType, records in byType.values():
                self._insertDatasetsIn(conn, datasetType, run, records)
            if beforeCommit is not None:
                beforeCommit()

    def _insertDatasetsIn(
        self,
        conn: sa.Connection,
        datasetType: DatasetType | str,
        run: str,
        records: Iterable[Mapping[str, Any]],
    ) -> list[Dataset]:
        typeId, dt = self._resolveType(datasetType)
        keys = self.universe.expand(dt.units)
        convert = self.universe.dataIdConverter(dt.units)
        keyFormat = ",".join(f"{k}={{!r}}" for k in keys).format  # == data_id_key, precompiled
        dataIds: list[DataId] = []
        rows: list[tuple[Any, ...]] = []
        for rec in records:
            dataId = convert(rec["dataId"])
            dataIds.append(dataId)
            values = tuple(dataId._values.values())
            rows.append((keyFormat(*values), rec["path"], rec.get("size"), rec.get("checksum"), *values))
        if not rows:
            return []
        columns = ["data_id_key", "path", "size", "checksum", *keys]
        ids: dict[str, int] = {}
        runId = self._runId(conn, run)
        for part in chunked(rows, INSERT_CHUNK):
            if self.isSqlite:
                inserted = self._insertDatasetsSqlite(conn, typeId, runId, columns, part, ids)
            else:
                inserted = self._insertDatasetsReturning(conn, typeId, runId, columns, part, ids)
            if inserted != len(part):
                missing = [r for r in part if r[0] not in ids]
                self._checkExisting(conn, typeId, runId, dt, missing, ids)
        return [
            Dataset(dt, dataId, id=ids[row[0]], run=run) for dataId, row in zip(dataIds, rows, strict=True)
        ]

    def _insertDatasetsSqlite(
        self,
        conn: sa.Connection,
        typeId: int,
        runId: int,
        columns: list[str],
        part: Sequence[tuple[Any, ...]],
        ids: dict[str, int],
    ) -> int:
        """executemany straight to sqlite3 (SQLAlchemy's per-row parameter processing costs
        more than the insert itself at 10^6 rows). When every row was inserted the ids are
        known without a query: the transaction holds SQLite's write lock and ``id`` is the
        rowid, so new rows get ``max(id) + 1, + 2, ...`` in insertion order."""
        ds = self.schema.dataset
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

    def _insertDatasetsReturning(
        self,
        conn: sa.Connection,
        typeId: int,
        runId: int,
        columns: list[str],
        part: Sequence[tuple[Any, ...]],
        ids: dict[str, int],
    ) -> int:
        """PostgreSQL: COPY into a temporary table, then one INSERT ... SELECT ... ON CONFLICT
        DO NOTHING RETURNING (row-by-row parameter binding is the slow part at 10^6 rows)."""
        allColumns = ["dataset_type_id", "run_id", *columns]
        n = 0
        if len(part) < COPY_THRESHOLD:  # a temporary table costs more than it saves
            ds = self.schema.dataset
            stmt = (
                self._insert(ds)
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
        rows: Sequence[tuple[Any, ...]],
        ids: dict[str, int],
    ) -> None:
        ds = self.schema.dataset
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

    def _datasetRows(
        self, conn: sa.Connection, stmt: sa.Select[Any], dt: DatasetType, runOrder: dict[int, tuple[int, str]]
    ) -> list[Dataset]:
        # Rows are (id, run_id, *key values in sorted key order); work on value tuples and
        # build DataIds once at the end (this loop runs once per dataset of a large graph).
        keys = self.universe.expand(dt.units)
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

    def findDataset(
        self, typeOrName: DatasetType | str, dataId: Mapping[str, Any], collections: Sequence[str] | str
    ) -> Dataset | None:
        """The first dataset of this type and data ID in the collections' search order, or None."""
        typeId, dt = self._resolveType(typeOrName)
        dataId = self.universe.checkDataId(dt.units, dataId)
        runs = self.resolveCollections(collections)
        runOrder = {rid: (rank, name) for rank, (rid, name) in enumerate(runs)}
        ds = self.schema.dataset
        keys = self.universe.expand(dt.units)
        stmt = sa.select(ds.c.id, ds.c.run_id, *[ds.c[k] for k in keys]).where(
            ds.c.dataset_type_id == typeId,
            ds.c.data_id_key == data_id_key(dataId),
            ds.c.run_id.in_(list(runOrder)),
        )
        with self.engine.connect() as conn:
            found = self._datasetRows(conn, stmt, dt, runOrder)
        return found[0] if found else None

    def queryDatasets(
        self,
        typeOrName: DatasetType | str,
        collections: Sequence[str] | str,
        where: str | None = None,
        bind: Mapping[str, Any] | None = None,
        dataIds: Iterable[Mapping[str, Any]] | None = None,
    ) -> list[Dataset]:
        """Datasets of a type in the collections (first match per data ID in search order).

        Parameters
        ----------
        where : `str`, optional
            A data-ID expression; units it names are joined in.
        dataIds : iterable of data IDs, optional
            Only these data IDs (looked up with chunked IN lists).
        """
        typeId, dt = self._resolveType(typeOrName)
        runs = self.resolveCollections(collections)
        runOrder = {rid: (rank, name) for rank, (rid, name) in enumerate(runs)}
        ds = self.schema.dataset
        keys = self.universe.expand(dt.units)
        check_query_arguments((), bind)
        parsed = parse_where(where)
        base = [ds.c.dataset_type_id == typeId, ds.c.run_id.in_(list(runOrder))]
        cols = [ds.c.id, ds.c.run_id, *[ds.c[k].label(k) for k in keys]]
        if parsed is not None:
            plan = self.queries.plan(dt.units, self._knownElements(parsed))
            froms, conds = self.queries.fromClause(plan)
            clause = parsed.compile(self.queries.resolver(plan), bind)
            base += [*conds, clause, *[ds.c[k] == plan.columns[k] for k in keys]]
            stmt = sa.select(*cols).select_from(ds, *froms).where(*base).distinct()
        else:
            stmt = sa.select(*cols).where(*base)
        convert = self.universe.dataIdConverter(dt.units)
        wanted = None if dataIds is None else {convert(d) for d in dataIds}
        with self.engine.connect() as conn:
            if wanted is None:
                return self._datasetRows(conn, stmt, dt, runOrder)
            if not wanted:
                return []
            found: list[Dataset] = []
            for extra in restrict_chunks({k: {d[k] for d in wanted} for k in keys}, lambda k: ds.c[k]):
                found.extend(
                    d for d in self._datasetRows(conn, stmt.where(*extra), dt, runOrder) if d.dataId in wanted
                )
            unique = {d.dataId: d for d in found}
            return [unique[d] for d in sort_data_ids(unique)]

    def findDatasetValues(
        self,
        typeOrName: DatasetType | str,
        collections: Sequence[str] | str,
        wanted: Iterable[tuple[Any, ...]],
    ) -> dict[tuple[Any, ...], tuple[int, str]]:
        """``{values: (id, run)}`` of the datasets of a type at the given data IDs (first in search order).

        The value-tuple form of ``queryDatasets(..., dataIds=...)`` for callers that index
        by data ID anyway (a RepoGraph): no `DataId` per dataset and no sort. ``wanted``
        holds tuples of key values in the order of ``universe.expand(datasetType.units)``,
        already of the keys' types; absent data IDs are absent from the result.
        """
        typeId, dt = self._resolveType(typeOrName)
        runs = self.resolveCollections(collections)
        runOrder = {rid: (rank, name) for rank, (rid, name) in enumerate(runs)}
        wanted = set(wanted)
        if not wanted:
            return {}
        ds = self.schema.dataset
        keys = self.universe.expand(dt.units)
        stmt = sa.select(ds.c.id, ds.c.run_id, *[ds.c[k] for k in keys]).where(
            ds.c.dataset_type_id == typeId, ds.c.run_id.in_(list(runOrder))
        )
        best: dict[tuple[Any, ...], tuple[int, int, str]] = {}
        with self.engine.connect() as conn:
            stored = conn.execute(sa.select(sa.func.count()).select_from(stmt.subquery())).scalar_one()
            if 2 * len(wanted) >= stored:
                # Asking for most of what is stored (a planning query's inputs): one read
                # of the whole type, filtered below, beats dozens of chunked IN lists.
                restrict = {}
            else:
                restrict = {k: {row[i] for row in wanted} for i, k in enumerate(keys)}
            for extra in restrict_chunks(restrict, lambda k: ds.c[k]):
                for row in conn.execute(stmt.where(*extra)):
                    values = tuple(row[2:])
                    if values not in wanted:
                        continue
                    rank, runName = runOrder[row[1]]
                    prev = best.get(values)
                    if prev is None or rank < prev[0]:
                        best[values] = (rank, row[0], runName)
        return {values: (dsId, runName) for values, (_, dsId, runName) in best.items()}

    def getDatasetLocation(self, dataset: Dataset) -> tuple[str, int | None, str | None]:
        """``(path, size, checksum)`` of a registered dataset (by id, else by type, data ID and run).

        Raises
        ------
        LookupError
            If the dataset is not registered.
        """
        ds = self.schema.dataset
        stmt = sa.select(ds.c.path, ds.c.size, ds.c.checksum)
        if dataset.id is not None:
            stmt = stmt.where(ds.c.id == dataset.id)
        elif dataset.run is not None:
            typeId, dt = self._resolveType(dataset.datasetType)
            c = self.schema.collection
            stmt = stmt.join(c, c.c.id == ds.c.run_id).where(
                ds.c.dataset_type_id == typeId,
                ds.c.data_id_key == data_id_key(self.universe.checkDataId(dt.units, dataset.dataId)),
                c.c.name == dataset.run,
            )
        else:
            raise LookupError(
                f"{dataset} is not resolved (no id or run); find it with registry.findDataset first"
            )
        with self.engine.connect() as conn:
            row = conn.execute(stmt).first()
        if row is None:
            raise LookupError(f"{dataset} (id={dataset.id}, run={dataset.run!r}) is not registered")
        return row.path, row.size, row.checksum

    def getDatasetLocations(self, datasets: Sequence[Dataset]) -> list[str]:
        """Paths of many registered datasets, in order: one chunked ``IN`` query over their ids.

        The executor looks up every overall input of a graph before the first quantum
        starts; one query per dataset took seconds for 10^4 inputs. Datasets without an
        id are looked up one by one as in `getDatasetLocation`.

        Raises
        ------
        LookupError
            If any dataset is not registered (the message names up to five of them).
        """
        datasets = list(datasets)
        ds = self.schema.dataset
        ids = sorted({d.id for d in datasets if d.id is not None})
        paths: dict[int, str] = {}
        with self.engine.connect() as conn:
            for part in chunked(ids):
                for dsId, path in conn.execute(sa.select(ds.c.id, ds.c.path).where(ds.c.id.in_(list(part)))):
                    paths[dsId] = path
        out: list[str] = []
        missing: list[str] = []
        for d in datasets:
            if d.id is None:
                out.append(self.getDatasetLocation(d)[0])
                continue
            path = paths.get(d.id)
            if path is None:
                missing.append(f"{d} (id={d.id}, run={d.run!r})")
                continue
            out.append(path)
        if missing:
            more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
            raise LookupError(f"not registered: {', '.join(missing[:5])}{more}")
        return out

    def getDatasetRecords(self, datasets: Sequence[Dataset]) -> dict[int, tuple[str, int | None, str | None]]:
        """``{id: (path, size, checksum)}`` of the registered datasets among ``datasets`` (by id).

        One chunked ``IN`` query; datasets without an id, or no longer registered, are
        absent from the result. Batch preparation records sizes and checksums for the
        jobs, which verify their inputs without a registry.
        """
        ds = self.schema.dataset
        ids = sorted({d.id for d in datasets if d.id is not None})
        found: dict[int, tuple[str, int | None, str | None]] = {}
        with self.engine.connect() as conn:
            for part in chunked(ids):
                stmt = sa.select(ds.c.id, ds.c.path, ds.c.size, ds.c.checksum).where(ds.c.id.in_(list(part)))
                for dsId, path, size, checksum in conn.execute(stmt):
                    found[dsId] = (path, size, checksum)
        return found

    def removeDatasets(self, datasets: Iterable[Dataset]) -> int:
        """Unregister resolved datasets (files are the datastore's business); returns the count."""
        ids = [d.id for d in datasets if d.id is not None]
        ds = self.schema.dataset
        n = 0
        with self.transaction() as conn:
            for part in chunked(ids):
                n += conn.execute(sa.delete(ds).where(ds.c.id.in_(list(part)))).rowcount
        return n

    def countDatasets(self, typeOrName: DatasetType | str | None = None) -> int:
        """How many datasets are registered (of one type, or all)."""
        ds = self.schema.dataset
        stmt = sa.select(sa.func.count()).select_from(ds)
        if typeOrName is not None:
            stmt = stmt.where(ds.c.dataset_type_id == self._resolveType(typeOrName)[0])
        with self.engine.connect() as conn:
            return conn.execute(stmt).scalar_one()

    def countDatasetsIn(self, typeOrName: DatasetType | str, collections: Sequence[str] | str) -> int:
        """How many datasets of a type the collections hold (duplicates across runs counted once)."""
        typeId, _ = self._resolveType(typeOrName)
        runIds = [rid for rid, _ in self.resolveCollections(collections)]
        ds = self.schema.dataset
        stmt = sa.select(sa.func.count(sa.distinct(ds.c.data_id_key))).where(
            ds.c.dataset_type_id == typeId, ds.c.run_id.in_(runIds)
        )
        with self.engine.connect() as conn:
            return conn.execute(stmt).scalar_one()

    def unitKeyValues(self, unit: str, limit: int | None = None) -> list[Any]:
        """Distinct key values of a unit, sorted (for messages and the CLI)."""
        table = self.schema.elements[unit]
        stmt = sa.select(table.c[unit]).distinct().order_by(table.c[unit])
        if limit is not None:
            stmt = stmt.limit(limit)
        with self.engine.connect() as conn:
            return list(conn.execute(stmt).scalars())

    def countUnitRows(self, element: str) -> int:
        """Rows in a unit or relation table."""
        table = self.schema.elements[element]
        with self.engine.connect() as conn:
            return conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one()

    # ------------------------------------------------------------------ data-ID queries
    def _dataIdQuery(
        self,
        units: Iterable[str],
        where: str | ParsedWhere | None,
        bind: Mapping[str, Any] | None,
        datasets: Sequence[DatasetType | str],
        collections: Sequence[str] | str | None,
    ) -> tuple[QueryPlan, sa.ColumnElement[bool] | None, list[DatasetConstraint]]:
        check_query_arguments(units, bind)
        parsed = parse_where(where)
        constraints = []
        units = set(units)
        if datasets:
            if collections is None:
                raise ValueError("dataset constraints need collections=[...] to search")
            runIds = [rid for rid, _ in self.resolveCollections(collections)]
            for item in datasets:
                typeId, dt = self._resolveType(item)
                constraints.append(DatasetConstraint(dt.name, typeId, dt.units, runIds))
                units.update(dt.units)
        plan = self.queries.plan(units, self._knownElements(parsed))
        self.queries.fromClause(plan)
        clause = parsed.compile(self.queries.resolver(plan), bind) if parsed else None
        return plan, clause, constraints

    def _knownElements(self, parsed: ParsedWhere | None) -> list[str]:
        """Units/relations an expression names; unknown names are left to the compiler, whose
        error shows the expression with a caret and suggests the closest valid identifier."""
        if parsed is None:
            return []
        return [e for e in parsed.units if e in self.schema.elements]

    def queryDataIds(
        self,
        units: Iterable[str],
        where: str | None = None,
        bind: Mapping[str, Any] | None = None,
        restrict: Mapping[str, Iterable[Any]] | None = None,
        *,
        datasets: Sequence[DatasetType | str] = (),
        collections: Sequence[str] | str | None = None,
    ) -> list[DataId]:
        """Distinct data IDs over ``units`` (plus required keys), from one joined SELECT.

        Parameters
        ----------
        units : iterable of `str`
            The units wanted; the data IDs carry these and the units they require.
        where : `str`, optional
            A data-ID expression (may name units beyond ``units``: they are joined in).
        bind : `dict`, optional
            Values of ``:name`` parameters in ``where``.
        restrict : `dict` [`str`, collection], optional
            ``{unit: key values}``: only rows whose unit key is among the values
            (chunked IN lists; the biggest set is split into chunks).
        datasets : sequence of dataset types, optional
            Keep only rows for which a dataset of each type exists in ``collections``.

        Returns
        -------
        dataIds : `list` [`DataId`]
            Sorted by key columns.
        """
        keys, rows = self.queryDataIdValues(
            units, where, bind, restrict, datasets=datasets, collections=collections
        )
        return [DataId._from_sorted(dict(zip(keys, row, strict=True))) for row in rows]

    def queryDataIdValues(
        self,
        units: Iterable[str],
        where: str | None = None,
        bind: Mapping[str, Any] | None = None,
        restrict: Mapping[str, Iterable[Any]] | None = None,
        *,
        datasets: Sequence[DatasetType | str] = (),
        collections: Sequence[str] | str | None = None,
        ordered: bool = True,
        max_rows: int | None = None,
    ) -> tuple[tuple[str, ...], list[tuple[Any, ...]]]:
        """`queryDataIds` as value tuples: ``(keys, rows)``, rows distinct and sorted.

        The same query and order as `queryDataIds`, without a `DataId` per row: a
        planning query of a million rows is kept as tuples plus one key order, and
        callers build data IDs only for the distinct projections they need.
        ``ordered=False`` skips the final sort (rows in no particular order) for callers
        that index or re-sort the rows anyway: about 3 s per 10^6 rows.

        ``max_rows`` guards against a badly constrained query: rows are streamed, and
        `RowLimitError` is raised as soon as more than ``max_rows`` have arrived, so a
        runaway query costs neither its whole fetch nor a separate COUNT beforehand.
        """
        check_query_arguments(units, bind)
        units = list(units)
        sets = {k: set(v) for k, v in (restrict or {}).items()}
        unknown = [k for k in sets if k not in self.universe.units]
        if unknown:
            raise KeyError(f"restrict names unknown unit(s) {unknown}; known: {sorted(self.universe.units)}")
        plan, clause, constraints = self._dataIdQuery([*units, *sets], where, bind, datasets, collections)
        outputKeys = self.universe.expand(units)
        plan.outputKeys = outputKeys
        if not plan.elements:
            return (), ([()] if self._globalConstraintsHold(constraints) else [])
        # Sets too big to send whole (besides the chunked one) are checked here, as rows arrive.
        checks = [(outputKeys.index(k), sets[k]) for k in dropped_keys(sets, set(outputKeys))]
        # Each statement is SELECT DISTINCT ... ORDER BY the output keys, and the chunks of
        # restrict_chunks split one key's values, so no row comes twice: a list keeps the
        # database's order, and sorting it again is a linear pass over sorted runs
        # (a set would scramble it and cost a full sort: ~5 s per 10^6 rows).
        result: list[tuple[Any, ...]] = []
        with self.engine.connect() as conn:
            if max_rows is not None:
                conn = conn.execution_options(stream_results=True)
            for extra in restrict_chunks(sets, plan.columns.__getitem__, droppable=set(outputKeys)):
                rows = conn.execute(self.queries.select(plan, clause, constraints, extra=extra))
                for part in rows.partitions(65536) if max_rows is not None else (rows,):
                    values: Iterable[tuple[Any, ...]] = map(tuple, part)
                    for i, allowed in checks:  # the restrictions not in the SQL
                        values = [row for row in values if row[i] in allowed]
                    result.extend(values)
                    if max_rows is not None and len(result) > max_rows:
                        rows.close()
                        raise RowLimitError(max_rows)
        if not outputKeys:  # rows of the existence test: the empty data ID, once, if any matched
            return (), [()] if result else []
        return outputKeys, sort_value_tuples(outputKeys, result) if ordered else result

    def countDataIds(
        self,
        units: Iterable[str],
        where: str | ParsedWhere | None = None,
        bind: Mapping[str, Any] | None = None,
        *,
        datasets: Sequence[DatasetType | str] = (),
        collections: Sequence[str] | str | None = None,
    ) -> int:
        """The number of rows `queryDataIds` would return (a COUNT, so operators can check size first)."""
        check_query_arguments(units, bind)
        units = list(units)
        plan, clause, constraints = self._dataIdQuery(units, where, bind, datasets, collections)
        plan.outputKeys = self.universe.expand(units)
        if not plan.elements:
            return 1 if self._globalConstraintsHold(constraints) else 0
        inner = self.queries.select(plan, clause, constraints).order_by(None).subquery()
        with self.engine.connect() as conn:
            return conn.execute(sa.select(sa.func.count()).select_from(inner)).scalar_one()

    def _globalConstraintsHold(self, constraints: Sequence[DatasetConstraint]) -> bool:
        ds = self.schema.dataset
        with self.engine.connect() as conn:
            for c in constraints:
                stmt = sa.select(ds.c.id).where(
                    ds.c.dataset_type_id == c.typeId, ds.c.run_id.in_(list(c.runIds))
                )
                if conn.execute(stmt.limit(1)).first() is None:
                    return False
        return True


@contextmanager
def _write(engine: sa.Engine) -> Iterator[sa.Connection]:
    if is_read_only(engine):
        raise ReadOnlyError(
            _read_only_message(
                engine, "opened read-only: the caller only reads, or this user may not write it"
            )
        )
    try:
        with engine.connect().execution_options(sqlite_write=True) as conn:
            with conn.begin():
                yield conn
    except sa.exc.OperationalError as err:
        if "readonly" in str(err.orig).replace("-", "").replace(" ", ""):
            raise ReadOnlyError(
                _read_only_message(engine, f"the database refused the write ({err.orig})")
            ) from None
        raise


def _read_only_message(engine: sa.Engine, why: str) -> str:
    database = engine.url.database or ""
    where = database.removeprefix("file:") if engine.dialect.name == "sqlite" else _safe_url(str(engine.url))
    return (
        f"repository registry {where} is read-only ({why}): it can be queried but not written. "
        "Write to a repository you own (or ask its owner to), or copy the repository first"
    )


def _missing_collection_message(name: str, known: Sequence[str]) -> str:
    """ "collection X does not exist", with the closest names (or some of the existing ones)."""
    import difflib

    close = difflib.get_close_matches(name, known, n=3, cutoff=0.6)
    if close:
        hint = f"did you mean {' or '.join(repr(c) for c in close)}?"
    elif known:
        more = f" (and {len(known) - 10} more)" if len(known) > 10 else ""
        hint = f"existing collections: {', '.join(known[:10])}{more}"
    else:
        hint = "the repository has no collections yet"
    return f"collection {name!r} does not exist; {hint}"


def _check_collection_name(name: str) -> None:
    if not name or name.strip() != name or ".." in name.split("/") or name.startswith("/"):
        raise ValueError(
            f"invalid collection name {name!r}: use a non-empty name without surrounding spaces, "
            "leading '/' or '..' parts (it becomes a directory in the datastore)"
        )


def _safe_url(url: str) -> str:
    try:
        return sa.make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - only for messages
        return "<registry url>"


def _ra_overlap(left: sa.Table, right: sa.Table) -> tuple[sa.ColumnElement[bool], ...]:
    """SQL terms (to be ANDed) that hold when the RA ranges of two boxes intersect.

    A box with ``ra_min > ra_max`` wraps: it covers ``[ra_min, 360]`` and ``[0, ra_max]``.
    With ``starts = l.ra_min <= r.ra_max`` and ``ends = l.ra_max >= r.ra_min``, the rule is:
    neither wraps, ``starts AND ends``; one wraps, ``starts OR ends`` (the other box reaches
    into one of its two pieces); both wrap, always (both contain RA 0). Touching edges count.

    It is written as three ANDed terms, ``(starts OR wraps) AND (ends OR wraps) AND (starts
    OR ends OR both wrap)`` with ``wraps = l wraps OR r wraps``, which is the same rule
    (check each case) but costs SQLite about half the time per pair of the three-way OR of
    the cases: most pairs fail ``starts`` or ``ends`` and need only the two wrap tests more.
    """
    starts = left.c.ra_min <= right.c.ra_max
    ends = left.c.ra_max >= right.c.ra_min
    left_wraps = left.c.ra_min > left.c.ra_max
    right_wraps = right.c.ra_min > right.c.ra_max
    return (
        sa.or_(starts, left_wraps, right_wraps),
        sa.or_(ends, left_wraps, right_wraps),
        sa.or_(starts, ends, sa.and_(left_wraps, right_wraps)),
    )


_RA_FIX = (
    "RA must be in [0, 360]: normalise with ra % 360; a box crossing RA 0 is written with "
    "ra_min > ra_max (e.g. ra_min=359.8, ra_max=0.2)"
)


def _check_boxes(name: str, keys: Sequence[str], rows: Sequence[Mapping[str, Any]]) -> None:
    """Refuse rows whose sky box is partial, NaN, out of range or upside down in Dec.

    Raises `ValueError` naming the table, the first bad row's keys, the field and the fix.
    Rows without any box field are accepted (a tract may be registered without its box).
    """
    bad = 0
    first: tuple[Mapping[str, Any], str] | None = None
    for row in rows:
        try:  # the common, valid case in one chained comparison (NaN and None fail it)
            if (
                0.0 <= row["ra_min"] <= 360.0
                and 0.0 <= row["ra_max"] <= 360.0
                and -90.0 <= row["dec_min"] <= row["dec_max"] <= 90.0
            ):
                continue
        except TypeError:
            pass
        problem = _box_problem(row)
        if problem is not None:
            bad += 1
            if first is None:
                first = (row, problem)
    if first is not None:
        row, problem = first
        ids = {k: row[k] for k in keys}
        others = f"; {bad - 1} more of the {len(rows)} rows are invalid too" if bad > 1 else ""
        raise ValueError(f"{name} row {ids}: {problem} (nothing was inserted{others})")


def _box_problem(row: Mapping[str, Any]) -> str | None:
    """What is wrong with a row's sky box, or None if it is valid or absent."""
    values: dict[str, Any] = {f: row.get(f) for f in BOX_FIELDS}
    missing = [f for f, v in values.items() if v is None]
    if len(missing) == len(BOX_FIELDS):
        return None
    if missing:
        given = [f for f in BOX_FIELDS if f not in missing]
        return (
            f"its sky box is partial ({given} given, {missing} missing): give all of "
            f"{list(BOX_FIELDS)}, or none for a row without a box"
        )
    for f, v in values.items():
        if not isinstance(v, numbers.Real):
            return f"{f} = {v!r} is not a number: give the box in degrees as floats"
        if math.isnan(v):
            return f"{f} is NaN: compute the box from finite coordinates (a NaN box overlaps nothing)"
    for f in ("ra_min", "ra_max"):
        if not 0.0 <= values[f] <= 360.0:
            return f"{f} = {values[f]!r} is outside [0, 360]; {_RA_FIX}"
    for f in ("dec_min", "dec_max"):
        if not -90.0 <= values[f] <= 90.0:
            return (
                f"{f} = {values[f]!r} is outside [-90, 90]: Dec must be in [-90, 90]; "
                "clamp a box that reaches a pole to ±90"
            )
    if values["dec_min"] > values["dec_max"]:
        return (
            f"dec_min = {values['dec_min']!r} is greater than dec_max = {values['dec_max']!r}: "
            "give the smaller Dec as dec_min (only RA wraps: ra_min > ra_max is a box crossing RA 0)"
        )
    return None


__all__ = [
    "BOX_FIELDS",
    "ConflictingDatasetError",
    "IncompatibleSchemaError",
    "OutputExistsError",
    "Registry",
    "RegistryError",
    "RowLimitError",
    "RunConflictError",
    "data_id_key",
]
