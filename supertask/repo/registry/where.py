"""The one place where the registry meets the expression language (``supertask.expr``).

Keeping the bridge in a single small module means the registry does not care how the
expression language parses or compiles: it hands over a resolver that maps
``(unit, field_or_None)`` to ``(SQLAlchemy column, Python type)`` and gets back a
SQLAlchemy boolean clause.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import sqlalchemy as sa

Resolver = Callable[[str, str | None], tuple[sa.ColumnElement[Any], type]]


class ParsedWhere:
    """A parsed expression: its tree, the units it names, and its top-level conjuncts.

    Parameters
    ----------
    text : `str`
        The user's expression.
    """

    def __init__(self, text: str):
        from ...expr import parse_expression, referenced_units

        self.text = text
        self.tree = parse_expression(text)
        self.units: set[str] = set(referenced_units(self.tree))

    def compile(self, resolver: Resolver, bind: Mapping[str, Any] | None) -> sa.ColumnElement[bool]:
        """Compile to a SQLAlchemy clause using the query's columns."""
        from ...expr import compile_expression

        return compile_expression(self.tree, resolver, dict(bind or {}))

    def conjuncts(self) -> list[tuple[str, ParsedWhere]]:
        """The top-level AND terms as ``(text, ParsedWhere)``: used to explain empty results."""
        from ...expr import referenced_units, split_conjuncts, to_text

        out = []
        for node in split_conjuncts(self.tree):
            part = ParsedWhere.__new__(ParsedWhere)
            part.text = to_text(node)
            part.tree = node
            part.units = set(referenced_units(node))
            out.append((part.text, part))
        return out


def parse_where(where: str | ParsedWhere | None) -> ParsedWhere | None:
    """Parse ``where`` (``None`` or blank = no constraint; an already parsed one is returned as is).

    Raises
    ------
    TypeError
        If ``where`` is not a `str` (e.g. `bytes`): the message names the type and the fix.
    supertask.expr.ExpressionError
        If the expression is invalid (the message shows where and what to write).
    """
    if isinstance(where, ParsedWhere):
        return where
    if where is None:
        return None
    if not isinstance(where, str):
        fix = " (decode it first: where.decode())" if isinstance(where, bytes | bytearray) else ""
        raise TypeError(f"where must be a str data-ID expression or None, not {type(where).__name__}{fix}")
    if not where.strip():
        return None
    return ParsedWhere(where)


def check_query_arguments(units: Any, bind: Any) -> None:
    """Refuse arguments of the wrong type with a `TypeError` naming the argument and the fix.

    Without this a ``str`` of units is read as its letters, and a list as ``bind``
    fails deep inside the compiler.
    """
    if isinstance(units, str | bytes):
        raise TypeError(
            f"units must be a list of unit names, not a {type(units).__name__}: write [{units!r}]"
        )
    if bind is not None and not isinstance(bind, Mapping):
        raise TypeError(f"bind must be a mapping {{name: value}} or None, not {type(bind).__name__}")
