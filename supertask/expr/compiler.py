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
from collections.abc import Callable, Mapping, Set
from typing import Any, cast

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
    InItem,
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
from .value_set import Parenthesized, ValueSet

__all__ = ["compile_expression"]

_INT64_MIN = -(2**63)
_INT64_MAX = 2**63 - 1
_MIRRORED = {"=": "=", "!=": "!=", "<": ">", "<=": ">=", ">": "<", ">=": "<="}
_SEQUENCE_TYPES = (list, tuple, Set, range)
_MAX_EXPANDED_RANGE = 1000
"""Strided ranges with fewer values than this compile to an explicit IN list."""
MAX_INLINE_VALUES = 1000
"""IN lists with more values of one type than this go to the database as one parameter (`ValueSet`)."""
MAX_IN_VALUES = 10_000_000
"""Most values one IN list may hold (bind lists included); ranges count as one item each."""
MAX_RANGE_CONDITIONS = 1000
"""Most ranges one IN list may keep as range conditions after short ranges became values."""
_RANGE_CONDITIONS_KEPT = 64
"""Beyond this many range conditions, the shortest ranges are expanded into values ..."""
_MAX_RANGE_VALUES = 1_000_000
"""... as long as the IN list stays under this many values."""
MAX_PARAMETERS = 20_000
"""Most bound parameters one compiled expression may use (SQLite allows 32,766 per statement,
PostgreSQL 65,535; the registry's own restrictions need the rest)."""
MAX_SQL_DEPTH = 500
"""Deepest SQL expression tree an expression may compile to (SQLite refuses more than 1,000)."""
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
    if not isinstance(tree, Node):
        raise TypeError(
            f"A data-ID expression must be a str or a parsed Node, not {type(tree).__name__}; "
            "decode bytes first (e.g. where.decode())."
        )
    return _Compiler(resolver, bind or {}).compile_checked(tree)


