"""The data-ID expression language: ``visit IN (100..120) AND band = 'g'``.

Users constrain the data IDs a pipeline runs on with a SQL-WHERE-like string over the
units of the repository. This package parses such a string with a lark LALR grammar
into a small tree of frozen dataclasses (`parse_expression`), answers questions about it
(`referenced_units`, `split_conjuncts`, `to_text`), and compiles it to a SQLAlchemy Core
clause with bound values (`compile_expression`) through an `IdentifierResolver` that the
registry provides. Every problem is an `ExpressionError` (a `ValueError`) showing the
expression with a caret under the problem. See ``docs/expressions.md``.

Names are imported lazily: importing this package loads neither lark nor SQLAlchemy.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..lazy_exports import lazy_exports

_EXPORTS: dict[str, str] = {
    "ExpressionError": "errors",
    "ExpressionSyntaxError": "errors",
    "ExpressionTypeError": "errors",
    "ExpressionValueError": "errors",
    "MissingBindError": "errors",
    "UnknownIdentifierError": "errors",
    "Span": "errors",
    "Node": "nodes",
    "Identifier": "nodes",
    "Literal": "nodes",
    "BindParam": "nodes",
    "Range": "nodes",
    "Comparison": "nodes",
    "InList": "nodes",
    "Not": "nodes",
    "And": "nodes",
    "Or": "nodes",
    "walk": "nodes",
    "parse_expression": "parser",
    "to_text": "text",
    "referenced_units": "analysis",
    "referenced_identifiers": "analysis",
    "bind_names": "analysis",
    "split_conjuncts": "analysis",
    "IdentifierResolver": "resolver",
    "DictResolver": "resolver",
    "ResolvedColumn": "resolver",
    "ResolveFunction": "resolver",
    "compile_expression": "compiler",
}

__all__ = [
    "And",
    "BindParam",
    "Comparison",
    "DictResolver",
    "ExpressionError",
    "ExpressionSyntaxError",
    "ExpressionTypeError",
    "ExpressionValueError",
    "Identifier",
    "IdentifierResolver",
    "InList",
    "Literal",
    "MissingBindError",
    "Node",
    "Not",
    "Or",
    "Range",
    "ResolveFunction",
    "ResolvedColumn",
    "Span",
    "UnknownIdentifierError",
    "bind_names",
    "compile_expression",
    "parse_expression",
    "referenced_identifiers",
    "referenced_units",
    "split_conjuncts",
    "to_text",
    "walk",
]


__getattr__, __dir__ = lazy_exports(__name__, {name: f".{module}" for name, module in _EXPORTS.items()})


if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs only
    from .analysis import bind_names, referenced_identifiers, referenced_units, split_conjuncts
    from .compiler import compile_expression
    from .errors import (
        ExpressionError,
        ExpressionSyntaxError,
        ExpressionTypeError,
        ExpressionValueError,
        MissingBindError,
        Span,
        UnknownIdentifierError,
    )
    from .nodes import And, BindParam, Comparison, Identifier, InList, Literal, Node, Not, Or, Range, walk
    from .parser import parse_expression
    from .resolver import DictResolver, IdentifierResolver, ResolvedColumn, ResolveFunction
    from .text import to_text
