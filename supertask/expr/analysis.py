"""Questions the registry asks about a parsed expression before compiling it."""

from __future__ import annotations

from .nodes import And, BindParam, Identifier, Node, walk
from .parser import parse_expression

__all__ = ["bind_names", "referenced_identifiers", "referenced_units", "split_conjuncts"]


def _tree(expression: Node | str) -> Node:
    return parse_expression(expression) if isinstance(expression, str) else expression


def referenced_identifiers(expression: Node | str) -> set[Identifier]:
    """Return every identifier the expression mentions (``visit``, ``exposure.exposure_time``)."""
    return {node for node in walk(_tree(expression)) if isinstance(node, Identifier)}


def referenced_units(expression: Node | str) -> set[str]:
    """Return the units the expression mentions, directly or through one of their fields.

    The registry adds these units' tables to the join of its data-ID query: an expression
    on ``exposure.exposure_time`` needs the exposure table even when the query asks only
    for visits.
    """
    return {identifier.unit for identifier in referenced_identifiers(expression)}


def bind_names(expression: Node | str) -> set[str]:
    """Return the names of the ``:name`` bind parameters the expression uses."""
    return {node.name for node in walk(_tree(expression)) if isinstance(node, BindParam)}


def split_conjuncts(expression: Node | str) -> list[Node]:
    """Return the top-level ``AND`` terms of the expression (the expression itself if none).

    Used to explain an empty result: the registry counts rows term by term and reports the
    term (rendered with `to_text`) that removed every row.
    """
    tree = _tree(expression)
    return list(tree.terms) if isinstance(tree, And) else [tree]
