"""The syntax tree of a data-ID expression: small frozen dataclasses.

Nodes are immutable and hashable and compare by content only (their `Span` is ignored),
so a tree built by hand equals the tree parsed from its text. Each node parsed from text
remembers its span so that errors found later (at compilation) can still point at the
text the user wrote.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from .errors import Span

__all__ = [
    "And",
    "BindParam",
    "Comparison",
    "COMPARISON_OPERATORS",
    "Identifier",
    "InList",
    "Literal",
    "Node",
    "Not",
    "Operand",
    "Or",
    "Range",
    "Value",
    "walk",
]

Value = int | float | str
"""The Python types a literal or a bind value can have."""

COMPARISON_OPERATORS = ("=", "!=", "<", "<=", ">", ">=")
"""The comparison operators, in their canonical spelling (``<>`` is read as ``!=``)."""


@dataclass(frozen=True)
class Node:
    """Base class of all nodes.

    Parameters
    ----------
    span : `Span`, optional
        Where the node was written; not part of equality.
    """

    span: Span | None = field(default=None, compare=False, repr=False, kw_only=True)

    def children(self) -> tuple[Node, ...]:
        """Return the direct sub-nodes (used by `walk`)."""
        return ()


@dataclass(frozen=True)
class Identifier(Node):
    """A unit (``visit``) or a field of a unit (``exposure.exposure_time``)."""

    unit: str
    field: str | None = None

    @property
    def name(self) -> str:
        """The identifier as written: ``unit`` or ``unit.field``."""
        return self.unit if self.field is None else f"{self.unit}.{self.field}"


@dataclass(frozen=True)
class Literal(Node):
    """An integer, float or string constant."""

    value: Value


@dataclass(frozen=True)
class BindParam(Node):
    """A ``:name`` placeholder whose value comes from the ``bind`` mapping at compilation."""

    name: str


@dataclass(frozen=True)
class Range(Node):
    """The inclusive integer range ``start..stop`` (with ``:stride``), only inside ``IN``."""

    start: int
    stop: int
    stride: int = 1


Operand = Identifier | Literal | BindParam
"""What can stand on either side of a comparison."""

InItem = Literal | BindParam | Range
"""What can stand in an ``IN (...)`` list."""


@dataclass(frozen=True)
class Comparison(Node):
    """``left op right`` with ``op`` one of `COMPARISON_OPERATORS`."""

    op: str
    left: Operand
    right: Operand

    def children(self) -> tuple[Node, ...]:
        return (self.left, self.right)


@dataclass(frozen=True)
class InList(Node):
    """``operand [NOT] IN (item, ...)``."""

    operand: Operand
    items: tuple[InItem, ...]
    negated: bool = False

    def children(self) -> tuple[Node, ...]:
        return (self.operand, *self.items)


@dataclass(frozen=True)
class Not(Node):
    """``NOT operand``."""

    operand: Node

    def children(self) -> tuple[Node, ...]:
        return (self.operand,)


@dataclass(frozen=True)
class And(Node):
    """Two or more terms joined by ``AND`` (nested ANDs are flattened by the parser)."""

    terms: tuple[Node, ...]

    def children(self) -> tuple[Node, ...]:
        return self.terms


@dataclass(frozen=True)
class Or(Node):
    """Two or more terms joined by ``OR`` (nested ORs are flattened by the parser)."""

    terms: tuple[Node, ...]

    def children(self) -> tuple[Node, ...]:
        return self.terms


def walk(node: Node) -> Iterator[Node]:
    """Yield ``node`` and all its descendants, depth first, without recursion."""
    stack = [node]
    while stack:
        current = stack.pop()
        yield current
        stack.extend(reversed(current.children()))
