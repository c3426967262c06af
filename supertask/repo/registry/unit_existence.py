"""Keep the rows of a data-ID query whose keys the unit tables it left out hold.

`QueryBuilder.leaveOutUnits` takes unit tables out of a statement when other tables'
key columns stand in for them; joined, each would only have dropped the rows whose keys
it lacks. `UnitExistence` drops those rows in Python instead, without a look-up per row:
it takes each key column's distinct values from `ValueSharing`, which keeps them anyway
(a few thousand visits, a hundred detectors: units, not rows), reads once per left-out unit which of those values'
combinations its table holds, and filters the rows only when some combination is missing.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from itertools import compress
from math import prod
from operator import itemgetter
from typing import Any

import sqlalchemy as sa

from .bulk import ValueSharing, raw_rows, restrict_chunks
from .schema import RegistrySchema

__all__ = ["UnitExistence"]


class UnitExistence:
    """The rows of a query whose left-out units all have a row in their tables.

    Pass all the rows kept to `filter`: they are the rows ``values`` has seen.

    Parameters
    ----------
    conn : `sqlalchemy.Connection`
        A connection for the look-ups of the unit tables.
    schema : `RegistrySchema`
        The tables.
    units : sequence of `str`
        The left-out units (``QueryPlan.checked``).
    outputKeys : `tuple` [`str`, ...]
        The rows' columns; they hold every left-out unit's primary key.
    values : `ValueSharing`
        What shared the rows' values: it knows each column's distinct values (a
        superset of those of the rows kept is enough), so no pass over the rows is
        needed to collect them.
    """

    def __init__(
        self,
        conn: sa.Connection,
        schema: RegistrySchema,
        units: Sequence[str],
        outputKeys: tuple[str, ...],
        values: ValueSharing,
    ):
        self._conn = conn
        self._schema = schema
        self._units = list(units)
        self._outputKeys = outputKeys
        self._values = values

    def keeps(self, unit: str) -> Callable[[tuple[Any, ...]], bool] | None:
        """A test of ``unit``'s key values (in `Universe.requiredKeys` order): does the unit exist?

        For callers whose rows are in another shape than ``outputKeys`` tuples (grouped
        ones). `None` when every combination of the values seen exists: nothing to test.
        """
        found = self._missing(unit)
        if found is None:
            return None
        _, suspect, _, present = found
        return lambda values: values[-1] not in suspect or values in present

    def filter(
        self, rows: list[tuple[Any, ...]], dropped: list[tuple[Any, ...]] | None = None
    ) -> list[tuple[Any, ...]]:
        """``rows`` (all seen by ``values``) without those whose left-out units are missing; order kept.

        ``dropped``: the rows left out are appended to it (a pass more over the rows,
        only when some are left out).
        """
        for unit in self._units:
            if not rows:
                break
            found = self._missing(unit)
            if found is None:
                continue
            last, suspect, whole, present = found
            if whole is None:
                kept = [row for row in rows if last(row) not in suspect]
            else:
                kept = [row for row in rows if last(row) not in suspect or whole(row) in present]
            if dropped is not None and len(kept) < len(rows):
                # (the suspect rows in one C-level pass: a few of a million)
                near = compress(rows, map(suspect.__contains__, map(last, rows)))
                dropped.extend(near if whole is None else (row for row in near if whole(row) not in present))
            rows = kept
        return rows

    def _missing(self, unit: str) -> tuple[Any, set[Any], Any, set[tuple[Any, ...]]] | None:
        """How to tell the rows whose ``unit`` is missing; `None` when no row's can be.

        The unit's table is read for every combination of the values seen in its
        key columns. A value of the last key column all of whose combinations exist
        clears every row that holds it; only rows with another (suspect) value are
        looked up whole. Returns ``(last key's getter, suspect values, whole key's
        getter or None for a one-column key, the combinations present)``.
        """
        keys = self._schema.universe.requiredKeys(unit)
        sets = [set(self._values.values(self._outputKeys.index(k))) for k in keys]
        table = self._schema.elements[unit]
        stmt = sa.select(*[table.c[k] for k in keys])
        present: set[tuple[Any, ...]] = set()
        for extra in restrict_chunks(dict(zip(keys, sets, strict=True)), table.c.__getitem__):
            for part in raw_rows(self._conn.execute(stmt.where(*extra))):
                present.update(r for r in part if all(v in s for v, s in zip(r, sets, strict=True)))
        counts = Counter(r[-1] for r in present)
        full = prod(len(s) for s in sets[:-1])
        suspect = {v for v in sets[-1] if counts[v] < full}
        if not suspect:
            return None
        last = itemgetter(self._outputKeys.index(keys[-1]))
        whole = itemgetter(*[self._outputKeys.index(k) for k in keys]) if len(keys) > 1 else None
        return last, suspect, whole, present
