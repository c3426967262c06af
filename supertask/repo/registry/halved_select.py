"""A large ordered SQLite SELECT run as two halves at once, on two connections.

SQLite computes the whole join and the ``ORDER BY`` sort of a statement in its first
step, before it returns a row, and releases the GIL while it does: for the million
rows of a 10^6-quantum planning query that step is about 6 s on one core while the
machine's other cores wait. Split by the ``rowid`` of the table the plan scans in its
outer loop, the two halves cover disjoint rows, and each half's first step runs on
its own connection at the same time as the other's (one in a short worker thread).
The rows are then read in the calling thread, one half after the other: never from
two threads at once, since ``sqlite3`` retakes the GIL for every row and two readers
would only hand it back and forth. The caller gets two sorted runs, which a Python
sort merges in one linear pass.

Only a statement whose rows are distinct without ``DISTINCT`` may be split (with
``DISTINCT`` the same output row could come from both halves), and only when the plan
scans a table of at least ``minRows`` rows, whose halves SQLite then reads by rowid
range (checked with ``EXPLAIN QUERY PLAN``: each half must read only its half).

Both halves read the same snapshot of the database: the second connection reads the
file's change counter (``PRAGMA data_version``) before the first connection starts
its read transaction, and again once its own has started; a commit by any other
connection in between changes it, and the second half then runs on the first
connection instead, after the first half's statement (no parallelism, same rows).
"""

from __future__ import annotations

import re
import sqlite3
import threading
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

__all__ = ["SPLIT_MIN_ROWS", "HalvedSelect", "halve"]

SPLIT_MIN_ROWS = 100_000
"""Rowids of the scanned table from which a statement is split. At 10^5 quanta (117,000
overlaps) the planning query took 1.2 s wall instead of 1.57 s, the same CPU; below,
the gain shrinks to the cost of a second connection and its plan checks (milliseconds)."""

SECOND_CACHE_KIB = 32768
"""Page cache of the second connection, KiB: half the 64 MiB of every registry connection."""

_SCAN = re.compile(r"SCAN (?:TABLE )?(\w+)")


@dataclass
class HalvedSelect:
    """The two halves of a split statement, both executed, their rows not yet read."""

    lower: sa.CursorResult[Any]
    upper: sa.CursorResult[Any]
    parallel: bool
    """Whether the halves ran at the same time (`False`: a commit came in between, and the
    upper half ran on the first connection after the lower one)."""

    def close(self) -> None:
        """Close both results (rows left unread are dropped)."""
        self.lower.close()
        self.upper.close()


