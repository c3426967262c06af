"""Data-ID queries: one joined SELECT over unit tables, an expression and dataset constraints.

`QueryBuilder` (``query.py``) writes the SQL; this manager resolves the caller's dataset
types and collections into constraints, runs the statement (in chunks of ``restrict``
values, streamed under a row limit) and returns the rows, sorted unless the caller says
it re-sorts them.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import ExitStack
from typing import Any

import sqlalchemy as sa

from ..dataid import DataId
from ..dataset import DatasetType
from ..units import sort_value_tuples
from .bulk import ValueSharing, dropped_keys, raw_rows, restrict_chunks
from .collection_manager import CollectionManager
from .database import RegistryDatabase
from .dataset_type_manager import DatasetTypeManager
from .errors import RowLimitError
from .query import DatasetConstraint, QueryBuilder, QueryPlan
from .unit_existence import UnitExistence
from .where import ParsedWhere, check_query_arguments, parse_where

__all__ = ["DataIdQueryManager"]


class DataIdQueryManager:
    """Runs data-ID queries; see `Registry.queryDataIds`.

    Parameters
    ----------
    db : `RegistryDatabase`
        The opened registry database.
    datasetTypes : `DatasetTypeManager`
        Resolves the dataset types of dataset constraints.
    collections : `CollectionManager`
        Resolves the collections the constraints search.
    """

    def __init__(
        self, db: RegistryDatabase, datasetTypes: DatasetTypeManager, collections: CollectionManager
    ):
        self._db = db
        self._datasetTypes = datasetTypes
        self._collections = collections
        self.builder = QueryBuilder(db.schema, db.engine.dialect.name)

    def knownElements(self, parsed: ParsedWhere | None) -> list[str]:
        """Units/relations an expression names; unknown names are left to the compiler, whose
        error shows the expression with a caret and suggests the closest valid identifier."""
        if parsed is None:
            return []
        return [e for e in parsed.units if e in self._db.schema.elements]

    def _prepare(
        self,
        units: Iterable[str],
        where: str | ParsedWhere | None,
        bind: Mapping[str, Any] | None,
        datasets: Sequence[DatasetType | str],
        collections: Sequence[str] | str | None,
        outputUnits: Iterable[str] | None = None,
    ) -> tuple[QueryPlan, sa.ColumnElement[bool] | None, list[DatasetConstraint]]:
        """The plan, compiled expression and dataset constraints of a query.

        ``outputUnits`` (callers that read every row, through `UnitExistence`): the
        plan's output keys, and unit tables a relation stands in for are left out of it
        (`QueryBuilder.leaveOutUnits`). Otherwise the caller sets the output keys and
        every table stays.
        """
        check_query_arguments(units, bind)
        parsed = parse_where(where)
        constraints = []
        wanted = set(units)
        if datasets:
            if collections is None:
                raise ValueError("dataset constraints need collections=[...] to search")
            runIds = [rid for rid, _ in self._collections.resolve(collections)]
            for item in datasets:
                typeId, dt = self._datasetTypes.resolve(item)
                constraints.append(DatasetConstraint(dt.name, typeId, dt.units, runIds))
                wanted.update(dt.units)
        named = self.knownElements(parsed)
        plan = self.builder.plan(wanted, named)
        if outputUnits is not None:
            plan.outputKeys = self._db.universe.expand(outputUnits)
            self.builder.leaveOutUnits(plan, named)
        self.builder.fromClause(plan)
        clause = parsed.compile(self.builder.resolver(plan), bind) if parsed else None
        return plan, clause, constraints

    def dataIds(
        self,
        units: Iterable[str],
        where: str | None = None,
        bind: Mapping[str, Any] | None = None,
        restrict: Mapping[str, Iterable[Any]] | None = None,
        *,
        datasets: Sequence[DatasetType | str] = (),
        collections: Sequence[str] | str | None = None,
    ) -> list[DataId]:
        """Distinct data IDs, sorted; see `Registry.queryDataIds`."""
        keys, rows = self.values(units, where, bind, restrict, datasets=datasets, collections=collections)
        return [DataId._from_sorted(dict(zip(keys, row, strict=True))) for row in rows]

    def values(
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
        """Distinct data IDs as ``(keys, value tuples)``; see `Registry.queryDataIdValues`."""
        check_query_arguments(units, bind)
        units = list(units)
        universe = self._db.universe
        sets = {k: set(v) for k, v in (restrict or {}).items()}
        unknown = [k for k in sets if k not in universe.units]
        if unknown:
            raise KeyError(f"restrict names unknown unit(s) {unknown}; known: {sorted(universe.units)}")
        plan, clause, constraints = self._prepare(
            [*units, *sets], where, bind, datasets, collections, outputUnits=units
        )
        outputKeys = plan.outputKeys
        if not plan.elements:
            return (), ([()] if self._globalConstraintsHold(constraints) else [])
        # Sets too big to send whole (besides the chunked one) are checked here, as rows arrive.
        checks = [(outputKeys.index(k), sets[k]) for k in dropped_keys(sets, set(outputKeys))]
        # The chunks of restrict_chunks split one key's values, so no row comes twice: a
        # list keeps the rows, in the database's order when ``ordered`` (each statement
        # then ends in ORDER BY the output keys, and sorting the list again is a linear
        # pass over sorted runs; a set would scramble it and cost a full sort: ~5 s per
        # 10^6 rows). Unordered callers get no ORDER BY. The chunks run one after the
        # other on one connection: two at a time on two connections cost 5-50 % more CPU
        # and gained no wall-clock time on a loaded 2-core machine (sqlite3 releases and
        # retakes the GIL around every row's step, so two threads hand it back and forth).
        result: list[tuple[Any, ...]] = []
        shared = ValueSharing(len(outputKeys))  # also the distinct values UnitExistence needs
        with self._db.connect() as conn, ExitStack() as stack:
            # A limited query is read in batches, so a runaway one stops early. SQLite's
            # cursor steps through the rows as they are fetched; PostgreSQL's holds the
            # whole result unless it is a server-side cursor (``stream_results``), whose
            # rows SQLAlchemy buffers itself and must hand out. A statement sent on the
            # connection of an open server-side cursor ends that cursor's rows, so the
            # look-ups of the left-out unit tables then get a connection of their own.
            streamed = max_rows is not None and conn.dialect.name != "sqlite"
            lookups = stack.enter_context(self._db.connect()) if streamed and plan.checked else conn
            exists = UnitExistence(lookups, self._db.schema, plan.checked, outputKeys, shared)
            if streamed:
                conn = conn.execution_options(stream_results=True)
            for extra in restrict_chunks(sets, plan.columns.__getitem__, droppable=set(outputKeys)):
                rows = conn.execute(
                    self.builder.select(plan, clause, constraints, extra=extra, ordered=ordered)
                )
                parts: Iterator[list[tuple[Any, ...]]] = (
                    (list(map(tuple, part)) for part in rows.partitions(65536))
                    if streamed
                    else raw_rows(rows, 65536)
                )
                for values in parts:
                    for i, allowed in checks:  # the restrictions not in the SQL
                        values = [row for row in values if row[i] in allowed]
                    result.extend(shared(values))
                    if max_rows is not None and len(result) > max_rows:
                        # Only the rows the left-out unit tables keep count.
                        result = exists.filter(result)
                        if len(result) > max_rows:
                            rows.close()
                            raise RowLimitError(max_rows)
            result = exists.filter(result)  # the rows the joins left out of the SQL drop
        if not outputKeys:  # rows of the existence test: the empty data ID, once, if any matched
            return (), [()] if result else []
        return outputKeys, sort_value_tuples(outputKeys, result) if ordered else result

    def count(
        self,
        units: Iterable[str],
        where: str | ParsedWhere | None = None,
        bind: Mapping[str, Any] | None = None,
        *,
        datasets: Sequence[DatasetType | str] = (),
        collections: Sequence[str] | str | None = None,
    ) -> int:
        """The number of rows `dataIds` would return (a COUNT); see `Registry.countDataIds`."""
        check_query_arguments(units, bind)
        units = list(units)
        plan, clause, constraints = self._prepare(units, where, bind, datasets, collections)
        plan.outputKeys = self._db.universe.expand(units)
        if not plan.elements:
            return 1 if self._globalConstraintsHold(constraints) else 0
        inner = self.builder.select(plan, clause, constraints).order_by(None).subquery()
        with self._db.connect() as conn:
            count: int = conn.execute(sa.select(sa.func.count()).select_from(inner)).scalar_one()
            return count

    def _globalConstraintsHold(self, constraints: Sequence[DatasetConstraint]) -> bool:
        ds = self._db.schema.dataset
        with self._db.connect() as conn:
            for c in constraints:
                stmt = sa.select(ds.c.id).where(
                    ds.c.dataset_type_id == c.typeId, ds.c.run_id.in_(list(c.runIds))
                )
                if conn.execute(stmt.limit(1)).first() is None:
                    return False
        return True
