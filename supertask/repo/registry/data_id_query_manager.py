"""Data-ID queries: one joined SELECT over unit tables, an expression and dataset constraints.

`QueryBuilder` (``query.py``) writes the SQL; this manager resolves the caller's dataset
types and collections into constraints, runs the statement (in chunks of ``restrict``
values, streamed under a row limit; a large whole query on SQLite as two halves at once,
`halved_select`) and returns the rows, sorted unless the caller says
it re-sorts them; for the planning query (`valuesWithDatasets`) also the datasets the
rows required, which the statement selects instead of testing that they exist.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import ExitStack
from itertools import chain, compress, repeat
from operator import itemgetter
from typing import Any

import sqlalchemy as sa

from ..dataid import DataId
from ..dataset import DatasetType
from ..units import index_getter, sort_value_tuples
from .bulk import ValueSharing, dropped_keys, raw_rows, restrict_chunks
from .collection_manager import CollectionManager
from .database import RegistryDatabase
from .dataset_type_manager import DatasetTypeManager
from .errors import RowLimitError
from .found import FoundDatasets
from .halved_select import SPLIT_MIN_ROWS, HalvedSelect, halve
from .query import DatasetConstraint, QueryBuilder, QueryPlan
from .unit_existence import UnitExistence
from .where import ParsedWhere, check_query_arguments, parse_where

__all__ = ["DataIdQueryManager"]

ROWS_PER_BATCH = 65536
"""Rows read from the driver at a time. Each batch is transposed, its values shared and
its rows rebuilt (`ValueSharing`, `_FoundDatasets.take`), passes that touch every value
object of the batch. Batches of 8192 rows, which stay in the CPU's caches, took 0.14 s
less CPU at 10^6 quanta, but preflight's peak RSS rose by about 12 MB (1,462-1,466 MB
against 1,448-1,451 MB, two runs each; the cause was not isolated), so they are not used."""


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
        self.splitMinRows: int | None = SPLIT_MIN_ROWS
        """Rows of the scanned table from which a whole ordered SQLite query runs as two
        halves on two connections at once (`halve`); `None`: never."""
        self._jsonAggregates: bool | None = None

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
            runs = self._collections.resolve(collections)
            runIds = [rid for rid, _ in runs]
            runNames = [name for _, name in runs]
            for item in datasets:
                typeId, dt = self._datasetTypes.resolve(item)
                constraints.append(DatasetConstraint(dt.name, typeId, dt.units, runIds, runNames))
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
        keys, rows, _ = self._values(
            units, where, bind, restrict, datasets, collections, ordered, max_rows, resolve=False
        )
        return keys, rows

    def valuesWithDatasets(
        self,
        units: Iterable[str],
        where: str | None = None,
        bind: Mapping[str, Any] | None = None,
        *,
        datasets: Sequence[DatasetType | str] = (),
        collections: Sequence[str] | str | None = None,
        max_rows: int | None = None,
    ) -> tuple[tuple[str, ...], list[tuple[Any, ...]], dict[str, FoundDatasets]]:
        """`values` and the datasets found; see `Registry.queryDataIdValuesWithDatasets`."""
        return self._values(units, where, bind, None, datasets, collections, True, max_rows, resolve=True)

    def related(
        self,
        fromKeys: Sequence[str],
        toKeys: Sequence[str],
        restrict: Mapping[str, Iterable[Any]] | None = None,
    ) -> dict[tuple[Any, ...], list[tuple[Any, ...]]]:
        """``{values over fromKeys: [values over toKeys, ...]}``; see `Registry.queryRelatedDataIdValues`."""
        fromKeys, toKeys = tuple(fromKeys), tuple(toKeys)
        sets = {k: set(v) for k, v in (restrict or {}).items()}
        outside = [k for k in sets if k not in fromKeys]
        if outside:
            raise KeyError(f"restrict names {outside}, which are not among the from keys {list(fromKeys)}")
        units = list(dict.fromkeys((*fromKeys, *toKeys)))
        members = [k for k in toKeys if k not in fromKeys]
        plan, _, _ = self._prepare(units, None, None, (), None, outputUnits=units)
        if set(plan.outputKeys) != set(units) or not self._groupable(members):
            return self._relatedFromRows(fromKeys, toKeys, sets)
        # The from keys a chunk leaves out of the SQL are checked on each group's row.
        checks = [(fromKeys.index(k), sets[k]) for k in dropped_keys(sets, set(fromKeys))]
        groups: dict[tuple[Any, ...], list[Any]] = {}
        width = len(fromKeys)
        with self._db.connectForScan() as conn:
            for extra in restrict_chunks(sets, plan.columns.__getitem__, droppable=set(fromKeys)):
                stmt = self.builder.select(plan, None, (), extra=extra, ordered=False)
                for part in raw_rows(conn.execute(self.builder.grouped(stmt, fromKeys, members)), 65536):
                    for i, allowed in checks:
                        part = [row for row in part if row[i] in allowed]
                    for row in part:
                        found = _decoded(row[width]) if members else [None]
                        key = row[:width]
                        if key in groups:  # (a chunk of a member key's values: more of the group)
                            groups[key].extend(found)
                        else:
                            groups[key] = found
            related = _assemble(groups, fromKeys, toKeys, members)
            if plan.checked:
                related = self._withExistingUnits(conn, plan, fromKeys, toKeys, related)
        return related

    def _groupable(self, members: Sequence[str]) -> bool:
        """Whether `QueryBuilder.grouped` can carry ``members`` here: integer and string keys, JSON aggregates."""
        units = self._db.universe.units
        if any(units[k].keyType not in (int, str) for k in members):
            return False  # (JSON would turn a float key's value into text and back, a bool's into 0/1)
        if self._jsonAggregates is None:
            with self._db.connect() as conn:
                try:
                    conn.execute(self.builder.grouped(sa.select(sa.literal(1).label("k")), (), ["k"]))
                except sa.exc.DBAPIError:  # an SQLite built without JSON functions
                    self._jsonAggregates = False
                else:
                    self._jsonAggregates = True
        return self._jsonAggregates

    def _relatedFromRows(
        self, fromKeys: tuple[str, ...], toKeys: tuple[str, ...], restrict: dict[str, set[Any]]
    ) -> dict[tuple[Any, ...], list[tuple[Any, ...]]]:
        """`related` from the plain rows, grouped here: for keys `QueryBuilder.grouped` cannot carry."""
        keys, rows = self.values({*fromKeys, *toKeys}, restrict=restrict, ordered=False)
        src, dst = _getter(keys, fromKeys), _getter(keys, toKeys)
        groups: dict[tuple[Any, ...], list[tuple[Any, ...]]] = {}
        for row in rows:
            key = src(row)
            found = groups.get(key)
            if found is None:
                groups[key] = [dst(row)]
            else:
                found.append(dst(row))
        return groups

    def _withExistingUnits(
        self,
        conn: sa.Connection,
        plan: QueryPlan,
        fromKeys: tuple[str, ...],
        toKeys: tuple[str, ...],
        related: dict[tuple[Any, ...], list[tuple[Any, ...]]],
    ) -> dict[tuple[Any, ...], list[tuple[Any, ...]]]:
        """``related`` without the pairs whose left-out unit tables (``plan.checked``) lack a key.

        What `UnitExistence.filter` does to plain rows, on the groups: a unit whose keys
        are all to keys is tested on each related tuple, one whose keys are all from
        keys on each group, any other on each (from, to) pair. A group left with nothing
        is dropped.
        """
        outputKeys = plan.outputKeys
        seen = ValueSharing(len(outputKeys))
        seen.columns(
            [
                list(map(itemgetter(fromKeys.index(k)), related))
                if k in fromKeys
                else list(map(itemgetter(toKeys.index(k)), chain.from_iterable(related.values())))
                for k in outputKeys
            ]
        )
        exists = UnitExistence(conn, self._db.schema, plan.checked, outputKeys, seen)
        for unit in plan.checked:
            keep = exists.keeps(unit)
            if keep is None:
                continue
            keys = self._db.universe.requiredKeys(unit)
            if all(k in toKeys for k in keys):
                get = _getter(toKeys, keys)
                pairs = {key: [to for to in tos if keep(get(to))] for key, tos in related.items()}
            elif all(k in fromKeys for k in keys):
                get = _getter(fromKeys, keys)
                pairs = {key: tos for key, tos in related.items() if keep(get(key))}
            else:
                order = [(k in toKeys, toKeys.index(k) if k in toKeys else fromKeys.index(k)) for k in keys]
                pairs = {
                    key: [to for to in tos if keep(tuple([to[i] if mine else key[i] for mine, i in order]))]
                    for key, tos in related.items()
                }
            related = {key: tos for key, tos in pairs.items() if tos}
        return related

    def _values(
        self,
        units: Iterable[str],
        where: str | None,
        bind: Mapping[str, Any] | None,
        restrict: Mapping[str, Iterable[Any]] | None,
        datasets: Sequence[DatasetType | str],
        collections: Sequence[str] | str | None,
        ordered: bool,
        max_rows: int | None,
        *,
        resolve: bool,
    ) -> tuple[tuple[str, ...], list[tuple[Any, ...]], dict[str, FoundDatasets]]:
        """The rows of `values`; with ``resolve``, also ``{type name: {key values: (id, run)}}``.

        ``resolve`` selects the dataset of each constraint whose keys are all output
        keys (`QueryBuilder.datasetColumns`) instead of testing that it exists: the
        rows without one are dropped here, which leaves the rows of the ``EXISTS``
        form, and the found datasets are collected from the same rows. Constraints
        with other keys keep their ``EXISTS`` test and are absent from the mapping.
        """
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
            return (), ([()] if self._globalConstraintsHold(constraints) else []), {}
        # Only SQLite finds the datasets in the statement: PostgreSQL runs a correlated
        # scalar subquery once per row (a SubPlan), where it turns the EXISTS test into a
        # hashed semi-join; at 10^5 quanta the statement ran for over 8 minutes instead of
        # seconds. There the datasets are found afterwards (`findDatasetValues`).
        resolve = resolve and self._db.engine.dialect.name == "sqlite"
        resolved = [
            c
            for c in constraints
            if resolve and outputKeys and set(universe.expand(c.units)) <= set(outputKeys)
        ]
        tested = [c for c in constraints if c not in resolved]
        found = _FoundDatasets(outputKeys, resolved, universe.expand)
        # Sets too big to send whole (besides the chunked one) are checked here, as rows arrive.
        checks = [(outputKeys.index(k), sets[k]) for k in dropped_keys(sets, set(outputKeys))]
        # The chunks of restrict_chunks split one key's values, so no row comes twice: a
        # list keeps the rows, in the database's order when ``ordered`` (each statement
        # then ends in ORDER BY the output keys, and sorting the list again is a linear
        # pass over sorted runs; a set would scramble it and cost a full sort: ~5 s per
        # 10^6 rows). Unordered callers get no ORDER BY. The chunks run one after the
        # other on one connection, and rows are read by this thread only: chunks read in
        # two threads at once cost 5-50 % more CPU and gained no wall-clock time on a
        # loaded 2-core machine (sqlite3 releases and retakes the GIL around every row's
        # step, so two threads hand it back and forth). What runs on both cores is the
        # first step of a large unrestricted statement's two halves (`halve`), where
        # SQLite joins and sorts every row with the GIL released.
        result: list[tuple[Any, ...]] = []
        taken = 0  # rows whose datasets ``found`` recorded
        dropped: list[tuple[Any, ...]] = []  # of those, the rows `UnitExistence` dropped
        shared = ValueSharing(len(outputKeys))  # also the distinct values UnitExistence needs
        with self._db.connectForScan() as conn, ExitStack() as stack:
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
                stmt = self.builder.select(
                    plan, clause, tested, extra=extra, ordered=ordered, resolved=resolved
                )
                # A whole ordered query on SQLite may run as two halves on both cores
                # (`halve`): two sorted runs, in the order of the rows they hold.
                halves = (
                    self._halve(conn, stmt, plan.elements, stack)
                    if ordered and not sets and outputKeys and conn.dialect.name == "sqlite"
                    else None
                )
                results = [conn.execute(stmt)] if halves is None else [halves.lower, halves.upper]
                for rows in results:
                    parts: Iterator[list[tuple[Any, ...]]] = (
                        (list(map(tuple, part)) for part in rows.partitions(ROWS_PER_BATCH))
                        if streamed
                        else raw_rows(rows, ROWS_PER_BATCH)
                    )
                    for values in parts:
                        for i, allowed in checks:  # the restrictions not in the SQL
                            values = [row for row in values if row[i] in allowed]
                        if resolved:
                            kept = found.take(values, shared)
                            taken += len(kept)
                            result.extend(kept)
                        else:
                            result.extend(shared(values))
                        if max_rows is not None and len(result) > max_rows:
                            # Only the rows the left-out unit tables keep count.
                            result = exists.filter(result, dropped if resolved else None)
                            if len(result) > max_rows:
                                for unread in results:
                                    unread.close()
                                raise RowLimitError(max_rows)
            # the rows the joins left out of the SQL drop
            result = exists.filter(result, dropped if resolved else None)
        if not outputKeys:  # rows of the existence test: the empty data ID, once, if any matched
            return (), [()] if result else [], {}
        # Every row recorded is kept or dropped: the found keys can be the rows' projections.
        found.finish(dropped if len(result) + len(dropped) == taken else None)
        return outputKeys, sort_value_tuples(outputKeys, result) if ordered else result, found.found

    def _halve(
        self, conn: sa.Connection, stmt: sa.Select[Any], elements: Sequence[str], stack: ExitStack
    ) -> HalvedSelect | None:
        """``stmt`` executed as two halves at once (`halve`) when it is large enough, else `None`.

        The second connection is closed with ``stack`` (after its rows are read), or at
        once when the statement is not split.
        """
        if self.splitMinRows is None:
            return None
        tables = {self._db.schema.elements[e].name for e in elements}
        with ExitStack() as own:
            other = own.enter_context(self._db.connect())
            own.callback(other.invalidate)  # not back to the pool: frees its (resized) page cache
            halves = halve(conn, other, stmt, tables, self.splitMinRows)
            if halves is not None:
                stack.push(own.pop_all())
        return halves

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


class _FoundDatasets:
    """The datasets a planning statement found (`QueryBuilder.datasetColumns`), collected as rows arrive.

    Parameters
    ----------
    outputKeys : `tuple` [`str`, ...]
        The keys of the rows, before the dataset columns.
    resolved : sequence of `DatasetConstraint`
        The constraints whose datasets the statement selects, in the order of its columns.
    expand : callable
        The universe's ``expand`` (a type's units to its sorted keys).
    """

    def __init__(
        self,
        outputKeys: tuple[str, ...],
        resolved: Sequence[DatasetConstraint],
        expand: Callable[[Iterable[str]], tuple[str, ...]],
    ):
        self._width = len(outputKeys)
        # (found datasets, positions of their keys in the rows, their id column, {run id:
        # run name} when several runs: the run id column follows the id column)
        self._types: list[tuple[FoundDatasets, list[int], int, dict[int, str] | None]] = []
        self.found: dict[str, FoundDatasets] = {}
        column = self._width
        for c in resolved:
            positions = [outputKeys.index(k) for k in expand(c.units)]
            several = len(c.runIds) > 1
            found = self.found[c.name] = FoundDatasets(run=None if several else next(iter(c.runNames), None))
            runs = dict(zip(c.runIds, c.runNames, strict=True)) if several else None
            self._types.append((found, positions, column, runs))
            column += 2 if several else 1
        # per type, per batch of rows: (its key columns, its id column, its run id column)
        self._parts: list[list[tuple[list[list[Any]], Sequence[int], Sequence[int] | None]]] = [
            [] for _ in self._types
        ]

    def take(self, rows: list[tuple[Any, ...]], shared: ValueSharing) -> list[tuple[Any, ...]]:
        """Record the datasets of ``rows``; return those with a dataset of every type, as `shared` makes them.

        The rows lose their dataset columns in the transposition `ValueSharing` does
        anyway, and the keys of the found datasets hold the shared values.
        """
        width = self._width
        columns: list[Sequence[Any]] = list(zip(*rows, strict=True))
        if any(None in columns[i] for i in range(width, len(columns))):  # no dataset: no row
            columns = list(zip(*[row for row in rows if None not in row[width:]], strict=True))
        if not columns:
            return []
        keyColumns = shared.columns(columns[:width])
        for i, (_, positions, column, runs) in enumerate(self._types):
            ids = columns[column]
            self._parts[i].append(
                ([keyColumns[p] for p in positions], ids, None if runs is None else columns[column + 1])
            )
        return list(zip(*keyColumns, strict=True))

    def finish(self, dropped: Sequence[tuple[Any, ...]] | None = None) -> dict[str, FoundDatasets]:
        """The datasets of every type, from the columns `take` kept.

        ``dropped``: the rows `take` returned that the query then dropped
        (`UnitExistence`), when every other row it returned is one of the query's
        rows. The datasets then keep only the keys of rows the query returns, which
        makes those keys the rows' projection (`FoundDatasets.ofRows`). Without it
        they may hold more.

        Made once the rows are all read rather than as they arrive: the million key
        tuples of the datasets live only until the caller has made its datasets, and
        made among the rows they left that much of pymalloc's memory pinned by the
        rows' arenas (about 20 MB more peak at 10^6 quanta). The columns kept till
        now are lists of the rows' own values.
        """
        for (found, positions, _, runs), parts in zip(self._types, self._parts, strict=True):
            for keyColumns, ids, runIds in parts:
                keys = zip(*keyColumns, strict=True) if keyColumns else repeat((), len(ids))
                found.ids.update(zip(keys, ids, strict=True))
                if runs is not None and runIds is not None:
                    found.runOf.update(zip(ids, map(runs.__getitem__, runIds), strict=True))
            if dropped is not None:
                if dropped:
                    _forget_dropped(found, positions, parts, dropped)
                found.ofRows = True
            parts.clear()
        return self.found


def _forget_dropped(
    found: FoundDatasets,
    positions: Sequence[int],
    parts: Sequence[tuple[list[list[Any]], Sequence[int], Sequence[int] | None]],
    dropped: Sequence[tuple[Any, ...]],
) -> None:
    """Remove from ``found`` the datasets whose keys (at ``positions`` of the rows) only dropped rows had.

    A key stays when more rows that `take` returned have it than dropped rows do. The
    dropped rows are few (relation rows of units missing from their tables); the rows
    that share the last key value of one of them are found in the columns ``parts``
    kept (one C-level pass over each batch's last key column, lists of values shared
    among few objects, rather than a pass over the million row tuples).
    """
    project: Callable[[tuple[Any, ...]], tuple[Any, ...]]
    if not positions:
        project = _no_keys
    elif len(positions) == 1:
        (i,) = positions
        project = lambda row: (row[i],)  # noqa: E731
    else:
        project = itemgetter(*positions)
    candidates = Counter(map(project, dropped))
    taken: Counter[tuple[Any, ...]] = Counter()
    if positions:
        last = {key[-1] for key in candidates}
        for keyColumns, _, _ in parts:
            near = list(map(last.__contains__, keyColumns[-1]))
            if any(near):
                taken.update(zip(*[compress(column, near) for column in keyColumns], strict=True))
    else:
        taken[()] = sum(len(ids) for _, ids, _ in parts)
    for key, n in candidates.items():
        if taken[key] <= n:  # (every row with the key was dropped)
            dsId = found.ids.pop(key, None)
            if dsId is not None:
                found.runOf.pop(dsId, None)


def _no_keys(row: tuple[Any, ...]) -> tuple[()]:
    return ()


def _getter(keys: Sequence[str], wanted: Sequence[str]) -> Callable[[tuple[Any, ...]], tuple[Any, ...]]:
    """A function from a tuple over ``keys`` to the tuple of its values over ``wanted``."""
    return index_getter([keys.index(k) for k in wanted])


def _decoded(members: Any) -> list[Any]:
    """A group's member values: SQLite's JSON text parsed; psycopg parses it itself."""
    return json.loads(members) if isinstance(members, str) else list(members)


def _assemble(
    groups: dict[tuple[Any, ...], list[Any]],
    fromKeys: tuple[str, ...],
    toKeys: tuple[str, ...],
    members: list[str],
) -> dict[tuple[Any, ...], list[tuple[Any, ...]]]:
    """Each group's members as tuples over ``toKeys``, completed from the group's own key values."""
    if not members:  # every to key is a from key: the group's one related tuple
        project = _getter(fromKeys, toKeys)
        return {key: [project(key)] for key in groups}
    if len(members) == 1:
        # One member key (a warp's detectors): head and tail are the group's values
        # on either side of it, so each tuple is made in one step.
        at = toKeys.index(members[0])
        head, tail = _getter(fromKeys, toKeys[:at]), _getter(fromKeys, toKeys[at + 1 :])
        result = {}
        for key, values in groups.items():
            h, t = head(key), tail(key)
            result[key] = [(*h, v, *t) for v in values] if t else [(*h, v) for v in values]
        return result
    # Several member keys: each member is an array of their values, in ``members`` order.
    order = [(False, fromKeys.index(k)) if k in fromKeys else (True, members.index(k)) for k in toKeys]
    return {
        key: [tuple([m[i] if member else key[i] for member, i in order]) for m in values]
        for key, values in groups.items()
    }
