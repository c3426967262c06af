"""``column IN (many values)`` sent to the database as one bound parameter.

An ``IN`` list with one bound parameter per value fails on long lists: SQLite refuses
statements with more than its ``SQLITE_MAX_VARIABLE_NUMBER`` parameters and PostgreSQL
more than 65,535, and both spend seconds compiling tens of thousands of parameters.
`ValueSet` sends the values as a single parameter instead, and each backend reads it as
a table:

- SQLite: ``column IN (SELECT value FROM json_each(?))`` with the values as a JSON array;
- PostgreSQL: ``column = ANY(CAST(%(p)s AS BIGINT[]))`` with the values as an array;
- any other dialect: an ordinary expanding ``IN`` list.

The construct carries its own negation (``NOT (column IN ...)``), so ``NOT IN`` of a long
list keeps SQL's three-valued logic exactly as a short ``NOT IN`` does.

`Parenthesized` keeps a clause in parentheses, which SQLAlchemy would otherwise flatten
away: the compiler builds long ``AND``/``OR`` chains as balanced trees with it.
"""

from __future__ import annotations

import builtins
import json
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.elements import ColumnElement

__all__ = ["Parenthesized", "ValueSet"]

_PG_ARRAY_TYPES = {int: "BIGINT[]", float: "DOUBLE PRECISION[]", str: "TEXT[]"}


class ValueSet(ColumnElement[bool]):
    """The condition ``column IN (values)`` with all values in one bound parameter.

    Parameters
    ----------
    column : `sqlalchemy.sql.elements.ColumnElement`
        The column tested.
    values : sequence
        The values, all of ``pytype``.
    pytype : `type`
        `int`, `float` or `str`.
    """

    type = sa.Boolean()
    inherit_cache = False  # the values are part of the statement's parameters, not its cache key

    def __init__(self, column: ColumnElement[Any], values: Sequence[Any], pytype: builtins.type):
        self.column = column
        self.values = list(values)
        self.pytype = pytype

    def self_group(self, against: Any = None) -> ColumnElement[Any]:
        return sa.sql.elements.Grouping(self)

    def _negate(self) -> ColumnElement[bool]:
        return sa.sql.elements.UnaryExpression(self.self_group(), operator=sa.sql.operators.inv)

    @property
    def _from_objects(self) -> list[Any]:
        return self.column._from_objects


@compiles(ValueSet)
def _compile_default(element: ValueSet, compiler: Any, **kw: Any) -> str:
    param: sa.BindParameter[Any] = sa.bindparam(None, element.values, expanding=True, unique=True)
    return str(compiler.process(element.column.in_(param), **kw))


@compiles(ValueSet, "sqlite")
def _compile_sqlite(element: ValueSet, compiler: Any, **kw: Any) -> str:
    param = sa.bindparam(None, json.dumps(element.values), type_=sa.String(), unique=True)
    column = compiler.process(element.column, **kw)
    return f"{column} IN (SELECT value FROM json_each({compiler.process(param, **kw)}))"


@compiles(ValueSet, "postgresql")
def _compile_postgresql(element: ValueSet, compiler: Any, **kw: Any) -> str:
    param = sa.bindparam(None, element.values, type_=sa.ARRAY(_sql_type(element.pytype)), unique=True)
    column = compiler.process(element.column, **kw)
    array = f"CAST({compiler.process(param, **kw)} AS {_PG_ARRAY_TYPES[element.pytype]})"
    return f"{column} = ANY({array})"


class Parenthesized(ColumnElement[bool]):
    """A boolean clause that always renders in parentheses.

    SQLAlchemy flattens ``or_(or_(a, b), or_(c, d))`` to ``a OR b OR c OR d``, which SQL
    parsers build as a chain as deep as it is long (SQLite refuses depth 1,000); kept in
    parentheses the halves of a balanced tree stay log2(n) deep.
    """

    type = sa.Boolean()
    inherit_cache = False

    def __init__(self, clause: ColumnElement[bool]):
        self.clause = clause

    def self_group(self, against: Any = None) -> ColumnElement[Any]:
        return self

    def _negate(self) -> ColumnElement[bool]:
        return sa.sql.elements.UnaryExpression(self, operator=sa.sql.operators.inv)

    @property
    def _from_objects(self) -> list[Any]:
        return self.clause._from_objects


@compiles(Parenthesized)
def _compile_parenthesized(element: Parenthesized, compiler: Any, **kw: Any) -> str:
    return f"({compiler.process(element.clause, **kw)})"


def _sql_type(pytype: type) -> Any:
    return {int: sa.BigInteger(), float: sa.Float(), str: sa.String()}[pytype]