def halve(
    conn: sa.Connection,
    other: sa.Connection,
    stmt: sa.Select[Any],
    tables: Collection[str],
    minRows: int = SPLIT_MIN_ROWS,
) -> HalvedSelect | None:
    """Execute ``stmt`` as two halves on ``conn`` and ``other`` at once, or `None` if it does not split.

    Parameters
    ----------
    conn : `sqlalchemy.Connection`
        The caller's connection, in no transaction yet: the lower half runs on it, and
        its read transaction (started here) stays the caller's.
    other : `sqlalchemy.Connection`
        A second connection to the same SQLite file, unused so far; the upper half's
        rows are read from it, so the caller closes it after reading them (and does not
        return it to a pool: its page cache is set to ``SECOND_CACHE_KIB``).
    stmt : `sqlalchemy.Select`
        An ordered statement whose rows are distinct without ``DISTINCT``.
    tables : collection of `str`
        The names of the tables ``stmt`` joins as tables (not as subqueries): only one
        of those is split by its rowid.
    minRows : `int`
        Split only when the scanned table spans at least this many rowids.

    Returns
    -------
    halves : `HalvedSelect` or `None`
        The executed halves (read ``lower``, then ``upper``); `None` when the statement
        is not worth splitting or its plan does not allow it, with ``conn`` untouched.
    """
    if conn.in_transaction() or other.in_transaction() or conn.dialect.driver != "pysqlite":
        return None
    raw: sqlite3.Connection = other.connection.dbapi_connection  # type: ignore[assignment]
    try:
        table = _scannedTable(raw, stmt, conn.dialect)
        if table is None or table not in tables:
            return None
        lo, hi = raw.execute(f'SELECT min(rowid), max(rowid) FROM "{table}"').fetchone()
        if lo is None or hi - lo + 1 < max(minRows, 2):
            return None
        rowid = sa.literal_column(f'"{table}".rowid', sa.Integer)
        middle = (lo + hi) // 2
        lower, upper = stmt.where(rowid <= middle), stmt.where(rowid > middle)
        for half, op in ((lower, "<"), (upper, ">")):
            wanted = f"SEARCH {table} USING INTEGER PRIMARY KEY (rowid{op}?)"
            if _outerLoop(raw, *_compiled(half, conn.dialect)) != wanted:
                return None
    except sqlite3.OperationalError:  # a table without rowid, or not joined under its own name
        return None
    before = _dataVersion(raw)  # outside any transaction: the file as it is now
    conn.exec_driver_sql("PRAGMA data_version")  # starts the caller's read transaction
    box: dict[str, Any] = {}

    def run_upper() -> None:
        try:
            # Starts this connection's read transaction; its counter is that snapshot's.
            box["version"] = other.exec_driver_sql("PRAGMA data_version").scalar_one()
            # Its page cache, which is also its sorter's memory budget, is half the
            # caller's: both halves together then hold what the one statement would
            # (peak RSS at 10^6 quanta 1,490 MB with a full-sized one, 1,473 MB as here
            # and without the split).
            other.exec_driver_sql(f"PRAGMA cache_size=-{SECOND_CACHE_KIB}")
            box["result"] = other.execute(upper)
        except BaseException as err:  # noqa: BLE001 - handed to the calling thread
            box["error"] = err

    worker = threading.Thread(target=run_upper, name="supertask-halved-select")
    worker.start()
    try:
        lowerResult = conn.execute(lower)
    except BaseException:
        worker.join()
        if "result" in box:
            box["result"].close()
        raise
    worker.join()
    if "error" in box:
        lowerResult.close()
        raise box["error"]
    upperResult: sa.CursorResult[Any] = box["result"]
    if box["version"] == before:
        return HalvedSelect(lowerResult, upperResult, parallel=True)
    upperResult.close()  # another connection committed: the snapshots may differ
    return HalvedSelect(lowerResult, conn.execute(upper), parallel=False)


def _compiled(stmt: sa.Select[Any], dialect: sa.Dialect) -> tuple[str, tuple[Any, ...]]:
    """The SQL text and positional parameters SQLAlchemy sends for ``stmt``."""
    compiled = stmt.compile(dialect=dialect, compile_kwargs={"render_postcompile": True})
    params = compiled.params
    return str(compiled), tuple(params[name] for name in compiled.positiontup or ())


def _outerLoop(raw: sqlite3.Connection, sql: str, params: tuple[Any, ...]) -> str | None:
    """The detail of the plan's outer loop (its first top-level ``SCAN`` or ``SEARCH``) of compiled ``sql``."""
    for _, parent, _, detail in raw.execute("EXPLAIN QUERY PLAN " + sql, params):
        if parent == 0 and detail.startswith(("SCAN ", "SEARCH ")):
            return str(detail)
    return None


def _scannedTable(raw: sqlite3.Connection, stmt: sa.Select[Any], dialect: sa.Dialect) -> str | None:
    """The table the outer loop reads whole, in rowid order (none when it uses an index).

    `None` also for a ``DISTINCT`` statement, whose halves could both hold a row.
    """
    sql, params = _compiled(stmt, dialect)
    if sql.startswith("SELECT DISTINCT"):
        return None
    loop = _outerLoop(raw, sql, params)
    match = _SCAN.fullmatch(loop or "")
    return match.group(1) if match else None


def _dataVersion(raw: sqlite3.Connection) -> int:
    version: int = raw.execute("PRAGMA data_version").fetchone()[0]
    return version
