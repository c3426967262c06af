"""Keep the rows of a data-ID query whose keys the unit tables it left out hold.

`QueryBuilder.leaveOutUnits` takes unit tables out of a statement when a relation's key
columns stand in for them; joined, each would only have dropped the relation rows whose
keys it lacks. `UnitExistence` drops those rows in Python instead: per batch it collects
the distinct key values of each left-out unit (a few thousand visits, a hundred detectors,
not a million rows), asks the unit's table once about values it has not seen yet, and
filters only a batch that holds a missing one.
"""

from __future__ import annotations

from collections.abc import Sequence
from operator import itemgetter
from typing import Any

import sqlalchemy as sa

from .bulk import raw_rows, restrict_chunks
from .schema import RegistrySchema

__all__ = ["UnitExistence"]


class _Check:
    """The rows' key values of one unit table, and which of them the table holds."""

    def __init__(self, table: sa.Table, keys: tuple[str, ...], indices: list[int]):
        self.table = table
        self.keys = keys
        self.get = itemgetter(*indices)  # one index: the value itself; several: a tuple
        self.present: set[Any] = set()
        self.missing: set[Any] = set()


class UnitExistence:
    """Filter of a query's row batches: only rows whose left-out units exist.

    Parameters
    ----------
    conn : `sqlalchemy.Connection`
        The query's connection (the look-ups see the same database state).
    schema : `RegistrySchema`
        The tables.
    units : sequence of `str`
        The left-out units (``QueryPlan.checked``).
    outputKeys : `tuple` [`str`, ...]
        The rows' columns; they hold every left-out unit's primary key.
    """

    def __init__(
        self, conn: sa.Connection, schema: RegistrySchema, units: Sequence[str], outputKeys: tuple[str, ...]
    ):
        self._conn = conn
        universe = schema.universe
        self._checks = []
        for unit in units:
            keys = universe.requiredKeys(unit)
            self._checks.append(_Check(schema.elements[unit], keys, [outputKeys.index(k) for k in keys]))

    def __call__(self, rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
        """The rows of ``rows`` whose left-out units all have a row in their tables."""
        for check in self._checks:
            if not rows:
                break
            seen = set(map(check.get, rows))
            new = seen - check.present - check.missing
            if new:
                found = self._lookUp(check, new)
                check.present |= found
                check.missing |= new - found
            if check.missing and not seen.isdisjoint(check.missing):
                get, missing = check.get, check.missing
                rows = [row for row in rows if get(row) not in missing]
        return rows

    def _lookUp(self, check: _Check, values: set[Any]) -> set[Any]:
        """Which of ``values`` (key values as the rows give them) the unit's table holds."""
        table, keys = check.table, check.keys
        columns = (
            {keys[0]: values} if len(keys) == 1 else {k: {v[i] for v in values} for i, k in enumerate(keys)}
        )
        stmt = sa.select(*[table.c[k] for k in keys])
        found: set[Any] = set()
        for extra in restrict_chunks(columns, table.c.__getitem__):
            for part in raw_rows(self._conn.execute(stmt.where(*extra))):
                found.update([row[0] for row in part] if len(keys) == 1 else part)
        return found & values
