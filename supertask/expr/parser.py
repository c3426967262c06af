"""Parsing expression text into the syntax tree of `supertask.expr.nodes`.

The lark LALR parser is built once, on first use, and cached: importing this package
stays cheap (batch jobs never parse expressions) and repeated parses do not pay for
building the parse tables again.
"""

from __future__ import annotations

import functools
import math
from typing import TYPE_CHECKING, Any

from .errors import ExpressionError, ExpressionSyntaxError, ExpressionValueError, Span
from .grammar import GRAMMAR, TERMINAL_DESCRIPTIONS
from .nodes import And, BindParam, Comparison, Identifier, InList, Literal, Node, Not, Or, Range

if TYPE_CHECKING:
    from lark import Lark, Token, Tree

__all__ = ["MAX_DEPTH", "parse_expression"]

MAX_DEPTH = 64
"""Deepest nesting of parentheses and NOTs accepted.

Later passes over the tree are recursive; a bound keeps a hostile or generated
expression from exhausting the interpreter stack (which would not be an `ExpressionError`).
"""

_INT64_MIN = -(2**63)
_INT64_MAX = 2**63 - 1
_MAX_NUMBER_CHARS = 40  # longer digit strings cannot be 64-bit integers; avoids int() limits


@functools.cache
def _parser() -> Lark:
    """Build the LALR parser (once per process)."""
    from lark import Lark

    return Lark(GRAMMAR, parser="lalr", propagate_positions=True, maybe_placeholders=False)


def parse_expression(text: str) -> Node:
    """Parse a data-ID expression.

    Parameters
    ----------
    text : `str`
        The expression, e.g. ``"instrument = 'DemoCam' AND visit IN (100..120)"``.

    Returns
    -------
    tree : `Node`
        The syntax tree; nodes remember their position in ``text`` for later error messages.

    Raises
    ------
    ExpressionSyntaxError
        If the text does not follow the grammar; the message shows where and what was expected.
    ExpressionValueError
        If a literal is unusable (an integer outside 64 bits, an empty range, a zero stride).
    """
    if not isinstance(text, str):
        raise TypeError(f"A data-ID expression must be a str, not {type(text).__name__}.")
    if not text.strip():
        raise ExpressionSyntaxError(
            "The data-ID expression is empty.", None, "Pass no expression (None) to select everything."
        )
    from lark.exceptions import UnexpectedInput, VisitError

    try:
        lark_tree = _parser().parse(text)
    except UnexpectedInput as error:
        raise _syntax_error(text, error) from None
    _check_depth(text, lark_tree)
    try:
        return _builder_class()(text).transform(lark_tree)
    except VisitError as error:
        if isinstance(error.orig_exc, ExpressionError):
            raise error.orig_exc from None
        raise


def _syntax_error(text: str, error: Any) -> ExpressionSyntaxError:
    """Translate a lark error into one that names the problem in the user's terms."""
    from lark.exceptions import UnexpectedCharacters, UnexpectedToken

    if isinstance(error, UnexpectedToken) and error.token.type != "$END":
        token = error.token
        start = token.start_pos if token.start_pos is not None else len(text)
        end = start + max(1, len(str(token)))
        found = repr(str(token))
    elif isinstance(error, UnexpectedCharacters):
        start = error.pos_in_stream
        end = start + 1
        found = f"character {text[start]!r}" if start < len(text) else "end of expression"
    else:  # the end of the text came too early
        start = end = len(text)
        found = "end of expression"
    fallback = getattr(error, "expected", None) or getattr(error, "allowed", None) or ()
    expected = _describe(_accepted_before(text, start) or fallback)
    message = f"Syntax error in data-ID expression: unexpected {found}"
    message += f"; expected {expected}." if expected else "."
    hint = None
    if found in ("character ';'", "character '-'", "character '/'", "character '#'"):
        hint = "Statements and comments are not part of the language: write one condition."
    elif found in ("character '\"'", 'character "\'"'):
        hint = "A string must end with the quote it starts with; double a quote to include it ('it''s')."
    elif found == "'='" and text[start - 1 : start + 1] == "==":
        hint = "Equality is a single '='."
    return ExpressionSyntaxError(message, Span(text, start, end), hint)


def _accepted_before(text: str, position: int) -> set[str]:
    """Return the terminals the grammar accepts after ``text[:position]``.

    Lark's own error reports what is acceptable *after* the parser applied default
    reductions, which is often just "end of input"; re-running the valid prefix gives the
    full list (AND, OR, ...) that a user needs to fix the expression.
    """
    try:
        interactive = _parser().parse_interactive(text[:position])
        interactive.exhaust_lexer()
        return set(interactive.accepts())
    except Exception:  # noqa: BLE001 - only used to improve a message; fall back to lark's list
        return set()


