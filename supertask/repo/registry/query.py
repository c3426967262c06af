"""Build the one joined SELECT behind every data-ID query.

Given the units a caller wants, the builder picks the unit tables (the units, what
they require, and the implied units that link them, e.g. ``visit → physical_filter →
band``), the relation tables whose ``join_when`` groups are covered, joins them all on
their shared key columns (every key column is named after its unit), and adds the
user's expression, dataset-existence constraints and ``restrict`` IN lists.

The SQL differs by backend because the planners do. SQLite gets one flat SELECT (tables
in FROM, equalities and ``EXISTS`` in WHERE): its planner orders a dozen tables cheaply.
PostgreSQL's exhaustive join search costs seconds on that shape, because every table
shares the ``instrument`` or ``skymap`` key and the join graph is nearly complete:
planning the demo tile's query (11 tables, 5 ``EXISTS``) took 9-65 s for 2 ms of
execution. PostgreSQL therefore gets the tables as a chain of explicit ``JOIN``s (the
planner then searches sub-problems of at most ``join_collapse_limit`` tables, 8 by
default, in the order given; see `QueryBuilder.joinChain`) and, when datasets must exist, the joined rows as a
``MATERIALIZED`` CTE that the ``EXISTS`` tests filter (semi-joins flattened into the join
search multiplied its cost tenfold). Both shapes return the same rows.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.sql import visitors

from ...expr.errors import UnknownIdentifierError
from ..units import Universe
from .schema import RegistrySchema


@dataclass
class DatasetConstraint:
    """Require that a dataset of a type exists in one of some runs for each row."""

    name: str
    typeId: int
    units: tuple[str, ...]
    runIds: Sequence[int]
    runNames: Sequence[str] = ()
    """The names of ``runIds``, in the same (search) order; needed to resolve datasets."""


@dataclass
class QueryPlan:
    """The elements (tables) of one query, in join order, and its output keys.

    ``checked`` are unit tables left out of ``elements`` by `QueryBuilder.leaveOutUnits`:
    the caller keeps only the rows whose keys these tables hold.
    """

    units: set[str]
    elements: list[str]
    outputKeys: tuple[str, ...]
    columns: dict[str, sa.ColumnElement[Any]] = field(default_factory=dict)
    checked: list[str] = field(default_factory=list)


class QueryBuilder:
    """Turns (units, expression, constraints) into SQLAlchemy selects.

    Parameters
    ----------
    schema : `RegistrySchema`
        The tables.
    dialect : `str`
        The SQLAlchemy dialect name of the database (``"sqlite"``, ``"postgresql"``):
        PostgreSQL gets the fixed-order shape described in the module docstring.
    """

    def __init__(self, schema: RegistrySchema, dialect: str = "sqlite"):
        self.schema = schema
        self.universe: Universe = schema.universe
        self.fixedJoinOrder = dialect == "postgresql"
        self.dialect = dialect

    def plan(self, units: Iterable[str], extra: Iterable[str] = ()) -> QueryPlan:
        """Choose the tables joining ``units`` (output) and ``extra`` (expression) units.

        Raises
        ------
        KeyError
            If a name is neither a unit nor a relation.
        """
        u = self.universe
        wanted = set(units)
        relations_named = {e for e in extra if e in u.relations}
        unknown = [x for x in (*wanted, *extra) if x not in u.units and x not in u.relations]
        if unknown:
            raise KeyError(f"unknown unit(s) {sorted(unknown)}; known units: {sorted(u.units)}")
        involved = set(u.expand(wanted | {e for e in extra if e in u.units}))
        for rel in relations_named:
            involved.update(u.expand(u.relations[rel].units))
        # Add implied units that link two units already involved (visit -> physical_filter -> band).
        changed = True
        while changed:
            changed = False
            for unit in sorted(involved):
                for implied in u.units[unit].implies:
                    if implied not in involved and self._reaches(implied, involved):
                        involved.update(u.requiredKeys(implied))
                        changed = True
        elements = sorted(involved, key=lambda n: (len(u.requiredKeys(n)), n))
        for relName, relation in u.relations.items():
            if relName in relations_named or any(group <= involved for group in relation.joinWhen):
                elements.append(relName)
        return QueryPlan(units=involved, elements=elements, outputKeys=u.expand(wanted))

    def leaveOutUnits(self, plan: QueryPlan, named: Iterable[str] = ()) -> list[str]:
        """Take out of the plan the unit tables whose keys other tables' columns stand in for.

        A relation such as the (visit, detector) <-> patch overlaps holds every key of
        the visit, detector, tract, patch, instrument and skymap tables; the physical
        filter table holds the band. Joined to such a table, a unit table gains the
        query no column and no row: it is joined on its whole primary key, so it only
        drops the rows whose keys it lacks (the registry declares no foreign keys, and
        repositories do hold such rows: overlaps of patches outside their tract). Those
        joins cost SQLite a B-tree search per row and table, about two thirds of the
        statement for the million rows of a 10^6 related look-up. A unit table is left
        out when

        * a table that stays in the plan holds its primary key: a relation joined whole
          (no projection) or another unit's table,
        * it joins nothing else (none of the units it implies are involved),
        * its primary key is among the output keys, so the rows say which of its
          rows they need, and
        * the expression does not name it (``named``: its fields and key stay where
          the expression's resolver finds them).

        The caller keeps the rows whose keys the left-out tables hold
        (`UnitExistence`), which makes the rows those of the full join. Call it before
        `fromClause` (the left-out tables stop being canonical columns). A statement
        whose rows are not all read (`count`) must not leave tables out.

        Returns
        -------
        checked : `list` [`str`]
            The left-out units, also in ``plan.checked``.
        """
        u = self.universe
        named = set(named)
        held = {
            e: set(self._elementKeyColumns(e))
            for e in plan.elements
            if e in u.units or set(self._elementKeyColumns(e)) <= plan.units
        }
        # A relation `projections` reduces is joined as a subquery, so its table's
        # columns must not become a key's canonical column (the statement's IN lists
        # and output name those): a unit sharing a key with one stays.
        reduced = {
            k for e in plan.elements if e in u.relations and e not in held for k in self._elementKeyColumns(e)
        }
        output = set(plan.outputKeys)
        checked = []
        for element in plan.elements:
            if element not in u.units or element in named:
                continue
            keys = set(u.requiredKeys(element))
            if any(i in plan.units for i in u.units[element].implies) or not keys <= output:
                continue
            if not keys.isdisjoint(reduced):
                continue
            # Only tables that stay count: a unit left out earlier had its own key held
            # by one that stays, and held no other column (it implies nothing here).
            if any(keys <= columns for e, columns in held.items() if e != element):
                checked.append(element)
                del held[element]
        plan.elements = [e for e in plan.elements if e not in checked]
        plan.checked = checked
        return checked

    def _reaches(self, unit: str, targets: set[str]) -> bool:
        seen: set[str] = set()
        stack = [unit]
        while stack:
            cur = stack.pop()
            if cur in seen:
                continue
            seen.add(cur)
            for nxt in self.universe.units[cur].implies:
                if nxt in targets:
                    return True
                stack.append(nxt)
        return False

    def _elementKeyColumns(self, element: str) -> tuple[str, ...]:
        u = self.universe
        if element in u.units:
            return (*u.requiredKeys(element), *u.units[element].implies)
        return u.expand(u.relations[element].units)

    def fromClause(
        self, plan: QueryPlan, sources: Mapping[str, sa.FromClause] | None = None
    ) -> tuple[list[sa.FromClause], list[sa.ColumnElement[bool]]]:
        """The plan's tables and the equalities joining them on their shared key columns.

        Inner joins written as WHERE equalities, SQLite's shape: its planner chooses
        the join order itself, cheaply. Also sets ``plan.columns`` (each key's canonical
        column), which `resolver` and `joinChain` use. ``sources`` replaces some
        elements' tables (the projections of `projections`), joined on the key columns
        they keep.
        """
        tables = self.schema.elements
        sources = sources or {}
        canonical: dict[str, sa.ColumnElement[Any]] = {}
        for element in plan.elements:  # a unit's own table provides its canonical key column
            if element in self.universe.units:
                canonical[element] = tables[element].c[element]
        conds: list[sa.ColumnElement[bool]] = []
        for element in plan.elements:
            source = sources.get(element, tables[element])
            for key in self._elementKeyColumns(element):
                if key not in source.c:
                    continue
                col = source.c[key]
                canon = canonical.setdefault(key, col)
                if canon is not col:
                    conds.append(col == canon)
        plan.columns = canonical
        return [sources.get(e, tables[e]) for e in plan.elements], conds

    def projections(
        self, plan: QueryPlan, conditions: Sequence[sa.ColumnElement[bool]] = ()
    ) -> dict[str, sa.FromClause]:
        """Relations of the plan reduced to the key columns the query uses, as ``SELECT DISTINCT``.

        A relation joins the plan because its units are involved, but it may hold keys
        of units the query has nothing to do with: the (visit, detector) <-> patch
        overlaps hold the detector when a query asks which visits overlap a patch.
        Joined whole, every overlap row (one per detector) is joined to the visit,
        filter and band tables and then removed again by the outer ``DISTINCT``; at 10^6
        quanta that was 8 s of SQLite's time. Reduced first to its distinct (visit,
        patch) pairs, the relation gives each pair once, and the rows are the same
        (the left-out keys are joined to nothing, selected by nothing, and named by no
        expression: an expression naming the relation involves all its units).

        ``conditions`` are the statement's IN lists over canonical columns: those that
        name only keys the projection keeps are repeated inside it, over the relation's
        own columns, so the database reduces only the rows it needs (SQLite does not
        carry an IN list across a join's equality into a subquery).
        """
        u = self.universe
        tables = self.schema.elements
        out: dict[str, sa.FromClause] = {}
        for element in plan.elements:
            if element not in u.relations:
                continue
            keys = self._elementKeyColumns(element)
            kept = [k for k in keys if k in plan.units]
            if len(kept) == len(keys):
                continue
            table = tables[element]
            own = {id(plan.columns[k]): table.c[k] for k in kept if k in plan.columns}
            pushed = [moved for cond in conditions if (moved := _moved(cond, own)) is not None]
            out[element] = (
                sa.select(*[table.c[k] for k in kept]).where(*pushed).distinct().subquery(f"{element}_keys")
            )
        return out

    def resolver(self, plan: QueryPlan) -> _Resolver:
        """A resolver for ``supertask.expr.compile_expression`` over this plan's columns."""
        u = self.universe
        tables = self.schema.elements

        def resolve(unit: str, field_name: str | None) -> tuple[sa.ColumnElement[Any], type]:
            if field_name is None:
                if unit in u.units and unit in plan.columns:
                    return plan.columns[unit], u.units[unit].keyType
            elif unit in tables and unit in plan.elements:
                fields = u.elementFields(unit)
                if field_name in fields:
                    return tables[unit].c[field_name], fields[field_name]
                if field_name in tables[unit].c:
                    return tables[unit].c[field_name], u.units[field_name].keyType
            raise UnknownIdentifierError(
                unit if field_name is None else f"{unit}.{field_name}", self.validIdentifiers()
            )

        return _Resolver(resolve)

    def validIdentifiers(self) -> list[str]:
        """Every identifier an expression may use."""
        u = self.universe
        names = list(u.units)
        for element in (*u.units, *u.relations):
            names.extend(f"{element}.{f}" for f in u.elementFields(element))
        return names

    def joinChain(self, plan: QueryPlan, sources: Mapping[str, sa.FromClause] | None = None) -> sa.FromClause:
        """The plan's tables as a chain of explicit inner ``JOIN``s (PostgreSQL's shape).

        The chain starts with the table of most key columns (a relation, when there is
        one) and then, greedily, takes the table sharing the most key columns with those
        already joined, so that each ``ON`` clause holds every key a table shares (a
        table joined on ``instrument`` alone multiplies rows until a later one filters
        them) and the first ``join_collapse_limit`` tables, which PostgreSQL orders
        freely, are the ones joined on the most keys; single-key units (``instrument``,
        ``skymap``, ``band``: small tables) come last. Each table is joined to the first
        earlier table holding the same key (an ``ON`` clause may only name tables
        already in the chain); the equalities are transitive, so the rows are those of
        `fromClause`. ``sources`` replaces some elements' tables, as in `fromClause`.
        """
        if not plan.columns:
            self.fromClause(plan)
        tables = {**self.schema.elements, **(sources or {})}
        relations = self.universe.relations
        keys = {e: tuple(k for k in self._elementKeyColumns(e) if k in tables[e].c) for e in plan.elements}
        remaining = sorted(plan.elements)
        first: dict[str, sa.ColumnElement[Any]] = {}
        joined: sa.FromClause | None = None
        while remaining:
            element = max(
                remaining,
                key=lambda e: (sum(k in first for k in keys[e]), e in relations, len(keys[e])),
            )
            remaining.remove(element)
            table = tables[element]
            on = []
            for key in keys[element]:
                col = table.c[key]
                earlier = first.setdefault(key, col)
                if earlier is not col:
                    on.append(col == earlier)
            joined = table if joined is None else joined.join(table, sa.and_(*on) if on else sa.true())
        assert joined is not None, "a plan without tables has no join"
        return joined

    def _primaryKey(self, element: str) -> tuple[str, ...]:
        """The key columns of an element's table that identify one of its rows (its primary key)."""
        u = self.universe
        if element in u.units:
            return u.requiredKeys(element)
        return u.expand(u.relations[element].units)

    def rowsAreDistinct(self, plan: QueryPlan, sources: Mapping[str, sa.FromClause] | None = None) -> bool:
        """Whether the plan's joined rows are distinct over its output keys without ``DISTINCT``.

        Every table is joined on its key columns, and each has a primary key. A table
        whose primary key is among the values already known has one row for them, and
        that row fixes its other key columns (``visit`` fixes ``physical_filter``), so
        those become known in turn. If, starting from the output keys, every table's row
        is fixed this way, each output row comes from exactly one combination of table
        rows: no two rows are equal, and the database need not build the temporary
        index that ``DISTINCT`` costs (SQLite fills it completely before returning the
        first row). Otherwise (output keys that leave out a table's key, as
        ``physical_filter`` alone does for the visits an expression names) `False`. An
        element in ``sources`` (a projection of `projections`, distinct over the keys it
        keeps) is identified by those keys.
        """
        sources = sources or {}
        known = set(plan.outputKeys)
        pending = list(plan.elements)
        progress = True
        while pending and progress:
            progress = False
            for element in list(pending):
                source = sources.get(element)
                key = self._primaryKey(element) if source is None else tuple(source.c.keys())
                if known.issuperset(key):
                    known.update(
                        k for k in self._elementKeyColumns(element) if source is None or k in source.c
                    )
                    pending.remove(element)
                    progress = True
        return not pending

    def select(
        self,
        plan: QueryPlan,
        whereClause: sa.ColumnElement[bool] | None,
        datasets: Sequence[DatasetConstraint] = (),
        restrict: Mapping[str, Sequence[Any]] | None = None,
        extra: Sequence[sa.ColumnElement[bool]] = (),
        ordered: bool = True,
        resolved: Sequence[DatasetConstraint] = (),
    ) -> sa.Select[*tuple[Any, ...]]:
        """The distinct rows of the plan's output keys, ordered by them if ``ordered``.

        ``DISTINCT`` is left out when `rowsAreDistinct` proves the rows distinct anyway,
        and ``ORDER BY`` when the caller does not need the database's order
        (``ordered=False``): both make the database compute the whole result before
        returning a row.

        Parameters
        ----------
        plan : `QueryPlan`
            The tables and output keys (from `plan`).
        whereClause : `sqlalchemy.ColumnElement` or `None`
            The compiled user expression, over the plan's columns.
        datasets : sequence of `DatasetConstraint`
            Keep only rows for which each dataset exists.
        restrict : `dict` [`str`, sequence], optional
            ``{unit: values}`` IN lists over the units' canonical columns.
        extra : sequence of `sqlalchemy.ColumnElement`
            More conditions over the plan's columns (the caller's chunked IN lists):
            they belong with the joins, which a caller's ``.where`` on the returned
            statement would not reach in PostgreSQL's CTE shape.
        ordered : `bool`
            Add ``ORDER BY`` the output keys (default); `False` for callers that do
            not rely on the rows' order.
        resolved : sequence of `DatasetConstraint`
            Datasets found by the statement itself rather than tested with ``EXISTS``:
            after the output keys, each adds the ``id`` of the row's dataset in the
            first of its runs (in search order) that holds one and, with several runs,
            that run's id (`datasetColumns`); both are NULL where none exists, and the
            caller drops those rows. The keys of each must be among the output keys.
        """
        self.fromClause(plan)  # the canonical columns, which the IN lists name
        canonical = plan.columns
        filters = [] if whereClause is None else [whereClause]
        restricts = [canonical[unit].in_(list(values)) for unit, values in (restrict or {}).items()]
        projected = self.projections(plan, [*restricts, *extra])
        froms, joins = self.fromClause(plan, projected)
        sources: list[sa.FromClause]
        if not self.fixedJoinOrder:
            column = canonical.__getitem__
            exists = [self._exists(c, column) for c in datasets]
            sources, conds = froms, [*joins, *filters, *exists, *restricts, *extra]
        elif datasets:
            # The joined rows once (MATERIALIZED keeps PostgreSQL from pulling the EXISTS
            # tests into the join search), then the existence tests over them.
            keys = list(dict.fromkeys((*plan.outputKeys, *self._constraintKeys([*datasets, *resolved]))))
            cte = (
                sa.select(*[canonical[k].label(k) for k in keys])
                .select_from(self.joinChain(plan, projected))
                .where(*filters, *restricts, *extra)
                .cte("planned")
                .prefix_with("MATERIALIZED")
            )
            column = cte.c.__getitem__
            sources, conds = [cte], [self._exists(c, column) for c in datasets]
        else:
            column = canonical.__getitem__
            sources, conds = [self.joinChain(plan, projected)], [*filters, *restricts, *extra]
        if not plan.outputKeys:
            # No units asked for (the expression alone names tables): whether any row
            # matches is the whole answer, one empty data ID or none. (A SELECT of no
            # columns would be invalid SQL.)
            return sa.select(sa.literal(1)).select_from(*sources).where(*conds).limit(1)
        cols: list[sa.ColumnElement[Any]] = [column(k).label(k) for k in plan.outputKeys]
        missing = [c.name for c in resolved if not set(self.universe.expand(c.units)) <= set(plan.outputKeys)]
        if missing:
            raise ValueError(f"datasets {missing} have keys outside the output keys {plan.outputKeys}")
        for c in resolved:
            cols.extend(self.datasetColumns(c, column))
        stmt = sa.select(*cols).select_from(*sources).where(*conds)
        if restricts or extra or not self.rowsAreDistinct(plan, projected):
            # With IN lists SQLite's planner (a registry has no statistics) weighs them
            # by their lengths, and without DISTINCT it led a visit-chunked statement
            # with the patch list, which covers every overlap of the tile: twice the
            # time at 10^6 quanta. Such statements keep DISTINCT and the plan it gives.
            stmt = stmt.distinct()
        return stmt.order_by(*[column(k) for k in plan.outputKeys]) if ordered else stmt

    def grouped(
        self, stmt: sa.Select[Any], groupKeys: Sequence[str], memberKeys: Sequence[str]
    ) -> sa.Select[Any]:
        """``stmt``'s rows one per distinct ``groupKeys`` values, with the ``memberKeys`` values of each as JSON.

        The row of a group holds its ``groupKeys`` values, then one JSON array of its
        rows' ``memberKeys`` values: scalars for one member key, arrays of them for
        several (in ``memberKeys`` order, one array per row, so the members stay
        aligned), none with no member keys. The database builds these arrays in C,
        where the rows of a related look-up (a campaign's million visit-detector-patch
        overlaps) cost a Python tuple of six objects each; SQLite answers the grouping
        from the overlap table's covering index, without a sort. The arrays are in no
        particular order. SQLite returns them as text, psycopg as parsed lists.
        """
        sub = stmt.subquery("related")
        keys = [sub.c[k] for k in groupKeys]
        members = [sub.c[k] for k in memberKeys]
        if self.dialect == "postgresql":
            aggregate, array = sa.func.json_agg, sa.func.json_build_array
        else:
            aggregate, array = sa.func.json_group_array, sa.func.json_array
        columns: list[sa.ColumnElement[Any]] = list(keys)
        if members:
            member = members[0] if len(members) == 1 else array(*members)
            columns.append(aggregate(member).label("members"))
        return sa.select(*columns).group_by(*keys)

    def datasetColumns(
        self, constraint: DatasetConstraint, column: Callable[[str], sa.ColumnElement[Any]]
    ) -> list[sa.ColumnElement[Any]]:
        """The row's dataset of the constraint's type: its ``id`` and, with several runs, its ``run_id``.

        Correlated scalar subqueries over the same index probe as `_exists` (the
        dataset table's index on the type and key columns holds the run and the id, so
        SQLite reads no table row): the planning query then finds its inputs itself,
        and no second pass reads every dataset of the type. With several runs the
        first in search order wins (``ORDER BY`` the run's rank, ``LIMIT 1``; a data ID
        has at most one dataset per run); with one run its name is known and only the
        id is selected. NULL where no dataset exists.
        """
        ds = self.schema.dataset.alias(f"found_{constraint.name}")
        runIds = list(constraint.runIds)
        where = [
            ds.c.dataset_type_id == constraint.typeId,
            ds.c.run_id.in_(runIds),
            *[ds.c[k] == column(k) for k in self.universe.expand(constraint.units)],
        ]
        if len(runIds) <= 1:
            return [
                sa.select(ds.c.id).where(*where).limit(1).scalar_subquery().label(f"{constraint.name}__id")
            ]
        rank = sa.case({rid: rank for rank, rid in enumerate(runIds)}, value=ds.c.run_id)
        return [
            sa.select(ds.c[name])
            .where(*where)
            .order_by(rank)
            .limit(1)
            .scalar_subquery()
            .label(f"{constraint.name}__{name}")
            for name in ("id", "run_id")
        ]

    def _constraintKeys(self, datasets: Sequence[DatasetConstraint]) -> list[str]:
        return [k for c in datasets for k in self.universe.expand(c.units)]

    def _exists(
        self, constraint: DatasetConstraint, column: Callable[[str], sa.ColumnElement[Any]]
    ) -> sa.ColumnElement[bool]:
        """``EXISTS`` a dataset of the constraint's type and runs with the row's key values."""
        alias = self.schema.dataset.alias(f"exists_{constraint.name}")
        sub = sa.select(sa.literal(1)).where(
            alias.c.dataset_type_id == constraint.typeId,
            alias.c.run_id.in_(list(constraint.runIds)),
            *[alias.c[k] == column(k) for k in self.universe.expand(constraint.units)],
        )
        return sa.exists(sub)


def _moved(
    condition: sa.ColumnElement[bool], columns: Mapping[int, sa.Column[Any]]
) -> sa.ColumnElement[bool] | None:
    """``condition`` over other columns (``{id(column): replacement}``).

    `None` if it names a column that ``columns`` does not replace (or none at all).
    """
    named = [e for e in visitors.iterate(condition) if isinstance(e, sa.Column)]
    if not named or any(id(col) not in columns for col in named):
        return None

    def replace(element: Any, **_: Any) -> sa.Column[Any] | None:
        return columns.get(id(element))

    moved: sa.ColumnElement[bool] = visitors.replacement_traverse(condition, {}, replace)
    return moved


class _Resolver:
    """Callable resolver with a ``resolve`` alias (either protocol spelling works)."""

    def __init__(self, fn: Callable[[str, str | None], tuple[sa.ColumnElement[Any], type]]) -> None:
        self._fn = fn

    def __call__(self, unit: str, field_name: str | None) -> tuple[sa.ColumnElement[Any], type]:
        return self._fn(unit, field_name)

    def resolve(self, unit: str, field_name: str | None) -> tuple[sa.ColumnElement[Any], type]:
        return self._fn(unit, field_name)
