"""Compiling a syntax tree to a SQLAlchemy Core boolean expression.

Every value the user wrote becomes a bound parameter; no user text ever reaches the SQL
string, so no expression can change the registry. Types are checked here, before any
query runs: comparing an integer unit with a string (``visit = 'a'``) is an
`ExpressionTypeError` with the fix in the message, not an empty result or a database
error after minutes of planning.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping, Set
from typing import Any

import sqlalchemy as sa
from sqlalchemy.sql.elements import ColumnElement

from .errors import (
    ExpressionError,
    ExpressionTypeError,
    ExpressionValueError,
    MissingBindError,
    UnknownIdentifierError,
)
from .nodes import (
    COMPARISON_OPERATORS,
    And,
    BindParam,
    Comparison,
    Identifier,
    InList,
    Literal,
    Node,
    Not,
    Or,
    Range,
)
from .parser import parse_expression
from .resolver import VALUE_TYPES, IdentifierResolver, ResolvedColumn, ResolveFunction
from .text import to_text

__all__ = ["compile_expression"]

_INT64_MIN = -(2**63)
_INT64_MAX = 2**63 - 1
_MIRRORED = {"=": "=", "!=": "!=", "<": ">", "<=": ">=", ">": "<", ">=": "<="}
_SEQUENCE_TYPES = (list, tuple, Set, range)
_MAX_EXPANDED_RANGE = 1000
"""Strided ranges with fewer values than this compile to an explicit IN list."""
_TYPE_NAMES = {int: "an integer", float: "a number", str: "a string"}


def compile_expression(
    expression: Node | str,
    resolver: IdentifierResolver | ResolveFunction,
    bind: Mapping[str, Any] | None = None,
) -> ColumnElement[bool]:
    """Compile an expression to a SQLAlchemy boolean clause for a ``WHERE``.

    Parameters
    ----------
    expression : `Node` or `str`
        A tree from `parse_expression` (or a sub-tree, e.g. from `split_conjuncts`), or text.
    resolver : `IdentifierResolver` or callable
        Finds the column and value type of each identifier. A plain callable
        ``(unit, field) -> (column, pytype)`` is accepted too.
    bind : `~collections.abc.Mapping`, optional
        Values of the ``:name`` parameters: `int`, `float` or `str`, or (inside ``IN``)
        a list, tuple, set or range of them. Unused names are ignored.

    Returns
    -------
    clause : `sqlalchemy.sql.elements.ColumnElement`
        The condition, with every value a bound parameter.

    Raises
    ------
    ExpressionError
        `UnknownIdentifierError`, `ExpressionTypeError`, `MissingBindError` or
        `ExpressionValueError` (and, for text, the parse errors), each showing the
        expression with a caret under the problem.
    """
    tree = parse_expression(expression) if isinstance(expression, str) else expression
    return _Compiler(resolver, bind or {}).compile(tree)


class _Compiler:
    def __init__(self, resolver: IdentifierResolver | ResolveFunction, bind: Mapping[str, Any]):
        self.resolver = resolver
        self.bind = bind

    def compile(self, node: Node) -> ColumnElement[bool]:
        if isinstance(node, And):
            return sa.and_(*(self.compile(term) for term in node.terms))
        if isinstance(node, Or):
            return sa.or_(*(self.compile(term) for term in node.terms))
        if isinstance(node, Not):
            return sa.not_(self.compile(node.operand))
        if isinstance(node, Comparison):
            return self.comparison(node)
        if isinstance(node, InList):
            return self.in_list(node)
        raise ExpressionTypeError(
            f"{to_text(node)} is a value, not a condition.",
            node.span,
            "Compare it with something, e.g. visit = 100.",
        )

    # -- operands -------------------------------------------------------------------------

    def column(self, node: Identifier) -> ResolvedColumn:
        resolve = getattr(self.resolver, "resolve", self.resolver)
        try:
            column, pytype = resolve(node.unit, node.field)
        except ExpressionError as error:
            raise error.with_span(node.span) from None
        except LookupError:
            identifiers = getattr(self.resolver, "identifiers", tuple)
            raise UnknownIdentifierError(node.name, identifiers(), node.span) from None
        if pytype not in VALUE_TYPES:
            raise TypeError(f"The resolver gave type {pytype!r} for {node.name!r}; use int, float or str.")
        return ResolvedColumn(column, pytype)

    def bound_value(self, node: BindParam) -> Any:
        if node.name not in self.bind:
            raise MissingBindError(node.name, self.bind, node.span)
        return self.bind[node.name]

    def scalar(self, node: Literal | BindParam, column: Identifier, pytype: type) -> Any:
        """Return the checked value of a literal or scalar bind compared with ``column``."""
        value = node.value if isinstance(node, Literal) else self.bound_value(node)
        if isinstance(node, BindParam) and isinstance(value, _SEQUENCE_TYPES) and not isinstance(value, str):
            raise ExpressionTypeError(
                f"Bind parameter :{node.name} holds several values; a comparison needs one.",
                node.span,
                f"Use IN: {column.name} IN (:{node.name}).",
            )
        return _checked(value, pytype, column, node)

    # -- predicates -----------------------------------------------------------------------

    def comparison(self, node: Comparison) -> ColumnElement[bool]:
        if node.op not in COMPARISON_OPERATORS:
            raise ExpressionValueError(f"Unknown comparison operator {node.op!r}.", node.span)
        left, right, op = node.left, node.right, node.op
        for side in (left, right):
            if not isinstance(side, Identifier | Literal | BindParam):
                raise ExpressionTypeError(
                    f"A comparison compares identifiers and values, not {type(side).__name__} nodes.",
                    side.span if isinstance(side, Node) else node.span,
                )
        if not isinstance(left, Identifier):
            if not isinstance(right, Identifier):
                raise ExpressionTypeError(
                    f"{to_text(node)} compares two values; one side must be an identifier.",
                    node.span,
                    "Write e.g. visit = 100.",
                )
            left, right, op = right, left, _MIRRORED[op]
        column, pytype = self.column(left)
        if isinstance(right, Identifier):
            try:
                other, other_type = self.column(right)
            except UnknownIdentifierError as error:
                if right.field is None and pytype is str:
                    # ``band = g``: most likely a string that lost its quotes.
                    error.hint = f"To compare with the text {right.name}, quote it: '{right.name}'. " + (
                        error.hint or ""
                    )
                raise
            if (pytype is str) != (other_type is str):
                raise ExpressionTypeError(
                    f"Cannot compare {left.name} ({_TYPE_NAMES[pytype]}) with {right.name} "
                    f"({_TYPE_NAMES[other_type]}).",
                    node.span,
                )
            return column.operate(_operator(op), other)
        value = self.scalar(right, left, pytype)
        return column.operate(_operator(op), _param(value))

    def in_list(self, node: InList) -> ColumnElement[bool]:
        if not isinstance(node.operand, Identifier):
            raise ExpressionTypeError(
                f"The left side of IN must be an identifier, not {to_text(node.operand)}.",
                node.operand.span,
            )
        identifier = node.operand
        column, pytype = self.column(identifier)
        values: list[Any] = []
        conditions: list[ColumnElement[bool]] = []
        for item in node.items:
            if isinstance(item, Range):
                self.check_range(item, identifier, pytype)
                if item.stride > 1 and (item.stop - item.start) // item.stride < _MAX_EXPANDED_RANGE:
                    # A short strided range is just a list of values: exact, and an
                    # index lookup for the database.
                    values.extend(range(item.start, item.stop + 1, item.stride))
                else:
                    conditions.append(_range_condition(item, column))
            elif isinstance(item, BindParam):
                value = self.bound_value(item)
                if isinstance(value, _SEQUENCE_TYPES) and not isinstance(value, str):
                    values.extend(_checked(v, pytype, identifier, item) for v in value)
                else:
                    values.append(_checked(value, pytype, identifier, item))
            elif isinstance(item, Literal):
                values.append(self.scalar(item, identifier, pytype))
            else:
                raise ExpressionTypeError(
                    f"An IN list holds values, ranges and :binds, not {type(item).__name__} nodes.",
                    item.span if isinstance(item, Node) else node.span,
                )
        by_type: dict[type, list[Any]] = {}
        for value in values:
            by_type.setdefault(type(value), []).append(value)
        for value_type, group in by_type.items():
            param = sa.bindparam(None, group, expanding=True, type_=_sql_type(value_type), unique=True)
            conditions.insert(0, column.in_(param))
        if not conditions:  # an empty bind list: IN () selects nothing
            conditions.append(sa.false())
        clause = conditions[0] if len(conditions) == 1 else sa.or_(*conditions)
        return sa.not_(clause) if node.negated else clause

    def check_range(self, item: Range, identifier: Identifier, pytype: type) -> None:
        """Check a range applies to an integer identifier and is well-formed (hand-built trees too)."""
        if pytype is not int:
            raise ExpressionTypeError(
                f"The range {to_text(item)} needs an integer identifier; {identifier.name} is "
                f"{_TYPE_NAMES[pytype]}.",
                item.span,
                f"Use comparisons instead, e.g. {identifier.name} >= ... AND {identifier.name} <= ...",
            )
        for bound in (item.start, item.stop, item.stride):
            if isinstance(bound, bool) or not isinstance(bound, int) or not _INT64_MIN <= bound <= _INT64_MAX:
                raise ExpressionValueError(f"Range bound {bound!r} is not a 64-bit integer.", item.span)
        if item.stop < item.start or item.stride < 1:
            raise ExpressionValueError(
                f"The range {to_text(item)} is empty or has a stride below 1.",
                item.span,
                "Write start..stop:stride with start <= stop and stride >= 1.",
            )


def _range_condition(item: Range, column: ColumnElement[Any]) -> ColumnElement[bool]:
    """``column BETWEEN start AND stop`` (and, for a long strided range, a modulo test)."""
    start = _param(item.start)
    clause = column.between(start, _param(item.stop))
    if item.stride > 1:
        # (column - start) stays within 64 bits unless the range spans more than 2**63.
        clause = sa.and_(clause, ((column - start) % _param(item.stride)) == 0)
    return clause


def _operator(op: str) -> Any:
    import operator

    return {
        "=": operator.eq,
        "!=": operator.ne,
        "<": operator.lt,
        "<=": operator.le,
        ">": operator.gt,
        ">=": operator.ge,
    }[op]


def _sql_type(pytype: type) -> Any:
    return {int: sa.BigInteger(), float: sa.Float(), str: sa.String()}[pytype]


def _param(value: Any) -> ColumnElement[Any]:
    """A bound parameter typed by the *value* (not the column), so ``visit > 1.5`` stays 1.5."""
    return sa.literal(value, _sql_type(type(value)))


def _checked(value: Any, pytype: type, column: Identifier, node: Node) -> Any:
    """Check one value against the type of the column it is compared with."""
    where = f"bind parameter :{node.name}" if isinstance(node, BindParam) else to_text(node)
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        value = int(value)  # numpy integers and int subclasses become plain ints
    elif isinstance(value, numbers.Real) and not isinstance(value, bool):
        value = float(value)
    elif isinstance(value, str):
        value = str(value)
    if value is None or isinstance(value, bool) or not isinstance(value, VALUE_TYPES):
        raise ExpressionValueError(
            f"The value of {where} is {value!r} ({type(value).__name__}); values must be int, float or str.",
            node.span,
        )
    if isinstance(value, str) != (pytype is str):
        if pytype is str:
            hint = f"{column.name} takes strings: quote the value, '{value}'."
        else:
            hint = f"{column.name} takes {_TYPE_NAMES[pytype].split(' ', 1)[1]}s: write the value without quotes."
        raise ExpressionTypeError(
            f"{column.name} is {_TYPE_NAMES[pytype]} but {where} is {_TYPE_NAMES[type(value)]}.",
            node.span,
            hint,
        )
    if isinstance(value, str):
        if "\x00" in value:
            raise ExpressionValueError(f"The string {where} contains a NUL character.", node.span)
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise ExpressionValueError(f"The string {where} is not valid Unicode text.", node.span) from None
    elif isinstance(value, int):
        if not _INT64_MIN <= value <= _INT64_MAX:
            raise ExpressionValueError(f"The integer {where} is outside the 64-bit range.", node.span)
    elif not math.isfinite(value):
        raise ExpressionValueError(f"The number {where} is not finite.", node.span)
    return value
