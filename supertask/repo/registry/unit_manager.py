"""Unit records: the rows of unit and relation tables (``visit``, ``visit_detector_region``...).

Unit rows are immutable: inserting an identical row again is a no-op, a contradicting
one is refused. Inserting rows with sky boxes fills the overlap relations they take part
in (`SkyBoxManager`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import sqlalchemy as sa

from ..dataid import DataId
from .bulk import COPY_THRESHOLD, INSERT_CHUNK, chunked, pg_copy_insert
from .database import RegistryDatabase
from .sky_boxes import SkyBoxManager

__all__ = ["UnitManager"]


class UnitManager:
    """Inserts and reads unit and relation rows.

    Parameters
    ----------
    db : `RegistryDatabase`
        The opened registry database.
    skyBoxes : `SkyBoxManager`
        Checks the rows' sky boxes and fills the overlap relations.
    """

    def __init__(self, db: RegistryDatabase, skyBoxes: SkyBoxManager):
        self._db = db
        self._skyBoxes = skyBoxes

    def insert(self, unitName: str, rows: Iterable[Mapping[str, Any]]) -> int:
        """Insert unit (or relation) rows in bulk; see `Registry.insertUnits`."""
        db = self._db
        u = db.universe
        if unitName not in db.schema.elements:
            raise ValueError(f"unknown unit or relation {unitName!r}; known: {sorted(db.schema.elements)}")
        table = db.schema.elements[unitName]
        keys = u.elementKeys(unitName)
        required = set(keys) | (set(u.units[unitName].implies) if unitName in u.units else set())
        valid = set(table.c.keys())
        clean: list[dict[str, Any]] = []
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
        if self._skyBoxes.hasBoxes(unitName):
            self._skyBoxes.check(unitName, keys, clean)  # before the transaction: a bad batch writes nothing
        overlaps = self._skyBoxes.overlapsOf(unitName)
        with db.transaction() as conn:
            for part in chunked(clean, INSERT_CHUNK):
                if db.isSqlite or len(part) < COPY_THRESHOLD:
                    stmt = db.insert(table).on_conflict_do_nothing(index_elements=list(keys))
                    inserted = conn.execute(stmt, list(part)).rowcount
                else:
                    cols = list(table.c.keys())
                    values = [tuple(r[c] for c in cols) for r in part]
                    inserted = len(
                        pg_copy_insert(conn, table.name, cols, values, conflict=keys, returning=keys[:1])
                    )
                if inserted != len(part):
                    self._checkSameRows(conn, table, keys, part)
            for overlap in overlaps:
                self._skyBoxes.fillOverlaps(conn, overlap, unitName, clean)
        if not db.isSqlite:
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
        self._db.analyze(tables)

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

    def records(self, unitName: str, dataIds: Iterable[DataId]) -> dict[DataId, dict[str, Any]]:
        """Field values of the given units (chunked look-up by the unit's own key)."""
        table = self._db.schema.elements[unitName]
        keys = self._db.universe.elementKeys(unitName)
        wanted = {d.subset(keys) for d in dataIds}
        out: dict[DataId, dict[str, Any]] = {}
        values = sorted({d[unitName] for d in wanted}, key=str)
        with self._db.connect() as conn:
            for part in chunked(values):
                for row in conn.execute(sa.select(table).where(table.c[unitName].in_(list(part)))).mappings():
                    dataId = DataId({k: row[k] for k in keys})
                    if dataId in wanted:
                        out[dataId] = {k: v for k, v in row.items() if k not in keys}
        return out

    def keyValues(self, unit: str, limit: int | None = None) -> list[Any]:
        """Distinct key values of a unit, sorted (for messages and the CLI)."""
        table = self._db.schema.elements[unit]
        stmt = sa.select(table.c[unit]).distinct().order_by(table.c[unit])
        if limit is not None:
            stmt = stmt.limit(limit)
        with self._db.connect() as conn:
            return list(conn.execute(stmt).scalars())

    def countRows(self, element: str) -> int:
        """Rows in a unit or relation table."""
        table = self._db.schema.elements[element]
        with self._db.connect() as conn:
            count: int = conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one()
            return count