def _describe(terminals: Any) -> str:
    names = {TERMINAL_DESCRIPTIONS.get(name, name) for name in terminals}
    if "a number" in names:
        names.discard("an integer")
    ordered = sorted(names, key=lambda name: (name.startswith(("a ", "an ", "the ")), name))
    if len(ordered) <= 1:
        return "".join(ordered)
    return ", ".join(ordered[:-1]) + " or " + ordered[-1]


def _check_depth(text: str, tree: Tree) -> None:
    """Reject trees nested deeper than `MAX_DEPTH`, without recursion."""
    from lark import Tree

    stack: list[tuple[Any, int]] = [(tree, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_DEPTH:
            meta = node.meta
            start = getattr(meta, "start_pos", 0)
            raise ExpressionSyntaxError(
                f"The data-ID expression nests more than {MAX_DEPTH} levels deep.",
                Span(text, start, start + 1),
                "Simplify it: use IN lists and ranges instead of deeply nested conditions.",
            )
        stack.extend((child, depth + 1) for child in node.children if isinstance(child, Tree))


@functools.cache
def _builder_class() -> type:
    """Return the lark `Transformer` that builds `Node` objects (class made once, lazily).

    Building it on first use keeps lark out of ``import supertask.expr``; caching it
    matters because lark's ``v_args`` inspects the class, which costs more than a parse.
    """
    from lark import Transformer, v_args

    @v_args(meta=True)
    class Builder(Transformer):
        def __init__(self, source: str):
            super().__init__()
            self.source = source

        def span_of(self, meta: Any) -> Span | None:
            if getattr(meta, "empty", True):
                return None
            return Span(self.source, meta.start_pos, meta.end_pos)

        def to_int(self, token: Token) -> int:
            if len(token) > _MAX_NUMBER_CHARS or not _INT64_MIN <= int(token) <= _INT64_MAX:
                raise ExpressionValueError(
                    f"Integer {str(token)[:_MAX_NUMBER_CHARS]} is outside the 64-bit range.",
                    Span(self.source, token.start_pos or 0, token.end_pos or 0),
                    "Unit keys and fields are 64-bit integers at most.",
                )
            return int(token)

        def identifier(self, meta: Any, children: list[Token]) -> Identifier:
            unit, _, field = str(children[0]).partition(".")
            return Identifier(unit, field or None, span=self.span_of(meta))

        def bind(self, meta: Any, children: list[Token]) -> BindParam:
            return BindParam(str(children[0])[1:], span=self.span_of(meta))

        def int_(self, meta: Any, children: list[Token]) -> Literal:
            return Literal(self.to_int(children[0]), span=self.span_of(meta))

        def float_(self, meta: Any, children: list[Token]) -> Literal:
            value = float(children[0])
            if not math.isfinite(value):
                raise ExpressionValueError(f"Number {str(children[0])} is too large.", self.span_of(meta))
            return Literal(value, span=self.span_of(meta))

        def string(self, meta: Any, children: list[Token]) -> Literal:
            raw = str(children[0])
            quote = raw[0]
            return Literal(raw[1:-1].replace(quote * 2, quote), span=self.span_of(meta))

        def range_(self, meta: Any, children: list[Token]) -> Range:
            start, stop = self.to_int(children[0]), self.to_int(children[1])
            stride = self.to_int(children[2]) if len(children) > 2 else 1
            span = self.span_of(meta)
            if stop < start:
                raise ExpressionValueError(
                    f"The range {start}..{stop} is empty.",
                    span,
                    f"Ranges include both ends and go upwards: write {stop}..{start}.",
                )
            if stride < 1:
                raise ExpressionValueError(
                    f"The stride of {start}..{stop}:{stride} must be a positive integer.", span
                )
            return Range(start, stop, stride, span=span)

        def comparison(self, meta: Any, children: list[Any]) -> Comparison:
            left, op, right = children
            op = "!=" if str(op) == "<>" else str(op)
            return Comparison(op, left, right, span=self.span_of(meta))

        def in_items(self, meta: Any, children: list[Any]) -> tuple[Any, ...]:
            return tuple(children)

        def in_(self, meta: Any, children: list[Any]) -> InList:
            return InList(children[0], children[1], False, span=self.span_of(meta))

        def not_in(self, meta: Any, children: list[Any]) -> InList:
            return InList(children[0], children[1], True, span=self.span_of(meta))

        def not_(self, meta: Any, children: list[Any]) -> Not:
            return Not(children[0], span=self.span_of(meta))

        def and_expr(self, meta: Any, children: list[Any]) -> And:
            terms = [t for child in children for t in (child.terms if isinstance(child, And) else (child,))]
            return And(tuple(terms), span=self.span_of(meta))

        def or_expr(self, meta: Any, children: list[Any]) -> Or:
            terms = [t for child in children for t in (child.terms if isinstance(child, Or) else (child,))]
            return Or(tuple(terms), span=self.span_of(meta))

    return Builder
