"""Sky boxes: the checks of unit rows' boxes and the overlap relations computed from them.

A box is ``ra_min, ra_max, dec_min, dec_max`` in degrees: RA in [0, 360], Dec in
[-90, 90], ``dec_min <= dec_max``; ``ra_min > ra_max`` is a box that wraps through RA 0.
`SkyBoxManager.check` refuses a batch with a bad box before anything is written, and
`SkyBoxManager.fillOverlaps` adds the rows of a spatial-overlap relation (such as
``visit_detector_patch_overlap``) for newly inserted boxes.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping, Sequence
from typing import Any

import sqlalchemy as sa

from ..units import BOX_FIELDS, SpatialOverlap
from .bulk import CHUNK, chunked
from .database import RegistryDatabase

__all__ = ["SkyBoxManager", "box_problem", "check_boxes", "ra_overlap"]


class SkyBoxManager:
    """Checks sky boxes and fills the spatial-overlap relations of the universe.

    Parameters
    ----------
    db : `RegistryDatabase`
        The opened registry database.
    """

    def __init__(self, db: RegistryDatabase):
        self._db = db

    def hasBoxes(self, element: str) -> bool:
        """Whether rows of ``element`` (a unit or relation) carry a sky box."""
        columns = self._db.schema.elements[element].c
        return all(f in columns for f in BOX_FIELDS)

    def check(self, element: str, keys: Sequence[str], rows: Sequence[Mapping[str, Any]]) -> None:
        """Refuse rows whose sky box is partial, NaN, out of range or upside down in Dec.

        Raises
        ------
        ValueError
            Naming the table, the first bad row's keys, the field and the fix.
        """
        check_boxes(element, keys, rows)

    def overlapsOf(self, element: str) -> list[SpatialOverlap]:
        """The spatial-overlap relations that rows of ``element`` take part in."""
        return [o for o in self._db.universe.spatialOverlaps if element in (o.left, o.right)]

    def fillOverlaps(
        self, conn: sa.Connection, overlap: SpatialOverlap, inserted: str, rows: Sequence[Mapping[str, Any]]
    ) -> None:
        """Insert the relation rows for boxes of ``inserted`` rows that intersect the other side.

        One ``INSERT ... SELECT`` per chunk of new keys; the RA test handles boxes that wrap
        through RA 0 (``ra_min > ra_max``, see `ra_overlap`), touching edges count.
        """
        u = self._db.universe
        elements = self._db.schema.elements
        left = elements[overlap.left]
        right = elements[overlap.right]
        rel = elements[overlap.relation]
        relKeys = u.elementKeys(overlap.relation)
        leftKeys = set(u.elementKeys(overlap.left))
        cols = [left.c[k] if k in leftKeys else right.c[k] for k in relKeys]
        box = sa.and_(
            *ra_overlap(left, right),
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


def ra_overlap(left: sa.Table, right: sa.Table) -> tuple[sa.ColumnElement[bool], ...]:
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


def check_boxes(name: str, keys: Sequence[str], rows: Sequence[Mapping[str, Any]]) -> None:
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
        problem = box_problem(row)
        if problem is not None:
            bad += 1
            if first is None:
                first = (row, problem)
    if first is not None:
        row, problem = first
        ids = {k: row[k] for k in keys}
        others = f"; {bad - 1} more of the {len(rows)} rows are invalid too" if bad > 1 else ""
        raise ValueError(f"{name} row {ids}: {problem} (nothing was inserted{others})")


def box_problem(row: Mapping[str, Any]) -> str | None:
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
