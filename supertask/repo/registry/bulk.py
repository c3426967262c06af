"""Bulk helpers of the registry: chunking, IN-list restriction, PostgreSQL COPY inserts.

Nothing here is per row on the database side: values go in chunks sized well under the
bound-parameter limits of SQLite and PostgreSQL, and big inserts on PostgreSQL go through
COPY.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from typing import Any

import sqlalchemy as sa

CHUNK = 500
"""Values per IN list (well under SQLite's and PostgreSQL's bound-parameter limits)."""

INSERT_CHUNK = 5000
"""Rows per insert statement (executemany or COPY) of units and datasets."""

COPY_THRESHOLD = 1000
"""PostgreSQL batches at least this big go through COPY and a temporary table."""


def data_id_key(dataId: Mapping[str, Any]) -> str:
    """Canonical text of a data ID (the UNIQUE key of the dataset table): ``k=repr(v)`` pairs
    sorted by unit name; ``repr`` quotes strings, so no value can imitate a separator."""
    return ",".join(f"{k}={v!r}" for k, v in sorted(dataId.items()))


def raw_rows(result: sa.CursorResult[Any], size: int | None = None) -> Iterator[list[tuple[Any, ...]]]:
    """The rows of an executed SELECT as lists of plain tuples, read from the driver's cursor.

    Key columns (integers and strings) need no conversion by SQLAlchemy, and its `Row`
    per row cost about 15 % of reading the million rows of a large planning query.
    ``size`` reads batches of that many rows (a streamed result stays streamed); `None`
    reads everything at once. The result is closed at the end.
    """
    cursor = result.cursor
    try:
        if size is None:
            yield list(map(tuple, cursor.fetchall()))
        else:
            while part := cursor.fetchmany(size):
                yield list(map(tuple, part))
    finally:
        result.close()


class ValueSharing:
    """Rows whose equal values are one object per column, across all the batches given.

    The driver makes a new ``str`` (and ``int`` past 256) for every value of every row:
    the million rows of a large planning query held the band, instrument, skymap and
    physical filter names and the visit numbers a million times each (about a quarter
    of a GB). Each column keeps a dictionary of the values seen, which are few (units,
    not rows), so the rows keep one object per distinct value.

    Parameters
    ----------
    width : `int`
        Values per row.
    """

    def __init__(self, width: int):
        self._seen: list[dict[Any, Any]] = [{} for _ in range(width)]

    def values(self, column: int) -> Collection[Any]:
        """The distinct values column ``column`` has held in the rows given so far."""
        return self._seen[column].keys()

    def __call__(self, rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
        if not rows or not self._seen:
            return rows
        return list(zip(*self.columns(list(zip(*rows, strict=True))), strict=True))

    def columns(self, columns: Sequence[Sequence[Any]]) -> list[list[Any]]:
        """``columns`` (the values of each of the ``width`` columns of some rows) with values shared."""
        return [
            list(map(seen.setdefault, column, column))
            for seen, column in zip(self._seen, columns, strict=True)
        ]


def chunked(values: Sequence[Any], size: int = CHUNK) -> Iterator[Sequence[Any]]:
    """Consecutive slices of at most ``size`` values."""
    for start in range(0, len(values), size):
        yield values[start : start + size]


def dropped_keys(restrict: Mapping[str, set[Any]], droppable: set[str] | None = None) -> list[str]:
    """The keys of ``restrict`` that `restrict_chunks` leaves out of the SQL (the caller filters them).

    Every other key is enforced by the statements themselves: the biggest set through
    its chunks, the small ones whole.
    """
    if not restrict:
        return []
    axis = max(restrict, key=lambda k: len(restrict[k]))
    return [
        k
        for k, v in restrict.items()
        if k != axis and len(v) > 2000 and (droppable is None or k in droppable)
    ]


def restrict_chunks(
    restrict: Mapping[str, set[Any]],
    column: Callable[[str], sa.ColumnElement[Any]],
    droppable: set[str] | None = None,
) -> Iterator[list[sa.ColumnElement[bool]]]:
    """IN-list conditions for ``restrict``: the biggest set in chunks, small sets whole.

    Sets too big to send whole (besides the chunked one) are left out when their key is
    in ``droppable`` (default: all): the caller filters those rows in Python, so the result
    is the same and no statement exceeds the databases' bound-parameter limits.
    """
    if not restrict:
        yield []
        return
    axis = max(restrict, key=lambda k: len(restrict[k]))
    left_out = set(dropped_keys(restrict, droppable))
    fixed = [
        column(k).in_(sorted(v, key=str)) for k, v in restrict.items() if k != axis and k not in left_out
    ]
    values = sorted(restrict[axis], key=str)
    if not values:
        return
    for part in chunked(values):
        yield [column(axis).in_(list(part)), *fixed]


def pg_copy_insert(
    conn: sa.Connection,
    table: str,
    columns: Sequence[str],
    rows: Sequence[tuple[Any, ...]],
    conflict: Sequence[str],
    returning: Sequence[str],
) -> list[tuple[Any, ...]]:
    """Bulk insert on PostgreSQL through COPY into a temporary table; return the RETURNING rows.

    Runs on the SQLAlchemy connection's own psycopg connection, so it is part of the
    caller's transaction. Rows that conflict on ``conflict`` are skipped (and not returned).
    """
    raw: Any = conn.connection.dbapi_connection  # psycopg's: its cursors are context managers
    tmp = f"tmp_bulk_{table}"
    cols = ", ".join(columns)
    with raw.cursor() as cur:
        cur.execute(f"CREATE TEMP TABLE IF NOT EXISTS {tmp} AS SELECT {cols} FROM {table} WITH NO DATA")
        cur.execute(f"TRUNCATE {tmp}")
        with cur.copy(f"COPY {tmp} ({cols}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
        cur.execute(
            f"INSERT INTO {table} ({cols}) SELECT {cols} FROM {tmp} "
            f"ON CONFLICT ({', '.join(conflict)}) DO NOTHING RETURNING {', '.join(returning)}"
        )
        out: list[tuple[Any, ...]] = cur.fetchall()
        cur.execute(f"TRUNCATE {tmp}")
    return out