class _Compiler:
    def __init__(self, resolver: IdentifierResolver | ResolveFunction, bind: Mapping[str, Any]):
        self.resolver = resolver
        self.bind = bind
        self.parameters = 0

    def compile_checked(self, node: Node) -> ColumnElement[bool]:
        """Compile ``node`` and check the result against the databases' limits."""
        self.parameters = 0
        clause, depth = self.compile(node)
        if depth > MAX_SQL_DEPTH:
            raise ExpressionValueError(
                f"The data-ID expression compiles to SQL nested {depth} levels deep; the limit is "
                f"{MAX_SQL_DEPTH}.",
                node.span,
                "Simplify it: use IN lists and ranges instead of many nested conditions.",
            )
        if self.parameters > MAX_PARAMETERS:
            raise ExpressionValueError(
                f"The data-ID expression uses {self.parameters} values outside long IN lists; the limit "
                f"is {MAX_PARAMETERS}.",
                node.span,
                "Put the values in IN lists (visit IN (1, 2, ...)) or a :bind list, which have no such limit.",
            )
        return clause

    def compile(self, node: Node) -> tuple[ColumnElement[bool], int]:
        """Return the clause of ``node`` and the depth of its SQL expression tree."""
        if isinstance(node, And | Or):
            terms = self.folded(node.terms) if isinstance(node, Or) else list(node.terms)
            compiled = [self.compile(term) for term in terms]
            combine = sa.and_ if isinstance(node, And) else sa.or_
            return _balanced(combine, [c for c, _ in compiled]), _combined_depth(compiled)
        if isinstance(node, Not):
            clause, depth = self.compile(node.operand)
            return sa.not_(clause), depth + 1
        if isinstance(node, Comparison):
            return self.comparison(node), 2
        if isinstance(node, InList):
            return self.in_list(node)
        raise ExpressionTypeError(
            f"{to_text(node)} is a value, not a condition.",
            node.span,
            "Compare it with something, e.g. visit = 100.",
        )

    def folded(self, terms: tuple[Node, ...]) -> list[Node]:
        """The terms of an OR, with equalities and IN lists on one identifier merged into one IN list.

        ``visit = 1 OR visit = 2 OR ...`` selects what ``visit IN (1, 2, ...)`` selects;
        as one IN list it is one condition (and one parameter when long) instead of a
        thousand, which SQLite would refuse as too deep.
        """
        groups: dict[str, tuple[Identifier, list[InItem], list[Node]]] = {}
        out: list[Node] = []
        for term in terms:
            found = self.foldable(term)
            if found is None:
                out.append(term)
                continue
            identifier, items = found
            group = groups.get(identifier.name)
            if group is None:
                group = groups[identifier.name] = (identifier, [], [])
                out.append(identifier)  # placeholder: keeps the group where its first term was
            group[1].extend(items)
            group[2].append(term)
        result: list[Node] = []
        for term in out:
            if isinstance(term, Identifier):
                identifier, grouped, originals = groups[term.name]
                if len(originals) == 1:
                    result.append(originals[0])
                else:
                    result.append(InList(identifier, tuple(grouped), False, span=originals[0].span))
            else:
                result.append(term)
        return result

    def foldable(self, term: Node) -> tuple[Identifier, tuple[InItem, ...]] | None:
        """``(identifier, IN items)`` if ``term`` is ``identifier = value`` or ``identifier IN (...)``."""
        if isinstance(term, InList) and not term.negated and isinstance(term.operand, Identifier):
            return term.operand, term.items
        if not isinstance(term, Comparison) or term.op != "=":
            return None
        for identifier, value in ((term.left, term.right), (term.right, term.left)):
            if not isinstance(identifier, Identifier):
                continue
            if isinstance(value, Literal):
                return identifier, (value,)
            if isinstance(value, BindParam) and value.name in self.bind:
                bound = self.bind[value.name]
                if isinstance(bound, str) or not isinstance(bound, _SEQUENCE_TYPES):
                    return identifier, (value,)
        return None

    # -- operands -------------------------------------------------------------------------

    def column(self, node: Identifier) -> ResolvedColumn:
        resolve = cast(ResolveFunction, getattr(self.resolver, "resolve", self.resolver))
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
        self.parameters += 1
        return column.operate(_operator(op), _param(value))

    def in_list(self, node: InList) -> tuple[ColumnElement[bool], int]:
        if not isinstance(node.operand, Identifier):
            raise ExpressionTypeError(
                f"The left side of IN must be an identifier, not {to_text(node.operand)}.",
                node.operand.span,
            )
        identifier = node.operand
        column, pytype = self.column(identifier)
        values: list[Any] = []
        ranges: list[tuple[int, int, int]] = []
        for item in node.items:
            if isinstance(item, Range):
                self.check_range(item, identifier, pytype)
                ranges.append((item.start, item.stop, item.stride))
            elif isinstance(item, BindParam):
                value = self.bound_value(item)
                if isinstance(value, range):
                    # A range stays a range: exact, and free whatever its length.
                    if len(value):
                        forward = value if value.step > 0 else value[::-1]
                        for end in (forward[0], forward[-1]):
                            _checked(end, pytype, identifier, item)
                        ranges.append((forward[0], forward[-1], forward.step))
                elif isinstance(value, _SEQUENCE_TYPES) and not isinstance(value, str):
                    self.check_count(len(values) + len(value), item)
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
        kept = self.expand_ranges(ranges, values, node)
        self.check_count(len(values), node)
        conditions: list[ColumnElement[bool]] = []
        depth = 2
        by_type: dict[type, list[Any]] = {}
        for value in values:
            by_type.setdefault(type(value), []).append(value)
        for value_type, group in by_type.items():
            if len(group) > MAX_INLINE_VALUES:
                conditions.append(ValueSet(column, group, value_type))
                self.parameters += 1
                depth = 4
            else:
                param = sa.bindparam(None, group, expanding=True, type_=_sql_type(value_type), unique=True)
                conditions.append(column.in_(param))
                self.parameters += len(group)
        for start, stop, stride in kept:
            conditions.append(self.range_condition(start, stop, stride, column))
            depth = 5
        if not conditions:  # an empty bind list: IN () selects nothing
            conditions.append(sa.false())
        clause = _balanced(sa.or_, conditions)
        depth += _spread(len(conditions))
        return (sa.not_(clause), depth + 1) if node.negated else (clause, depth)

    def expand_ranges(
        self, ranges: list[tuple[int, int, int]], values: list[Any], node: InList
    ) -> list[tuple[int, int, int]]:
        """Move short ranges into ``values``; return the ranges kept as range conditions.

        A short strided range is just a list of values (exact, and an index lookup for
        the database). When an IN list has many ranges, the shortest become values too,
        so that the condition stays one IN list instead of an OR of thousands of ranges.
        """
        kept: list[tuple[int, int, int]] = []
        for start, stop, stride in _merged(ranges):
            if stride > 1 and (stop - start) // stride < _MAX_EXPANDED_RANGE:
                values.extend(range(start, stop + 1, stride))
            else:
                kept.append((start, stop, stride))
        if len(kept) > _RANGE_CONDITIONS_KEPT:
            kept.sort(key=lambda r: (r[1] - r[0]) // r[2])
            while len(kept) > _RANGE_CONDITIONS_KEPT:
                start, stop, stride = kept[0]
                if len(values) + (stop - start) // stride + 1 > _MAX_RANGE_VALUES:
                    break
                values.extend(range(start, stop + 1, stride))
                kept.pop(0)
        if len(kept) > MAX_RANGE_CONDITIONS:
            raise ExpressionValueError(
                f"The IN list holds {len(kept)} long ranges; the limit is {MAX_RANGE_CONDITIONS}.",
                node.span,
                "Merge neighbouring ranges, or split the request into several runs.",
            )
        return kept

    def check_count(self, count: int, node: Node) -> None:
        if count > MAX_IN_VALUES:
            raise ExpressionValueError(
                f"The IN list holds {count} values; the limit is {MAX_IN_VALUES}.",
                node.span,
                "Use ranges (start..stop:stride) for runs of values, or split the request.",
            )

    def range_condition(self, start: int, stop: int, stride: int, column: ColumnElement[Any]) -> Any:
        """``column BETWEEN start AND stop`` (and, for a long strided range, a remainder test).

        The remainder test is ``column % stride`` compared with the remainder of ``start``:
        no subtraction, so no value of a 64-bit column can overflow it (``column - start``
        can, and then SQLite silently computes in floating point and PostgreSQL fails).
        SQL's ``%`` keeps the sign of the dividend on both backends, so a negative column
        value has the remainder ``r - stride`` where Python's has ``r``.
        """
        clause = column.between(_param(start), _param(stop))
        self.parameters += 2
        if stride == 1:
            return clause
        r = start % stride  # Python: 0 <= r < stride
        wanted = sorted({*([r] if stop >= 0 else []), *([r - stride if r else 0] if start < 0 else [])})
        remainder = column % _param(stride)
        self.parameters += 1 + len(wanted)
        test = (
            remainder == _param(wanted[0]) if len(wanted) == 1 else remainder.in_([_param(w) for w in wanted])
        )
        return sa.and_(clause, test)

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


def _merged(ranges: list[tuple[int, int, int]]) -> list[tuple[int, int, int]]:
    """The ranges with overlapping or adjacent stride-1 ranges merged (strided ones unchanged)."""
    strided = [r for r in ranges if r[2] != 1]
    merged: list[tuple[int, int, int]] = []
    for start, stop, _ in sorted(r for r in ranges if r[2] == 1):
        if merged and start <= merged[-1][1] + 1:
            merged[-1] = (merged[-1][0], max(merged[-1][1], stop), 1)
        else:
            merged.append((start, stop, 1))
    return merged + strided


def _balanced(
    combine: Callable[..., ColumnElement[bool]], clauses: list[ColumnElement[bool]]
) -> ColumnElement[bool]:
    """``combine`` (`sqlalchemy.and_` or ``or_``) of the clauses as a balanced, parenthesised tree.

    SQL parsers build ``a OR b OR c ...`` as a chain as deep as it is long (SQLite refuses
    depth 1,000); grouped in halves it is only log2(n) deep.
    """
    if len(clauses) <= 8:
        return clauses[0] if len(clauses) == 1 else combine(*clauses)
    middle = len(clauses) // 2
    halves = (_balanced(combine, clauses[:middle]), _balanced(combine, clauses[middle:]))
    return combine(*(Parenthesized(h) for h in halves))


def _spread(n: int) -> int:
    """How many levels `_balanced` adds over ``n`` clauses (at most: parsers differ a little)."""
    return n - 1 if n <= 8 else (n - 1).bit_length() + 7


def _combined_depth(compiled: list[tuple[Any, int]]) -> int:
    return max(depth for _, depth in compiled) + _spread(len(compiled))


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
    elif isinstance(value, float) and not math.isfinite(value):
        raise ExpressionValueError(f"The number {where} is not finite.", node.span)
    return value
