"""How compilation finds the SQL column behind an identifier.

The expression package knows nothing of the registry's schema: the registry hands the
compiler an `IdentifierResolver` that maps ``("visit", None)`` or
``("exposure", "exposure_time")`` to a SQLAlchemy column and the Python type of its
values. The type lets the compiler reject ``band = 3`` before any query runs.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol, runtime_checkable

from .errors import UnknownIdentifierError

if TYPE_CHECKING:
    from sqlalchemy.sql.elements import ColumnElement

__all__ = ["VALUE_TYPES", "DictResolver", "IdentifierResolver", "ResolveFunction", "ResolvedColumn"]

VALUE_TYPES: tuple[type, ...] = (int, float, str)
"""The Python types a resolved column may declare."""

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?")


class ResolvedColumn(NamedTuple):
    """A column found for an identifier: the SQL expression and its values' Python type."""

    column: ColumnElement[Any]
    pytype: type


ResolveFunction = Callable[[str, "str | None"], "ResolvedColumn | tuple[ColumnElement[Any], type]"]
"""A bare ``resolve`` function, also accepted by the compiler (unknown names then list nothing)."""


@runtime_checkable
class IdentifierResolver(Protocol):
    """What the compiler needs from the registry (implemented there; `DictResolver` here)."""

    def resolve(self, unit: str, field: str | None) -> ResolvedColumn | tuple[ColumnElement[Any], type]:
        """Return the column for ``unit`` (its key) or ``unit.field`` and its Python type.

        Parameters
        ----------
        unit : `str`
            The unit name, e.g. ``"visit"``.
        field : `str` or `None`
            A field of the unit (``"exposure_time"``), or `None` for the unit's key.

        Returns
        -------
        resolved : `ResolvedColumn` or ``(column, pytype)``
            ``pytype`` is one of `int`, `float`, `str`.

        Raises
        ------
        UnknownIdentifierError
            If there is no such unit or field; build it with `identifiers` as the valid names
            (the compiler adds the position in the expression).
        """
        ...

    def identifiers(self) -> Iterable[str]:
        """Return all valid identifiers (``unit`` and ``unit.field``), for error messages."""
        ...


class DictResolver:
    """An `IdentifierResolver` over a fixed mapping.

    Parameters
    ----------
    columns : `~collections.abc.Mapping`
        ``{"visit": (column, int), "exposure.exposure_time": (column, float), ...}``.

    Raises
    ------
    ValueError
        If a key is not a valid identifier or a type is not one of `VALUE_TYPES`.
    """

    def __init__(self, columns: Mapping[str, tuple[ColumnElement[Any], type]]):
        resolved: dict[str, ResolvedColumn] = {}
        for name, (column, pytype) in columns.items():
            if not _IDENTIFIER.fullmatch(name):
                raise ValueError(f"{name!r} is not an identifier: use 'unit' or 'unit.field'.")
            if pytype not in VALUE_TYPES:
                raise ValueError(f"The type of {name!r} must be int, float or str, not {pytype!r}.")
            resolved[name] = ResolvedColumn(column, pytype)
        self._columns = resolved

    def resolve(self, unit: str, field: str | None) -> ResolvedColumn:
        name = unit if field is None else f"{unit}.{field}"
        try:
            return self._columns[name]
        except KeyError:
            raise UnknownIdentifierError(name, self._columns) from None

    def identifiers(self) -> list[str]:
        return sorted(self._columns)

    def __repr__(self) -> str:
        return f"DictResolver({self.identifiers()})"
